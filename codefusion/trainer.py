"""Trainer: pre-training on code alone, then fine-tuning on (utterance, code) pairs.

`train(args)` runs what `python -m codefusion.train` (codefusion/train.py, the command line) parsed.
Runs on CPU, one GPU (mixed precision) or many (`accelerate launch -m codefusion.train ...`).
The output folder holds a loadable checkpoint (model.safetensors, config.json, tokenizer), a
`state/` folder for --resume (weights, optimizer, RNG, step; swapped in atomically), and log.jsonl.
Batches are a pure function of (seed, step) and the RNG state is saved, so a resumed run repeats
the losses of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from codefusion import bash
from codefusion.augment import CopyAugmenter
from codefusion.config import PRETRAIN_TASKS, preset
from codefusion.data import load_snippets, load_split
from codefusion.errors import CodeFusionError
from codefusion.loss import codefusion_loss
from codefusion.pretraining import mask_code, noise_memory

STATE_DIR = "state"


@dataclass
class Recipe:
    """Per-preset training defaults (CLI flags override)."""

    batch_size: int
    pretrain_steps: int
    finetune_steps: int
    lr: float = 5e-4  # the paper's AdamW rate, no weight decay
    warmup: int = 100
    snippet_limit: int = 50000


# Settings an --init checkpoint fixes (its shapes and tokenizer).
# (--copy-head on may add a fresh copy path to a checkpoint without one; see add_copy_path.)
INIT_FIXED = ("code_len", "vocab_size", "width", "embed_dim", "denoiser_layers", "decoder_layers", "tie_head",
              "share_embedding", "self_condition", "embed_scale", "dropout", "encoder")

RECIPES = {
    "tiny": Recipe(batch_size=32, pretrain_steps=60, finetune_steps=140, lr=2e-3, warmup=10, snippet_limit=4000),
    "small": Recipe(batch_size=32, pretrain_steps=200, finetune_steps=600, lr=1e-3),
    "paper": Recipe(batch_size=64, pretrain_steps=20000, finetune_steps=20000),
}


# --- data -------------------------------------------------------------------------------------------
def encode_codes(tokenizer, codes: list[str], code_len: int) -> tuple[torch.Tensor, int]:
    """Fixed-length code ids, padded with pad (the model learns to end programs with pad)."""
    ids = tokenizer(codes, add_special_tokens=False)["input_ids"]
    out = torch.full((len(codes), code_len), tokenizer.pad_token_id, dtype=torch.long)
    truncated = 0
    for i, seq in enumerate(ids):
        truncated += len(seq) > code_len
        seq = seq[:code_len]
        out[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out, truncated


class PairData:
    """Prompts (kept as text, padded per batch) and fixed-length codes (`codes`: their text, for augmentation)."""

    def __init__(self, prompts: list[str], code_ids: torch.Tensor, codes: list[str] | None = None):
        self.prompts, self.code_ids, self.codes = prompts, code_ids, codes

    def __len__(self):
        return len(self.prompts)

    def batch_indices(self, step: int, batch_size: int, seed: int) -> list[int]:
        """Epoch-wise permutations seeded by (seed, epoch): batch i depends on nothing but i."""
        n = len(self)
        start = step * batch_size
        out = []
        while len(out) < batch_size:
            epoch, offset = divmod(start + len(out), n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
            out.extend(perm[offset: offset + batch_size - len(out)].tolist())
        return out


def build_pretrain_data(lang, tokenizer, config, snippets, train_codes, seed) -> tuple[PairData, int]:
    snippets = snippets + train_codes
    rng = random.Random(seed)
    masked = [mask_code(s, lang, rng=rng) for s in snippets]  # CPD inputs, fixed once per run
    ids, truncated = encode_codes(tokenizer, snippets, config.code_len)
    return PairData(masked, ids), truncated


# --- checkpoint state (no pickle anywhere: tensors in safetensors, the rest in JSON) ---------------
def code_version(root: Path = Path(__file__).resolve().parent.parent) -> str | None:
    """The git commit of the code that trains, with "+dirty" when files under codefusion/ differ from it; None outside
    a git checkout of the project. A run repeats bit for bit only with the same code: the trainer's random draws
    have changed between versions (README, "Bundled checkpoints")."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root.resolve():
            return None   # the package sits inside some other repository
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "codefusion")
        return git("rev-parse", "HEAD") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):   # no git, or not a repository
        return None


