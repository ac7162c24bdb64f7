"""The bundled checkpoints' recipes: every command that trained each one, run as one command.

    python -m codefusion.recipes bash --out my-bash [--data-dir DIR] [--work DIR] [--dry-run]
    python -m codefusion.recipes bash --architecture autoregressive --out my-bash-ar    # its AR twin

With `--architecture autoregressive` the same chain trains the AR baseline instead (same data, steps, settings and
sentence encoder; without CodeFusion's copy path, which the AR model has no H for): the same-budget comparison.

A recipe is a chain of trainer runs ("links"), each in WORK/link<i>. A link whose run finished is skipped and one
that stopped part-way goes on with --resume, so after an interruption the same command picks up where it was. Every
link but the last is bundled (WORK/link<i>-ckpt) for the next link's --init; the last is bundled into OUT with the
whole chain recorded as its command and each link's time in `training_summary.json` ("links"). The commands are
subprocesses, exactly as the README prints them, so a link can also be run by hand. Threads: torch's default (all
cores) unless OMP_NUM_THREADS says otherwise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from codefusion.config import ARCHITECTURES
from codefusion.errors import CodeFusionError, run_cli


@dataclass(frozen=True)
class Link:
    """One trainer run of a recipe: its flags (without --data-dir, --out and --init, which the chain supplies) and
    the bundle flags its checkpoint gets before the next link starts from it."""
    train: tuple[str, ...]
    bundle: tuple[str, ...] = ()


def _flags(text: str) -> tuple[str, ...]:
    return tuple(shlex.split(text))


# Bash reads each prompt with this frozen sentence encoder too (session 59); --sentence-encoder gives a local copy.
SENTENCE_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"

# The commands recorded in checkpoints/<lang>/training_summary.json (trainer defaults left out).
# Bash trains with --fast-cpu-training (session 57): 66-77 min alone on two threads instead of 101, no worse on val.
_BASH_FINETUNE = Link(_flags("--lang bash --preset small --stage finetune --max-steps 3200 --lr 5e-4 --seed 0 "
                             "--save-fp16 --eval-every 400 --mixed-precision bf16 --fast-cpu-training"))
RECIPES: dict[str, tuple[Link, ...]] = {
    "cf": (Link(_flags("--lang cf --preset small --stage all --max-steps 1600 --pretrain-tasks cpd --copy-head on "
                       "--copy-augment 0.5 --seed 0 --save-fp16")),),
    "bash": (
        # 1600 pre-training + 4800 fine-tuning steps on NL2Bash templates, sampled with sentence-case prompts ...
        Link(_flags("--lang bash --preset small --stage all --max-steps 6400 --embed-scale 0.5 --bash-templates "
                    f"--sentence-encoder {SENTENCE_ENCODER} --seed 0 --save-fp16 --mixed-precision bf16 "
                    "--fast-cpu-training"), bundle=("--sentence-case-prompts",)),
        # ... then twice 3200 more fine-tuning steps at half the learning rate (--init keeps all three settings and
        # the sentence encoder, which every checkpoint carries)
        _BASH_FINETUNE,
        _BASH_FINETUNE,
    ),
    "python": (Link(_flags("--lang python --preset small --stage finetune --max-steps 6400 --embed-scale 0.5 "
                           "--copy-head on --copy-augment 0.5 --seed 0 --save-fp16 --mixed-precision bf16")),),
}


@dataclass(frozen=True)
class Step:
    """A command of the chain: what it runs (argv after `python -m`) and the folder it fills."""
    argv: tuple[str, ...]
    out: Path
    kind: str   # "train" or "bundle"


def local_copy(flags: tuple[str, ...], sentence_encoder: str | None) -> tuple[str, ...]:
    """A link's flags with its --sentence-encoder read from `sentence_encoder` (a folder holding the same model)."""
    if sentence_encoder is None or "--sentence-encoder" not in flags:
        return flags
    i = flags.index("--sentence-encoder") + 1
    return (*flags[:i], sentence_encoder, *flags[i + 1:])


