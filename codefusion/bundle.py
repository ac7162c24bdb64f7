"""Package a finished training run as a bundled checkpoint (weights, config, tokenizer and a run summary), or
publish a bundled checkpoint as a Hugging Face Hub model repo.

    python -m codefusion.bundle --run runs/cf --out checkpoints/cf
    python -m codefusion.bundle --push checkpoints/cf --repo-id YOU/codefusion-cf [--private]
    python -m codefusion.bundle --space --repo-id YOU/codefusion [--private] [--source-url URL]

The optimizer state and the per-step log stay behind; `training_summary.json` keeps what a reader needs
(config, parameter counts, plan, final and validation losses, time, throughput, the exact command).
--push uploads the folder's files as they are (16-bit weights stay 16-bit; the run summary and the test report
go along, so the app can show the measured quality of a Hub model too) with a model card, in one commit, and prints
that commit: pin it (CODEFUSION_REVISION_<LANG>) so a Space serves exactly what was checked. --space uploads what the
demo runs from (space_files) to a Gradio Space, large files through the Hub's large-file storage (a plain `git push`
of this repository is refused: its weights and images are binary files outside LFS).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

from codefusion.config import SENTENCE_DIR, CodeFusionConfig
from codefusion.errors import CodeFusionError

MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SUMMARY, CARD = "training_summary.json", "README.md"
EVAL_REPORT = "eval_test.json"   # what `python -m codefusion.evaluate --split test --out` wrote, kept with the weights
ROOT = Path(__file__).resolve().parent.parent   # the project's folder: what --space deploys
PUBLISHED = MODEL_FILES + (SUMMARY, EVAL_REPORT)


def summarize_log(log_path: Path) -> dict:
    """The run's start record, its last training and validation losses, and its wall time."""
    if not log_path.is_file():
        raise CodeFusionError(f"no run log at {log_path}")
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    start = next((r for r in records if r.get("event") == "start"), None)
    end = [r for r in records if r.get("event") == "end"]
    if start is None or not end:
        raise CodeFusionError(f"{log_path} is not the log of a finished run (no start or end record)")
    steps = [r for r in records if "total" in r]
    vals = [r for r in records if "val_loss" in r]
    last = {s: next((r for r in reversed(steps) if r["stage"] == s), None) for s in ("pretrain", "finetune")}
    return {
        "language": start["config"]["language"], "parameters": start["params"], "stage_steps": start["stage_steps"],
        "batch_size": start["batch_size"], "lr": start["lr"], "seed": start["seed"], "device": start["device"],
        "cpu_capability": start.get("cpu_capability"),   # runs logged before session 38 did not record it
        "torch_threads": start.get("torch_threads"),     # nor before session 55 this
        "code_version": start.get("code_version"),       # the git commit (session 49 on)
        "data": {k: start[k] for k in ("train_pairs", "val_pairs", "pretrain_snippets", "truncated_codes")},
        "final_loss": {s: ({k: round(r[k], 4) for k in ("total", "denoise", "decoder", "ce")} if r else None)
                       for s, r in last.items()},
        "val_loss": [{"step": r["step"], "val_loss": round(r["val_loss"], 4)} for r in vals],
        "seconds": sum(r["seconds"] for r in end),  # a resumed run has one end record per session
        "examples_per_s": steps[-1]["examples_per_s"] if steps else None,
        "resumed": sum(r.get("event") == "resume" for r in records),
    }


def train_command(trained: dict, out: str = "OUT") -> str:
    """The training command line of a run, from the arguments its trainer saved (seed 0 included)."""
    skip = ("out", "data_dir", "resume", "quiet", "overwrite")
    flags = [f"--{k.replace('_', '-')}" + ("" if v is True else f" {shlex.quote(str(v))}")
             for k, v in trained.items() if v is not None and v is not False and k not in skip]
    return "python -m codefusion.train " + " ".join(flags) + f" --data-dir DIR --out {out}"


