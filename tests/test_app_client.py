"""The app served on a loopback port and called through gradio_client, as any API user would."""

from __future__ import annotations

import importlib
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conftest import free_port, make_chatty  # noqa: E402

ENV_VARS = ("CODEFUSION_MODEL", "CODEFUSION_REVISION", "CODEFUSION_MODEL_PYTHON", "CODEFUSION_MODEL_BASH",
            "CODEFUSION_MODEL_CF", "CODEFUSION_LANGUAGE", "CODEFUSION_DATA")




@pytest.fixture(scope="module")
def server(tiny_cf_checkpoint, tmp_path_factory):
    """app.py imported with CODEFUSION_MODEL_CF pointing at a tiny checkpoint, served on 127.0.0.1."""
    import torch

    threads = torch.get_num_threads()      # app.py sets torch's thread count for serving: restore it after
    mp = pytest.MonkeyPatch()
    for name in ENV_VARS:
        mp.delenv(name, raising=False)
    mp.setenv("CODEFUSION_MODEL_CF", str(make_chatty(tiny_cf_checkpoint, tmp_path_factory.mktemp("chatty_cf"))))
    mp.setenv("CODEFUSION_LANGUAGE", "cf")
    app = importlib.reload(sys.modules["app"]) if "app" in sys.modules else importlib.import_module("app")
    port = free_port()
    app.demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                    **app.LAUNCH_KWARGS)
    try:
        yield app, f"http://127.0.0.1:{port}/"
    finally:
        app.demo.close()
        mp.undo()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[1], verbose=False, download_files=True)


def step_of(html) -> int | None:
    m = re.search(r'data-step="(\d+)"', html or "") if isinstance(html, str) else None
    return int(m.group(1)) if m else None


def file_path(update) -> str:
    """The downloaded file of a DownloadButton output (an update dict carrying its new value)."""
    value = update.get("value", update) if isinstance(update, dict) else update
    return value["path"] if isinstance(value, dict) else value


def test_api_streams_every_frame_and_ends_with_code(client):
    steps, k = 8, 3
    job = client.submit("Format cells whose value is over 60", "cf", steps, k, 0, "ddim", 0, api_name="/generate")
    seen = [step_of(out[0]) for out in job]             # iterate outputs as they stream
    assert job.status().success
    assert [s for s in seen if s is not None] == list(range(1, steps + 1))   # fps=0: every step arrives
    html, status, scrub, ed_plot, settle_plot, download = job.outputs()[-1]
    assert "Done" in status and scrub["maximum"] == steps
    codes = re.findall(r'class="cf-code cf-dec" data-text="([^"]*)"', html)
    assert len(codes) == k and all(c.strip() for c in codes)                 # non-empty code per candidate
    data = json.loads(Path(file_path(download)).read_text())
    assert data["steps"] == steps and len(data["frames"]) == steps
    assert all(c["text"].strip() for c in data["frames"][-1]["candidates"])
    assert ed_plot and settle_plot


def test_api_frame_rate_cap_still_sends_the_last_frame(client):
    job = client.submit("Format cells whose value is over 60", "cf", 30, 2, 1, "dpm++", 1, api_name="/generate")
    seen = [s for s in (step_of(out[0]) for out in job) if s is not None]
    assert seen[0] == 1 and seen[-1] == 30 and len(seen) < 30


def test_api_ranking_is_optional_and_checked(client):
    """Callers written before the Ranking input (seven arguments) get the default; a named ranking is recorded."""
    from gradio_client.exceptions import AppError

    out = client.predict("Format cells greater than 50", "cf", 2, 2, 0, "ddim", 0, "valid-first", api_name="/generate")
    assert "parsing first" in out[1]
    assert json.loads(Path(file_path(out[5])).read_text())["settings"]["ranking"] == "valid-first"
    out = client.predict("Format cells greater than 50", "cf", 2, 2, 0, "ddim", 0, "mean-score", api_name="/generate")
    assert "by mean score over the steps" in out[1]
    out = client.predict("Format cells greater than 50", "cf", 2, 2, 0, "ddim", 0, api_name="/generate")
    assert json.loads(Path(file_path(out[5])).read_text())["settings"]["ranking"] == "score"
    try:
        out = client.predict("x", "cf", 2, 2, 0, "ddim", 0, "vote", api_name="/generate")
    except AppError as e:   # gradio's own check of the Radio's choices
        assert "vote" in str(e)
    else:
        assert 'class="cf-status warn"' in out[1] and "Ranking" in out[1]