def save_state(model, optimizer, step: int, stage_steps: dict, out: Path, args_dict: dict, ema=None) -> None:
    from safetensors.torch import save_file

    tmp, final, old = out / f".{STATE_DIR}.tmp", out / STATE_DIR, out / f".{STATE_DIR}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    opt = optimizer.state_dict()
    tensors = {f"{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).contiguous()
               for i, st in opt["state"].items() for k, v in st.items()}
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(tmp / "rng.safetensors"))
    meta = {"step": step, "stage_steps": stage_steps, "param_groups": opt["param_groups"], "args": args_dict}
    if ema is not None:
        names = [n for n, _ in model.named_parameters()]
        save_file({n: t.detach().contiguous() for n, t in zip(names, ema.shadow_params)}, str(tmp / "ema.safetensors"))
        meta["ema_step"] = ema.optimization_step  # its decay is args["ema_decay"]
    (tmp / "trainer_state.json").write_text(json.dumps(meta, indent=1))
    # Swap directories: at every instant either state/ or .state.old/ is complete.
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def find_state(out: Path) -> Path | None:
    for name in (STATE_DIR, f".{STATE_DIR}.old"):
        if (out / name / "trainer_state.json").is_file():
            return out / name
    return None


def load_optimizer_and_rng(optimizer, state_dir: Path, meta: dict, device) -> None:
    """Restore the optimizer and RNG saved in `state_dir` (`meta`: its trainer_state.json, already read)."""
    from safetensors.torch import load_file

    flat = load_file(str(state_dir / "optimizer.safetensors"), device=str(device))
    state: dict = {}
    for key, v in flat.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v.cpu() if name == "step" else v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    rng = load_file(str(state_dir / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and "cuda0" in rng:
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng])


# --- weight averaging ---------------------------------------------------------------------------------
def new_ema(model, decay: float):
    """An exponential moving average of the weights (diffusers' EMAModel: its decay warms up as
    (1 + n) / (10 + n), capped at `decay`), or None when decay is 0. Diffusion models are usually
    sampled from averaged weights: single-step weights are noisy and the val loss jumps between evals."""
    if not decay:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(model.parameters(), decay=decay)


def load_ema(model, state_dir: Path, meta: dict, device):
    """The EMA saved with a run's state (`meta`: its trainer_state.json), or None if the run keeps none."""
    from safetensors.torch import load_file

    ema = new_ema(model, meta["args"].get("ema_decay"))
    if ema is not None:
        flat = load_file(str(state_dir / "ema.safetensors"), device=str(device))
        ema.load_state_dict({"optimization_step": meta["ema_step"],
                             "shadow_params": [flat[n] for n, _ in model.named_parameters()]})
    return ema


@contextlib.contextmanager
def averaged_weights(model, ema):
    """Swap the EMA weights in for the duration (validation, export); the training weights come back after."""
    if ema is None:
        yield model
        return
    params = list(model.parameters())
    ema.store(params)
    ema.copy_to(params)
    try:
        yield model
    finally:
        ema.restore(params)


@contextlib.contextmanager
def matmul_precision(precision: str | None = None):
    """torch.set_float32_matmul_precision for the duration only (None: whatever the body sets is undone after).
    "medium": float32 weights and activations, but matrix products on bfloat16 inputs with float32 sums (oneDNN,
    on a CPU with AVX512_BF16 or AMX); "high" is TF32 on an Ampere or later GPU. Validation runs at "highest", so
    that its losses stay comparable between runs trained at different precisions."""
    before = torch.get_float32_matmul_precision()
    if precision is not None:
        torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


