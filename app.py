"""CodeFusion: watch a diffusion model write code, live (the Hugging Face Space, and a local demo).

    python app.py                       # serves on http://127.0.0.1:7860 (GRADIO_SERVER_NAME / _PORT respected)

Models, in this order of precedence per language:
  CODEFUSION_MODEL_PYTHON / _BASH / _CF   a checkpoint folder or Hub repo id (revision: CODEFUSION_REVISION_<LANG>)
  CODEFUSION_MODEL                        one checkpoint (folder or repo id; revision: CODEFUSION_REVISION);
                                          its config.json says which language it is for
  checkpoints/<lang>/                     the checkpoints bundled with the repository
Benchmark examples with their gold code come from CODEFUSION_DATA (the paper's data folder) when it is set.
CODEFUSION_DEVICE forces a device (default: CUDA when present, else CPU); CODEFUSION_LANGUAGE picks the
language selected at start (the default one is loaded and warmed at startup, the others when first used).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # no telemetry, and no network needed
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import atexit  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from codefusion import LANGUAGE_NAMES, LANGUAGES  # noqa: E402
from codefusion import demo as view  # noqa: E402
from codefusion.bundle import EVAL_REPORT  # noqa: E402
from codefusion.diffusion import SAMPLERS  # noqa: E402
from codefusion.errors import CodeFusionError  # noqa: E402
from codefusion.evaluate import report_headline  # noqa: E402
from codefusion.sampler import MAX_PROMPT_CHARS, load_model, stream  # noqa: E402

log = logging.getLogger("codefusion.app")

ROOT = Path(__file__).resolve().parent
CHECKPOINT_DIR = ROOT / "checkpoints"

DEFAULT_STEPS = 5         # the bench's pick: fewest steps within 1 point of 1200-step quality (README: Speed)
DEFAULT_K = 3
MAX_K = 5
DEFAULT_SEED = 0
MAX_SEED = 2**31 - 1
DEFAULT_FPS = 12          # playback speed: at most this many frames per second are sent to the browser
MAX_FPS = 60              # 0 means "send every frame"
DEFAULT_SAMPLER = "ddim"
DEFAULT_T = 1200
# How the k candidates are ranked (README, Results: parsing first lifts CF's and Python's top-1 validity).
RANKINGS = {"score": "by score", view.MEAN_SCORE: "mean score over the steps", view.VALID_FIRST: "parsing first"}
DEFAULT_RANKING = "score"
MAX_REPLAY_FRAMES = 240   # a replay of a long trajectory shows at most this many (evenly spaced) frames
# Each finished run's JSON goes to this process's own folder, which keeps only the newest KEEP_TRAJECTORIES (Gradio
# copies each into its cache, pruned by delete_cache, as the run's outputs are sent); removed when the server exits.
TRAJECTORY_DIR = tempfile.mkdtemp(prefix="codefusion-trajectories-")
atexit.register(shutil.rmtree, TRAJECTORY_DIR, ignore_errors=True)
KEEP_TRAJECTORIES = 64


def env_int(name: str, default: int) -> int:
    """A positive integer setting from the environment; a bad value stops the app with a clear message."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"error: {name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise SystemExit(f"error: {name} must be a positive integer, got {raw!r}")
    return value


CONCURRENCY = env_int("CODEFUSION_CONCURRENCY", 2)   # generations running at once
QUEUE_SIZE = env_int("CODEFUSION_QUEUE_SIZE", 64)
# A run's trajectory stays in its session (gr.State) for scrubbing, replay and re-ranking: 14 MB for 1200 steps and
# 5 draws. Kept STATE_TTL_S after the last run (open tabs too; gradio's default is forever) in at most
# STATE_SESSIONS sessions (gradio's default 10,000), so API clients that never close cannot exhaust the memory.
STATE_TTL_S = env_int("CODEFUSION_STATE_TTL", 1800)
STATE_SESSIONS = env_int("CODEFUSION_STATE_SESSIONS", 256)
FIRST_LANGUAGE = "cf"     # shown first: the bundled CF model is the one trained to a useful quality on CPU
BENCHMARK_EXAMPLES = 6    # per language, drawn from the test split when CODEFUSION_DATA is set

try:  # ZeroGPU on Hugging Face Spaces: the `spaces` package lends a GPU to each decorated call
    import spaces  # type: ignore

    GPU = spaces.GPU(duration=120)
    ZERO_GPU = bool(os.environ.get("SPACES_ZERO_GPU"))
except ImportError:
    spaces = None
    ZERO_GPU = False

    def GPU(fn):  # noqa: N802 - the same spelling as spaces.GPU
        return fn


# ============================================================================ models

def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (containers, Spaces)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def configure_torch_threads() -> int | None:
    """On CPU, give each of the CONCURRENCY generations its share of the cores. PyTorch's default (one
    intra-op thread per core) oversubscribes a small machine as soon as two requests, or any other
    process, run at once, and OpenMP threads waiting for each other then make a step tens of times
    slower (measured on 2 cores: 1 step/s with 2 threads under load, 37 with 1).
    CODEFUSION_TORCH_THREADS overrides."""
    import torch

    if os.environ.get("CODEFUSION_TORCH_THREADS", "").strip():
        n = env_int("CODEFUSION_TORCH_THREADS", 1)
    elif torch.cuda.is_available() or ZERO_GPU:
        return None
    else:
        n = max(1, available_cpus() // CONCURRENCY)
    torch.set_num_threads(n)
    return n


@dataclass
class ModelSource:
    lang: str
    ref: str                 # folder or Hub repo id
    revision: str | None
    origin: str              # where the setting came from, for messages


def checkpoint_language(ref: str, revision: str | None = None) -> str:
    """The language a checkpoint was trained for, from its config.json (downloads a Hub repo's snapshot)."""
    from codefusion.model import CONFIG_NAME, resolve_checkpoint

    folder = resolve_checkpoint(ref, revision=revision)
    try:
        lang = json.loads((folder / CONFIG_NAME).read_text()).get("language")
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise CodeFusionError(f"{ref}: cannot read its {CONFIG_NAME} ({e})") from None
    if lang not in LANGUAGES:
        raise CodeFusionError(f"{ref}: its config names an unknown language {lang!r}")
    return lang


class ModelRegistry:
    """One model per language, loaded once (lazily, under a lock) and shared by every request."""

    def __init__(self, sources: dict[str, ModelSource], problems: list[str] | None = None, device: str | None = None):
        self.sources = dict(sources)
        self.problems = list(problems or [])
        self.device = device
        self._models: dict = {}
        self._quality: dict[str, str | None] = {}
        self._locks = {lang: threading.Lock() for lang in LANGUAGES}

    @classmethod
    def from_env(cls, environ=None, checkpoint_dir: Path = CHECKPOINT_DIR) -> "ModelRegistry":
        env = os.environ if environ is None else environ
        sources, problems = {}, []
        for lang in LANGUAGES:
            ref = env.get(f"CODEFUSION_MODEL_{lang.upper()}", "").strip()
            if ref:
                sources[lang] = ModelSource(lang, ref, env.get(f"CODEFUSION_REVISION_{lang.upper()}") or None,
                                            f"CODEFUSION_MODEL_{lang.upper()}={ref}")
        ref = env.get("CODEFUSION_MODEL", "").strip()
        if ref:
            revision = env.get("CODEFUSION_REVISION") or None
            try:
                lang = checkpoint_language(ref, revision)
                sources.setdefault(lang, ModelSource(lang, ref, revision, f"CODEFUSION_MODEL={ref}"))
            except CodeFusionError as e:
                problems.append(f"CODEFUSION_MODEL: {e}")
        for lang in LANGUAGES:
            folder = Path(checkpoint_dir) / lang
            if lang not in sources and (folder / "config.json").is_file():
                sources[lang] = ModelSource(lang, str(folder), None, f"checkpoints/{lang}")
        return cls(sources, problems, device=env.get("CODEFUSION_DEVICE") or None)

    @property
    def languages(self) -> list[str]:
        return [lang for lang in LANGUAGES if lang in self.sources]

    def loaded(self, lang: str) -> bool:
        return lang in self._models

    def get(self, lang: str):
        if lang not in self.sources:
            raise CodeFusionError(f"no {LANGUAGE_NAMES.get(lang, lang)} model is available on this server")
        with self._locks[lang]:
            if lang not in self._models:
                src = self.sources[lang]
                t0 = time.perf_counter()
                model = load_model(src.ref, revision=src.revision, device=self.device, lang=lang, name=src.origin)
                self._models[lang] = model
                self._quality[lang] = measured_quality(src, lang)
                log.info("loaded %s model from %s in %.1f s", lang, src.origin, time.perf_counter() - t0)
            return self._models[lang]

    def warm(self, lang: str) -> None:
        """Load the model and run one tiny sampling pass (imports the schedulers, allocates buffers)."""
        model = self.get(lang)
        for _ in stream(model, "warm up", k=1, steps=1, seed=0, sampler=DEFAULT_SAMPLER):
            pass

    def warm_default(self, preferred: str | None = None) -> str | None:
        """Warm the default language; a checkpoint that fails to load is dropped with a message."""
        order = ([preferred] if preferred in self.sources else []) + self.languages
        for lang in order:
            try:
                self.warm(lang)
                return lang
            except Exception as e:  # a broken checkpoint must not take the page down
                log.exception("could not load the %s model", lang)
                self.problems.append(f"{LANGUAGE_NAMES[lang]} model ({self.sources[lang].origin}): {e}")
                del self.sources[lang]
        return None

    def describe(self, lang: str) -> str:
        src = self.sources.get(lang)
        if src is None:
            return ""
        if not self.loaded(lang):
            return f"{LANGUAGE_NAMES[lang]} model from `{src.origin}` (loads on first use)"
        model = self._models[lang]
        parts = model.num_parameters_by_part()
        device = next(model.parameters()).device
        short = {"E (encoder)": "E", "L (embedding)": "L", "N (denoiser)": "N", "D (decoder)": "D", "H (head)": "H"}
        counts = " · ".join(f"{v} {_millions(parts[k])}" for k, v in short.items())
        rev = f"@{src.revision[:10]}" if src.revision else ""
        quality = self._quality.get(lang)
        return (f"**{LANGUAGE_NAMES[lang]}** model from `{_short(src.origin)}{rev}` · {_millions(parts['total'])} parameters "
                f"({counts}) · {model.config.code_len} code tokens · T = {model.config.diffusion_steps} · {device.type}"
                + (" · writes templates (each argument ARG, filled below from the request)"
                   if model.config.bash_templates else "")
                + (f"\n{quality}" if quality else ""))


def measured_quality(src: ModelSource, lang: str) -> str | None:
    """One line on how good the checkpoint measured on the test split, from the evaluation report bundled with it,
    so that nobody mistakes the Bash and Python models' token soup for the demo misbehaving. None without a
    readable report (a checkpoint need not carry one; a bad one must not stop the model from loading)."""
    folder = Path(src.ref).expanduser()
    if folder.is_dir():
        path = folder / EVAL_REPORT
    else:  # a Hub repo: its snapshot (JSON files included) was downloaded when the model loaded
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(src.ref, EVAL_REPORT, revision=src.revision)
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        if report.get("lang") != lang or report.get("split") != "test":
            return None
        return report_headline(report)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("%s: unreadable %s (%s)", src.origin, EVAL_REPORT, e)
        return None


def _short(origin: str, keep: int = 2) -> str:
    """`VAR=/a/long/path/to/model` as `VAR=…/to/model`: the page has no room for whole paths."""
    name, eq, ref = origin.rpartition("=")
    parts = Path(ref).parts
    if ref.startswith(("/", "~", ".")) and len(parts) > keep + 1:
        ref = "…/" + "/".join(parts[-keep:])
    return f"{name}{eq}{ref}"


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


# ============================================================================ examples

@dataclass
class Example:
    prompt: str
    code: str                 # gold (benchmark) or reference (hand-written) program
    source: str               # "example" or "benchmark"
    table: list | None = None  # CF: the table the rule is run on


# Hand-written in the style of each training set (CoNaLa, NL2Bash, the CF rule benchmark).
_STATUS = [["Index", "Value"], [0, "Complete"], [1, "In Progress"], [2, "Complete"], [3, "On Hold"],
           [4, "Not Started"], [5, "Complete"], [6, "In Progress"]]
_SCORES = [["Index", "Value"], [0, 12], [1, 75], [2, 50], [3, 98], [4, 33], [5, 51], [6, 64], [7, 8]]
BUILTIN_EXAMPLES: dict[str, list[Example]] = {
    "python": [Example(p, c, "example") for p, c in [
        ("sort list `x` in descending order", "x.sort(reverse=True)"),
        ("convert string `s` to lowercase", "s.lower()"),
        ("remove duplicates from list `l`", "list(set(l))"),
        ("get the last element of list `a`", "a[-1]"),
        ("reverse string `s`", "s[::-1]"),
        ("concatenate dataframes `df1` and `df2`", "pd.concat([df1, df2])"),
        ("read the lines of file 'data.txt' into a list", "open('data.txt').readlines()"),
        ("get the maximum value in dictionary `d`", "max(d.values())"),
    ]],
    "bash": [Example(p, c, "example") for p, c in [
        ("find all .txt files in the current directory and delete them", "find . -name '*.txt' -delete"),
        ("count the lines of all python files under the current directory", "find . -name '*.py' | xargs wc -l"),
        ("list all files modified in the last 24 hours", "find . -type f -mtime -1"),
        ("search for the word error in all files under /var/log", "grep -r error /var/log"),
        ("compress the directory logs into logs.tar.gz", "tar -czf logs.tar.gz logs"),
        ("display the 10 largest files in the current directory", "ls -S | head -10"),
        ("print the number of files in the current directory", "ls | wc -l"),
    ]],
    "cf": [
        Example("Color cells that have value equal to Complete", "TextEquals(Complete)", "example", _STATUS),
        Example("Format cells greater than 50", "GreaterThan(50)", "example", _SCORES),
        Example("Style values which are In Progress", "TextEquals(In Progress)", "example", _STATUS),
        Example("Color cells that have a value between 30 and 70", "Between(30, 70)", "example", _SCORES),
        Example("Highlight the top 3 values", "top(3)", "example", _SCORES),
        Example("Apply color scale to column B", "ColorScale()", "example", _SCORES),
        Example("Highlight duplicate values", "Duplicate()", "example", _STATUS),
        Example("Style values which are less than 40", "LessThan(40)", "example", _SCORES),
    ],
}
DEFAULT_CF_TABLE = [["Index", "Value"], [0, 12], [1, 75], [2, "Complete"], [3, 50], [4, "In Progress"],
                    [5, 98], [6, 33], [7, 75]]


def benchmark_examples(lang: str, n: int = BENCHMARK_EXAMPLES, data_dir=None) -> list[Example]:
    """A fixed sample of short test-split tasks (prompt + gold) when the data folder is available."""
    if not (data_dir or os.environ.get("CODEFUSION_DATA")):
        return []
    try:
        from codefusion.data import load_split

        rows = load_split(lang, "test", data_dir)
    except CodeFusionError as e:
        log.warning("no benchmark examples for %s: %s", lang, e)
        return []
    short = [r for r in rows if len(r.code) <= 80 and len(r.nl) <= 140]
    picked = random.Random(0).sample(short, min(n, len(short)))
    return [Example(r.nl, r.code, "benchmark", r.data) for r in picked]


def load_examples() -> dict[str, list[Example]]:
    return {lang: BUILTIN_EXAMPLES[lang] + benchmark_examples(lang) for lang in LANGUAGES}


def find_example(lang: str, prompt: str) -> Example | None:
    key = " ".join(prompt.split()).lower()
    for ex in EXAMPLES.get(lang, []):
        if " ".join(ex.prompt.split()).lower() == key:
            return ex
    return None


def example_samples(lang: str | None) -> tuple[list[list[str]], list[str]]:
    """The examples of one language, and their labels: benchmark tasks are starred (their gold code is
    shown with the run)."""
    exs = EXAMPLES.get(lang, []) if lang else []
    return [[ex.prompt] for ex in exs], [("★ " if ex.source == "benchmark" else "") + ex.prompt for ex in exs]


def example_dataset(lang: str | None) -> gr.Dataset:
    samples, labels = example_samples(lang)
    return gr.Dataset(samples=samples, sample_labels=labels)


# ============================================================================ requests

@dataclass
class Request:
    prompt: str
    lang: str
    steps: int
    k: int
    seed: int
    sampler: str
    fps: float
    ranking: str = DEFAULT_RANKING


@dataclass
class Trajectory:
    """Everything a finished (or stopped) run leaves behind, kept in gr.State for scrubbing and download."""

    info: view.RunInfo
    model_name: str
    frames: list = field(default_factory=list)
    done: bool = False
    stopped: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, frame) -> bool:
        """Keep a frame, unless the run was stopped (then the sampler should stop too)."""
        with self.lock:
            if self.stopped:
                return False
            self.frames.append(frame)
            return True

    def stop(self) -> list:
        """Mark the run stopped and return the frames it has: no frame is added after this."""
        with self.lock:
            self.stopped = True
            return list(self.frames)


def _whole(name: str, value, lo: int, hi: int) -> int:
    msg = f"{name} must be a whole number from {lo} to {hi}"
    if value is None or isinstance(value, bool):
        raise ValueError(f"{msg}.")
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{msg}, got {str(value)[:40]!r}.") from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise ValueError(f"{msg}, got {str(value)[:40]}.")
    return int(f)


def validate(prompt, language, steps, k, seed, sampler, fps, ranking=DEFAULT_RANKING) -> Request:
    """Check every input as the widgets would (API callers can send anything); ValueError says what is wrong."""
    prompt = prompt.replace("\x00", "").strip()[:MAX_PROMPT_CHARS] if isinstance(prompt, str) else ""
    if not prompt:
        raise ValueError("Type a request first: describe the code you want, or pick an example.")
    if not isinstance(language, str) or language not in REGISTRY.sources:
        offered = ", ".join(f"{lang!r}" for lang in REGISTRY.languages) or "none"
        raise ValueError(f"Language must be one this server has a model for ({offered}), got {str(language)[:40]!r}.")
    T = REGISTRY.get(language).config.diffusion_steps if REGISTRY.loaded(language) else DEFAULT_T
    steps = _whole("Denoising steps", steps, 1, T)
    k = _whole("Number of candidates", k, 1, MAX_K)
    seed = _whole("Seed", seed, 0, MAX_SEED)
    if sampler not in SAMPLERS:
        raise ValueError(f"Sampler must be one of {', '.join(SAMPLERS)}, got {str(sampler)[:40]!r}.")
    try:
        fps = float(fps)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"Playback speed must be a number from 0 to {MAX_FPS} frames/s.") from None
    if not math.isfinite(fps) or not 0 <= fps <= MAX_FPS:
        raise ValueError(f"Playback speed must be from 0 to {MAX_FPS} frames/s (0 sends every frame), got {fps:g}.")
    if ranking is None:  # an API caller that left it out
        ranking = DEFAULT_RANKING
    if not isinstance(ranking, str) or ranking not in RANKINGS:
        raise ValueError(f"Ranking must be one of {', '.join(RANKINGS)}, got {str(ranking)[:40]!r}.")
    return Request(prompt, language, steps, k, seed, sampler, fps, ranking)


