"""Bash models trained on NL2Bash templates (`train --bash-templates`) and the filler that shows their commands
with the request's arguments (`codefusion.bash`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import train_tiny

from codefusion import bash, metrics
from codefusion.bash import fill_arguments

ROOT = Path(__file__).resolve().parents[1]
from codefusion.config import preset
from codefusion.data import load_snippets, load_split
from codefusion.errors import CodeFusionError


@pytest.mark.parametrize("template, request_, filled", [
    ("find ARG -type ARG -size ARG", "find all the files in the entire file system whose size is greater than 20MB",
     "find / -type f -size +20M"),
    ("find ARG -type ARG -mtime ARG -name ARG -exec rm -rf {}",
     "recursively delete directories under /data/bin/test that are older than 10 days",
     "find /data/bin/test -type d -mtime +10 -name ARG -exec rm -rf {} \\;"),
    ("find ARG -name ARG -print0 | xargs -NUM -I {} mv {} ARG",
     "find all .bak files in or below the current directory and move them to ~/.old.files directory",
     "find . -name '*.bak' -print0 | xargs -NUM -I {} mv {} ~/.old.files"),
    ("find ARG -name ARG -print", 'search for the file "myletter.doc" in the home folder', "find ~ -name myletter.doc -print"),
    ("find ARG -iname ARG -exec mv {} ARG", "move all the mp3 files in the file system to the folder /mnt/mp3",
     "find / -iname '*.mp3' -exec mv {} /mnt/mp3 \\;"),
    ("find ARG -mmin -NUM", "list files modified in the last 15 minutes", "find ARG -mmin -15"),
    ("grep -r ARG ARG", 'search for "error" in all files under /var/log', "grep -r error /var/log"),
    ("find ARG -exec grep ARG {} ; -print", 'search "foo bar" in /tmp', "find /tmp -exec grep 'foo bar' {} \\; -print"),
])
def test_fill_arguments_takes_each_kind_from_the_request(template, request_, filled):
    assert fill_arguments(template, request_) == filled
    assert metrics.bash_match(filled, template)   # what the metric sees does not change


def test_fill_arguments_leaves_what_the_request_lacks_and_raw_commands_alone():
    assert fill_arguments("tac ARG | grep ARG", "grep from bottom of file") == "tac ARG | grep ARG"
    assert fill_arguments("ls -l | wc -l", "count files in /tmp") == "ls -l | wc -l"   # nothing to fill
    assert fill_arguments("", "anything") == ""
    # a literal is used once; a quote in it is escaped for the shell
    assert fill_arguments("grep ARG ARG", "find \"it's\" in notes.txt") == "grep 'it'\\''s' notes.txt"
    assert fill_arguments("find ARG -type ARG", "list the directories here") == "find ARG -type d"


def test_trainer_flag_trains_on_templates_and_links_keep_it(data_dir, tmp_path, monkeypatch):
    import codefusion.trainer as trainer

    seen = []
    encode = trainer.encode_codes
    monkeypatch.setattr(trainer, "encode_codes", lambda tok, codes, n: seen.append(list(codes)) or encode(tok, codes, n))
    run = train_tiny(data_dir, tmp_path / "run", "bash", 2, "--bash-templates", "--stage", "finetune")
    raw = load_split("bash", "train", data_dir)
    assert seen[0] == [bash.template(e.code) for e in raw]   # the fine-tuning programs
    assert seen[0][0] != raw[0].code and "ARG" in seen[0][0]
    assert seen[1] == [bash.template(e.code) for e in load_split("bash", "val", data_dir)]
    assert json.loads((run / "config.json").read_text())["bash_templates"] is True
    seen.clear()   # a fine-tuning link from it templates without being told
    link = train_tiny(data_dir, tmp_path / "link", "bash", 1, "--stage", "finetune", "--init", str(run))
    assert json.loads((link / "config.json").read_text())["bash_templates"] is True
    assert seen[0][0] == bash.template(raw[0].code)


def test_templated_snippets_are_deduplicated_before_the_seeded_draw(tmp_path):
    (tmp_path / "Benchmarks").mkdir()
    (tmp_path / "Pretraining Data").mkdir()
    (tmp_path / "Pretraining Data" / "BashSnippets.txt").write_text(
        "ls /tmp\nls /var\nls /tmp\n\nfind . -name '*.py'\nfind / -name x\n", encoding="utf-8")
    assert load_snippets("bash", tmp_path) == ["ls /tmp", "ls /var", "find . -name '*.py'", "find / -name x"]
    templated = load_snippets("bash", tmp_path, transform=metrics.bash_any_template)
    assert templated == ["ls ARG", "find ARG -name ARG"]
    assert load_snippets("bash", tmp_path, limit=1, seed=0, transform=metrics.bash_any_template)[0] in templated


def test_templates_are_for_bash_only(capsys):
    from codefusion.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--lang", "cf", "--out", "x", "--bash-templates"])
    assert "--bash-templates is for --lang bash" in capsys.readouterr().err
    with pytest.raises(CodeFusionError, match="bash_templates is for Bash models"):
        preset("tiny", "python", bash_templates=True)
    with pytest.raises(CodeFusionError, match="true or false"):
        preset("tiny", "bash", bash_templates="yes")


def test_demo_shows_a_templates_arguments_filled_from_the_request():
    from codefusion import demo as view
    from codefusion.sampler import Candidate, Frame

    text = "find ARG -name ARG -exec rm {}"
    cand = Candidate(text=text, tokens=text.split(), token_ids=list(range(6)), probs=[0.9] * 6, score=-0.1,
                     rounding_text="", rounding_tokens=text.split())
    frames = [Frame(step=1, total_steps=1, timestep=0, elapsed=0.1, candidates=[cand], final=True)]
    info = view.RunInfo(lang="bash", prompt="delete all .txt files in the current directory",
                        gold="find . -name '*.txt' -delete", gold_source="benchmark", settings=dict(steps=1, k=1))
    html = view.render_frame(frames, 0, info)
    line = html.split("cf-grounded-label")[1]
    assert "arguments from the request" in line and "&#x27;*.txt&#x27;" in line and "valid" in line
    assert view.trajectory_dict(frames, info)["ranking"][0]["grounded"] == "find . -name '*.txt' -exec rm {} \\;"


def test_the_bundled_bash_model_writes_templates_that_the_demo_fills(data_dir):
    from codefusion import demo as view
    from codefusion.sampler import generate, load_model

    model = load_model(ROOT / "checkpoints" / "bash")
    assert model.config.bash_templates and model.config.sentence_case_prompts
    prompt = "find all .txt files in the current directory and delete them"
    top = generate(model, prompt, k=1, steps=20, seed=0)[0][0].text
    assert "ARG" in top.split() and top.startswith("find")
    filled = view.grounded("bash", prompt, top)
    assert "ARG" not in filled.split()[:2] and "'*.txt'" in filled and metrics.bash_match(filled, top)


def test_the_model_line_says_when_a_bash_model_writes_templates(tiny_bash_checkpoint, tmp_path, monkeypatch):
    import shutil

    from test_app import load_app

    ckpt = tmp_path / "bash"
    shutil.copytree(tiny_bash_checkpoint, ckpt)
    app = load_app(monkeypatch, CODEFUSION_MODEL_BASH=ckpt, CODEFUSION_LANGUAGE="bash")
    app.REGISTRY.get("bash")
    assert "writes templates" not in app.REGISTRY.describe("bash")
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "bash_templates": True}))
    registry = app.ModelRegistry({"bash": app.ModelSource("bash", str(ckpt), None, "test")})
    registry.get("bash")
    assert "writes templates (each argument ARG" in registry.describe("bash")


def test_a_templated_model_reranks_by_templates_without_being_told(tiny_bash_checkpoint):
    from codefusion.rerank import Reranker
    from codefusion.sampler import load_model

    model = load_model(tiny_bash_checkpoint)
    assert not Reranker(model).templates and Reranker(model, templates=True).templates
    model.config = model.config.replace(bash_templates=True)
    assert Reranker(model).templates


def test_the_curve_of_a_templated_model_measures_against_the_golds_template(tiny_bash_checkpoint, tmp_path, data_dir,
                                                                          monkeypatch):
    import shutil

    from codefusion.evaluate import ModelSource

    ckpt = tmp_path / "bash"
    shutil.copytree(tiny_bash_checkpoint, ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "bash_templates": True}))
    golds = []
    distance = metrics.token_edit_distance
    monkeypatch.setattr(metrics, "token_edit_distance", lambda a, b: golds.append(b) or distance(a, b))
    tasks = load_split("bash", "test", data_dir)[:1]
    ModelSource(str(ckpt), "bash", steps=2, seed=0, sampler="ddim").curve(tasks, k=1, n_tasks=1)
    assert metrics.bash_any_template(tasks[0].code) in golds and tasks[0].code not in golds


def test_the_model_card_of_a_templated_model_says_how_to_fill_it():
    from codefusion.bundle import model_card

    card = model_card(ROOT / "checkpoints" / "bash", "someone/codefusion-bash")
    assert "It writes NL2Bash templates" in card and "fill_arguments" in card and "--bash-templates" in card
    assert "writes NL2Bash templates" not in model_card(ROOT / "checkpoints" / "cf", "someone/codefusion-cf")
