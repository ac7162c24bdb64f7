"""The recipes runner: the bundled checkpoints' chains as one resumable command."""

import json
import re
import shlex
from pathlib import Path

import pytest

from codefusion.bundle import model_card
from codefusion.errors import CodeFusionError
from codefusion.recipes import RECIPES, SENTENCE_ENCODER, Link, chain_command, local_copy, main, run_recipe

ROOT = Path(__file__).resolve().parent.parent

# A two-link chain shaped like the Bash recipe: a templated first link bundled with sentence-case prompts, then a
# fine-tuning link from that bundle.
TINY = (Link(("--lang", "bash", "--preset", "tiny", "--stage", "finetune", "--max-steps", "2", "--bash-templates",
              "--eval-every", "1000", "--quiet"), bundle=("--sentence-case-prompts",)),
        Link(("--lang", "bash", "--preset", "tiny", "--stage", "finetune", "--max-steps", "1", "--lr", "5e-4",
              "--eval-every", "1000", "--quiet")))


def test_a_chain_runs_links_in_order_bundles_the_last_and_records_every_link(data_dir, tmp_path):
    out, work = tmp_path / "ckpt", tmp_path / "runs"
    ran = run_recipe("bash", out, work=work, data_dir=str(data_dir), links=TINY, echo=lambda *_: None)
    assert [c.split()[2] for c in ran] == ["codefusion.train", "codefusion.bundle"] * 2
    assert f"--init {work / 'link1-ckpt'}" in ran[2]
    config = json.loads((out / "config.json").read_text())
    # the first link's settings reach the last model through --init: templates and the bundle's sentence case
    assert config["bash_templates"] is True and config["sentence_case_prompts"] is True
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["command"] == chain_command(TINY)
    assert [sum(link["stage_steps"].values()) for link in summary["links"]] == [2, 1]
    assert all(link["torch_threads"] >= 1 and "--init" in link["command"] for link in summary["links"][1:])
    assert summary["recipe_seconds"] == pytest.approx(sum(link["seconds"] for link in summary["links"]), abs=0.11)
    assert "--init CKPT1" in summary["links"][1]["command"] and str(tmp_path) not in json.dumps(summary["links"])
    # the Hub card counts the whole chain, not its last run
    assert "- all 2 runs: 3 steps, " in model_card(out, "you/codefusion-bash")

    # Run again: both links finished, so nothing trains; only the bundles are made again.
    weights = (out / "model.safetensors").read_bytes()
    again = run_recipe("bash", out, work=work, data_dir=str(data_dir), links=TINY, echo=lambda *_: None)
    assert [c.split()[2] for c in again] == ["codefusion.bundle"] * 2
    assert (out / "model.safetensors").read_bytes() == weights


def test_a_local_copy_of_the_sentence_encoder_is_read_but_the_model_is_recorded_by_name(data_dir, tmp_path):
    from conftest import save_tiny_bert

    copy = save_tiny_bert(tmp_path / "minilm", ["find", "files"], hidden_size=8)
    first = Link((*TINY[0].train, "--sentence-encoder", SENTENCE_ENCODER), TINY[0].bundle)
    assert local_copy(first.train, str(copy))[-1] == str(copy) and local_copy(TINY[1].train, str(copy)) == TINY[1].train
    out = tmp_path / "ckpt"
    ran = run_recipe("bash", out, work=tmp_path / "runs", data_dir=str(data_dir), links=(first, TINY[1]),
                     echo=lambda *_: None, sentence_encoder=str(copy))
    assert f"--sentence-encoder {copy}" in ran[0] and "--sentence-encoder" not in ran[2]   # the second reads it via --init
    # every checkpoint of the chain carries the encoder: the last one loads with the copy gone
    assert json.loads((out / "config.json").read_text())["sentence_encoder"] == "sentence_encoder"
    assert (out / "sentence_encoder" / "model.safetensors").is_file()
    summary = json.loads((out / "training_summary.json").read_text())
    assert f"--sentence-encoder {SENTENCE_ENCODER}" in summary["links"][0]["command"] and str(copy) not in json.dumps(summary)
    from codefusion.model import CodeFusion

    for f in copy.iterdir():
        f.unlink()
    assert CodeFusion.from_pretrained(out).sentence is not None