@GPU
def sample_frames(lang: str, prompt: str, k: int, steps: int, seed: int, sampler: str):
    """The compute: the sampler's frames, one per denoising step (wrapped for ZeroGPU on Spaces)."""
    yield from stream(REGISTRY.get(lang), prompt, k=k, steps=steps, seed=seed, sampler=sampler, rounding=True)


# ============================================================================ handlers

def _message(text: str, kind: str = "warn") -> str:
    icon = {"warn": "&#9888;&#65039;", "error": "&#10060;", "info": "&#8505;&#65039;"}[kind]
    return f'<div class="cf-status {kind}">{icon} {text}</div>'


def _status_done(traj: Trajectory, frames: list, stopped: bool) -> str:
    lang, last = traj.info.lang, frames[-1]
    n_valid = sum(view.valid(lang, c.text) for c in last.candidates)
    rk = view.run_ranks(frames, traj.info)
    best = rk.index(1)
    rate = last.step / last.elapsed if last.elapsed > 0 else 0.0
    head = (f"Stopped at step {last.step} of {last.total_steps}" if stopped
            else f"Done: {last.step} steps in {last.elapsed:.2f} s ({rate:.0f} steps/s)")
    text = (f"<b>{head}</b> · best {view.rank_label(traj.info)}: draw {best + 1} · {n_valid} of {len(last.candidates)} "
            f"valid · drag the slider to revisit any step")
    if last.notice:
        text += f" · {view.esc(last.notice)}"
    return f'<div class="cf-status ok">{text}</div>'