def autoregressive(links: tuple[Link, ...]) -> tuple[Link, ...]:
    """The chain's AR twin: each run with --architecture autoregressive, and without --copy-head (CodeFusion's H)."""
    def train(flags: tuple[str, ...]) -> tuple[str, ...]:
        kept = [f for i, f in enumerate(flags) if f != "--copy-head" and (i == 0 or flags[i - 1] != "--copy-head")]
        return (*kept, "--architecture", "autoregressive")

    return tuple(Link(train(link.train), link.bundle) for link in links)


def plan(links: tuple[Link, ...], out: Path, work: Path, data_dir: str | None = None,
         sentence_encoder: str | None = None) -> list[Step]:
    """The chain's commands in order: each link's training run, then its bundle (into `out` for the last)."""
    steps, init = [], None
    for i, link in enumerate(links, 1):
        run = work / f"link{i}"
        argv = ("codefusion.train", *local_copy(link.train, sentence_encoder), *(("--init", str(init)) if init else ()),
                *(("--data-dir", data_dir) if data_dir else ()), "--out", str(run))
        steps.append(Step(argv, run, "train"))
        ckpt = out if i == len(links) else work / f"link{i}-ckpt"
        steps.append(Step(("codefusion.bundle", "--run", str(run), "--out", str(ckpt), *link.bundle), ckpt, "bundle"))
        init = ckpt
    return steps


def chain_command(links: tuple[Link, ...]) -> str:
    """A recipe as shell commands with placeholders: DIR (data), RUN<i> and CKPT<i> (links), OUT (the checkpoint)."""
    if len(links) == 1:
        return shlex.join(("python", "-m", "codefusion.train", *links[0].train, "--data-dir", "DIR", "--out", "OUT"))
    steps = plan(links, Path("OUT"), Path("."), "DIR")
    names = {str(s.out): (f"RUN{i // 2 + 1}" if s.kind == "train" else f"CKPT{i // 2 + 1}") for i, s in enumerate(steps)}
    names["OUT"] = "OUT"
    return " && ".join(shlex.join(("python", "-m", *(names.get(a, a) for a in s.argv))) for s in steps)


def _run_state(run: Path) -> str:
    """'done', 'resume' (a saved state short of its plan), 'overwrite' (started, nothing saved) or 'new'."""
    from codefusion.trainer import find_state

    state = find_state(run) if run.is_dir() else None
    if state is None:   # stopped before its first save: nothing to continue
        return "overwrite" if run.is_dir() and any(run.iterdir()) else "new"
    meta = json.loads((state / "trainer_state.json").read_text())
    if meta["args"].get("stop_after"):
        raise CodeFusionError(f"{run} was stopped with --stop-after, so it is no run of this recipe: move it away")
    return "done" if meta["step"] >= sum(meta["stage_steps"].values()) else "resume"


def _set_log_aside(run: Path) -> None:
    """Keep the log of a run that starts over (log.interrupted.jsonl, then .2, .3 ...), not mixed into the new one."""
    log = run / "log.jsonl"
    if not log.is_file():
        return
    aside, n = run / "log.interrupted.jsonl", 1
    while aside.exists():
        n += 1
        aside = run / f"log.interrupted.{n}.jsonl"
    log.rename(aside)


