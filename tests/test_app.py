"""The Gradio app's handlers (app.py) and view helpers (codefusion/demo.py), called directly with tiny models.

The 30-step tiny checkpoints from conftest mostly predict padding, so their programs are empty. The
handlers must cope with that, and the tests that need visible code use a copy whose head can never
pick a special token (`chatty` below): what the app does with text is what is tested here, not the model.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import make_chatty  # noqa: E402
from codefusion import demo as view  # noqa: E402
from codefusion.sampler import Candidate, Frame  # noqa: E402

PROMPT = "Format cells whose value is over 60"   # not one of the examples: no gold



def load_app(monkeypatch, **env):
    """(Re)import app.py with exactly these model env vars (the module reads them at import)."""
    for name in ("CODEFUSION_MODEL", "CODEFUSION_REVISION", "CODEFUSION_MODEL_PYTHON", "CODEFUSION_MODEL_BASH",
                 "CODEFUSION_MODEL_CF", "CODEFUSION_LANGUAGE", "CODEFUSION_DATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    if "app" in sys.modules:
        return importlib.reload(sys.modules["app"])
    return importlib.import_module("app")


@pytest.fixture(scope="module")
def chatty_cf(tiny_cf_checkpoint, tmp_path_factory) -> Path:
    return make_chatty(tiny_cf_checkpoint, tmp_path_factory.mktemp("chatty_cf"))


@pytest.fixture(scope="module")
def app(chatty_cf, tiny_bash_checkpoint):
    import torch

    threads = torch.get_num_threads()      # app.py sets torch's thread count for serving: restore it after
    mp = pytest.MonkeyPatch()
    module = load_app(mp, CODEFUSION_MODEL_CF=chatty_cf, CODEFUSION_MODEL_BASH=tiny_bash_checkpoint,
                      CODEFUSION_LANGUAGE="cf")
    yield module
    mp.undo()
    torch.set_num_threads(threads)


def run(app, prompt=PROMPT, language="cf", steps=6, k=3, seed=0, sampler="ddim", fps=0, **ranking):
    return list(app.generate(prompt, language, steps, k, seed, sampler, fps, **ranking))


def steps_shown(html: str) -> int:
    return int(re.search(r'data-step="(\d+)"', html).group(1))


# ----------------------------------------------------------------------------- streaming

def test_module_defines_demo_and_warms_default(app):
    import gradio as gr

    assert isinstance(app.demo, gr.Blocks)
    assert {"bash", "cf"} <= set(app.REGISTRY.languages)
    assert app.DEFAULT_LANGUAGE == "cf" and app.REGISTRY.loaded("cf")
    assert not app.REGISTRY.loaded("bash")  # others load lazily, on first use
    assert 1 <= app.DEFAULT_STEPS <= app.DEFAULT_T and 1 <= app.DEFAULT_K <= app.MAX_K == 5


def test_session_state_is_bounded_in_time_and_sessions(app):
    """A kept trajectory can hold 14 MB; gradio keeps gr.State forever for an open session and 10,000 sessions by
    default. The app's expires STATE_TTL_S after the last run, in at most STATE_SESSIONS sessions."""
    import gradio as gr

    states = [b for b in app.demo.blocks.values() if isinstance(b, gr.State)]
    assert len(states) == 1 and states[0].time_to_live == app.STATE_TTL_S == 1800
    assert app.LAUNCH_KWARGS["state_session_capacity"] == app.STATE_SESSIONS == 256