def _summary(traj: Trajectory, frames: list, stopped: bool = False):
    """Outputs for a finished or stopped run: last frame, status, scrubber, plots, download, state."""
    n = len(frames)
    info = traj.info
    data = view.trajectory_dict(frames, info, traj.model_name, stopped=stopped)
    path = view.write_trajectory(data, TRAJECTORY_DIR, keep=KEEP_TRAJECTORIES)
    return (view.render_frame(frames, n - 1, info),
            _status_done(traj, frames, stopped),
            gr.Slider(minimum=1, maximum=max(n, 2), value=n, step=1, interactive=n > 1,
                      label=f"Scrub the trajectory (step 1 to {n})"),
            view.edit_distance_figure(frames, info.gold, "benchmark gold" if info.gold_source == "benchmark" else "reference"),
            view.settle_figure(frames),
            gr.DownloadButton(value=path, interactive=True),
            traj)


def _refusal(message: str, kind: str = "warn"):
    """Outputs that only change the status line (the page keeps showing what it showed)."""
    gr.Warning(message) if kind != "info" else gr.Info(message)
    return (gr.skip(), _message(view.esc(message), kind), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())


def generate(prompt, language, steps, k, seed, sampler, fps, ranking=DEFAULT_RANKING):
    """Generate event: stream frames to the page while the sampler runs (at most `fps` per second,
    always the last), then the plots, the scrubber and the JSON download."""
    try:
        req = validate(prompt, language, steps, k, seed, sampler, fps, ranking)
    except ValueError as e:
        yield _refusal(str(e))
        return
    except CodeFusionError as e:
        yield _refusal(str(e), "error")
        return
    ex = find_example(req.lang, req.prompt)
    table = ex.table if ex is not None and req.lang == "cf" else None
    info = view.RunInfo(
        lang=req.lang, T=DEFAULT_T, gold=ex.code if ex else None, gold_source=ex.source if ex else "",
        table=table, prompt=req.prompt,
        settings=dict(steps=req.steps, k=req.k, seed=req.seed, sampler=req.sampler, ranking=req.ranking))
    if req.lang == "cf":
        info.sheet = view.cf_display_table(table, [info.gold or ""]) if table or info.gold else DEFAULT_CF_TABLE
    src = REGISTRY.sources[req.lang]
    traj = Trajectory(info=info, model_name=src.ref + (f"@{src.revision}" if src.revision else ""))
    interval = 1.0 / req.fps if req.fps > 0 else 0.0
    next_due, sent = -math.inf, 0   # frame-rate cap: at most one frame per interval on average, last one always
    try:
        model = REGISTRY.get(req.lang)
        info.T = model.config.diffusion_steps
        if req.steps > info.T:
            yield _refusal(f"Denoising steps must be a whole number from 1 to {info.T}, got {req.steps}.")
            return
        for frame in sample_frames(req.lang, req.prompt, req.k, req.steps, req.seed, req.sampler):
            if not traj.add(frame):  # Stop was pressed: the stop handler shows what there is
                return
            now = time.perf_counter()
            if frame.final:
                traj.done = True
                yield _summary(traj, list(traj.frames))
            elif now >= next_due:
                # on schedule: the next slot follows this one (keeps the average at the cap); behind: restart
                next_due = next_due + interval if now - next_due < interval else now + interval
                running = _message(f"Denoising… step {frame.step} of {frame.total_steps}", "info")
                html = view.render_frame(traj.frames, len(traj.frames) - 1, info)
                sent += 1
                if sent == 1:  # first frame: clear the previous run's scrubber, plots and file
                    yield (html, running, gr.Slider(value=1, maximum=2, interactive=False, label="Scrub the trajectory"),
                           None, None, gr.DownloadButton(value=None, interactive=False), traj)
                else:
                    yield html, running, gr.skip(), gr.skip(), gr.skip(), gr.skip(), traj
    except CodeFusionError as e:
        yield _refusal(str(e), "error")
    except Exception as e:  # keep serving: report in the page, log the traceback
        log.exception("generation failed")
        yield _refusal(f"Generation failed: {type(e).__name__}: {e}", "error")


