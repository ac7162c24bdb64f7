"""Sampling: x_T ~ N(0, I), denoise with a diffusers scheduler; D and H read the program off x̂0.

Every step runs N, then D and H on x̂0, and (clamping, on by default) steps the scheduler from the
embeddings of the tokens read, so that x_t stays among token embeddings (Diffusion-LM's clamping
trick, with D and H in place of nearest-neighbour rounding; `clamp=False` gives the paper's plain
loop). `stream` yields one `Frame` per step (the decoded candidates, and the rounding of x_t) for the
demo and for edit-distance curves; `generate` returns the ranked candidates of the last step.

Ranking score: the mean log-probability H gives to its argmax tokens, over the kept tokens and
the pad that ends them (the paper does not say how it ordered top-k; this is documented here
and in the README).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace

import torch

from codefusion import RANKINGS, SAMPLERS
from codefusion.diffusion import inference_timesteps
from codefusion.errors import CodeFusionError

MAX_K = 16
MAX_DRAWS = 64   # noise draws per prompt for sample-and-rank (generate's `draws`)
MAX_PROMPT_CHARS = 4000  # cap before tokenisation: the encoder only sees max_prompt_len tokens anyway
MAX_GUIDANCE = 10.0      # classifier-free guidance weights in use are 1-5; far beyond, x̂0 leaves the embeddings


@dataclass
class Candidate:
    """One program. `probs` are H's probabilities of each kept token."""

    text: str
    tokens: list[str]
    token_ids: list[int]
    probs: list[float]
    score: float               # the ranking score: mean log-probability (rank_by="mean-score": its mean over the steps)
    votes: int | None = None   # with rank_by="vote": how many draws gave this program (by metrics.program_key)
    rounding_text: str = ""
    rounding_tokens: list[str] = field(default_factory=list)
    grounded_from: str = ""    # the model's own text, when grounding its literals to the request changed it


@dataclass
class Frame:
    """The state after one denoising step: `candidates` in noise-draw order (index i = noise draw i)."""

    step: int            # 1..total_steps
    total_steps: int
    timestep: int        # the diffusion timestep t just denoised (T-1 .. 0)
    elapsed: float       # seconds since the request started
    candidates: list[Candidate]
    final: bool = False
    notice: str = ""     # e.g. "prompt truncated to 64 tokens"

    def to_dict(self) -> dict:
        return asdict(self)


def load_model(path_or_repo, revision: str | None = None, device=None, lang: str | None = None, name: str | None = None):
    """A checkpoint ready to sample; with `lang`, refused unless it is that language's (`name` names it in the error)."""
    from codefusion.model import CodeFusion

    device = pick_device(device)   # a device this machine lacks is refused before any loading
    model = CodeFusion.from_pretrained(path_or_repo, revision=revision)  # the AR baseline too, if its config says so
    if lang is not None and model.config.language != lang:
        raise CodeFusionError(f"{name or path_or_repo} is a {model.config.language} checkpoint, not {lang}")
    return model.to(device).eval()


def pick_device(device=None) -> torch.device:
    """The device asked for (refused with a clear message if this machine has none such), or CUDA when present."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CodeFusionError(f"unknown device {str(device)[:40]!r}: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CodeFusionError(f"device {device}: this machine has no CUDA GPU that torch can use "
                              f"(torch {torch.__version__}{'' if torch.version.cuda else ', a CPU-only build'})")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CodeFusionError(f"device {device}: there are only {torch.cuda.device_count()} CUDA devices")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise CodeFusionError(f"device {device}: MPS (Apple GPU) is not available here")
    return dev


def check_draws(k: int, draws: int | None) -> None:
    """Sample-and-rank's bound, shared by the sampler and the AR baseline: None, or k <= draws <= MAX_DRAWS."""
    if draws is not None and (not isinstance(draws, int) or isinstance(draws, bool) or not k <= draws <= MAX_DRAWS):
        raise CodeFusionError(f"draws (candidates decoded per prompt) must be an integer from k={k} to {MAX_DRAWS}, "
                              f"got {draws!r}")


def check_ranking(rank_by: str, k: int, draws: int | None) -> None:
    """rank_by is one of RANKINGS; voting needs more draws than candidates kept."""
    if rank_by not in RANKINGS:
        raise CodeFusionError(f"unknown ranking {rank_by!r}: choose {', '.join(RANKINGS)}")
    if rank_by == "vote" and (draws or k) <= k:
        raise CodeFusionError(f"voting counts agreeing draws: pass more draws than k={k}")


