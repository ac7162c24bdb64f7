"""Time to first frame and frames per second of the app, over HTTP, the way a browser gets them.

    python tests/measure_first_frame.py --checkpoint checkpoints/cf --runs 7 [--steps 10] [--fps 0]

Starts app.py on a loopback port with the checkpoint, then for each run submits a prompt through
gradio_client and times the first streamed update (a frame) and the rate of the following ones.
Prints medians. Not a test (no timing assertions in CI): a benchmark script, as the README says.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from conftest import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--steps", type=int, default=None, help="default: the app's default")
    ap.add_argument("--k", type=int, default=None, help="default: the app's default")
    ap.add_argument("--fps", type=int, default=0, help="playback cap (0: every frame)")
    args = ap.parse_args(argv)
    import os

    ckpt = Path(args.checkpoint).resolve()
    lang = json.loads((ckpt / "config.json").read_text())["language"]
    os.environ[f"CODEFUSION_MODEL_{lang.upper()}"] = str(ckpt)
    os.environ["CODEFUSION_LANGUAGE"] = lang
    import app
    from gradio_client import Client

    steps, k = args.steps or app.DEFAULT_STEPS, args.k or app.DEFAULT_K
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH_KWARGS)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        first, rates = [], []
        for r in range(args.runs + 1):  # run 0 warms up
            start = time.perf_counter()
            job = client.submit(f"Highlight the top {r + 3} values", lang, steps, k, r, "ddim", args.fps,
                                api_name="/generate")
            times = []
            for _ in job:
                times.append(time.perf_counter() - start)
            if r and times:
                first.append(times[0])
                if len(times) > 2:
                    rates.append((len(times) - 1) / (times[-1] - times[0]))
        print(f"{lang}, {steps} steps, k={k}, fps cap {args.fps or 'none'}: time to first frame median "
              f"{statistics.median(first):.3f} s (runs {', '.join(f'{t:.3f}' for t in first)}); "
              f"updates per second median {statistics.median(rates):.1f}" if rates else "")
    finally:
        app.demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