def stop(traj):
    """Stop event (it also cancels the running generation or replay): make what was computed so far
    scrubbable. A finished run (a replay was stopped) stays as it is."""
    nothing = (gr.skip(),) * 7
    if not isinstance(traj, Trajectory):
        return nothing
    frames = traj.stop()
    if traj.done or not frames:
        return nothing
    return _summary(traj, frames, stopped=True)


def rerank(traj, ranking):
    """Ranking changed: re-rank a finished or stopped run's candidates in place (no model call); a running
    generation keeps the ranking it started with, and the next one uses the new choice."""
    nothing = (gr.skip(),) * 7
    if not isinstance(traj, Trajectory) or not isinstance(ranking, str) or ranking not in RANKINGS:
        return nothing
    with traj.lock:
        frames, finished = list(traj.frames), traj.done or traj.stopped
    if not finished or not frames or traj.info.settings.get("ranking") == ranking:
        return nothing
    traj.info.settings["ranking"] = ranking
    return _summary(traj, frames, stopped=not traj.done)


def show_step(traj, step):
    """Scrub: re-render any step of the kept trajectory (no model call)."""
    if not isinstance(traj, Trajectory) or not traj.frames:
        return view.placeholder_html("Generate first; then this slider scrubs through the denoising steps.")
    try:
        i = _whole("Step", step, 1, len(traj.frames)) - 1
    except ValueError as e:
        gr.Warning(str(e))
        return gr.skip()
    return view.render_frame(traj.frames, i, traj.info, shown_as="replay" if i < len(traj.frames) - 1 else "")