def test_generate_streams_every_frame_then_summary(app):
    outs = run(app, steps=6, k=3, fps=0)
    assert len(outs) == 6                                   # fps=0: one yield per denoising step
    assert [steps_shown(o[0]) for o in outs] == [1, 2, 3, 4, 5, 6]
    html, status, scrub, ed_plot, settle_plot, download, traj = outs[-1]
    assert traj.done and len(traj.frames) == 6
    final = traj.frames[-1]
    assert final.final and len(final.candidates) == 3
    assert all(c.text.strip() for c in final.candidates)      # non-empty code for each candidate
    assert html.count('data-draw=') == 3 and "Done" in status
    assert scrub.maximum == 6 and scrub.value == 6 and scrub.interactive
    assert ed_plot is not None and len(ed_plot.data) == 3
    assert settle_plot is not None and settle_plot.data[0].type == "heatmap"
    data = json.loads(Path(download.constructor_args["value"]).read_text())
    assert data["steps"] == 6 and len(data["frames"]) == 6
    assert data["language"] == "cf" and data["prompt"] == PROMPT
    assert [f["step"] for f in data["frames"]] == [1, 2, 3, 4, 5, 6]
    assert sorted(r["rank"] for r in data["ranking"]) == [1, 2, 3]


def test_running_frames_only_update_the_code(app):
    outs = run(app, steps=4, fps=0)
    import gradio as gr

    skip = gr.skip()
    first = outs[0]                          # the first frame clears the previous run's results...
    assert first[3] is None and first[4] is None and not first[2].interactive and not first[5].interactive
    for o in outs[1:-1]:                     # ...then plots, scrubber and download wait for the end
        assert "Denoising" in o[1]
        assert all(x == skip for x in o[2:6])


def test_frame_rate_cap_skips_frames_but_keeps_them(app, monkeypatch):
    clock = iter(range(0, 10_000))           # each time.perf_counter() call: one more second... divided by 10
    monkeypatch.setattr(app.time, "perf_counter", lambda: next(clock) / 10)
    outs = run(app, steps=12, fps=2)         # at most one frame per 0.5 "s": every 5th step here
    shown = [steps_shown(o[0]) for o in outs]
    assert shown[0] == 1 and shown[-1] == 12
    assert len(outs) < 12
    assert len(outs[-1][-1].frames) == 12    # every step is kept for scrubbing


def test_decoder_and_rounding_views_both_rendered(app):
    html = run(app, steps=3, k=2)[-1][0]
    assert html.count('class="cf-code cf-dec"') == 2 and html.count('class="cf-code cf-rnd"') == 2
    assert 'id="cf-step"' in html and "Step 3 / 3" in html


def test_changed_tokens_marked(app):
    traj = run(app, steps=5, k=2)[-1][-1]
    first = view.render_frame(traj.frames, 0, traj.info)
    n_tokens = sum(len(c.tokens) for c in traj.frames[0].candidates)
    assert first.count('class="tk chg') >= n_tokens    # at step 1 every token is new
    for i in range(1, 5):
        html = view.render_frame(traj.frames, i, traj.info)
        changed = sum(a != b for now, before in zip(traj.frames[i].candidates, traj.frames[i - 1].candidates)
                      for a, b in zip(now.token_ids, before.token_ids))
        assert html.count('class="tk chg') >= changed


def test_badges_scores_and_cf_tables(app):
    html = run(app, steps=3, k=3)[-1][0]
    assert html.count("badge dim ok") + html.count("badge dim bad") >= 3      # a validity badge per candidate
    assert html.count("score -") + html.count("score 0") >= 3
    assert html.count('class="cf-sheet"') == 3                      # CF: each rule on the sample table


def test_gold_from_examples(app):
    ex = app.BUILTIN_EXAMPLES["cf"][0]
    outs = run(app, prompt=ex.prompt, steps=3)
    html, ed_plot, traj = outs[-1][0], outs[-1][3], outs[-1][-1]
    assert "cf-gold" in html and "TextEquals" in html
    assert traj.info.gold == ex.code
    assert len(ed_plot.data) == 6                                    # to own final (3) and to gold (3)


def test_other_language(app):
    outs = run(app, prompt="find all .txt files in the current directory and delete them", language="bash",
               steps=3, k=2)
    traj = outs[-1][-1]
    assert traj.info.lang == "bash" and len(traj.frames) == 3
    assert "cf-sheet" not in outs[-1][0]


def test_k_one_and_all_samplers(app):
    for sampler in ("ddim", "dpm++", "ddpm"):
        traj = run(app, steps=3, k=1, sampler=sampler)[-1][-1]
        assert len(traj.frames[-1].candidates) == 1


