"""Trainer: pre-training on code alone, then fine-tuning on (utterance, code) pairs.

    python -m codefusion.train --lang cf --preset small --stage all --data-dir DIR --out DIR [--resume]

Runs on CPU, one GPU (mixed precision) or many (`accelerate launch -m codefusion.train ...`).
This module is the command line; the training itself is codefusion/trainer.py, imported only once the
flags parse, since torch takes longer to import than `--help` or a bad flag should wait.
The output folder holds a loadable checkpoint (model.safetensors, config.json, tokenizer), a
`state/` folder for --resume (weights, optimizer, RNG, step; swapped in atomically), and log.jsonl.
Batches are a pure function of (seed, step) and the RNG state is saved, so a resumed run repeats
the losses of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import sys

from codefusion import LANGUAGES
from codefusion.config import ARCHITECTURES, PRESETS, PRETRAIN_TASKS
from codefusion.errors import run_cli
from codefusion.tokenization import BPE_SPLITS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m codefusion.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--lang", required=True, choices=LANGUAGES)
    p.add_argument("--preset", default="small", choices=list(PRESETS))
    p.add_argument("--stage", default="all", choices=["pretrain", "finetune", "all"])
    p.add_argument("--data-dir", default=None, help="CodeFusion data folder (default: $CODEFUSION_DATA)")
    p.add_argument("--out", required=True, help="output folder: checkpoint, state/ and log.jsonl")
    p.add_argument("--max-steps", type=int, default=None, help="total optimizer steps (split between stages)")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="with --stage all: this many of the steps pre-train, the rest fine-tune (default: the recipe's share)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true", help="start over in a non-empty --out")
    p.add_argument("--init", default=None, help="start from this checkpoint (e.g. a pre-trained one, for --stage finetune)")
    p.add_argument("--encoder", default=None, help="initialise E and the tokenizer from a T5 encoder (Hub id or folder), "
                                                   "e.g. Salesforce/codet5-small")
    p.add_argument("--encoder-revision", default=None, help="pinned revision of --encoder")
    p.add_argument("--sentence-encoder", default=None,
                   help="also read each prompt with this frozen pre-trained text encoder (Hub id or folder, e.g. "
                        "sentence-transformers/all-MiniLM-L6-v2): its states, projected, join E_s; with --init a fresh "
                        "projection is added")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--code-len", type=int, default=None)
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary trained offline (default: the preset's)")
    p.add_argument("--share-embedding", choices=["on", "off"], default=None,
                   help="L projects E's input embedding (default: the preset's)")
    p.add_argument("--tie-head", choices=["on", "off"], default=None, help="H scores against L's table (default: the preset's)")
    p.add_argument("--self-condition", choices=["on", "off"], default=None)
    p.add_argument("--copy-head", choices=["on", "off"], default=None,
                   help="H can also copy prompt tokens: a pointer over E_s beside the vocabulary (default: off)")
    p.add_argument("--embed-scale", type=float, default=None,
                   help="RMS of L's code vectors (default 1); below 1 the noise hides more (Difformer's noise factor)")
    p.add_argument("--dropout", type=float, default=None,
                   help="dropout in E, N and D (default: the preset's; the modules are built with it, so not with --init)")
    p.add_argument("--sentence-case-prompts", action="store_true",
                   help="upper-case each prompt's first letter before the encoder, in training and sampling")
    p.add_argument("--bash-templates", action="store_true",
                   help="train on NL2Bash templates: every argument of the programs and snippets becomes ARG, as the "
                        "template-match metric sees them (stored in the config; --init and --resume keep it)")
    p.add_argument("--architecture", choices=list(ARCHITECTURES), default="codefusion",
                   help="autoregressive: the same-size T5 baseline, trained on the same data and budget")
    p.add_argument("--width", type=int, default=None,
                   help="width of N and D, with a feed-forward width of 4x (default: the preset's; the AR baseline's "
                        "width is E's, which this leaves alone)")
    p.add_argument("--embed-dim", type=int, default=None,
                   help="size of the diffusion space: L's vectors, N's input and output (default: the preset's; the "
                        "AR baseline has no diffusion space and does not use it)")
    p.add_argument("--denoiser-layers", type=int, default=None,
                   help="layers of N (default: the preset's; the AR baseline's decoder has N's plus D's layers)")
    p.add_argument("--decoder-layers", type=int, default=None,
                   help="layers of D (default: the preset's); 0 is the paper's no-decoder ablation")
    p.add_argument("--pretrain-tasks", choices=list(PRETRAIN_TASKS), default="both",
                   help="pre-training mix: both tasks (the paper), or one of them (ablations)")
    p.add_argument("--snippet-limit", type=int, default=None, help="pre-training snippets to use")
    p.add_argument("--bpe-corpus", choices=["auto", "pairs", "pairs+snippets"], default="auto",
                   help="what the BPE tokenizer is fitted on: the training pairs, plus the pre-training snippets "
                        "(auto: the snippets only when the run pre-trains)")
    p.add_argument("--bpe-split", choices=list(BPE_SPLITS), default="gpt2",
                   help="how text is cut before BPE merges: GPT-2's pattern, or the same with each command-line flag "
                        "(' -type', ' --max-depth') kept whole so that it can become one token")
    p.add_argument("--unroll", type=float, default=None, metavar="P",
                   help="share of self-conditioned rows trained on N's own earlier tokens: x_t noised from the tokens "
                        "N, D and H read at a noisier timestep, the target still the gold program (default 0: off)")
    p.add_argument("--copy-augment", type=float, default=None, metavar="P",
                   help="share of fine-tuning pairs whose literals that the request spells (CF arguments; Python names, "
                        "numbers and strings the request quotes; Bash quoted strings and file names) are replaced in "
                        "both by fresh ones, so they must be copied (default 0: off)")
    p.add_argument("--prompt-dropout", type=float, default=None, metavar="P",
                   help="share of fine-tuning rows that read the null prompt instead of their own, so that sampling "
                        "can use classifier-free guidance (--guidance); stored in the config (default 0: off)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop (and save) at this step while keeping the full run's plan; continue with --resume")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--save-fp16", action="store_true", help="store the exported weights in 16-bit")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="export and validate an exponential moving average of the weights, restarted at each stage "
                        "(e.g. 0.999; default: off)")
    p.add_argument("--mixed-precision", default=None, choices=["no", "fp16", "bf16"])
    p.add_argument("--matmul-precision", default=None, choices=["highest", "high", "medium"],
                   help="internal precision of float32 matrix products (torch.set_float32_matmul_precision): medium "
                        "multiplies bfloat16 inputs on CPUs that have them, high uses TF32 on GPUs (default highest)")
    p.add_argument("--fast-cpu-training", action="store_const", const=True, default=None,
                   help="on CPU, draw dropout masks from 16-bit pieces of 64-bit draws and write attention out: a "
                        "1.3-1.5x faster step, the same network, other dropout draws than torch's "
                        "(codefusion/cpu_training.py; --resume keeps the run's setting)")
    p.add_argument("--cpu", action="store_true", help="force CPU even when a GPU is present")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.bash_templates and args.lang != "bash":
        p.error(f"--bash-templates is for --lang bash, not {args.lang}")
    if args.decoder_layers is not None and args.decoder_layers < 0:
        p.error(f"--decoder-layers must be 0 or more, got {args.decoder_layers}")
    if args.ema_decay is not None and not 0 <= args.ema_decay < 1:
        p.error(f"--ema-decay must be in [0, 1), got {args.ema_decay}")
    if args.embed_scale is not None and not 0 < args.embed_scale < float("inf"):
        p.error(f"--embed-scale must be a positive number, got {args.embed_scale}")
    if args.unroll is not None and not 0 <= args.unroll <= 1:
        p.error(f"--unroll must be in [0, 1], got {args.unroll}")
    if args.copy_augment is not None and not 0 <= args.copy_augment <= 1:
        p.error(f"--copy-augment must be in [0, 1], got {args.copy_augment}")
    if args.copy_head == "on" and args.architecture != "codefusion":
        p.error("--copy-head is CodeFusion's H; the autoregressive baseline has none")
    if args.prompt_dropout is not None and not 0 <= args.prompt_dropout < 1:
        p.error(f"--prompt-dropout must be in [0, 1), got {args.prompt_dropout}")
    if args.prompt_dropout and args.architecture != "codefusion":
        p.error("--prompt-dropout trains the null prompt that guidance denoises with; the autoregressive baseline has none")
    if args.unroll and args.architecture != "codefusion":
        p.error("--unroll trains CodeFusion's denoising steps; the autoregressive baseline has none")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    for flag, value, default in (("--bpe-corpus", args.bpe_corpus, "auto"), ("--bpe-split", args.bpe_split, "gpt2")):
        if value != default and (args.init or args.encoder):
            p.error(f"{flag} {value}: the tokenizer comes from {'--init' if args.init else '--encoder'}")
    for name in ("batch_size", "code_len", "vocab_size", "width", "embed_dim", "denoiser_layers", "eval_every",
                 "save_every", "stop_after"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)

    def run():
        from accelerate import PartialState

        from codefusion.trainer import train

        out = train(args)
        if PartialState().is_main_process:   # once, not once per process
            print(f"saved checkpoint to {out}")

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