def replay(traj, fps):
    """Play the kept trajectory back at the playback speed (every frame, unlike the live stream)."""
    if not isinstance(traj, Trajectory) or not traj.frames:
        yield view.placeholder_html("Generate first, then replay the trajectory here."), gr.skip()
        return
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = DEFAULT_FPS
    fps = DEFAULT_FPS if not math.isfinite(fps) or fps <= 0 else min(fps, MAX_FPS)
    n = len(traj.frames)
    stride = max(1, math.ceil(n / MAX_REPLAY_FRAMES))
    indices = list(range(0, n - 1, stride)) + [n - 1]
    for j, i in enumerate(indices):
        if j:
            time.sleep(1.0 / fps)
        yield view.render_frame(traj.frames, i, traj.info, shown_as="replay"), i + 1


def pick_example(index, language):
    exs = EXAMPLES.get(language, [])
    if isinstance(index, int) and 0 <= index < len(exs):
        return exs[index].prompt
    return gr.skip()


def change_language(language):
    """New language: its examples, its model (loaded here, so that Generate starts at once) and its T."""
    if not isinstance(language, str) or language not in REGISTRY.sources:
        return gr.skip(), _message("Unknown language.", "warn"), gr.skip()
    try:
        model = REGISTRY.get(language)
    except Exception as e:
        log.exception("could not load the %s model", language)
        return (example_dataset(language),
                _message(f"Could not load the {LANGUAGE_NAMES[language]} model: {view.esc(e)}", "error"), gr.skip())
    return example_dataset(language), model_line(language), gr.Slider(maximum=model.config.diffusion_steps)


def model_line(lang: str | None) -> str:
    if not lang:
        return ""
    return f'<div class="cf-model">{_md_to_html(REGISTRY.describe(lang))}</div>'


def _md_to_html(text: str) -> str:
    import re

    text = view.esc(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"&#96;(.+?)&#96;", r"<code>\1</code>", text)
    return text.replace("\n", "<br>")


# ============================================================================ page

HOW_IT_WORKS = """
An autoregressive model writes code left to right and never takes a token back. **CodeFusion** starts
from pure noise and **denoises the whole program at once**, so every position can still change at every
step. It has five parts:

| part | what it does |
|---|---|
| **E**, encoder | A transformer reads your request and turns it into vectors E<sub>s</sub>. It runs once per request. |
| **L**, embedding | A table with one vector per code token. Programs live in this continuous space while they are denoised. |
| **N**, denoiser | A transformer that looks at the whole noisy program x<sub>t</sub> at once (no left-to-right order), at the request E<sub>s</sub> and at the step t, and guesses the clean program x&#770;<sub>0</sub>. |
| **D**, decoder | Refines the guess x&#770;<sub>0</sub> into hidden states D<sub>s</sub>, again looking at the request. |
| **H**, head | One linear layer: at each position it picks the most likely token; the program ends at the first padding token. |

**One step.** Generation starts with x<sub>T</sub>: one vector of Gaussian noise per position (k independent
draws give k candidates). At every step N predicts x&#770;<sub>0</sub> from x<sub>t</sub>, and the sampler
(DDIM, DPM-Solver++ or DDPM) removes a scheduled share of the noise, moving x<sub>t</sub> towards that
prediction. Fewer steps are faster and rougher. The paper runs D and H once, after the last step; this page
runs them after every step so that you can watch the program form. Candidates are ranked by the mean
log-probability H gives their tokens; with *Ranking: parsing first*, the programs that parse come first
(each group still by that score), which on the benchmarks makes the top candidate valid far more often.

**Reading the page.** Tokens with a coloured background changed in the step shown; a dotted underline means
H gave the token a probability under 0.5 (hover for the value). The *edit distance* plot shows how far each
draw still was from its own final program at every step (dotted: from the gold or reference program, for the
examples); the *settle map* shows the step at which each position took its final token. The bundled Bash model
writes *templates*, `ARG` for every argument (the benchmark's metric compares commands that way); the line under
each card fills them from your request (paths, file names, numbers, quoted text). Paper: Singh et al.,
*CodeFusion: A Pre-trained Diffusion Model for Code Generation*, EMNLP 2023.
"""