def test_long_prompt_is_truncated_with_notice(app):
    outs = run(app, prompt="format the cells " * 3000, steps=2, k=1)
    assert "truncated" in outs[-1][1] and "cf-notice" in outs[-1][0]


def test_empty_programs_render(tiny_cf_checkpoint, monkeypatch, app):
    registry = app.ModelRegistry({"cf": app.ModelSource("cf", str(tiny_cf_checkpoint), None, "test")})
    monkeypatch.setattr(app, "REGISTRY", registry)
    outs = run(app, steps=3, k=2)
    assert len(outs[-1][-1].frames) == 3 and "Done" in outs[-1][1]   # whatever the model says, the page works


# ----------------------------------------------------------------------------- bad inputs

BAD = [
    dict(prompt=""), dict(prompt="   \n "), dict(prompt=None), dict(prompt=42), dict(prompt="\x00 \x00"),
    dict(language="klingon"), dict(language=None), dict(language=["cf"]),
    dict(steps=0), dict(steps=1201), dict(steps=-5), dict(steps=2.5), dict(steps="many"), dict(steps=None),
    dict(steps=float("nan")), dict(steps=float("inf")), dict(steps=10**30), dict(steps=True),
    dict(k=0), dict(k=6), dict(k=16), dict(k="3x"), dict(k=[3]),
    dict(seed=-1), dict(seed=2**40), dict(seed="abc"), dict(seed=1.5),
    dict(sampler="euler"), dict(sampler=None), dict(sampler=["ddim"]),
    dict(fps=-1), dict(fps=61), dict(fps="fast"), dict(fps=float("nan")), dict(fps=None),
    dict(ranking="vote"), dict(ranking=["score"]), dict(ranking=1),
]


@pytest.mark.parametrize("bad", BAD, ids=[f"{k}={v!r}"[:40] for b in BAD for k, v in b.items()])
def test_bad_inputs_give_a_message_not_an_exception(app, bad):
    import gradio as gr

    outs = run(app, **bad)
    assert len(outs) == 1
    html, status = outs[0][0], outs[0][1]
    assert html == gr.skip() and outs[0][-1] == gr.skip()   # nothing else on the page changes
    assert 'class="cf-status' in status and len(status) > 40


def test_numeric_strings_and_floats_from_api_callers_are_accepted(app):
    outs = run(app, steps="3", k=2.0, seed="7", fps="0")
    assert len(outs[-1][-1].frames) == 3


def test_generation_error_is_reported_and_app_keeps_serving(app, monkeypatch):
    def boom(*args, **kwargs):
        yield from ()
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(app, "sample_frames", boom)
    outs = run(app, steps=3)
    assert "simulated failure" in outs[-1][1] and "error" in outs[-1][1]
    monkeypatch.undo()
    assert len(run(app, steps=2)[-1][-1].frames) == 2