def _read_json(path: Path) -> dict | None:
    """The run summary, or None without one (evaluation reports go through report.load_report)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CodeFusionError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise CodeFusionError(f"{path} is not a JSON object")
    return data


def model_card(folder: Path, repo_id: str) -> str:
    """The Hub repo's README.md: what the model is, how to load it, how it was trained and what it measured."""
    from huggingface_hub import ModelCardData

    from codefusion import LANGUAGE_NAMES
    from codefusion.evaluate import report_headline
    from codefusion.report import load_report

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    summary = _read_json(folder / SUMMARY)
    report = load_report(folder / EVAL_REPORT) if (folder / EVAL_REPORT).is_file() else None
    lang = config["language"]
    system = "the autoregressive T5 baseline" if config.get("architecture") == "autoregressive" else "CodeFusion"
    data = ModelCardData(library_name="codefusion", license="mit", language=["en"],
                         tags=["code-generation", "diffusion", "codefusion", lang])
    lines = [f"---\n{data.to_yaml()}\n---", "", f"# {repo_id}: {system} for {LANGUAGE_NAMES[lang]}", "",
             f"A small {system} model from an open reimplementation of CodeFusion (Singh et al., EMNLP 2023), "
             "a diffusion model that writes a program from a natural-language request by denoising the whole "
             f"program at every step. Trained from scratch on the paper's released {LANGUAGE_NAMES[lang]} data.",
             "", "## Use", "", "With the project's code (`codefusion/`, from its repository):", "", "```python",
             "from codefusion.model import CodeFusion", "from codefusion.sampler import generate", "",
             f'model = CodeFusion.from_pretrained("{repo_id}", revision="COMMIT")   # pin the commit you checked',
             'for c in generate(model, "YOUR REQUEST", k=5, steps=20)[0]:', "    print(c.score, c.text)", "```", "",
             f"or `python -m codefusion.generate \"YOUR REQUEST\" --checkpoint {repo_id} --revision COMMIT`; the project's "
             f"Gradio app serves it with `CODEFUSION_MODEL_{lang.upper()}={repo_id} CODEFUSION_REVISION_{lang.upper()}=COMMIT`."]
    if config.get("sentence_encoder"):
        lines += ["", f"Besides its own encoder it reads each request with a frozen pre-trained sentence encoder, saved "
                  f"with the weights in `{SENTENCE_DIR}/` (not counted in the parameters below, which are the trained ones)."]
    if config.get("bash_templates"):
        lines += ["", "It writes NL2Bash templates: every argument is `ARG` (`find ARG -name ARG -delete`), as the "
                  "benchmark's template match compares commands. `codefusion.bash.fill_arguments(text, request)` fills "
                  "them from the request (what the app and `generate` show beside each template)."]
    if summary:
        params = summary.get("parameters", {})
        stages = summary.get("stage_steps") or {}
        command = summary.get("command", "?")
        # A chain (each run starting from the last one's bundle) records all its commands but only its last run's
        # steps and time: say so, or the card reads as if 3200 steps had made the model.
        runs = command.count("codefusion.train")
        which = f"its last of {runs} training runs (each from the one before)" if runs > 1 else "training"
        lines += ["", "## Training", "", f"- command: `{command}`",
                  f"- {which}: {stages.get('pretrain', 0)} pre-training + {stages.get('finetune', 0)} fine-tuning "
                  f"steps, batch {summary.get('batch_size')}, seed {summary.get('seed')}, on {summary.get('device')}: "
                  f"{(summary.get('seconds') or 0) / 60:.1f} min"]
        links = summary.get("links") or []
        if len(links) > 1:   # written by codefusion.recipes: every run's steps and time
            steps = sum(sum(link["stage_steps"].values()) for link in links)
            lines.append(f"- all {len(links)} runs: {steps} steps, "
                         + " + ".join(f"{link['seconds'] / 60:.1f}" for link in links)
                         + f" = {summary['recipe_seconds'] / 60:.1f} min")
        lines.append(f"- parameters: {params.get('total', 0) / 1e6:.2f}M")
        if summary.get("val_loss"):
            lines.append(f"- final validation loss: {summary['val_loss'][-1]['val_loss']}")
    if report and report.get("lang") == lang:
        try:
            headline = report_headline(report)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CodeFusionError(f"{folder / EVAL_REPORT} is not an evaluation report (no {e})") from None
        lines += ["", "## Evaluation", "", f"{headline}. Every task's candidates: `{EVAL_REPORT}`."]
    return "\n".join(lines) + "\n"