NO_MODEL = """
### No model is available yet

This page needs at least one trained checkpoint. Train a small one (about an hour per language on a laptop CPU,
minutes on a GPU) with the paper's data ([microsoft/prose-benchmarks](https://github.com/microsoft/prose-benchmarks),
folder `CodeFusion`):

```bash
python -m codefusion.train --lang cf --preset small --data-dir /path/to/CodeFusion --out checkpoints/cf
```

then restart `python app.py`. The page also reads `checkpoints/python` and `checkpoints/bash`, or a checkpoint
named by `CODEFUSION_MODEL` (a folder or a Hugging Face Hub repo id, with `CODEFUSION_REVISION`), or
`CODEFUSION_MODEL_PYTHON` / `_BASH` / `_CF`.
"""

CSS = """
.gradio-container { max-width: 1480px !important; }
#cf-hero { padding: 18px 4px 6px; }
#cf-hero h1 { font-size: 2.1rem; margin: 0; letter-spacing: -0.02em; font-weight: 750;
  background: linear-gradient(90deg, #6366f1, #a855f7 45%, #f59e0b); -webkit-background-clip: text;
  background-clip: text; color: transparent; display: inline-block; }
#cf-hero p { margin: 6px 0 0; color: var(--body-text-color-subdued); font-size: 1.02rem; max-width: 920px; }
#cf-hero .cf-pill { display: inline-block; font-size: .75rem; padding: 2px 9px; border-radius: 999px; margin-left: 10px;
  vertical-align: middle; background: var(--color-accent-soft); color: var(--color-accent); font-weight: 600; }
.cf-model { font-size: .82rem; color: var(--body-text-color-subdued); padding: 2px 2px 0; }
.cf-model code { font-size: .78rem; }
.cf-status { padding: 8px 12px; border-radius: 10px; font-size: .92rem; border: 1px solid var(--border-color-primary); }
.cf-status.ok { background: rgba(16,185,129,.08); border-color: rgba(16,185,129,.35); }
.cf-status.info { background: rgba(99,102,241,.07); border-color: rgba(99,102,241,.3); }
.cf-status.warn { background: rgba(245,158,11,.10); border-color: rgba(245,158,11,.45); }
.cf-status.error { background: rgba(239,68,68,.09); border-color: rgba(239,68,68,.45); }
.cf-explain p { margin: 2px 2px 6px; font-size: .86rem; color: var(--body-text-color-subdued); }
.cf-rnd { display: none; }
body[data-cfview="rounding"] .cf-rnd { display: revert !important; }
body[data-cfview="rounding"] .cf-dec { display: none !important; }
body[data-cfview="rounding"] .cf-card .badge.dim, body[data-cfview="rounding"] .cf-sheet { opacity: .35; }
.cf-traj { font-size: 14px; }
.cf-stephead { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 16px; margin-bottom: 10px; }
.cf-step { font-weight: 700; font-size: 1.15rem; font-variant-numeric: tabular-nums; }
.cf-meta { color: var(--body-text-color-subdued); font-size: .85rem; font-variant-numeric: tabular-nums; }
.cf-progress { flex-basis: 100%; height: 5px; border-radius: 3px; background: var(--border-color-primary); overflow: hidden; }
.cf-progress > div { height: 100%; background: linear-gradient(90deg, #6366f1, #a855f7); transition: width .12s linear; }
.cf-stephead.done .cf-progress > div { background: linear-gradient(90deg, #10b981, #34d399); }
.cf-notice { margin: 0 0 10px; padding: 6px 10px; border-radius: 8px; background: rgba(245,158,11,.12); font-size: .88rem; }
.cf-gold { display: flex; align-items: center; gap: 10px; margin: 0 0 12px; font-size: .9rem; }
.cf-gold-label { font-size: .72rem; text-transform: uppercase; letter-spacing: .06em; color: var(--body-text-color-subdued); }
.cf-gold code.cf-code { padding: 5px 10px; border-radius: 8px; display: inline-block; }
.cf-grid { display: grid; gap: 12px; grid-template-columns: repeat(var(--cols, 2), minmax(0, 1fr)); }
@media (max-width: 1100px) { .cf-grid { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); } }
.cf-card { border: 1px solid var(--border-color-primary); border-left: 4px solid var(--draw); border-radius: 12px;
  padding: 10px 12px 12px; background: var(--block-background-fill); box-shadow: 0 1px 2px rgba(0,0,0,.04); min-width: 0; }
.cf-card.best { box-shadow: 0 0 0 2px var(--draw), 0 6px 18px rgba(0,0,0,.08); }
.cf-card-head { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; margin-bottom: 8px; }
.cf-dot { width: 10px; height: 10px; border-radius: 50%; background: var(--draw); }
.cf-draw { font-weight: 650; margin-right: 4px; }
.badge { font-size: .72rem; padding: 1px 8px; border-radius: 999px; border: 1px solid var(--border-color-primary);
  color: var(--body-text-color-subdued); white-space: nowrap; font-variant-numeric: tabular-nums; }
.badge.ok { color: #059669; border-color: rgba(5,150,105,.45); background: rgba(16,185,129,.09); }
.badge.bad { color: #dc2626; border-color: rgba(220,38,38,.4); background: rgba(239,68,68,.08); }
.badge.rank.top { color: #b45309; border-color: rgba(245,158,11,.55); background: rgba(245,158,11,.12); }
.cf-code { font-family: var(--font-mono), ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13.5px; line-height: 1.6;
  background: #0f172a; color: #e2e8f0; }
pre.cf-code { margin: 0; padding: 10px 12px; border-radius: 9px; white-space: pre-wrap; word-break: break-word; min-height: 2.6em; }
.cf-code .tk { border-radius: 3px; transition: background-color .25s; }
.cf-code .tk.chg { background: rgba(250, 204, 21, .28); box-shadow: inset 0 -2px 0 rgba(250, 204, 21, .85); }
.cf-code .tk.lo { text-decoration: underline dotted rgba(248,113,113,.9); text-underline-offset: 4px; }
.cf-empty { color: #64748b; font-style: italic; }
.cf-code .k, .cf-code .kn, .cf-code .kd, .cf-code .kr, .cf-code .kc, .cf-code .kt, .cf-code .ow { color: #c084fc; }
.cf-code .nf, .cf-code .fm { color: #60a5fa; }
.cf-code .nb, .cf-code .bp { color: #22d3ee; }
.cf-code .na { color: #fbbf24; }
.cf-code .nv, .cf-code .vc, .cf-code .vg, .cf-code .vi { color: #f87171; }
.cf-code .s, .cf-code .s1, .cf-code .s2, .cf-code .sa, .cf-code .sb, .cf-code .sc, .cf-code .sd, .cf-code .se,
.cf-code .sh, .cf-code .si, .cf-code .sx, .cf-code .sr, .cf-code .ss, .cf-code .dl { color: #86efac; }
.cf-code .m, .cf-code .mi, .cf-code .mf, .cf-code .mh, .cf-code .mo, .cf-code .il, .cf-code .mb { color: #fb923c; }
.cf-code .c, .cf-code .c1, .cf-code .cm, .cf-code .ch, .cf-code .cs { color: #64748b; font-style: italic; }
.cf-code .o { color: #f9a8d4; }
.cf-code .p { color: #94a3b8; }
.cf-code .err { color: #fca5a5; }
.cf-sheet { margin-top: 8px; overflow-x: auto; }
.cf-grounded { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; margin-top: 8px; font-size: .85rem; }
.cf-grounded-label { font-size: .72rem; text-transform: uppercase; letter-spacing: .06em; color: var(--body-text-color-subdued); }
.cf-grounded code.cf-code { padding: 3px 9px; border-radius: 7px; }
body[data-cfview="rounding"] .cf-grounded { opacity: .35; }
.cf-traj table.cf-table { border-collapse: collapse !important; border: none !important; font-size: 12px; width: 100%;
  margin: 0 !important; font-variant-numeric: tabular-nums; }
.cf-traj table.cf-table tr, .cf-traj table.cf-table thead, .cf-traj table.cf-table tbody { border: none !important; }
.cf-traj table.cf-table th { text-align: left; font-weight: 600; padding: 3px 8px !important; border: none !important;
  border-bottom: 2px solid var(--border-color-primary) !important; color: var(--body-text-color-subdued); background: none !important; }
.cf-traj table.cf-table td { padding: 3px 8px !important; border: none !important;
  border-bottom: 1px solid var(--border-color-primary) !important; white-space: nowrap;
  max-width: 160px; overflow: hidden; text-overflow: ellipsis; }
.cf-traj table.cf-table td.hit { background: #fde68a; color: #78350f; font-weight: 600; }
.cf-traj table.cf-table td.hit.icon { background: transparent; color: inherit; }
.cf-traj table.cf-table td.hit.bar { color: inherit; }
.cf-table-msg { font-size: .75rem; color: var(--body-text-color-subdued); margin-top: 4px; }
.cf-placeholder { padding: 38px 20px; text-align: center; color: var(--body-text-color-subdued);
  border: 1.5px dashed var(--border-color-primary); border-radius: 14px; font-size: .98rem; }
.cf-placeholder b { color: var(--body-text-color); }
#cf-generate { min-height: 44px; font-size: 1.02rem; }
.cf-how table { border-collapse: collapse; }
.cf-how table, .cf-how tr, .cf-how td, .cf-how th { border: 1px solid var(--border-color-primary) !important; }
.cf-how td:first-child { white-space: nowrap; }
#cf-footer { text-align: center; font-size: .8rem; color: var(--body-text-color-subdued); padding: 8px 0 2px; }
"""