def check_guidance(guidance) -> None:
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance <= MAX_GUIDANCE:
        raise CodeFusionError(f"guidance must be a number from 0 to {MAX_GUIDANCE:g} (1: none), got {guidance!r}")


def check_request(prompts: list[str], k: int, steps: int, sampler: str, T: int, draws: int | None = None,
                  guidance: float = 1.0) -> None:
    check_guidance(guidance)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise CodeFusionError(f"k (number of candidates) must be an integer from 1 to {MAX_K}, got {k!r}")
    check_draws(k, draws)
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= T:
        raise CodeFusionError(f"steps must be an integer from 1 to {T}, got {steps!r}")
    if sampler not in SAMPLERS:
        raise CodeFusionError(f"unknown sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise CodeFusionError("the prompt is empty: describe the code you want")


def prepare_prompts(model, prompts: list[str]) -> tuple[list[str], str]:
    """Clean prompts (strip, drop NULs, cap length) and say whether any was truncated."""
    cleaned, notice = [], ""
    for p in prompts:
        # NULs out; lone surrogates (possible in JSON from an API caller) become "?", which tokenizers accept
        p = p.replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
        if not p:   # e.g. only NULs: the encoder cannot read zero tokens
            raise CodeFusionError("the prompt is empty: describe the code you want")
        if len(p) > MAX_PROMPT_CHARS:
            p = p[:MAX_PROMPT_CHARS]
        cleaned.append(p)
    n_tokens = max(len(model.tokenizer(p, add_special_tokens=True)["input_ids"]) for p in model.styled_prompts(cleaned))
    if n_tokens > model.config.max_prompt_len:
        notice = f"prompt truncated to its first {model.config.max_prompt_len} tokens (it had {n_tokens})"
    return cleaned, notice


class _Run:
    """The shared state of one request: encoded prompts, scheduler, x_t and the self-conditioning estimate.

    guidance w != 1: classifier-free guidance. N also denoises x_t under the null prompt, and x̂0 becomes
    x̂0_null + w (x̂0 - x̂0_null): what the prompt changes, amplified (w > 1) or dropped (w = 0, unconditional).
    It costs a second pass of N per step; D and H read the guided x̂0 with the real prompt. Meaningful for a
    model trained with prompt dropout (config.prompt_dropout > 0), which has learnt the null prompt."""

    def __init__(self, model, prompts, k, steps, seed, sampler, clamp: bool = True, draws: int | None = None,
                 track_scores: bool = False, guidance: float = 1.0):
        if model.config.architecture != "codefusion":
            raise CodeFusionError("this checkpoint is the autoregressive baseline: it has no denoising steps to sample")
        check_request(prompts, k, steps, sampler, model.config.diffusion_steps, draws, guidance)
        k = draws or k   # one batch row per noise draw
        self.model, self.k = model, k
        device = next(model.parameters()).device
        prompts, self.notice = prepare_prompts(model, prompts)
        memory, pad_mask, prompt_ids = model.encode_prompts(prompts, device)  # E runs once per request
        self.memory = memory.repeat_interleave(k, dim=0)                     # k candidates as one batch
        self.pad_mask = pad_mask.repeat_interleave(k, dim=0)
        self.prompt_ids = prompt_ids.repeat_interleave(k, dim=0)
        self.n_cache, self.d_cache = model.memory_caches(self.memory, self.pad_mask)  # cross-attention K/V, once
        self.guidance = float(guidance)
        if self.guidance != 1.0:
            null_memory, null_pad, _ = model.encode_null_prompts(self.memory.shape[0], device)
            self.null_cache = model.memory_caches(null_memory, null_pad)[0]
            self.null_memory, self.null_pad = null_memory, null_pad
        self.scheduler = model.diffusion.make_scheduler(sampler, steps)
        self.timesteps = inference_timesteps(self.scheduler, steps)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        shape = (len(prompts) * k, model.config.code_len, model.config.embed_dim)
        self.x_t = torch.randn(shape, generator=gen).to(device)              # x_T ~ N(0, I)
        self.generator = gen if sampler == "ddpm" else None
        self.clamp = clamp
        self.x0_hat = None   # N's raw estimate: what self-conditioning and D read
        self.logits = None   # H(D(x̂0)) of the latest step
        self.score_sum = torch.zeros(shape[0]) if track_scores else None   # each draw's score, summed over steps

    def steps(self) -> Iterator[int]:
        model = self.model
        for t in self.timesteps:
            tt = torch.full((self.x_t.shape[0],), t, device=self.x_t.device, dtype=torch.long)
            x0 = model.denoise(self.x_t, tt, self.memory, self.pad_mask, self.x0_hat, cache=self.n_cache)
            if self.guidance != 1.0:
                x0_null = model.denoise(self.x_t, tt, self.null_memory, self.null_pad, self.x0_hat, cache=self.null_cache)
                x0 = x0_null + self.guidance * (x0 - x0_null)
            self.x0_hat = x0
            self.logits = model.read(self.x0_hat, self.memory, self.pad_mask, self.prompt_ids, cache=self.d_cache)[1]
            if self.score_sum is not None:
                self.score_sum += program_scores(self.logits, model.config.pad_token_id).cpu()
            # Clamping: step the scheduler from the embeddings of the tokens D and H read off x̂0, not from x̂0
            # itself. A blurred x̂0 (an average of embeddings) otherwise pulls x_t off the embeddings, and
            # programs that the first step already had right drift apart (measured: +15 points exact match).
            target = model.embedding(self.logits.argmax(-1)) if self.clamp else self.x0_hat
            kw = {"generator": self.generator} if self.generator is not None else {}
            self.x_t = self.scheduler.step(target, t, self.x_t, **kw).prev_sample
            yield t

    def decode(self, with_rounding: bool) -> list[Candidate]:
        model = self.model
        logp = self.logits.float().log_softmax(-1)
        best_logp, ids = logp.max(-1)
        rounded = model.embedding.nearest(self.x_t) if with_rounding else None
        return [_candidate(model.tokenizer, model.config.pad_token_id, ids[i], best_logp[i],
                           None if rounded is None else rounded[i]) for i in range(ids.shape[0])]


def program_scores(logits: torch.Tensor, pad: int) -> torch.Tensor:
    """Each row's score as `_candidate` computes it (mean log-probability of the argmax tokens up to and including
    the first pad), for a whole batch at once: what rank_by="mean-score" adds up at every step."""
    best_logp, ids = logits.float().log_softmax(-1).max(-1)
    length = ids.shape[1]
    is_pad = ids == pad
    first_pad = torch.where(is_pad.any(-1), is_pad.int().argmax(-1), torch.full_like(ids[:, 0], length))
    n = torch.clamp(first_pad + 1, max=length)
    mask = torch.arange(length, device=ids.device)[None, :] < n[:, None]
    return (best_logp * mask).sum(-1) / n


def _cut(ids: list[int], pad: int) -> list[int]:
    return ids[: ids.index(pad)] if pad in ids else ids


def _candidate(tokenizer, pad: int, ids: torch.Tensor, logp: torch.Tensor, rounded: torch.Tensor | None) -> Candidate:
    ids = ids.tolist()
    kept = _cut(ids, pad)
    n = min(len(kept) + 1, len(ids))   # the ending pad is part of the program's score
    probs = logp[: len(kept)].exp().tolist()
    cand = Candidate(text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
                     tokens=[tokenizer.decode([i]) for i in kept], token_ids=kept, probs=probs,
                     score=float(logp[:n].mean()))
    if rounded is not None:
        r = _cut(rounded.tolist(), pad)
        cand.rounding_text = tokenizer.decode(r, skip_special_tokens=True).strip()
        cand.rounding_tokens = [tokenizer.decode([i]) for i in r]
    return cand


@torch.inference_mode()
def stream(model, prompt: str, k: int = 5, steps: int = 20, seed: int = 0, sampler: str = "ddim",
           rounding: bool = True, clamp: bool = True, guidance: float = 1.0) -> Iterator[Frame]:
    """Yield exactly `steps` frames; each decodes x̂0 through D and H (the paper runs D once at the end;
    here it also runs per step so that a person can watch the program form)."""
    start = time.perf_counter()
    run = _Run(model, [prompt], k, steps, seed, sampler, clamp, guidance=guidance)
    for i, t in enumerate(run.steps(), start=1):
        yield Frame(step=i, total_steps=steps, timestep=t, elapsed=time.perf_counter() - start,
                    candidates=run.decode(rounding), final=i == steps, notice=run.notice)


def ground(cands: list[Candidate], grounding) -> list[Candidate]:
    """Each candidate with its text grounded (`metrics.literal_grounding`); the model's own text goes to
    grounded_from."""
    out = []
    for c in cands:
        text = grounding(c.text)
        out.append(c if text == c.text else replace(c, text=text, grounded_from=c.text))
    return out


def rank_rows(cands: list[Candidate], per_prompt: int, k: int, key=None, valid=None, grounding=None):
    """`rank` for a batch: cands holds per_prompt candidates of each prompt in turn; grounding, one function per
    prompt (`metrics.literal_grounding`) or None, rewrites them first."""
    rows = [cands[i:i + per_prompt] for i in range(0, len(cands), per_prompt)]
    if grounding is not None:
        rows = [ground(row, g) for row, g in zip(rows, grounding)]
    return [rank(row, k, key, valid) for row in rows]


def rank(cands: list[Candidate], k: int, key=None, valid=None) -> list[Candidate]:
    """Best score first. With more than k candidates (sample-and-rank), each program text once (its best-scored
    copy), at most k of them; with exactly k, all of them, duplicates kept.

    key (a function of the text; voting, self-consistency style): the candidates are grouped by key, the groups
    with most draws come first (ties: best score), each answered by its best-scored member with its vote count.
    valid (a function of the text): the programs it accepts come first, each part in the order above (on CF and
    Python a program that does not parse cannot be right; Bash's metric can still match one by its token template).
    Which ranking serves better depends on the language (README, Results)."""
    ranked = sorted(cands, key=lambda c: -c.score)
    if key is not None:
        groups: dict = {}
        for c in ranked:
            groups.setdefault(key(c.text), []).append(c)
        best = sorted(groups.values(), key=lambda g: (-len(g), -g[0].score))
        if valid is not None:
            best = sorted(best, key=lambda g: not valid(g[0].text))   # stable: the vote order within each part
        return [replace(g[0], votes=len(g)) for g in best[:k]]
    if len(cands) > k:
        first: dict[str, Candidate] = {}
        for c in ranked:
            first.setdefault(c.text, c)   # dicts keep insertion order: still best first
        ranked = list(first.values())
    if valid is not None:
        ranked = sorted(ranked, key=lambda c: not valid(c.text))   # stable: by score within each part
    return ranked[:k]


@torch.inference_mode()
def generate(model, prompts: str | list[str], k: int = 5, steps: int = 20, seed: int = 0,
             sampler: str = "ddim", clamp: bool = True, draws: int | None = None,
             rank_by: str = "score", valid_first: bool = False,
             ground_literals: bool = False, guidance: float = 1.0) -> list[list[Candidate]]:
    """k ranked candidates (best score first) for each prompt; all prompts x draws run as one batch.

    draws=None (or k): k noise draws, k candidates, duplicates kept. draws > k: sample-and-rank,
    the k best-scoring distinct programs of `draws` noise draws (fewer when fewer are distinct):
    draws that land on the same program otherwise waste top-k slots. rank_by="vote" (needs
    draws > k): the k programs most draws agree on, by the language's metric (see `rank`).
    rank_by="mean-score": by each draw's score averaged over all the steps instead of the last step's (the
    last is near 0 for almost every draw of a trained model, so it orders them almost arbitrarily).
    valid_first: programs that parse (metrics.is_valid) before those that do not.
    ground_literals (CF): each program's literals rounded to the request before ranking (`cf.ground_literals`),
    so that draws which differ only in a garbled constant become one program.
    A single prompt string gives a list holding one list."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise CodeFusionError("no prompts given")
    from codefusion.metrics import literal_grounding

    grounding = [literal_grounding(model.config.language, p) for p in prompts] if ground_literals else None
    run = _Run(model, prompts, k, steps, seed, sampler, clamp, draws,   # checks k, steps, draws, prompts first
               track_scores=rank_by == "mean-score", guidance=guidance)
    check_ranking(rank_by, k, draws)
    for _ in run.steps():
        pass
    cands, n = run.decode(with_rounding=False), run.k
    if run.score_sum is not None:
        cands = [replace(c, score=float(total) / steps) for c, total in zip(cands, run.score_sum)]
    return rank_rows(cands, n, k, *rank_functions(model, rank_by, valid_first), grounding)


def rank_functions(model, rank_by: str, valid_first: bool):
    """The (key, valid) pair `rank` takes, for the checkpoint's language: `metrics.program_key` to vote with
    (None when ranking by score) and `metrics.is_valid` to put parsing programs first (None when not asked)."""
    from codefusion.metrics import is_valid, program_key

    lang = model.config.language
    key = (lambda text: program_key(lang, text)) if rank_by == "vote" else None
    valid = (lambda text: is_valid(lang, text)) if valid_first else None
    return key, valid