# Above this, a low-precision product is slower than float32: the CPU has no such instructions and torch emulates them.
EMULATED_SLOWDOWN = 2.0


def cpu_low_precision_slowdown(dtype: torch.dtype, size: int = 128, reps: int = 5) -> float:
    """How many times as long a size x size matrix product takes in `dtype` as in float32 on this CPU (medians of
    `reps`, at the caller's torch thread count). Below 1 where the CPU multiplies bfloat16 itself (AVX512_BF16,
    AMX); session 38's AVX2 host emulated it: 15-28x here, 52x for a 512 x 256 x 1024 product, 7.4x per Bash
    training step."""
    from codefusion.bench import median_time   # only runs that ask for autocast on a CPU need it

    # Its own generator: the trainer calls this after seeding, and drawing from the global one shifted every later
    # draw (the init, timesteps, noise) of --mixed-precision runs on CPU from session 38 to 48.
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    low_x, low_y = x.to(dtype), y.to(dtype)
    x @ y, low_x @ low_y   # the first calls pay for oneDNN's kernel choice
    return median_time(lambda: low_x @ low_y, reps)[0] / max(median_time(lambda: x @ y, reps)[0], 1e-9)


def emulated_precision_warning(mixed_precision: str | None, device: torch.device, slowdown=None) -> str | None:
    """The warning for autocast on a CPU that emulates its format (None where it does not apply or is fast). A
    recipe's `--mixed-precision bf16` was chosen for speed on a host with AVX512_BF16; elsewhere it only slows down."""
    if device.type != "cpu" or mixed_precision not in ("bf16", "fp16"):
        return None
    name, dtype = {"bf16": ("bfloat16", torch.bfloat16), "fp16": ("float16", torch.float16)}[mixed_precision]
    ratio = (slowdown or cpu_low_precision_slowdown)(dtype)
    if ratio <= EMULATED_SLOWDOWN:
        return None
    return (f"warning: --mixed-precision {mixed_precision}: this CPU has no {name} arithmetic, so torch emulates it "
            f"(a matrix product takes {ratio:.0f}x as long as in float32) and this run will be slower than in float32 "
            f"(an AVX2 host: 52x per product, 7.4x per Bash step). Leave out --mixed-precision to train in float32: "
            f"the bundled recipes' float32 runs matched their bfloat16 ones on the validation split (README: Speed).")


# --- the loop --------------------------------------------------------------------------------------
def plan_stages(recipe: Recipe, stage: str, max_steps: int | None = None, pretrain_steps: int | None = None) -> dict:
    """Optimizer steps per stage. --max-steps alone is a total budget split in the recipe's proportion;
    with --pretrain-steps the pre-training stage gets exactly that many and fine-tuning the rest."""
    steps = {"pretrain": recipe.pretrain_steps if stage in ("pretrain", "all") else 0,
             "finetune": recipe.finetune_steps if stage in ("finetune", "all") else 0}
    if max_steps is not None and max_steps < 1:
        raise CodeFusionError(f"--max-steps must be at least 1, got {max_steps}")
    if pretrain_steps is not None:
        if stage != "all":
            raise CodeFusionError("--pretrain-steps splits --stage all between its stages; with one stage use --max-steps")
        if pretrain_steps < 1 or (max_steps is not None and pretrain_steps >= max_steps):
            raise CodeFusionError(f"--pretrain-steps must be at least 1 and leave fine-tuning steps within --max-steps "
                                  f"({max_steps}), got {pretrain_steps}")
        steps["pretrain"] = pretrain_steps
        if max_steps is not None:
            steps["finetune"] = max_steps - pretrain_steps
    elif max_steps is not None:
        total = sum(steps.values())
        steps["pretrain"] = round(max_steps * steps["pretrain"] / total)
        steps["finetune"] = max_steps - steps["pretrain"]
    return steps