def _commit(repo_id: str, files: dict[str, str | bytes], *, repo_type: str | None = None, private: bool = False,
            token: str | None = None, message: str, what: str) -> str:
    """Create the repo if needed (a Space as a Gradio one) and add `files` (path in repo -> local path or bytes) in
    one commit; returns the commit id. Network and Hub failures become a CodeFusionError naming `what`."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from codefusion.errors import hub_errors

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True,
                        space_sdk="gradio" if repo_type == "space" else None)
        ops = [CommitOperationAdd(path, src) for path, src in files.items()]
        return api.create_commit(repo_id, ops, repo_type=repo_type, commit_message=message).oid
    except (*hub_errors(), ValueError) as e:   # ValueError: the Hub refused a card's metadata, or a bad repo id
        raise CodeFusionError(f"could not publish {what} to {repo_id}: {type(e).__name__}: {e}") from None


def publish(folder, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload a checkpoint folder (PUBLISHED files and a model card) to a Hub model repo in one commit; returns
    that commit's id. The folder must load first: a broken checkpoint is refused before anything is sent."""
    from codefusion.model import load_folder

    folder = Path(folder)
    if not folder.is_dir():
        raise CodeFusionError(f"no checkpoint folder at {folder}")
    load_folder(folder)   # raises CodeFusionError on a missing or inconsistent file
    files = {f: str(folder / f) for f in published_files(folder)}
    files[CARD] = model_card(folder, repo_id).encode("utf-8")
    return _commit(repo_id, files, private=private, token=token, message=f"Upload {folder.name} checkpoint",
                   what=str(folder))


def published_files(folder: Path) -> list[str]:
    """A checkpoint's PUBLISHED files, and the copy of its sentence encoder if it reads prompts with one."""
    sentence = sorted(p.relative_to(folder).as_posix() for p in (folder / SENTENCE_DIR).glob("*") if p.is_file())
    return [f for f in PUBLISHED if (folder / f).is_file()] + sentence


def space_files(root) -> list[str]:
    """What a Space runs the demo from, relative to the project's root: app.py, the package, the bundled
    checkpoints (PUBLISHED files only), the README (its front matter is the Space's config) with its images, and
    requirements.txt. Not the results, the tests or anything untracked such as a virtual environment or runs/."""
    root = Path(root)
    patterns = ["app.py", "requirements.txt", "README.md", "codefusion/*.py", "assets/*"]
    files = {p.relative_to(root).as_posix() for pat in patterns for p in root.glob(pat) if p.is_file()}
    for folder in root.glob("checkpoints/*"):
        files.update(f"{folder.relative_to(root).as_posix()}/{f}" for f in published_files(folder))
    return sorted(files)


_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")   # a Markdown link, not an image


def space_readme(text: str, held, source_url: str | None = None) -> str:
    """The README as the Space shows it. A relative link to a file the Space does not hold (results/README.md) is
    dead there: it points into `source_url` (the repository's web address, e.g. https://github.com/YOU/codefusion/
    blob/main) or, without one, becomes its plain text. Links to held files, anchors and web addresses stay."""
    held = set(held)

    def fix(m: re.Match) -> str:
        label, target = m.groups()
        path = target.split("#")[0]
        if not path or re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target) or path.removeprefix("./") in held:
            return m.group(0)
        return f"[{label}]({source_url.rstrip('/')}/{target.removeprefix('./')})" if source_url else label

    return _LINK.sub(fix, text)