def run_recipe(lang: str, out: Path, *, work: Path | None = None, data_dir: str | None = None,
               links: tuple[Link, ...] | None = None, dry_run: bool = False, echo=print,
               sentence_encoder: str | None = None, architecture: str = "codefusion") -> list[str]:
    """Run (or, dry, list) a recipe's chain; returns the commands run or to run, as shell lines. `links` replaces
    the language's recipe (tests run small chains with it); `sentence_encoder`, a local copy of the recipe's;
    architecture="autoregressive", the AR twin of the chain."""
    links = RECIPES[lang] if links is None else links
    if architecture == "autoregressive":
        links = autoregressive(links)
    elif architecture not in ARCHITECTURES:
        raise CodeFusionError(f"unknown architecture {architecture!r}: choose one of {', '.join(ARCHITECTURES)}")
    out = Path(out)
    work = Path(work) if work else out.with_name(out.name + "-runs")
    if out.resolve() == work.resolve() or out.resolve() in work.resolve().parents:
        raise CodeFusionError(f"--work {work} must lie outside --out {out}: the final bundle replaces --out")
    commands, steps = [], plan(links, out, work, data_dir, sentence_encoder)
    for step in steps:
        argv = list(step.argv)
        if step.kind == "train" and not dry_run:
            state = _run_state(step.out)
            if state == "done":
                echo(f"{step.out} finished before: skipped")
                continue
            if state == "overwrite":
                _set_log_aside(step.out)
            argv += {"resume": ["--resume"], "overwrite": ["--overwrite"], "new": []}[state]
        line = shlex.join(("python", "-m", *argv))
        commands.append(line)
        echo(line)
        if dry_run:
            continue
        code = subprocess.run([sys.executable, "-m", *argv]).returncode
        if code:
            raise CodeFusionError(f"`{line}` failed (exit code {code}); run the recipe again to go on from {step.out}")
    if not dry_run:
        runs = [step.out for step in steps if step.kind == "train"]
        record_chain(out, runs, chain_command(links) if len(links) > 1 else None,
                     sentence_encoder=SENTENCE_ENCODER if sentence_encoder else None)
    return commands


def record_chain(out: Path, runs: list[Path], command: str | None = None, sentence_encoder: str | None = None) -> dict:
    """Write each run of a chain (its command, with the placeholders of chain_command, its trainer clock and torch
    threads) and their summed time into the bundle in `out`, whose own summary knows only the last run; `command`
    (the whole chain) replaces the recorded one, `sentence_encoder` the local copy a link read. Returns the summary."""
    from codefusion.bundle import SUMMARY, summarize_log, train_command
    from codefusion.trainer import find_state

    summary = json.loads((out / SUMMARY).read_text())
    per_link = []
    for i, run in enumerate(runs, 1):
        s = summarize_log(run / "log.jsonl")
        state = find_state(run)
        if state is None:
            raise CodeFusionError(f"{run} holds no saved training state: not a finished run")
        trained = json.loads((state / "trainer_state.json").read_text())["args"]
        if trained.get("init"):   # a path on the machine that trained it: the chain's name for it instead
            trained = {**trained, "init": f"CKPT{i - 1}"}
        if sentence_encoder and trained.get("sentence_encoder"):   # likewise: the model's name, not the copy's folder
            trained = {**trained, "sentence_encoder": sentence_encoder}
        per_link.append({"command": train_command(trained, out=f"RUN{i}" if len(runs) > 1 else "OUT"),
                         "stage_steps": s["stage_steps"], "seconds": s["seconds"],
                         "examples_per_s": s["examples_per_s"], "torch_threads": s["torch_threads"],
                         "resumed": s["resumed"]})
    if command:
        summary["command"] = command
    summary["links"] = per_link
    summary["recipe_seconds"] = round(sum(p["seconds"] for p in per_link), 1)
    (out / SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codefusion.recipes", description=__doc__.split("\n\n")[0])
    p.add_argument("lang", choices=sorted(RECIPES))
    p.add_argument("--out", required=True, help="the bundled checkpoint folder to write (replaced at the end)")
    p.add_argument("--work", help="where the links' runs and intermediate checkpoints go (default: OUT-runs)")
    p.add_argument("--data-dir", help="CodeFusion data folder (default: $CODEFUSION_DATA)")
    p.add_argument("--sentence-encoder", metavar="FOLDER",
                   help=f"a local copy of {SENTENCE_ENCODER} (offline), for the recipes that read prompts with it")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="codefusion",
                   help="autoregressive: train the AR baseline by the same chain (the same-budget comparison)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    return run_cli(lambda: run_recipe(args.lang, Path(args.out), work=args.work and Path(args.work),
                                      data_dir=args.data_dir, dry_run=args.dry_run,
                                      sentence_encoder=args.sentence_encoder, architecture=args.architecture))


if __name__ == "__main__":
    sys.exit(main())