def lr_at(step: int, stage_start: int, stage_len: int, recipe: Recipe, lr: float) -> float:
    """Linear warm-up then cosine decay, restarted at each stage; a pure function of step (resume-safe)."""
    s = step - stage_start
    warm = min(recipe.warmup, max(1, stage_len // 10))
    if s < warm:
        return lr * (s + 1) / warm
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, stage_len - warm))))


def batch_loss(model, data: PairData, idx: list[int], pretrain: bool, device, unsup_prob: float = 0.5,
               unroll_prob: float = 0.0, batch: tuple[list[str], torch.Tensor] | None = None,
               prompt_dropout: float = 0.0):
    """The loss of one batch: CodeFusion's three terms, or the AR baseline's cross-entropy, on the same inputs.
    unroll_prob: the share of self-conditioned rows trained on N's own earlier tokens (loss.py).
    batch: (prompts, code ids) that replace data's rows idx (copy augmentation rewrites them).
    prompt_dropout: the share of fine-tuning rows that read the null prompt (classifier-free guidance)."""
    prompts, code = batch if batch is not None else ([data.prompts[i] for i in idx], data.code_ids[idx])
    code = code.to(device)
    if pretrain:
        # Encoder frozen in pre-training (code only: N, D and L learn).
        sentence = getattr(model, "sentence", None)
        with torch.no_grad(), (contextlib.nullcontext() if sentence is None else sentence.not_kept()):
            memory, pad_mask, prompt_ids = model.encode_prompts(prompts, device)
        unsup = torch.rand(len(idx), device=device) < unsup_prob
        noise, _ = noise_memory(len(idx), memory.shape[1], memory.shape[2], device)
        memory = torch.where(unsup[:, None, None], noise, memory)      # unsupervised generation rows
        pad_mask = pad_mask & ~unsup[:, None]
        prompt_ids = prompt_ids.masked_fill(unsup[:, None], model.config.pad_token_id)   # noise has nothing to copy
    else:
        null = torch.rand(len(prompts), device=device) < prompt_dropout if prompt_dropout else None
        memory, pad_mask, prompt_ids = model.encode_prompts(prompts, device, null_rows=null)
    if model.config.architecture == "autoregressive":
        return model.loss(code, memory, pad_mask)
    return codefusion_loss(model, code, memory, pad_mask, unroll_prob=unroll_prob, prompt_ids=prompt_ids)


class BatchLoss(torch.nn.Module):
    """batch_loss as a module's forward. The trainer hands this to accelerate, so with several processes the loss
    runs through DDP's wrapper, which all-reduces the gradients in backward; calling the model's parts directly,
    as batch_loss does, bypasses it, and each process would train its own copy on its own share of the batch."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        return batch_loss(self.model, *args, **kwargs)


@torch.no_grad()
def validation_loss(model, data: PairData, device, batch_size: int = 64, max_examples: int = 256) -> float:
    """Fixed timesteps and noise (a forked RNG), so values are comparable across steps and runs."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        for start in range(0, min(len(data), max_examples), batch_size):
            idx = list(range(start, min(start + batch_size, len(data), max_examples)))
            loss = batch_loss(model, data, idx, pretrain=False, device=device)
            total += float(loss.total) * len(idx)
            n += len(idx)
    model.train(was_training)
    return total / max(1, n)


