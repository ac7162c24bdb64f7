"""Faults and guarantees: a trainer killed with SIGKILL, pickle-free loading, no eval, capped prompts."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from codefusion.errors import CodeFusionError
from codefusion.model import CodeFusion

from conftest import ROOT, run_python, train_tiny

PACKAGE = ROOT / "codefusion"


def _losses(log: Path) -> dict[int, float]:
    return {r["step"]: r["total"] for r in map(json.loads, log.read_text().splitlines()) if "total" in r}


def test_sigkill_mid_run_resumes_from_the_last_save_with_the_same_losses(data_dir, tmp_path):
    args = ["--lang", "bash", "--preset", "tiny", "--max-steps", "40", "--data-dir", str(data_dir), "--quiet",
            "--snippet-limit", "500", "--eval-every", "1000", "--save-every", "5"]
    reference = train_tiny(data_dir, tmp_path / "reference", "bash", 40, "--save-every", "5")

    out = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "codefusion.train", *args, "--out", str(out)], cwd=ROOT, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        log = out / "log.jsonl"
        if log.exists() and max(_losses(log), default=0) >= 17:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    state = json.loads((out / "state" / "trainer_state.json").read_text())
    killed_at = max(_losses(out / "log.jsonl"))
    assert killed_at - state["step"] <= 5, "lost more than one save interval"
    CodeFusion.from_pretrained(out)  # the exported checkpoint is whole, whatever instant the kill hit

    from codefusion.train import main

    assert main([*args, "--out", str(out), "--resume"]) == 0
    resumed = _losses(out / "log.jsonl")  # later lines (the resumed ones) overwrite the lost steps
    expected = _losses(reference / "log.jsonl")
    assert sorted(resumed) == list(range(1, 41))
    for step in range(state["step"] + 1, 41):
        assert resumed[step] == pytest.approx(expected[step], rel=1e-5), step
    assert not list(out.glob(".state.tmp*")) and not list(out.glob(".*.tmp-*"))


def test_weights_are_never_unpickled(tiny_bash_checkpoint, tmp_path):
    """A folder with only a pickle (pytorch_model.bin) is refused; nothing in the package calls torch.load."""
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bash_checkpoint, folder, ignore=shutil.ignore_patterns("state"))
    model = CodeFusion.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(CodeFusionError, match="no model.safetensors"):
        CodeFusion.from_pretrained(folder)

    calls = _calls_in_package()
    forbidden = {"torch.load", "pickle.load", "pickle.loads", "eval", "exec", "os.system"}
    assert not calls & forbidden, calls & forbidden
    assert "trust_remote_code" not in "".join(p.read_text() for p in PACKAGE.glob("*.py"))


def _calls_in_package() -> set[str]:
    names = set()
    for path in list(PACKAGE.glob("*.py")) + [ROOT / "app.py"]:
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                if isinstance(f, ast.Name):
                    names.add(f.id)
                elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                    names.add(f"{f.value.id}.{f.attr}")
    return names


def test_hub_downloads_fetch_only_safe_files_and_honour_the_revision(monkeypatch):
    import huggingface_hub

    from codefusion import model as model_module

    seen = {}

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None, **kw):
        seen.update(repo_id=repo_id, revision=revision, allow_patterns=allow_patterns)
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with pytest.raises(CodeFusionError, match="could not download checkpoint someone/cf .revision 0123abc"):
        model_module.resolve_checkpoint("someone/cf", revision="0123abc")
    assert seen["revision"] == "0123abc"
    assert all(not p.endswith((".bin", ".pt", ".pkl", ".py")) for p in seen["allow_patterns"])


def test_prompts_are_capped_before_tokenisation(tiny_bash_checkpoint):
    from codefusion import sampler

    model = sampler.load_model(tiny_bash_checkpoint)
    lengths = []
    real = model.tokenizer

    class Spy:
        def __call__(self, text, *a, **kw):
            lengths.append(len(text) if isinstance(text, str) else max(map(len, text)))
            return real(text, *a, **kw)

        def __getattr__(self, name):
            return getattr(real, name)

    model.tokenizer = Spy()
    frames = list(sampler.stream(model, "x" * 1_000_000 + "\x00", k=1, steps=1))
    assert max(lengths) <= sampler.MAX_PROMPT_CHARS and "truncated" in frames[0].notice


def test_cf_interpreter_never_evaluates_code():
    from codefusion.cf import execute_rule, parse_rule

    table = [["Index", "Value"], [0, "1"], [1, "__import__('os')"]]
    for rule in ["__import__('os').system('false')", "TextEquals(__import__('os'))", "eval(1)"]:
        try:
            result = execute_rule(parse_rule(rule), table)
        except Exception as e:  # a parse error is a fine answer too
            assert "syntax" in type(e).__name__.lower() or "CF" in type(e).__name__
        else:
            assert not result.ok or result.cells <= {(2, 1)}


# --- bad and unusual input through the CLIs and the sampler ----------------------------------------
UNUSUAL_PROMPTS = {
    "binary": bytes(range(256)).decode("latin-1"),
    "control characters": "Color cells\x07 above\x1b[31m 5\r\n\t\x0b",
    "right-to-left": "لوّن الخلايا التي تحتوي على نعم",
    "emoji": "Color cells with 🔥 or 🚀 in them 👍🏽",
    "100k characters": "list files " * 10_000,
    "nul bytes": "\x00list\x00files\x00",
    "lone surrogate": "list files \ud800 now",
}


@pytest.mark.parametrize("name", list(UNUSUAL_PROMPTS))
def test_unusual_prompts_still_generate(tiny_bash_checkpoint, name):
    from codefusion import sampler

    model = sampler.load_model(tiny_bash_checkpoint)
    frames = list(sampler.stream(model, UNUSUAL_PROMPTS[name], k=2, steps=2))
    assert len(frames) == 2 and all(isinstance(c.text, str) for c in frames[-1].candidates)
    assert frames[0].notice == "" or frames[0].notice.startswith("prompt truncated to its first")
    if name == "100k characters":
        assert "truncated" in frames[0].notice


def _cli(module: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return run_python("-m", module, *args, stdin=stdin)


@pytest.mark.parametrize("args, message", [
    (["--k", "0"], "k (number of candidates)"), (["--k", "-3"], "k (number of candidates)"),
    (["--k", "100000"], "k (number of candidates)"), (["--steps", "0"], "steps must be"),
    (["--steps", "99999"], "steps must be"), (["--steps", "ten"], "invalid int value"),
    (["--seed", "abc"], "invalid int value"), (["--sampler", "euler"], "invalid choice"),
    (["--checkpoint", "/nonexistent/ckpt"], "not found"), (["--ground-literals"], "CF rules only, not bash"),
])
def test_generate_cli_refuses_bad_arguments(tiny_bash_checkpoint, args, message, capsys):
    from codefusion.generate import main

    try:   # in-process (a subprocess per case cost 4-10 s of imports); the next test runs the real process
        rc = main(["list files", "--checkpoint", str(tiny_bash_checkpoint), *args])
    except SystemExit as e:   # argparse's own refusals
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err


@pytest.mark.parametrize("args, message", [(["--steps", "ten"], "invalid int value"), (["--k", "0"], "k (number")])
def test_generate_cli_process_exits_2_without_a_traceback(tiny_bash_checkpoint, args, message):
    r = _cli("codefusion.generate", "list files", "--checkpoint", str(tiny_bash_checkpoint), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("device, message", [
    ("tpu9", "unknown device 'tpu9'"), ("cuda" if not torch.cuda.is_available() else "cuda:99", "device cuda"),
])
def test_generate_refuses_a_device_this_machine_lacks(tiny_bash_checkpoint, device, message):
    # torch itself answers with an AssertionError ("Torch not compiled with CUDA enabled") or a RuntimeError
    r = _cli("codefusion.generate", "list files", "--checkpoint", str(tiny_bash_checkpoint), "--device", device)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("module, args", [
    ("codefusion.generate", ["hi", "--checkpoint", "x", "--sampler", "ddmi"]),
    ("codefusion.generate", ["hi", "--checkpoint", "x", "--rank", "votes"]),
    ("codefusion.evaluate", ["--lang", "cf", "--checkpoint", "x", "--out", "r.json", "--sampler", "ddmi"]),
    ("codefusion.bench", ["--checkpoint", "x", "--out", "b.json", "--sampler", "ddmi"]),
    ("codefusion.probe", ["--checkpoint", "x", "--lang", "cobol"]),
    ("codefusion.train", ["--lang", "cobol", "--out", "x"]),
    ("codefusion.train", ["--lang", "cf", "--out", "x", "--pretrain-tasks", "cdp"]),
])
def test_a_misspelt_choice_is_refused_before_torch_loads(module, args):
    # Importing torch takes seconds; a typo should not (and evaluate used to find it only at the first task).
    code = (f"import sys\nfrom {module} import main\ntry:\n    main({args!r})\nexcept SystemExit as e:\n"
            f"    assert e.code == 2, e.code\nassert 'torch' not in sys.modules\nprint('refused early')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "refused early" in r.stdout and "invalid choice" in r.stderr, r.stderr


def test_generate_cli_grounds_cf_literals(tiny_cf_checkpoint):
    from codefusion.cf import ground_literals

    prompt = "Highlight cells that contain Bull"
    args = ["--checkpoint", str(tiny_cf_checkpoint), "--k", "3", "--steps", "3", "--json"]
    plain = json.loads(_cli("codefusion.generate", prompt, *args).stdout)["candidates"]
    out = json.loads(_cli("codefusion.generate", prompt, *args, "--ground-literals").stdout)["candidates"]
    assert [c["code"] for c in out] == [ground_literals(c["code"], prompt) for c in plain]
    assert [c["grounded_from"] for c in out] == [p["code"] if p["code"] != c["code"] else None for p, c in zip(plain, out)]


def test_generate_cli_empty_prompt_from_stdin(tiny_bash_checkpoint):
    r = _cli("codefusion.generate", "-", "--checkpoint", str(tiny_bash_checkpoint), stdin="   \n")
    assert r.returncode == 2 and "prompt is empty" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--max-steps", "0"], "--max-steps must be at least 1"), (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--lang", "cobol"], "invalid choice"), (["--vocab-size", "-5"], "--vocab-size must be at least 1"),
    (["--decoder-layers", "-1"], "--decoder-layers must be 0 or more"),
    (["--width", "0"], "--width must be at least 1"), (["--denoiser-layers", "0"], "--denoiser-layers must be at least 1"),
    (["--embed-dim", "0"], "--embed-dim must be at least 1"),
    (["--width", "91"], "width=91 is not divisible by its head count 2"),
    (["--embed-scale", "0"], "--embed-scale must be a positive number"),
    (["--embed-scale", "nan"], "--embed-scale must be a positive number"),
    (["--ema-decay", "1"], "--ema-decay must be in [0, 1)"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"), (["--dropout", "-0.1"], "--dropout must be in [0, 1)"),
    (["--pretrain-steps", "0"], "--pretrain-steps must be at least 1"),
    (["--max-steps", "10", "--pretrain-steps", "10"], "leave fine-tuning steps"),
    (["--stage", "finetune", "--pretrain-steps", "5"], "splits --stage all"),
])
def test_train_cli_refuses_bad_arguments(data_dir, tmp_path, capsys, args, message):
    from codefusion.train import main

    base = {"--lang": "cf", "--preset": "tiny", "--data-dir": str(data_dir), "--out": str(tmp_path / "o")}
    base.update(dict(zip(args[::2], args[1::2])))
    try:
        rc = main([x for kv in base.items() for x in kv] + ["--quiet"])
    except SystemExit as e:  # argparse
        rc = e.code
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_stage_plan():
    from codefusion.trainer import RECIPES, plan_stages

    small = RECIPES["small"]   # 200 + 600
    assert plan_stages(small, "all") == {"pretrain": 200, "finetune": 600}
    assert plan_stages(small, "all", 1600) == {"pretrain": 400, "finetune": 1200}      # the recipe's share
    assert plan_stages(small, "all", 3000, 2400) == {"pretrain": 2400, "finetune": 600}
    assert plan_stages(small, "all", None, 50) == {"pretrain": 50, "finetune": 600}
    assert plan_stages(small, "finetune", 800) == {"pretrain": 0, "finetune": 800}
    assert plan_stages(small, "pretrain", 800) == {"pretrain": 800, "finetune": 0}


def test_train_cli_on_a_malformed_data_folder_leaves_nothing_behind(tmp_path, capsys):
    from codefusion.train import main

    (tmp_path / "data" / "Benchmarks").mkdir(parents=True)
    (tmp_path / "data" / "Pretraining Data").mkdir()
    (tmp_path / "data" / "Benchmarks" / "CFRuleBenchmarks.json").write_text('{"train": [{"ID": 1, "Code": ""}')
    rc = main(["--lang", "cf", "--preset", "tiny", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
               "--quiet"])
    assert rc == 2 and "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    (tmp_path / "data" / "Benchmarks" / "CFRuleBenchmarks.json").write_text(
        json.dumps({"train": [{"ID": 1, "NL Utterance": "x", "Code": ""}], "test": []}))
    assert main(["--lang", "cf", "--preset", "tiny", "--data-dir", str(tmp_path / "data"), "--out",
                 str(tmp_path / "o"), "--quiet"]) == 2
    assert "training split is empty" in capsys.readouterr().err


def test_requirements_are_bounded_and_pinned_by_the_constraints():
    import re

    def names(path):
        reqs = {}
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                name = re.split(r"[<>=!~ ]", line, maxsplit=1)[0].lower().replace("_", "-")
                reqs[name] = line
        return reqs

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    for path in ("requirements.txt", "requirements-dev.txt"):
        for name, line in names(path).items():
            assert ">=" in line and "<" in line, f"{path}: {line} needs a lower and an upper bound"
            assert name in pins, f"constraints.txt does not pin {name}"
    assert not any("+cpu" in v for v in pins.values()), "the pins must also resolve on a CUDA machine"