def test_api_bad_input_is_a_message(client):
    """Refused with a message: by gradio's own checks of the widget ranges (an AppError naming the problem)
    or by the handler's (a warning in the status line); the server keeps serving either way."""
    from gradio_client.exceptions import AppError

    for args in [("", "cf", 8, 3, 0, "ddim", 0), ("   ", "cf", 8, 3, 0, "ddim", 0), ("x", "cf", 5000, 3, 0, "ddim", 0),
                 ("x", "cf", 0, 3, 0, "ddim", 0), ("x", "cf", 8, 99, 0, "ddim", 0), ("x", "cf", 8, 3, -4, "ddim", 0),
                 ("x", "cf", 8, 3, 0, "nope", 0), ("x", "sql", 8, 3, 0, "ddim", 0), ("x", "cf", 8, 3, 0, "ddim", 500),
                 ("x", "cf", "eight", 3, 0, "ddim", 0)]:
        try:
            out = client.predict(*args, api_name="/generate")
        except AppError as e:
            assert len(str(e)) > 10, args
        else:
            assert 'class="cf-status warn"' in out[1], args
    out = client.predict("Format cells greater than 50", "cf", 2, 1, 0, "ddim", 0, api_name="/generate")
    assert step_of(out[0]) == 2


def test_several_users_at_once(client, server):
    from gradio_client import Client

    url = server[1]

    def one(seed):
        c = Client(url, verbose=False)
        out = c.predict(f"Format cells greater than {seed}", "cf", 5, 2, seed, "ddim", 10, api_name="/generate")
        return step_of(out[0])

    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert results == [5, 5, 5, 5]
    assert time.perf_counter() - start < 120


def test_load_sixteen_clients_five_requests_each(client, server):
    """Bounded concurrent traffic: every request answered, p50/p95 latency printed (pytest -s shows it)."""
    import statistics

    from gradio_client import Client

    url = server[1]
    clients, per_client = 16, 5

    def user(i):
        c = Client(url, verbose=False)
        times, failures = [], 0
        for j in range(per_client):
            t0 = time.perf_counter()
            try:
                out = c.predict(f"Format cells greater than {i * 10 + j}", "cf", 3, 2, j, "ddim", 0, api_name="/generate")
                failures += step_of(out[0]) != 3
            except Exception:  # noqa: BLE001 - a failed request is what this test counts
                failures += 1
            times.append(time.perf_counter() - t0)
        return times, failures

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(user, range(clients)))
    wall = time.perf_counter() - start
    times = sorted(t for ts, _ in results for t in ts)
    failed = sum(f for _, f in results)
    p50, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
    print(f"\nload: {clients} clients x {per_client} requests = {len(times)}, failed {failed}, "
          f"p50 {p50:.2f} s, p95 {p95:.2f} s, wall {wall:.1f} s (queue concurrency {server[0].CONCURRENCY}, "
          f"max size {server[0].QUEUE_SIZE})")
    assert failed == 0 and len(times) == clients * per_client
    assert wall < 300


def test_download_is_served_from_gradios_copy_after_the_app_prunes_its_own(server):
    """The app keeps only its newest trajectory files; the page's download must not depend on them: Gradio copied
    the file into its cache when the run's outputs were sent, and serves that copy."""
    import httpx
    from gradio_client import Client

    app, url = server
    out = Client(url, verbose=False, download_files=False).predict(
        "Format cells greater than 50", "cf", 2, 2, 0, "ddim", 0, api_name="/generate")
    value = out[5].get("value", out[5])
    for f in Path(app.TRAJECTORY_DIR).iterdir():   # as if many later runs had pruned it
        f.unlink()
    r = httpx.get(value["url"], timeout=30)
    assert r.status_code == 200 and r.json()["steps"] == 2