def build_model(args, lang: str, train_pairs, pretrain_texts) -> "CodeFusion":  # noqa: F821
    from codefusion.model import CodeFusion, token_classes
    from codefusion.tokenization import check_special_ids, load_tokenizer, train_bpe_tokenizer

    on_off = lambda v: None if v is None else v == "on"  # noqa: E731
    overrides = dict(code_len=args.code_len, denoiser_layers=args.denoiser_layers, decoder_layers=args.decoder_layers,
                     width=args.width, ff=args.width and 4 * args.width, embed_dim=args.embed_dim,
                     tie_head=on_off(args.tie_head),
                     embed_scale=args.embed_scale, sentence_case_prompts=args.sentence_case_prompts or None,
                     share_embedding=on_off(args.share_embedding), self_condition=on_off(args.self_condition),
                     dropout=args.dropout, copy_head=on_off(args.copy_head), prompt_dropout=args.prompt_dropout,
                     bash_templates=args.bash_templates or None, sentence_encoder=args.sentence_encoder)
    if args.encoder:
        from transformers import T5EncoderModel

        if args.architecture != "codefusion":  # before any download
            raise CodeFusionError("--encoder initialises CodeFusion's E; the AR baseline is built from config only")
        tokenizer = load_tokenizer(args.encoder, args.encoder_revision)
        try:
            encoder = T5EncoderModel.from_pretrained(args.encoder, revision=args.encoder_revision, use_safetensors=True)
        except (OSError, ValueError) as e:
            raise CodeFusionError(f"could not load a T5 encoder from {args.encoder} (safetensors weights needed): {e}") from None
        ec = encoder.config
        config = preset(args.preset, lang, vocab_size=len(tokenizer), encoder_width=ec.d_model, encoder_layers=ec.num_layers,
                        encoder_heads=ec.num_heads, encoder_ff=ec.d_ff, encoder_name=args.encoder,
                        pad_token_id=tokenizer.pad_token_id, mask_token_id=tokenizer.mask_token_id, **overrides)
        model = CodeFusion(config)
        model.encoder.load_state_dict(encoder.state_dict(), strict=False)
    else:
        base = preset(args.preset, lang, vocab_size=args.vocab_size, **overrides)
        corpus = [e.nl for e in train_pairs] + [e.code for e in train_pairs] + pretrain_texts
        tokenizer = train_bpe_tokenizer(corpus, vocab_size=base.vocab_size, split=args.bpe_split)
        config = base.replace(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                              mask_token_id=tokenizer.mask_token_id, architecture=args.architecture)
        if args.architecture == "autoregressive":
            from codefusion.autoregressive import ARBaseline

            model = ARBaseline(config)
        else:
            model = CodeFusion(config)
    check_special_ids(tokenizer)
    model.tokenizer = tokenizer
    if getattr(model, "pointer", None) is not None:
        model.pointer.classes.copy_(token_classes(tokenizer, config.vocab_size))
    return model


def add_copy_path(model) -> None:
    """Give an --init checkpoint without one a fresh copy path (H's pointer over the prompt): every other weight
    is kept, so a fine-tuning link can learn to copy, e.g. from a retrieved program placed in the prompt."""
    from codefusion.model import CopyHead, token_classes

    model.config = model.config.replace(copy_head=True)
    model.pointer = CopyHead(model.config)   # drawn from the run's seed, set before the model is loaded
    model.pointer.classes.copy_(token_classes(model.tokenizer, model.config.vocab_size))


def add_sentence_encoder(model, name: str) -> None:
    """Give an --init checkpoint a frozen sentence encoder beside E, with a fresh projection (every other weight is
    kept): a fine-tuning link can learn to read it."""
    from codefusion.model import SentenceEncoder

    model.config = model.config.replace(sentence_encoder=name)
    model.sentence = SentenceEncoder(name, model.config.memory_width, model.config.max_prompt_len)