def test_the_ar_twin_trains_the_same_chain_as_the_baseline(data_dir, tmp_path, capsys):
    from codefusion.autoregressive import ARBaseline
    from codefusion.model import load_folder

    out = tmp_path / "ar"
    ran = run_recipe("bash", out, work=tmp_path / "runs", data_dir=str(data_dir), links=TINY, echo=lambda *_: None,
                     architecture="autoregressive")
    assert all("--architecture autoregressive" in c for c in ran[::2]) and "--init" in ran[2]
    model = load_folder(out)
    assert isinstance(model, ARBaseline) and model.config.bash_templates and model.config.sentence_case_prompts
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["command"].count("--architecture autoregressive") == 2 and len(summary["links"]) == 2
    # CF's and Python's recipes copy with H; the AR twin has none, so the flag goes and the rest stays
    assert main(["cf", "--out", str(tmp_path / "cf"), "--architecture", "autoregressive", "--dry-run"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert "--copy-head" not in line and "--copy-augment 0.5" in line and "--architecture autoregressive" in line
    with pytest.raises(CodeFusionError, match="unknown architecture 'rnn'"):
        run_recipe("cf", tmp_path / "x", dry_run=True, architecture="rnn")


ONE = (Link(("--lang", "bash", "--preset", "tiny", "--stage", "finetune", "--max-steps", "3", "--save-every", "1",
             "--eval-every", "1000", "--quiet")),)


def test_the_same_command_resumes_a_link_that_was_killed(data_dir, tmp_path):
    from conftest import train_tiny

    # A link killed after step 1: its state is saved, its plan is 3 steps (--stop-after stands in for the kill).
    train_tiny(data_dir, tmp_path / "ckpt-runs" / "link1", "bash", 3, "--stage", "finetune", "--stop-after", "1")
    meta_file = tmp_path / "ckpt-runs" / "link1" / "state" / "trainer_state.json"
    meta = json.loads(meta_file.read_text())
    meta["args"]["stop_after"] = None
    meta_file.write_text(json.dumps(meta))
    ran = run_recipe("bash", tmp_path / "ckpt", data_dir=str(data_dir), links=ONE, echo=lambda *_: None)
    assert ran[0].endswith("--resume")
    summary = json.loads((tmp_path / "ckpt" / "training_summary.json").read_text())
    assert summary["resumed"] == 1 and summary["links"][0]["resumed"] == 1
    assert sum(summary["stage_steps"].values()) == 3


def test_a_link_that_saved_nothing_starts_over_and_keeps_its_log(data_dir, tmp_path):
    run = tmp_path / "ckpt-runs" / "link1"
    run.mkdir(parents=True)
    (run / "log.jsonl").write_text('{"event": "start", "killed": "before its first save"}\n')
    ran = run_recipe("bash", tmp_path / "ckpt", data_dir=str(data_dir), links=ONE, echo=lambda *_: None)
    assert ran[0].endswith("--overwrite")
    assert "killed" in (run / "log.interrupted.jsonl").read_text() and "killed" not in (run / "log.jsonl").read_text()


def write_state(run: Path, step: int, total: int, **args) -> None:
    (run / "state").mkdir(parents=True)
    (run / "state" / "trainer_state.json").write_text(
        json.dumps({"step": step, "stage_steps": {"pretrain": 0, "finetune": total}, "args": args}))


def test_an_interrupted_link_resumes_and_one_that_saved_nothing_starts_over(tmp_path):
    from codefusion.recipes import _run_state, _set_log_aside

    assert _run_state(tmp_path / "none") == "new"
    write_state(tmp_path / "half", 250, 3200)
    assert _run_state(tmp_path / "half") == "resume"
    write_state(tmp_path / "done", 3200, 3200)
    assert _run_state(tmp_path / "done") == "done"
    early = tmp_path / "early"
    early.mkdir()
    (early / "log.jsonl").write_text('{"event": "start"}\n')
    assert _run_state(early) == "overwrite" and (early / "log.jsonl").is_file()   # deciding changes nothing
    for n in (1, 2):   # a run that starts over twice keeps both earlier logs, not mixed into the new one
        (early / "log.jsonl").write_text(f'{{"event": "start", "try": {n}}}\n')
        _set_log_aside(early)
        assert not (early / "log.jsonl").exists()
    assert '"try": 1' in (early / "log.interrupted.jsonl").read_text()
    assert '"try": 2' in (early / "log.interrupted.2.jsonl").read_text()
    _set_log_aside(early)   # nothing to set aside
    write_state(tmp_path / "probe", 40, 6400, stop_after=40)
    with pytest.raises(CodeFusionError, match="--stop-after"):
        _run_state(tmp_path / "probe")


def test_a_failing_link_stops_the_chain_with_the_command_that_failed(tmp_path, capsys):
    assert main(["cf", "--out", str(tmp_path / "ckpt"), "--data-dir", str(tmp_path / "no-data")]) == 2
    err = capsys.readouterr().err
    assert "codefusion.train --lang cf" in err and "run the recipe again" in err
    assert not (tmp_path / "ckpt").exists()


def test_bad_folders_and_dry_runs(tmp_path, capsys):
    with pytest.raises(CodeFusionError, match="outside --out"):
        run_recipe("cf", tmp_path / "ckpt", work=tmp_path / "ckpt" / "runs", dry_run=True)
    assert main(["bash", "--out", str(tmp_path / "ckpt"), "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 6 and not (tmp_path / "ckpt").exists() and not (tmp_path / "ckpt-runs").exists()
    with pytest.raises(SystemExit):
        main(["rust", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("lang", sorted(RECIPES))
def test_each_recipe_is_what_trained_the_bundled_checkpoint(lang):
    summary = json.loads((ROOT / "checkpoints" / lang / "training_summary.json").read_text())
    recorded = shlex.split(summary["command"])
    for link in RECIPES[lang]:
        # every flag and value of the recipe, in the recorded command (which also spells out the trainer's defaults)
        flags = [w for w in link.train if w.startswith("--")]
        for flag in flags:
            assert flag in recorded, (lang, flag)
            value = link.train[link.train.index(flag) + 1] if link.train.index(flag) + 1 < len(link.train) else None
            if value is not None and not value.startswith("--"):
                assert value in [recorded[i + 1] for i, w in enumerate(recorded[:-1]) if w == flag], (lang, flag, value)
    if len(RECIPES[lang]) > 1:
        assert summary["command"] == chain_command(RECIPES[lang])


def test_the_readme_gives_each_recipe_as_one_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for lang in RECIPES:
        assert re.search(rf"`python -m codefusion\.recipes {lang} --out [^`]+`", readme), lang
