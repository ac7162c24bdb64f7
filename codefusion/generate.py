"""Generate code from a prompt with a trained checkpoint.

    python -m codefusion.generate --checkpoint DIR_OR_REPO --k 5 --steps 20 --seed 0 "prompt"
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from codefusion import RANKINGS, SAMPLERS
from codefusion.errors import CodeFusionError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codefusion.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("prompt", help="what the code should do (use - to read it from standard input)")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder or Hub repo id")
    p.add_argument("--revision", default=None, help="Hub revision (pin a commit for reproducible loads)")
    p.add_argument("--k", type=int, default=5, help="number of candidates (independent noise draws)")
    p.add_argument("--draws", type=int, default=None,
                   help="decode this many noise draws and keep k of them (sample-and-rank; default: exactly k)")
    p.add_argument("--rank", default="score", choices=RANKINGS,
                   help="by the last step's score (score), by the score averaged over the steps (mean-score), or with "
                        "--draws the programs most draws agree on (vote)")
    p.add_argument("--valid-first", action="store_true", help="programs that parse before those that do not")
    p.add_argument("--ground-literals", action="store_true",
                   help="CF: round each program's literal arguments to the request before ranking")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (1..T)")
    p.add_argument("--guidance", type=float, default=1.0, metavar="W",
                   help="classifier-free guidance weight (default 1: none; for models trained with --prompt-dropout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="ddim", choices=SAMPLERS)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    try:
        from codefusion.bash import fill_arguments
        from codefusion.sampler import generate, load_model, prepare_prompts

        model = load_model(args.checkpoint, revision=args.revision, device=args.device)
        start = time.perf_counter()
        cands = generate(model, prompt, k=args.k, steps=args.steps, seed=args.seed, sampler=args.sampler,
                         draws=args.draws, rank_by=args.rank, valid_first=args.valid_first,
                         ground_literals=args.ground_literals, guidance=args.guidance)[0]
        seconds = time.perf_counter() - start
        notice = prepare_prompts(model, [prompt])[1] if prompt.strip() else ""
    except CodeFusionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if notice:
        print(f"warning: {notice}", file=sys.stderr)
    # a model trained on Bash templates writes ARG for every argument: show the command filled from the request too
    fill = (lambda text: fill_arguments(text, prompt)) if model.config.bash_templates else (lambda text: None)
    if args.json:
        json.dump({"prompt": prompt, "language": model.config.language, "steps": args.steps, "sampler": args.sampler,
                   "guidance": args.guidance,
                   "seconds": seconds, "candidates": [{"rank": i + 1, "code": c.text, "score": c.score, "votes": c.votes,
                                                        "grounded_from": c.grounded_from or None,
                                                        "filled": fill(c.text)}
                                                       for i, c in enumerate(cands)]}, sys.stdout, indent=2)
        print()
    else:
        for i, c in enumerate(cands, 1):
            votes = f", {c.votes} of {args.draws} draws" if c.votes else ""
            grounded = f"\n  (constants grounded to the request; the model wrote: {c.grounded_from})" * bool(c.grounded_from)
            filled = fill(c.text)
            filled = f"\n  (arguments from the request: {filled})" if filled and filled != c.text else ""
            print(f"#{i}  score {c.score:.3f}{votes}\n{c.text}{grounded}{filled}\n")
        print(f"({len(cands)} candidates, {args.steps} {args.sampler} steps, {seconds:.2f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
