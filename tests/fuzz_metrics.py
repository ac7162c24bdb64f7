"""Fuzz the metrics with broken programs, the kind a half-trained model generates.

    python tests/fuzz_metrics.py --lang bash --n 300000 [--seed 0] [--data-dir DIR]

Takes the data's gold programs (all splits), inserts quotes, brackets and expansions, deletes characters and
truncates, then runs validity and the task's correctness check on each result under a 3 s alarm. Reports the
inputs that hang (a hang would freeze the evaluator or a demo worker) or raise. Not a test: a long-running
check, as the README says (bashlex looped forever on 5 of the first 20,000 Bash inputs before the metric's guard).
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codefusion import LANGUAGES, metrics  # noqa: E402
from codefusion.data import load_split  # noqa: E402

PIECES = {
    "bash": ["'", '"', "${", "}", "$(", ")", "`", "\\", "{", "(", "<<", "|", ";", "&", "$((", "[[", "]]", "#", "$"],
    "cf": ["(", ")", '"', ",", "AND(", "OR(", "=", "<>", ">", "SEARCH(", "LEN(", "*", "-", "1e308", "NOT(", '""', "$"],
    "python": ["(", ")", "[", "]", '"', "'", ",", "lambda", ":", "**", "\\", "{", "}", "(" * 10, "\n", 'f"{', "#"],
}


class Hang(BaseException):  # not an Exception, so no `except Exception` in the code under test swallows it
    pass


def _alarm(*_):
    raise Hang


def mutate(code: str, rng: random.Random, pieces: list[str]) -> str:
    chars = list(code)
    for _ in range(rng.randint(1, 4)):
        pos, op = rng.randint(0, len(chars)), rng.random()
        if op < 0.6:
            chars[pos:pos] = list(rng.choice(pieces))
        elif op < 0.8 and chars:
            del chars[min(pos, len(chars) - 1)]
        else:
            chars = chars[:pos]
    return "".join(chars)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", required=True, choices=LANGUAGES)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    examples = [ex for split in ("train", "val", "test") for ex in load_split(args.lang, split, args.data_dir)]
    rng, hangs, errors, t0 = random.Random(args.seed), [], [], time.time()
    signal.signal(signal.SIGALRM, _alarm)
    for _ in range(args.n):
        ex = rng.choice(examples)
        text = mutate(ex.code, rng, PIECES[args.lang])
        signal.alarm(3)
        try:
            metrics.is_valid(args.lang, text)
            metrics.is_correct(args.lang, text, ex)
        except Hang:
            hangs.append(text)
            print("hang:", repr(text), flush=True)
        except Exception as err:  # noqa: BLE001 - any escaping error is a finding
            errors.append(text)
            print(f"{type(err).__name__}: {err}: {text!r}", flush=True)
        finally:
            signal.alarm(0)
    print(f"{args.lang}: {args.n} mutated programs, {len(hangs)} hangs, {len(errors)} errors, {time.time() - t0:.0f} s")
    return 1 if hangs or errors else 0


if __name__ == "__main__":
    sys.exit(main())