@matmul_precision()   # what the run sets (--matmul-precision) is undone when it returns or fails
def train(args) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from tqdm.auto import tqdm

    from codefusion.cpu_training import fast_cpu_training
    from codefusion.model import CodeFusion
    from codefusion.sampler import load_model

    lang, out = args.lang, Path(args.out)
    recipe = RECIPES[args.preset]
    batch_size = args.batch_size or recipe.batch_size
    lr = args.lr or recipe.lr
    stage_steps = plan_stages(recipe, args.stage, args.max_steps, args.pretrain_steps)

    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.cpu,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    set_seed(args.seed)
    device = accelerator.device
    if batch_size % accelerator.num_processes:
        raise CodeFusionError(f"the batch ({batch_size}) must split evenly over the {accelerator.num_processes} processes")
    warning = emulated_precision_warning(args.mixed_precision, device) if accelerator.is_main_process else None
    if warning:
        print(warning, file=sys.stderr)

    train_pairs, val_pairs = load_split(lang, "train", args.data_dir), load_split(lang, "val", args.data_dir)
    if not train_pairs:
        raise CodeFusionError(f"the {lang} training split is empty")
    state_dir = find_state(out) if args.resume else None
    if args.resume and state_dir is None:
        raise CodeFusionError(f"--resume: no saved training state under {out}")
    if state_dir is None and out.exists() and any(out.iterdir()) and not args.overwrite:
        raise CodeFusionError(f"{out} is not empty: pass --resume to continue that run or --overwrite to start over")
    snippet_limit = args.snippet_limit or recipe.snippet_limit
    snippets = None  # the run's seeded draw of pre-training code, loaded once (Python's takes seconds)

    if state_dir is not None:
        model = CodeFusion.from_pretrained(state_dir)
        meta = json.loads((state_dir / "trainer_state.json").read_text())
        stage_steps = meta["stage_steps"]  # the resumed run keeps its original plan
        # Settings that shape every step: a resumed run keeps the saved ones and refuses others.
        # (Runs saved before a flag existed trained without it.)
        for name, default in (("ema_decay", None), ("unroll", 0.0), ("copy_augment", 0.0),
                              ("matmul_precision", "highest"), ("fast_cpu_training", False)):
            saved, given = meta["args"].get(name), getattr(args, name)
            saved = default if saved is None else saved
            if given is not None and given != saved:
                flag = "--" + name.replace("_", "-")
                raise CodeFusionError(f"--resume: the run in {out} was started with {flag} {saved}, not {given}")
            setattr(args, name, saved)
        args.save_fp16 = args.save_fp16 or bool(meta["args"].get("save_fp16"))   # a resumed run exports as it began
        if args.bash_templates and not model.config.bash_templates:
            raise CodeFusionError(f"--resume: the run in {out} was started without --bash-templates")
        if args.sentence_encoder and model.config.sentence_encoder is None:
            raise CodeFusionError(f"--resume: the run in {out} was started without --sentence-encoder")
        if args.prompt_dropout is not None and args.prompt_dropout != model.config.prompt_dropout:
            raise CodeFusionError(f"--resume: the run in {out} was started with --prompt-dropout "
                                  f"{model.config.prompt_dropout}, not {args.prompt_dropout}")
    elif args.init:
        shaping = [f"--{k.replace('_', '-')}" for k in INIT_FIXED if getattr(args, k) is not None]
        if shaping:  # the checkpoint fixes these; silently ignoring them would mislead
            raise CodeFusionError(f"--init takes the model and tokenizer from {args.init}: drop {', '.join(shaping)}")
        model = load_model(args.init, device="cpu", lang=lang, name=f"--init {args.init}")
        if args.architecture == "autoregressive" and model.config.architecture != "autoregressive":
            raise CodeFusionError(f"--init {args.init} is a CodeFusion checkpoint, not an autoregressive one")
        if args.sentence_case_prompts:  # a prompt setting, not a shape: it can change on the way
            model.config = model.config.replace(sentence_case_prompts=True)
        if args.bash_templates:   # a data setting: a raw model may go on learning on templates
            model.config = model.config.replace(bash_templates=True)
        if args.prompt_dropout is not None:   # a training setting: a fine-tuning link may start learning the null
            model.config = model.config.replace(prompt_dropout=args.prompt_dropout)
        if args.copy_head is not None and (args.copy_head == "on") != model.config.copy_head:
            if args.copy_head == "off":
                raise CodeFusionError(f"--init {args.init} has a trained copy path: --copy-head off would drop it")
            add_copy_path(model)
        if args.sentence_encoder:
            if model.config.sentence_encoder is not None:
                raise CodeFusionError(f"--init {args.init} already reads prompts with the sentence encoder saved with it: "
                                      "drop --sentence-encoder")
            add_sentence_encoder(model, args.sentence_encoder)
    else:
        # The BPE sees the pre-training snippets when the run pre-trains (or when asked, to hold the tokenizer
        # fixed while the pre-training share changes); pre-training then uses this same seeded draw.
        with_snippets = {"auto": bool(stage_steps["pretrain"]), "pairs": False, "pairs+snippets": True}[args.bpe_corpus]
        if args.bash_templates:   # before the tokenizer is fitted, so that it is fitted on what the model writes
            train_pairs, val_pairs = bash.as_templates(train_pairs), bash.as_templates(val_pairs)
        if with_snippets:
            snippets = load_snippets(lang, args.data_dir, limit=snippet_limit, seed=args.seed,
                                     transform=bash.template if args.bash_templates else None)
        model = build_model(args, lang, train_pairs, snippets or [])
    if args.fast_cpu_training:   # module swaps only: no weights, no random draws
        fast_cpu_training(model)
    tokenizer, config = model.tokenizer, model.config
    # A resumed or --init model trained on templates goes on with them (a new one's pairs were templated above).
    if config.bash_templates and (state_dir is not None or args.init):
        train_pairs, val_pairs = bash.as_templates(train_pairs), bash.as_templates(val_pairs)
    args.unroll, args.copy_augment = args.unroll or 0.0, args.copy_augment or 0.0
    args.matmul_precision = args.matmul_precision or "highest"
    torch.set_float32_matmul_precision(args.matmul_precision)   # for this run only: see the decorator
    if args.unroll and not config.self_condition:
        raise CodeFusionError("--unroll hands N its previous step's x̂0 through self-conditioning: it needs --self-condition on")
    out.mkdir(parents=True, exist_ok=True)

    ft_codes, ft_trunc = encode_codes(tokenizer, [e.code for e in train_pairs], config.code_len)
    finetune_data = PairData([e.nl for e in train_pairs], ft_codes, [e.code for e in train_pairs])
    augmenter = CopyAugmenter(lang, finetune_data.prompts, args.copy_augment) if args.copy_augment else None
    val_codes, _ = encode_codes(tokenizer, [e.code for e in val_pairs], config.code_len)
    val_data = PairData([e.nl for e in val_pairs], val_codes)
    pretrain_data, pt_trunc = None, 0
    if stage_steps["pretrain"]:
        if snippets is None:  # resumed or --init runs build no tokenizer, so nothing loaded them yet
            snippets = load_snippets(lang, args.data_dir, limit=snippet_limit, seed=args.seed,
                                     transform=bash.template if config.bash_templates else None)
        pretrain_data, pt_trunc = build_pretrain_data(lang, tokenizer, config, snippets, [e.code for e in train_pairs], args.seed)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    step = 0
    ema = None
    if state_dir is not None:
        load_optimizer_and_rng(optimizer, state_dir, meta, device)
        step, ema = meta["step"], load_ema(model, state_dir, meta, device)
    loss_fn, optimizer = accelerator.prepare(BatchLoss(model), optimizer)   # DDP-wrapped under several processes
    raw = accelerator.unwrap_model(loss_fn).model
    total = stage_steps["pretrain"] + stage_steps["finetune"]
    log_path = out / "log.jsonl"
    args_dict = {k: v for k, v in vars(args).items()}

    def log(record: dict) -> None:
        if accelerator.is_main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    version = code_version() if accelerator.is_main_process else None   # only rank 0 writes the log
    if step == 0:
        counts = raw.num_parameters_by_part()
        log({"event": "start", "config": config.to_dict(), "params": counts, "stage_steps": stage_steps,
             "batch_size": batch_size, "lr": lr, "seed": args.seed, "device": str(device),
             "cpu_capability": torch.backends.cpu.get_cpu_capability(),   # AVX2 / AVX512 ...: why run times differ
             "torch_threads": torch.get_num_threads(),                    # and why a re-run's digits differ
             "code_version": version,   # which code drew this run's random numbers
             "train_pairs": len(finetune_data), "val_pairs": len(val_data),
             "pretrain_snippets": len(pretrain_data) if pretrain_data else 0,
             "truncated_codes": {"finetune": ft_trunc, "pretrain": pt_trunc}})
        if accelerator.is_main_process:
            print(f"codefusion: {lang}/{args.preset}, {counts['total'] / 1e6:.2f}M parameters, "
                  f"{stage_steps['pretrain']} pre-training + {stage_steps['finetune']} fine-tuning steps, batch {batch_size}",
                  file=sys.stderr)
    else:
        log({"event": "resume", "step": step, "code_version": version})

    loss_fn.train()
    bar = tqdm(total=total, initial=step, disable=not accelerator.is_main_process or args.quiet, dynamic_ncols=True)
    t0, examples, last_save = time.perf_counter(), 0, step
    stop_at = min(total, args.stop_after) if args.stop_after else total
    while step < stop_at:
        pretrain = step < stage_steps["pretrain"]
        stage_start, stage_len = (0, stage_steps["pretrain"]) if pretrain else (stage_steps["pretrain"], stage_steps["finetune"])
        data = pretrain_data if pretrain else finetune_data
        if step == stage_start:  # one average per stage: fine-tuning's must not carry the pre-training weights
            ema = new_ema(raw, args.ema_decay)
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, stage_start, stage_len, recipe, lr)
        per_proc = batch_size // accelerator.num_processes
        rank = f":{accelerator.process_index}" if accelerator.num_processes > 1 else ""
        if rank:
            # Every process was seeded alike, so each would draw the same timesteps and noise (and fresh literals)
            # for its share of the batch; reseeding by (seed, step, process) decorrelates them, resumably.
            torch.manual_seed(args.seed * 10**9 + step * 1000 + accelerator.process_index)
        idx = data.batch_indices(step, batch_size, args.seed + (0 if pretrain else 1))
        idx = idx[accelerator.process_index * per_proc:(accelerator.process_index + 1) * per_proc]
        batch = None
        if augmenter is not None and not pretrain:   # seeded by (seed, step): a resumed run repeats it
            prompts, codes = augmenter([data.prompts[i] for i in idx], [data.codes[i] for i in idx],
                                       random.Random(f"{args.seed}:{step}{rank}"))
            batch = (prompts, encode_codes(tokenizer, codes, config.code_len)[0])
        with accelerator.autocast():
            terms = loss_fn(data, idx, pretrain, device, PRETRAIN_TASKS[args.pretrain_tasks], unroll_prob=args.unroll,
                            batch=batch, prompt_dropout=config.prompt_dropout)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(terms.total)
        accelerator.clip_grad_norm_(loss_fn.parameters(), 1.0)
        optimizer.step()
        if ema is not None:
            ema.step(raw.parameters())
        step += 1
        examples += len(idx) * accelerator.num_processes
        rate = examples / (time.perf_counter() - t0)
        record = {"step": step, "stage": "pretrain" if pretrain else "finetune", **terms.as_floats(),
                  "lr": optimizer.param_groups[0]["lr"], "examples_per_s": round(rate, 2)}
        log(record)
        bar.set_postfix(stage=record["stage"][:3], loss=f"{record['total']:.3f}", ce=f"{record['ce']:.3f}", ex_s=f"{rate:.0f}")
        bar.update(1)
        if (step % args.eval_every == 0 or step == total) and len(val_data):
            with averaged_weights(raw, ema), matmul_precision("highest"):  # the weights that get exported
                v = validation_loss(raw, val_data, device)
            log({"step": step, "val_loss": v})
            bar.write(f"step {step}: val loss {v:.4f}") if not args.quiet else None
        if (step - last_save >= args.save_every or step == stop_at) and accelerator.is_main_process:
            save_state(raw, optimizer, step, stage_steps, out, args_dict, ema)
            with averaged_weights(raw, ema):
                raw.save_pretrained(out, dtype=torch.float16 if args.save_fp16 else None)
            last_save = step
        accelerator.wait_for_everyone()
    bar.close()
    log({"event": "end", "step": step, "seconds": round(time.perf_counter() - t0, 1)})
    return out
