"""How much does the denoiser read the prompt? A diagnostic for a trained checkpoint.

    python -m codefusion.probe --checkpoint checkpoints/bash --lang bash --data-dir DIR [--split val]

For each timestep t it noises the gold programs (x_t = q_sample(L(y), t)), runs N twice (the second
pass self-conditioned, as the sampler does), reads tokens with D and H, and reports the accuracy on
the programs' tokens (pads excluded), once with each task's own prompt and once with the prompts
shuffled among the tasks. At small t the answer is in x_t; at t = T-1 x_t is pure noise and only
E_s can name the tokens, so there the gap between the two columns is what the model takes from
the prompt. Seeded: the same checkpoint gives the same table.

With --case it instead reports the validation loss (the trainer's: fixed noise and timesteps) with the
prompts as written and with their first letter lower- or upper-cased, for CodeFusion or the AR
baseline: how much a model depends on a style detail (NL2Bash's train utterances are sentence case,
its test ones all start in lower case). A model with sentence_case_prompts reads all three alike.
"""

from __future__ import annotations

import argparse
import json
import sys

from codefusion import LANGUAGES
from codefusion.errors import CodeFusionError, run_cli
from codefusion.tokenization import sentence_case

DEFAULT_TIMESTEPS = (300, 600, 900, 1199)
RESTYLES = {"as written": lambda p: p, "first letter lower-cased": lambda p: p[:1].lower() + p[1:],
            "first letter upper-cased": sentence_case}


def restyled_loss(model, prompts: list[str], codes: list[str], batch_size: int = 64) -> dict[str, float]:
    """Validation loss over all the tasks with the prompts as written and restyled (same noise for each)."""
    from codefusion.trainer import PairData, encode_codes, validation_loss

    code_ids, _ = encode_codes(model.tokenizer, codes, model.config.code_len)
    device = next(model.parameters()).device
    return {name: validation_loss(model, PairData([style(p) for p in prompts], code_ids), device, batch_size,
                                  max_examples=len(prompts)) for name, style in RESTYLES.items()}


def token_accuracy(model, prompts: list[str], codes: list[str], timesteps=DEFAULT_TIMESTEPS, seed: int = 0,
                   batch_size: int = 64) -> list[dict]:
    """Per timestep: accuracy on program tokens with the right prompts ("prompt") and shuffled ones ("shuffled")."""
    import torch   # here, not at the top: --help and argument errors answer without loading torch

    from codefusion.trainer import encode_codes

    with torch.inference_mode():
        if model.config.architecture != "codefusion":
            raise CodeFusionError("the probe needs a CodeFusion checkpoint (the AR baseline has no denoiser)")
        if len(prompts) < 2:
            raise CodeFusionError("the probe needs at least 2 tasks (one to shuffle against)")
        T = model.config.diffusion_steps
        bad = [t for t in timesteps if not 0 <= t < T]
        if bad:
            raise CodeFusionError(f"timesteps must be in 0..{T - 1}, got {bad}")
        code_ids, _ = encode_codes(model.tokenizer, codes, model.config.code_len)
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(prompts), generator=gen)
        order = torch.where(order == torch.arange(len(prompts)), order.roll(1), order)  # nobody keeps their own
        shuffled = [prompts[i] for i in order.tolist()]
        starts = range(0, len(prompts), batch_size)
        # E_s does not depend on t: encode each batch's own and shuffled prompts once, not once per timestep.
        encoded = {name: [model.encode_prompts(texts[s:s + batch_size]) for s in starts]
                   for name, texts in (("prompt", prompts), ("shuffled", shuffled))}
        rows = []
        for t in timesteps:
            hits = {"prompt": 0, "shuffled": 0}
            total = 0
            for b, start in enumerate(starts):
                ids = code_ids[start:start + batch_size]
                x0 = model.embedding(ids)
                tt = torch.full((ids.shape[0],), t, dtype=torch.long)
                x_t = model.diffusion.q_sample(x0, tt, torch.randn(x0.shape, generator=gen))
                content = ids != model.config.pad_token_id
                total += int(content.sum())
                for name, batches in encoded.items():
                    memory, pad, prompt_ids = batches[b]
                    x0_hat = model.denoise(x_t, tt, memory, pad)
                    x0_hat = model.denoise(x_t, tt, memory, pad, x0_hat)
                    pred = model.read(x0_hat, memory, pad, prompt_ids)[1].argmax(-1)
                    hits[name] += int(((pred == ids) & content).sum())
            rows.append({"t": t, "prompt": 100 * hits["prompt"] / max(total, 1),
                         "shuffled": 100 * hits["shuffled"] / max(total, 1), "tokens": total})
        return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m codefusion.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder or Hub repo id")
    p.add_argument("--lang", required=True, choices=LANGUAGES)
    p.add_argument("--data-dir", default=None, help="CodeFusion data folder (default: $CODEFUSION_DATA)")
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--limit", type=int, default=200, help="first N tasks of the split")
    p.add_argument("--timesteps", type=int, nargs="+", default=list(DEFAULT_TIMESTEPS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--case", action="store_true",
                   help="report the validation loss with each prompt's first letter as written, lower- and upper-cased")
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    args = p.parse_args(argv)

    def body():
        from codefusion.data import load_split
        from codefusion.sampler import load_model

        if args.limit < 2:
            raise CodeFusionError(f"--limit must be at least 2, got {args.limit}")
        model = load_model(args.checkpoint, device="cpu", lang=args.lang)
        tasks = load_split(args.lang, args.split, args.data_dir)[: args.limit]
        if model.config.bash_templates:   # the model writes templates: score it on the golds' templates
            from codefusion.bash import as_templates

            tasks = as_templates(tasks)
        if args.case:
            losses = restyled_loss(model.float(), [e.nl for e in tasks], [e.code for e in tasks])
            print(f"| prompts | validation loss |  ({len(tasks)} {args.split} tasks, {args.checkpoint})\n|---|---|")
            for name, value in losses.items():
                print(f"| {name} | {value:.4f} |")
            if args.out:
                with open(args.out, "w") as f:
                    json.dump({"checkpoint": str(args.checkpoint), "lang": args.lang, "split": args.split,
                               "tasks": len(tasks), "sentence_case_prompts": model.config.sentence_case_prompts,
                               "validation_loss": losses}, f, indent=1)
            return
        rows = token_accuracy(model, [e.nl for e in tasks], [e.code for e in tasks], args.timesteps, args.seed)
        print(f"| t | token accuracy, own prompt % | shuffled prompts % |  ({len(tasks)} {args.split} tasks, "
              f"{rows[0]['tokens']} program tokens)\n|---|---|---|")
        for r in rows:
            print(f"| {r['t']} | {r['prompt']:.1f} | {r['shuffled']:.1f} |")
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"checkpoint": str(args.checkpoint), "lang": args.lang, "split": args.split,
                           "tasks": len(tasks), "rows": rows}, f, indent=1)

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