def deploy_space(root, repo_id: str, *, private: bool = False, token: str | None = None,
                 source_url: str | None = None) -> str:
    """Upload the demo (space_files) to a Gradio Space in one commit; returns the commit id. Every bundled
    checkpoint must load first, and the README must carry the Space's front matter; its links to files the Space
    does not hold go to `source_url` or become text (space_readme)."""
    from codefusion.model import load_folder

    root = Path(root)
    readme = (root / "README.md").read_text(encoding="utf-8") if (root / "README.md").is_file() else ""
    if not (root / "app.py").is_file() or not readme.startswith("---\n") or "sdk: gradio" not in readme.split("\n---", 2)[0]:
        raise CodeFusionError(f"{root} is not the project's folder: it needs app.py and a README.md whose front matter "
                              "says sdk: gradio")
    checkpoints = sorted(p.parent for p in root.glob("checkpoints/*/config.json"))
    if not checkpoints:
        raise CodeFusionError(f"no bundled checkpoints under {root / 'checkpoints'}: the Space would have no model")
    for folder in checkpoints:
        load_folder(folder)
    files: dict[str, str | bytes] = {f: str(root / f) for f in space_files(root)}
    files["README.md"] = space_readme(readme, files, source_url).encode("utf-8")
    return _commit(repo_id, files, repo_type="space", private=private,
                   token=token, message="Deploy the CodeFusion demo", what=f"the demo in {root}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codefusion.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", help="a finished training output folder")
    p.add_argument("--out", help="the bundled checkpoint folder (replaced)")
    p.add_argument("--push", metavar="CKPT", help="publish this checkpoint folder to the Hub instead (needs --repo-id)")
    p.add_argument("--space", action="store_true",
                   help="deploy the demo (app, package, bundled checkpoints) to a Gradio Space instead (needs --repo-id)")
    p.add_argument("--repo-id", help="with --push: the model repo, e.g. YOU/codefusion-cf; with --space: the Space, e.g. "
                   "YOU/codefusion (created if missing)")
    p.add_argument("--private", action="store_true", help="with --push or --space: create the repo private")
    p.add_argument("--source-url", help="with --space: the repository's web address (e.g. https://github.com/YOU/"
                   "codefusion/blob/main); the README's links to files the Space does not hold (results/) point there "
                   "instead of becoming plain text")
    p.add_argument("--command", default=None, help="the training command to record (default: from the run's args)")
    p.add_argument("--sentence-case-prompts", action="store_true",
                   help="sample with each prompt's first letter upper-cased, as the trainer's flag of that name does "
                        "(for a model trained on sentence-case prompts)")
    args = p.parse_args(argv)
    if args.source_url and not args.space:   # whatever else was asked, the URL would be ignored
        p.error("--source-url goes with --space")
    if args.push or args.space:
        if not args.repo_id or args.run or args.out or (args.push and args.space):
            p.error("--push CKPT or --space takes --repo-id (and --private; --space also --source-url), not --run or --out")
        try:
            if args.space:
                commit = deploy_space(ROOT, args.repo_id, private=args.private, source_url=args.source_url)
            else:
                commit = publish(args.push, args.repo_id, private=args.private)
        except CodeFusionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.space:
            from huggingface_hub import constants

            print(f"deployed {ROOT} -> {constants.ENDPOINT}/spaces/{args.repo_id} at commit {commit}")
        else:
            lang = json.loads((Path(args.push) / "config.json").read_text())["language"].upper()
            print(f"published {args.push} -> {args.repo_id} at commit {commit}\n"
                  f"serve exactly this: CODEFUSION_MODEL_{lang}={args.repo_id} CODEFUSION_REVISION_{lang}={commit}")
        return 0
    if not (args.run and args.out):
        p.error("give --run RUN --out CKPT to bundle a run, --push CKPT --repo-id REPO to publish a checkpoint, "
                "or --space --repo-id REPO to deploy the demo")
    run, out = Path(args.run), Path(args.out)
    try:
        summary = summarize_log(run / "log.jsonl")
        trained = json.loads((run / "state" / "trainer_state.json").read_text())["args"]
        missing = [f for f in MODEL_FILES[:3] if not (run / f).is_file()]
        if missing:
            raise CodeFusionError(f"{run} has no {', '.join(missing)}")
    except (CodeFusionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary["command"] = args.command or train_command(trained)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in MODEL_FILES:
        if (run / f).is_file():
            shutil.copy2(run / f, tmp / f)
    if (run / SENTENCE_DIR).is_dir():   # the frozen reader the weights were trained beside
        shutil.copytree(run / SENTENCE_DIR, tmp / SENTENCE_DIR)
    if args.sentence_case_prompts:  # an inference setting: the weights are untouched
        config = CodeFusionConfig.from_dict(json.loads((tmp / "config.json").read_text()))
        (tmp / "config.json").write_text(config.replace(sentence_case_prompts=True).to_json())
        summary["bundled_with"] = "--sentence-case-prompts"
    (tmp / "training_summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"bundled {run} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