def test_broken_checkpoint_is_a_message(app, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    registry = app.ModelRegistry({"cf": app.ModelSource("cf", str(tmp_path), None, "test")})
    monkeypatch.setattr(app, "REGISTRY", registry)
    outs = run(app, steps=2)
    assert len(outs) == 1 and "model.safetensors" in outs[0][1]


def test_model_line_quotes_the_bundled_test_scores(app, tiny_cf_checkpoint, tmp_path):
    import json
    import shutil

    ckpt = tmp_path / "cf"
    shutil.copytree(tiny_cf_checkpoint, ckpt)
    report = {"lang": "cf", "split": "test", "metric_short": "execution match", "config": {"steps": 20, "limit": None, "seed": 0},
              "summary": {"n_tasks": 177, "top_k": {"1": 15.254, "3": 17.51, "5": 19.77}, "validity": 73.4}}
    (ckpt / app.EVAL_REPORT).write_text(json.dumps(report))
    registry = app.ModelRegistry({"cf": app.ModelSource("cf", str(ckpt), None, "test")})
    registry.get("cf")
    assert registry.describe("cf").endswith("\nMeasured on the test split (177 tasks, 20 steps, sampling seed 0): "
                                            "top-1/3/5 execution match 15.3 / 17.5 / 19.8% · top-1 valid 73%")
    for broken in ("{not json", json.dumps({**report, "lang": "bash"}), json.dumps({**report, "summary": {}})):
        (ckpt / app.EVAL_REPORT).write_text(broken)   # unreadable or not this model's: no line, the model still loads
        registry = app.ModelRegistry({"cf": app.ModelSource("cf", str(ckpt), None, "test")})
        registry.get("cf")
        assert "Measured" not in registry.describe("cf") and "parameters" in registry.describe("cf")
    assert app.measured_quality(app.ModelSource("cf", "nobody/not-downloaded", None, "test"), "cf") is None


def test_model_line_of_a_hub_checkpoint_reads_the_downloaded_report(app, tmp_path, monkeypatch):
    """A repo id: the report comes from the snapshot that loading the model put in the Hub cache (no request)."""
    import json

    from huggingface_hub import constants

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--someone--codefusion-cf"
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    report = {"lang": "cf", "split": "test", "metric_short": "execution match", "config": {"steps": 5, "limit": 40},
              "summary": {"n_tasks": 40, "top_k": {"1": 10.0, "5": 20.0}, "validity": None}}
    (repo / "snapshots" / sha / app.EVAL_REPORT).write_text(json.dumps(report))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    line = app.measured_quality(app.ModelSource("cf", "someone/codefusion-cf", None, "test"), "cf")
    assert line == "Measured on the test split (first 40 tasks, 5 steps): top-1/5 execution match 10.0 / 20.0%"


# ----------------------------------------------------------------------------- after the run

def test_scrub_shows_any_step_without_the_model(app, monkeypatch):
    traj = run(app, steps=5)[-1][-1]
    monkeypatch.setattr(app, "sample_frames", None)          # no model call possible
    for step in range(1, 6):
        assert steps_shown(app.show_step(traj, step)) == step
    import gradio as gr

    assert app.show_step(traj, 99) == gr.skip()
    assert app.show_step(traj, "x") == gr.skip()
    assert "Generate first" in app.show_step(None, 3)


def test_replay_plays_every_frame(app):
    traj = run(app, steps=5)[-1][-1]
    outs = list(app.replay(traj, 60))
    assert [o[1] for o in outs] == [1, 2, 3, 4, 5]
    assert "Generate first" in list(app.replay(None, 10))[0][0]


def test_trajectory_files_stay_bounded_on_a_long_running_server(app, monkeypatch):
    """Every finished run writes its JSON for the download button; a server must not keep them all (one run of 1200
    steps and 5 draws writes 2.7 MB for CF). The folder keeps the newest KEEP_TRAJECTORIES, the newest always."""
    import os
    import time

    folder = Path(app.TRAJECTORY_DIR)
    monkeypatch.setattr(app, "KEEP_TRAJECTORIES", 3)
    paths, now = [], time.time()
    for seed in range(5):
        download = run(app, steps=2, seed=seed)[-1][5]
        paths.append(download.constructor_args["value"])
        os.utime(paths[-1], (now + seed, now + seed))   # distinct times even on a coarse clock
    assert all(Path(p).parent == folder for p in paths)
    assert sorted(str(p) for p in folder.iterdir()) == sorted(paths[-3:])
    assert json.loads(Path(paths[-1]).read_text())["settings"]["seed"] == 4


def test_stop_keeps_the_partial_trajectory(app):
    gen = app.generate(PROMPT, "cf", 10, 2, 0, "ddim", 0)
    for _ in range(3):
        out = next(gen)
    gen.close()                                                # what cancelling the event does
    traj = out[-1]
    html, status, scrub, ed_plot, settle_plot, download, _ = app.stop(traj)
    assert "Stopped at step 3 of 10" in status and scrub.maximum == 3
    data = json.loads(Path(download.constructor_args["value"]).read_text())
    assert data["stopped"] and data["steps"] == 3 and len(data["frames"]) == 3
    import gradio as gr

    assert app.stop(None) == (gr.skip(),) * 7
    finished = run(app, steps=2)[-1][-1]
    assert app.stop(finished) == (gr.skip(),) * 7          # e.g. a replay stopped: the page stays as it is


def test_stop_flag_ends_the_sampling(app):
    gen = app.generate(PROMPT, "cf", 50, 1, 0, "ddim", 0)
    traj = next(gen)[-1]
    frames = traj.stop()                                    # the Stop button, before gradio's cancel lands
    rest = list(gen)
    assert rest == [] and len(traj.frames) == len(frames) < 50


def test_language_change_and_examples(app):
    dataset, line, steps = app.change_language("bash")
    assert steps.constructor_args["maximum"] == 1200
    assert app.REGISTRY.loaded("bash") and "Bash" in line
    samples = dataset.constructor_args["samples"]           # a gr.Dataset update: its new samples
    assert samples[0] == [app.BUILTIN_EXAMPLES["bash"][0].prompt]
    assert app.pick_example(1, "cf") == app.BUILTIN_EXAMPLES["cf"][1].prompt


def test_torch_threads_share_the_cpus(app, monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("CODEFUSION_TORCH_THREADS", "1")
    assert app.configure_torch_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.delenv("CODEFUSION_TORCH_THREADS")
    assert app.configure_torch_threads() == max(1, app.available_cpus() // app.CONCURRENCY)
    torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_bad_settings_stop_with_a_message(app, monkeypatch, value):
    monkeypatch.setenv("CODEFUSION_QUEUE_SIZE", value)
    with pytest.raises(SystemExit, match="CODEFUSION_QUEUE_SIZE must be a positive integer"):
        app.env_int("CODEFUSION_QUEUE_SIZE", 64)
    monkeypatch.setenv("CODEFUSION_QUEUE_SIZE", " 8 ")
    assert app.env_int("CODEFUSION_QUEUE_SIZE", 64) == 8


def test_queue_is_limited(app):
    assert app.demo._queue.max_size == app.QUEUE_SIZE
    fn = next(f for f in app.demo.fns.values() if f.api_name == "generate")
    assert fn.concurrency_limit == app.CONCURRENCY


# ----------------------------------------------------------------------------- models and page

def test_registry_precedence(app, tiny_cf_checkpoint, tiny_bash_checkpoint, tmp_path):
    bundled = tmp_path / "checkpoints"
    shutil.copytree(tiny_cf_checkpoint, bundled / "cf")
    reg = app.ModelRegistry.from_env({}, checkpoint_dir=bundled)
    assert reg.languages == ["cf"] and reg.sources["cf"].origin == "checkpoints/cf"
    reg = app.ModelRegistry.from_env({"CODEFUSION_MODEL": str(tiny_bash_checkpoint)}, checkpoint_dir=bundled)
    assert reg.languages == ["bash", "cf"] and reg.sources["bash"].origin.startswith("CODEFUSION_MODEL=")
    reg = app.ModelRegistry.from_env({"CODEFUSION_MODEL_CF": "/elsewhere/cf"}, checkpoint_dir=bundled)
    assert reg.sources["cf"].ref == "/elsewhere/cf"
    reg = app.ModelRegistry.from_env({"CODEFUSION_MODEL": str(tmp_path / "missing")}, checkpoint_dir=tmp_path)
    assert reg.languages == [] and "CODEFUSION_MODEL" in reg.problems[0]
    reg = app.ModelRegistry.from_env({"CODEFUSION_MODEL_BASH": str(tiny_cf_checkpoint)}, checkpoint_dir=tmp_path)
    with pytest.raises(app.CodeFusionError, match="is a cf checkpoint, not bash"):
        reg.get("bash")


def test_page_without_any_checkpoint_explains_training(app, monkeypatch, tmp_path):
    monkeypatch.setattr(app, "REGISTRY", app.ModelRegistry.from_env({}, checkpoint_dir=tmp_path))
    monkeypatch.setattr(app, "DEFAULT_LANGUAGE", None)
    page = app.build_demo()
    text = json.dumps(page.get_config_file())
    assert "No model is available yet" in text and "codefusion.train" in text


def test_benchmark_examples_carry_gold(app, data_dir, monkeypatch):
    monkeypatch.setenv("CODEFUSION_DATA", str(data_dir))
    exs = app.benchmark_examples("cf", n=4)
    assert len(exs) == 4 and all(e.source == "benchmark" and e.code for e in exs)
    assert app.benchmark_examples("cf", n=4) == exs              # the same sample every time
    monkeypatch.delenv("CODEFUSION_DATA")
    assert app.benchmark_examples("cf") == []


# ----------------------------------------------------------------------------- view helpers

def _frame(step, total, texts_ids):
    cands = [Candidate(text=" ".join(t for t, _ in toks), tokens=[t for t, _ in toks], token_ids=[i for _, i in toks],
                       probs=[0.9] * len(toks), score=-0.1 * n, rounding_text="", rounding_tokens=[t for t, _ in toks])
             for n, toks in enumerate(texts_ids)]
    return Frame(step=step, total_steps=total, timestep=1200 - step, elapsed=0.01 * step, candidates=cands,
                 final=step == total)


def test_settle_steps_and_edit_distance():
    a, b, c = ("a", 1), ("b", 2), ("c", 3)
    frames = [_frame(1, 3, [[a, a]]), _frame(2, 3, [[b, a, c]]), _frame(3, 3, [[b, a, c]])]
    assert view.settle_steps(frames) == [[2, 1, 2]]
    series = view.edit_distance_series(frames, gold="b a c")
    assert series["to_final"][0][-1] == 0.0 and series["to_final"][0][0] > 0
    assert series["to_gold"][0][-1] == 0.0


def test_settle_map_labels_fit_their_cells():
    # A label may be no wider than its cell on the narrowest plot area the page gives (Plotly does not clip it).
    def labels(n_tokens):
        toks = [(f"token{i}", i) for i in range(n_tokens)]
        fig = view.settle_figure([_frame(1, 2, [toks]), _frame(2, 2, [toks])])
        return fig.data[0].texttemplate, fig.data[0].text[0]

    for n in (3, 8, 15, 22):
        template, text = labels(n)
        cell_px = view.SETTLE_PLOT_PX / n
        assert template and all(2 <= len(t) and len(t) * view.CELL_CHAR_PX <= cell_px for t in text), (n, text)
    assert labels(3)[1] == ["token0", "token1", "token2"] and labels(15)[1][0] == "to\u2026"
    assert labels(23)[0] is None and labels(40)[0] is None   # under two characters a cell: none, hover names it


def test_html_escapes_model_output():
    html = view.code_html(["<script>", "${x}", "{{y}}", "`z`"], "python")
    assert "<script>" not in html and "${" not in html and "{{" not in html and "`" not in html
    assert "&lt;" in html


def test_cf_table_highlights_formatted_cells():
    table = [["Index", "Value"], [0, 12], [1, 75], [2, 50], [3, 98]]
    html = view.cf_table_html("GreaterThan(50)", table)
    assert html.count('class="hit"') == 2 and "2 cells formatted" in html
    assert "cannot run" in view.cf_table_html("GreaterThan(", table)
    assert html.count("background:") == 0
    assert view.cf_table_html("ColorScale()", table).count("background:rgb") == 4


def test_ranks_follow_scores():
    frame = _frame(1, 1, [[("a", 1)], [("b", 2)], [("c", 3)]])
    frame.candidates[2].score = 5.0
    assert view.ranks(frame.candidates) == [2, 3, 1]


def test_ranks_parsing_first():
    frame = _frame(1, 1, [[("x", 1), ("(", 2)], [("LessThan", 3), ("(", 2), ("3", 4), (")", 5)],
                          [("GreaterThan", 6), ("(", 2), ("5", 7)], [("TextEquals", 8), ("(", 2), ("a", 9), (")", 5)]])
    assert view.ranks(frame.candidates) == [1, 2, 3, 4]                          # scores fall with the draw
    assert view.ranks(frame.candidates, lambda t: view.valid("cf", t)) == [3, 1, 4, 2]   # parsing ones, then by score


def _synthetic_run(app, ranking):
    """A finished CF run of 2 steps whose best-scored draw does not parse."""
    toks = [[("GreaterThan", 6), ("(", 2), ("5", 7)], [("LessThan", 3), ("(", 2), ("3", 4), (")", 5)]]
    info = view.RunInfo(lang="cf", prompt=PROMPT, settings=dict(steps=2, k=2, seed=0, sampler="ddim", ranking=ranking))
    traj = app.Trajectory(info=info, model_name="synthetic", frames=[_frame(1, 2, toks), _frame(2, 2, toks)], done=True)
    return traj


def test_parsing_first_ranking_in_page_status_and_export(app):
    by_score, parsing = _synthetic_run(app, "score"), _synthetic_run(app, "valid-first")
    html, status, *_ = app._summary(by_score, by_score.frames)
    assert "best by score: draw 1" in status and 'data-draw="1"' in html.split('cf-card best')[1][:80]
    html, status, _, _, _, download, _ = app._summary(parsing, parsing.frames)
    assert "best parsing first, then by score: draw 2" in status
    assert 'data-draw="2"' in html.split('cf-card best')[1][:80] and "rank parsing first" in html
    data = json.loads(Path(download.constructor_args["value"]).read_text())
    assert data["settings"]["ranking"] == "valid-first"
    assert [(r["draw"], r["valid"]) for r in data["ranking"]] == [(2, True), (1, False)]


def test_changing_the_ranking_reranks_a_finished_run_without_the_model(app, monkeypatch):
    import gradio as gr

    traj = _synthetic_run(app, "score")
    monkeypatch.setattr(app, "sample_frames", None)          # no model call possible
    html, status, scrub, *_ , state = app.rerank(traj, "valid-first")
    assert state is traj and traj.info.settings["ranking"] == "valid-first"
    assert "draw 2" in status and scrub.value == 2
    assert app.rerank(traj, "valid-first") == (gr.skip(),) * 7   # unchanged: nothing to do
    assert app.rerank(None, "score") == (gr.skip(),) * 7
    assert app.rerank(traj, "vote") == (gr.skip(),) * 7
    running = _synthetic_run(app, "score")
    running.done = False                                       # a generation still streaming keeps its ranking
    assert app.rerank(running, "valid-first") == (gr.skip(),) * 7 and running.info.settings["ranking"] == "score"


def _steady_and_late_run(app, ranking):
    """A finished CF run of 2 steps: draw 1 scores best at the last step, draw 2 over both steps."""
    toks = [[("GreaterThan", 6), ("(", 2), ("5", 7), (")", 5)], [("LessThan", 3), ("(", 2), ("3", 4), (")", 5)]]
    frames = [_frame(1, 2, toks), _frame(2, 2, toks)]
    for frame, scores in zip(frames, ([-3.0, -0.5], [-0.1, -0.2])):
        for cand, score in zip(frame.candidates, scores):
            cand.score = score
    info = view.RunInfo(lang="cf", prompt=PROMPT, settings=dict(steps=2, k=2, seed=0, sampler="ddim", ranking=ranking))
    return app.Trajectory(info=info, model_name="synthetic", frames=frames, done=True)


def test_mean_score_ranking_in_page_status_and_export(app):
    traj = _steady_and_late_run(app, "score")
    assert view.mean_scores(traj.frames) == pytest.approx([-1.55, -0.35])
    assert view.run_ranks(traj.frames, traj.info) == [1, 2]
    html, status, _, _, _, download, _ = app.rerank(traj, "mean-score")   # no model call: the frames hold the scores
    assert "best by mean score over the steps: draw 2" in status
    assert 'data-draw="2"' in html.split('cf-card best')[1][:80] and "mean -0.35" in html and "mean -1.55" in html
    data = json.loads(Path(download.constructor_args["value"]).read_text())
    assert data["settings"]["ranking"] == "mean-score"
    assert [(r["draw"], r["rank"]) for r in data["ranking"]] == [(2, 1), (1, 2)]
    assert [r["mean_score"] for r in data["ranking"]] == pytest.approx([-0.35, -1.55])
    # scrubbing back to step 1 ranks by the mean so far, that is step 1's scores
    step1 = view.render_frame(traj.frames, 0, traj.info)
    assert "#1 of 2" in step1.split('data-draw="2"')[1] and "mean -0.50" in step1
    assert "&middot; mean" not in view.render_frame(traj.frames, 1, view.RunInfo(lang="cf"))   # by score: no mean shown


def test_generate_with_mean_score_ranks_as_the_sampler_does(app):
    from codefusion.sampler import generate as sampler_generate

    outs = list(app.generate(PROMPT, "cf", 6, 4, 0, "ddim", 0, "mean-score"))
    traj = outs[-1][-1]
    assert traj.info.settings["ranking"] == "mean-score" and "by mean score over the steps" in outs[-1][1]
    rk = view.run_ranks(traj.frames, traj.info)
    ours = [traj.frames[-1].candidates[rk.index(r)].text for r in range(1, 5)]
    ranked = sampler_generate(app.REGISTRY.get("cf"), PROMPT, k=4, steps=6, seed=0, rank_by="mean-score")[0]
    assert ours == [c.text for c in ranked]
    assert [view.mean_scores(traj.frames)[rk.index(r)] for r in range(1, 5)] == pytest.approx([c.score for c in ranked])


def test_generate_with_parsing_first(app):
    outs = list(app.generate(PROMPT, "cf", 3, 3, 0, "ddim", 0, "valid-first"))
    traj = outs[-1][-1]
    assert traj.info.settings["ranking"] == "valid-first" and "parsing first" in outs[-1][1]
    cands = traj.frames[-1].candidates
    order = sorted(range(3), key=lambda i: view.run_ranks(traj.frames, traj.info)[i])
    flags = [view.valid("cf", cands[i].text) for i in order]
    assert flags == sorted(flags, reverse=True)                # every parsing program before any other
    for part in (True, False):
        scores = [cands[i].score for i in order if view.valid("cf", cands[i].text) == part]
        assert scores == sorted(scores, reverse=True)
    assert len(list(app.generate(PROMPT, "cf", 3, 3, 0, "ddim", 0, None))[-1][-1].frames) == 3   # API default


def test_nan_free_json_export(app):
    traj = run(app, steps=2, k=1)[-1][-1]
    data = view.trajectory_dict(traj.frames, traj.info)
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["steps"] == 2 and not math.isnan(data["frames"][0]["candidates"][0]["score"])


def test_cf_cards_show_the_rule_grounded_to_the_request(app):
    # the model's garbled copy of "Bull" and a rule with nothing to ground
    toks = [[("TextContains", 1), ("(", 2), ("lBul", 3), ("Bul", 4)], [("Duplicate", 5), ("(", 2), (")", 6)]]
    table = [["Index", "Value"], [0, "Bull"], [1, "Bear"], [2, "bull run"], [3, "Cow"], [4, "Bullish"], [5, "x"]]
    info = view.RunInfo(lang="cf", prompt="Highlight cells that contain Bull", gold="TextContains(Bull)",
                        gold_source="benchmark", table=table, settings=dict(steps=1, k=2, ranking="score"))
    frames = [_frame(1, 1, toks)]
    html = view.render_frame(frames, 0, info)
    cards = html.split('data-draw=')[1:]
    assert "grounded to the request" in cards[0] and "grounded to the request" not in cards[1]
    line = cards[0].split("cf-grounded-label")[1]
    assert "Bull" in line and "lBul" not in line and "matches reference" in line
    assert "3 cells formatted" in cards[0]   # the sheet runs the grounded rule, not the garbled one
    data = view.trajectory_dict(frames, info)
    assert [r["grounded"] for r in data["ranking"]] == ["TextContains(Bull)", None]
    bash = view.RunInfo(lang="bash", prompt="contain Bull", settings=dict(steps=1, k=1))
    assert "grounded" not in view.render_frame([_frame(1, 1, toks[:1])], 0, bash)