# The view toggle runs in the browser only: both views are in every frame, CSS shows one. (Gradio copies each
# custom rule under a `.gradio-container ... .contain` prefix, so rules keyed on <body> need !important.)
VIEW_JS = "(v) => { document.body.dataset.cfview = v; return []; }"

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="amber", neutral_hue="slate")

TORCH_THREADS = configure_torch_threads()
REGISTRY = ModelRegistry.from_env()
EXAMPLES = load_examples()
DEFAULT_LANGUAGE = (REGISTRY.warm_default(os.environ.get("CODEFUSION_LANGUAGE") or FIRST_LANGUAGE)
                    if REGISTRY.languages else None)
if ZERO_GPU:  # ZeroGPU forks a worker per call: every model must already be loaded in the main process
    for _lang in list(REGISTRY.languages):
        REGISTRY.get(_lang)

OUTPUTS_DOC = "frame HTML, status, scrubber, edit-distance plot, settle map, trajectory JSON"


def build_demo() -> gr.Blocks:
    langs = REGISTRY.languages
    default = DEFAULT_LANGUAGE or (langs[0] if langs else None)
    with gr.Blocks(title="CodeFusion: watch a diffusion model write code", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as page:
        gr.HTML('<div id="cf-hero"><h1>CodeFusion</h1><span class="cf-pill">diffusion for code</span>'
                "<p>Type what a program should do and watch a diffusion model write it: it starts from pure noise "
                "and reconsiders <b>the whole program at every step</b>, instead of writing left to right.</p></div>")
        problems = "".join(f"<li>{view.esc(p)}</li>" for p in REGISTRY.problems)
        if problems:
            gr.HTML(f'<div class="cf-status warn">Some checkpoints could not be used:<ul>{problems}</ul></div>')
        if not langs:
            gr.Markdown(NO_MODEL, elem_id="cf-no-model")
            with gr.Accordion("How CodeFusion works", open=True):
                gr.Markdown(HOW_IT_WORKS, elem_classes="cf-how")
            return page

        traj_state = gr.State(None, time_to_live=STATE_TTL_S)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=340):
                language = gr.Radio([(LANGUAGE_NAMES[lang], lang) for lang in langs], value=default, label="Language",
                                    elem_id="cf-language")
                model_info = gr.HTML(model_line(default))
                prompt = gr.Textbox(label="What should the code do?", lines=2, max_lines=6, max_length=MAX_PROMPT_CHARS,
                                    placeholder="e.g. " + (EXAMPLES[default][0].prompt if EXAMPLES.get(default) else ""),
                                    elem_id="cf-prompt", autofocus=True)
                with gr.Row():
                    run_btn = gr.Button("Generate", variant="primary", elem_id="cf-generate", scale=3)
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="cf-stop", scale=1)
                samples, labels = example_samples(default)
                examples = gr.Dataset(components=[prompt], samples=samples, sample_labels=labels,
                                      type="index", layout="gallery", samples_per_page=16, elem_id="cf-examples",
                                      label="Examples (★ from the benchmark, with gold code)")
                with gr.Accordion("Settings", open=True):
                    T = REGISTRY.get(default).config.diffusion_steps if REGISTRY.loaded(default) else DEFAULT_T
                    steps = gr.Slider(1, T, value=min(DEFAULT_STEPS, T), step=1, label="Denoising steps", elem_id="cf-steps",
                                      info="more steps: slower, usually better (up to the T the model was trained with)")
                    k = gr.Slider(1, MAX_K, value=DEFAULT_K, step=1, label="Candidates k",
                                  info="independent noise draws, ordered as Ranking says")
                    with gr.Row():
                        seed = gr.Number(DEFAULT_SEED, precision=0, minimum=0, maximum=MAX_SEED, label="Seed", min_width=100)
                        sampler = gr.Dropdown(list(SAMPLERS), value=DEFAULT_SAMPLER, label="Sampler", min_width=120)
                    ranking = gr.Radio([(label, value) for value, label in RANKINGS.items()], value=DEFAULT_RANKING,
                                       label="Ranking", elem_id="cf-ranking",
                                       info="the order of the k candidates: by H's mean log-probability at the last step, by "
                                            "its average over all the steps, or the programs that parse first "
                                            "(each group by the last step's score)")
                    fps = gr.Slider(0, MAX_FPS, value=DEFAULT_FPS, step=1, label="Playback speed (frames/s)",
                                    info="most frames per second sent to the page; 0 sends every step")
            with gr.Column(scale=8, min_width=420):
                status = gr.HTML(_message("Pick an example or type a request, then press <b>Generate</b>.", "info"),
                                 elem_id="cf-status")
                with gr.Row(equal_height=True):
                    view_choice = gr.Radio([("Decoder view (D, H on x̂₀)", "decoder"),
                                            ("Rounding view (x_t → nearest token)", "rounding")],
                                           value="decoder", show_label=False, container=False, elem_id="cf-view", scale=3)
                gr.HTML(view.view_explanation_html())
                frame_html = gr.HTML(view.placeholder_html(
                    "The program appears here and changes as the noise is removed.<br>"
                    "<b>Highlighted</b> tokens changed in the step shown."), elem_id="cf-frame", min_height=180)
                with gr.Row(equal_height=True):
                    scrub = gr.Slider(1, 2, value=1, step=1, interactive=False, label="Scrub the trajectory",
                                      elem_id="cf-scrub", scale=6)
                    replay_btn = gr.Button("Replay", size="sm", scale=1, min_width=90, elem_id="cf-replay")
                    download = gr.DownloadButton("Trajectory JSON", value=None, interactive=False, size="sm", scale=1,
                                                 min_width=150, elem_id="cf-download")
                with gr.Row():  # side by side on wide screens, stacked below 2 x SETTLE_MIN_WIDTH (labels fit)
                    ed_plot = gr.Plot(label="Edit distance per step", show_label=False, elem_id="cf-ed-plot",
                                      min_width=view.SETTLE_MIN_WIDTH)
                    settle_plot = gr.Plot(label="Settle map", show_label=False, elem_id="cf-settle-plot",
                                          min_width=view.SETTLE_MIN_WIDTH)
        with gr.Accordion("How it works", open=False, elem_id="cf-how"):
            gr.Markdown(HOW_IT_WORKS, elem_classes="cf-how")
        gr.HTML('<div id="cf-footer">A reimplementation of CodeFusion (Singh et al., EMNLP 2023) · '
                "small models trained on the paper's released data</div>")

        outputs = [frame_html, status, scrub, ed_plot, settle_plot, download, traj_state]
        inputs = [prompt, language, steps, k, seed, sampler, fps, ranking]
        run_event = gr.on([run_btn.click, prompt.submit], generate, inputs=inputs, outputs=outputs,
                          api_name="generate", concurrency_limit=CONCURRENCY, show_progress="hidden",
                          api_description=f"Stream the denoising trajectory; outputs: {OUTPUTS_DOC}.")
        replay_event = replay_btn.click(replay, inputs=[traj_state, fps], outputs=[frame_html, scrub],
                                        api_visibility="private", concurrency_limit=None, show_progress="hidden")
        stop_btn.click(stop, inputs=[traj_state], outputs=outputs, cancels=[run_event, replay_event],
                       api_visibility="private", concurrency_limit=None, show_progress="hidden")
        ranking.change(rerank, inputs=[traj_state, ranking], outputs=outputs, api_visibility="private",
                       concurrency_limit=None, show_progress="hidden")
        scrub.input(show_step, inputs=[traj_state, scrub], outputs=frame_html, api_visibility="private",
                    trigger_mode="always_last", concurrency_limit=None, show_progress="hidden")
        language.change(change_language, inputs=language, outputs=[examples, model_info, steps], api_visibility="private",
                        concurrency_limit=None, show_progress="minimal")
        examples.click(pick_example, inputs=[examples, language], outputs=prompt, api_visibility="private",
                       concurrency_limit=None, show_progress="hidden")
        view_choice.change(None, inputs=view_choice, js=VIEW_JS, api_visibility="private")
    page.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return page


demo = build_demo()
LAUNCH_KWARGS = dict(theme=THEME, css=CSS, state_session_capacity=STATE_SESSIONS)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    demo.launch(**LAUNCH_KWARGS)
