"""Does a model with a sentence encoder beside E read it? (session 59)

The trainer's validation loss (fixed noise and timesteps) over all val tasks of a checkpoint trained with
`--sentence-encoder`, three times: with both readers, with the sentence encoder's states masked out (E alone), and
with E's masked out (the sentence encoder alone). A reader the model ignores costs nothing when masked.

    PYTHONPATH=. python results/sentence_encoder/reads.py --checkpoint CK --lang bash --out reads.json
"""
import argparse
import json

import torch

from codefusion import bash
from codefusion.data import load_split
from codefusion.model import CodeFusion
from codefusion.trainer import PairData, encode_codes, validation_loss


def masked(model, hide: str):
    """encode_prompts with one reader's positions padded ("sentence" or "E"); "none" leaves both."""
    original = CodeFusion.encode_prompts.__get__(model)

    def encode_prompts(prompts, device=None, null_rows=None):
        memory, pad, ids = original(prompts, device, null_rows)
        n_e = model.tokenize_prompts(prompts)[0].shape[1]   # E's positions come first
        pad = pad.clone()
        if hide == "sentence":
            pad[:, n_e:] = True
        elif hide == "E":
            pad[:, :n_e] = True
        return memory, pad, ids

    return encode_prompts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--lang", default="bash")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    model = CodeFusion.from_pretrained(args.checkpoint)
    if model.sentence is None:
        raise SystemExit(f"{args.checkpoint} has no sentence encoder")
    pairs = load_split(args.lang, "val", args.data_dir)
    if model.config.bash_templates:
        pairs = bash.as_templates(pairs)
    codes, _ = encode_codes(model.tokenizer, [e.code for e in pairs], model.config.code_len)
    data = PairData([e.nl for e in pairs], codes)
    report = {"checkpoint": args.checkpoint, "tasks": len(pairs)}
    for hide in ("none", "sentence", "E"):
        model.encode_prompts = masked(model, hide)
        report[f"val_loss_hiding_{hide}"] = validation_loss(model, data, torch.device("cpu"), max_examples=len(pairs))
        print(hide, report[f"val_loss_hiding_{hide}"], flush=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
