"""A real browser (Debian's chromium driven by Playwright) on the served app: type, generate, watch.

Needs /usr/bin/chromium (`apt-get install -y chromium`; never `playwright install`). Also a script that
makes the README screenshot with any checkpoint:

    python tests/test_browser.py --checkpoint checkpoints/cf --prompt "Format cells greater than 50" \\
        --out assets/screenshot.png
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import free_port, make_chatty  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
ENV_VARS = ("CODEFUSION_MODEL", "CODEFUSION_REVISION", "CODEFUSION_MODEL_PYTHON", "CODEFUSION_MODEL_BASH",
            "CODEFUSION_MODEL_CF", "CODEFUSION_LANGUAGE", "CODEFUSION_DATA")

# Records every step number the page shows (the live stream, not just the end state).
WATCH_STEPS = """() => {
  window.__cfSteps = [];
  const seen = () => { const e = document.querySelector('#cf-step');
                       if (e && window.__cfSteps[window.__cfSteps.length - 1] !== e.dataset.step)
                         window.__cfSteps.push(e.dataset.step); };
  new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""
DONE = "() => { const e = document.querySelector('#cf-step'); return e && e.dataset.step === e.dataset.total; }"




def serve(env: dict):
    """Import app.py with these env vars and serve it on a free loopback port; returns (app, url)."""
    for name in ENV_VARS:
        os.environ.pop(name, None)
    os.environ.update({k: str(v) for k, v in env.items()})
    app = importlib.reload(sys.modules["app"]) if "app" in sys.modules else importlib.import_module("app")
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **app.LAUNCH_KWARGS)
    return app, f"http://127.0.0.1:{port}/"


def generate_in_browser(page, url: str, prompt: str, timeout_ms: int = 60_000) -> list[str]:
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#cf-prompt textarea", timeout=timeout_ms)
    page.evaluate(WATCH_STEPS)
    page.fill("#cf-prompt textarea", prompt)
    page.click("#cf-generate")
    page.wait_for_function(DONE, timeout=timeout_ms)
    page.wait_for_selector("#cf-ed-plot .js-plotly-plot", timeout=timeout_ms)
    page.wait_for_selector("#cf-settle-plot .js-plotly-plot", timeout=timeout_ms)
    return page.evaluate("() => window.__cfSteps")


@pytest.fixture(scope="module")
def served(tiny_cf_checkpoint, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run this test")
    import torch

    threads = torch.get_num_threads()      # app.py sets torch's thread count for serving: restore it after
    saved = {k: os.environ.get(k) for k in ENV_VARS}
    chatty = make_chatty(tiny_cf_checkpoint, tmp_path_factory.mktemp("chatty_cf"))
    app, url = serve({"CODEFUSION_MODEL_CF": chatty, "CODEFUSION_LANGUAGE": "cf"})
    try:
        yield app, url
    finally:
        app.demo.close()
        torch.set_num_threads(threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_generate_in_a_real_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    app, url = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            steps = generate_in_browser(page, url, "Format cells whose value is over 60")
            total = page.get_attribute("#cf-step", "data-total")
            assert total == str(app.DEFAULT_STEPS)
            assert len(steps) >= 2 and steps[0] == "1" and steps[-1] == total     # the counter moved, live
            assert page.locator(".cf-card").count() == app.DEFAULT_K
            assert all(t.strip() for t in page.locator("pre.cf-dec").all_inner_texts())
            # the view switch: the rounding view replaces the decoder view, in the browser only
            assert page.locator("pre.cf-dec").first.is_visible() and not page.locator("pre.cf-rnd").first.is_visible()
            page.locator("#cf-view").get_by_text("Rounding view").click()
            page.wait_for_function("() => document.body.dataset.cfview === 'rounding'")
            assert page.locator("pre.cf-rnd").first.is_visible() and not page.locator("pre.cf-dec").first.is_visible()
            # the ranking switch re-ranks the finished run in place: the status names the new order
            assert "best by score" in page.inner_text("#cf-status")
            page.locator("#cf-ranking").get_by_text("mean score over the steps").click()
            page.wait_for_function("() => document.querySelector('#cf-status').innerText.includes('by mean score')")
            assert "mean" in page.locator(".cf-card .badge.score").first.inner_text()
            page.locator("#cf-ranking").get_by_text("parsing first").click()
            page.wait_for_function("() => document.querySelector('#cf-status').innerText.includes('parsing first')")
            assert page.locator(".cf-card").count() == app.DEFAULT_K
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            assert not errors, errors
        finally:
            browser.close()


def test_stop_cancels_a_long_run_and_keeps_what_was_computed(served):
    from playwright.sync_api import sync_playwright

    app, url = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url, wait_until="domcontentloaded")
            page.wait_for_selector("#cf-prompt textarea")
            page.fill("#cf-steps input[type=number]", str(app.DEFAULT_T))
            page.press("#cf-steps input[type=number]", "Enter")
            page.fill("#cf-prompt textarea", "Format cells whose value is over 60")
            page.click("#cf-generate")
            page.wait_for_function("() => { const e = document.querySelector('#cf-step'); return e && +e.dataset.step >= 2; }",
                                   timeout=60_000)
            assert page.get_attribute("#cf-step", "data-total") == str(app.DEFAULT_T)
            page.click("#cf-stop")
            page.wait_for_function("() => document.querySelector('#cf-status').innerText.includes('Stopped at step')",
                                   timeout=30_000)
            stopped_at = int(page.get_attribute("#cf-step", "data-step"))
            assert 2 <= stopped_at < app.DEFAULT_T
            time.sleep(1.0)                                      # nothing arrives after a stop
            assert int(page.get_attribute("#cf-step", "data-step")) == stopped_at
            page.wait_for_selector("#cf-ed-plot .js-plotly-plot")  # the partial run is summarised
        finally:
            browser.close()


def main(argv=None) -> int:
    """Make a screenshot of the page after one generation (for the README)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--checkpoint", required=True, help="checkpoint folder (its language is read from its config.json)")
    ap.add_argument("--prompt", default="Format cells greater than 50")
    ap.add_argument("--out", default="assets/screenshot.png")
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--dark", action="store_true")
    args = ap.parse_args(argv)
    ckpt = Path(args.checkpoint).resolve()
    lang = json.loads((ckpt / "config.json").read_text())["language"]
    env = {f"CODEFUSION_MODEL_{lang.upper()}": ckpt, "CODEFUSION_LANGUAGE": lang}
    if os.environ.get("CODEFUSION_DATA"):  # benchmark examples, with their gold code
        env["CODEFUSION_DATA"] = os.environ["CODEFUSION_DATA"]
    app, url = serve(env)
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": 1000}, device_scale_factor=1,
                                    color_scheme="dark" if args.dark else "light")
            generate_in_browser(page, url, args.prompt)
            time.sleep(1.0)  # let plotly finish its transitions
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        app.demo.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
