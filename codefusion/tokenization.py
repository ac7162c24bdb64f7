"""One tokenizer for prompts and code, as CodeT5 uses one.

With network access `--encoder Salesforce/codet5-small` brings CodeT5's own tokenizer; offline we
train a byte-level BPE (so any byte sequence round-trips) on the training corpora with `tokenizers`.
Either way the result is a `transformers` fast tokenizer saved inside the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from codefusion.errors import CodeFusionError

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]  # ids 0..4; pad must be 0, mask 4

# GPT-2's pre-tokenizing pattern (what ByteLevel's use_regex applies), with one alternative in front: a
# command-line flag after a space (" -type", " --max-depth") stays one piece, so BPE can make it one token.
# GPT-2's own pattern cuts it into " -" and "type", two tokens that a non-autoregressive denoiser has to put
# side by side on its own (the bundled Bash model's output is full of stray " -" tokens).
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_FLAGS_PATTERN = r" --?[A-Za-z][A-Za-z0-9_-]*|" + _GPT2_PATTERN
BPE_SPLITS = ("gpt2", "flags")


def _pre_tokenizer(split: str):
    from tokenizers import Regex, pre_tokenizers

    if split == "gpt2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split == "flags":
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(_FLAGS_PATTERN), behavior="isolated"),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise CodeFusionError(f"unknown BPE split {split!r}: choose one of {', '.join(BPE_SPLITS)}")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2, split: str = "gpt2"):
    """split: how text is cut before BPE merges ("gpt2": GPT-2's pattern; "flags": the same, but a command-line
    flag stays whole; see _FLAGS_PATTERN)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = _pre_tokenizer(split)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", mask_token="<mask>")


def load_tokenizer(path_or_repo: str, revision: str | None = None):
    """A tokenizer folder (a checkpoint's, or a Hub snapshot such as Salesforce/codet5-small)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_repo, revision=revision)
    except (OSError, ValueError) as e:
        raise CodeFusionError(f"could not load a tokenizer from {path_or_repo}: {e}") from None
    _keep_saved_settings(tokenizer, Path(path_or_repo) / "tokenizer_config.json")
    return tokenizer


# What transformers adds to a loaded tokenizer's init_kwargs (where it was loaded from, tokenizer.json's truncation
# and padding state) and save_pretrained then writes into tokenizer_config.json.
LOAD_TIME_KEYS = ("is_local", "local_files_only", "max_length", "stride", "truncation_side", "truncation_strategy",
                  "padding_side", "pad_to_multiple_of", "pad_token_type_id")


def _keep_saved_settings(tokenizer, config_file: Path) -> None:
    """Drop the load-time keys that a folder's own tokenizer_config.json does not have, so that saving the tokenizer
    again (a run with --init saves the one it started from) writes the files it was loaded from, byte for byte."""
    if not config_file.is_file():
        return   # a Hub repo id: nothing local to mirror
    saved = json.loads(config_file.read_text(encoding="utf-8"))
    for key in LOAD_TIME_KEYS:
        if key not in saved:
            tokenizer.init_kwargs.pop(key, None)


def sentence_case(prompt: str) -> str:
    """The prompt with its first character upper-cased (a no-op unless that is a lower-case letter)."""
    return prompt[:1].upper() + prompt[1:] if prompt[:1].islower() else prompt


def check_special_ids(tokenizer) -> None:
    if tokenizer.pad_token_id is None or tokenizer.mask_token_id is None:
        raise CodeFusionError("the tokenizer needs a pad token and a mask token")
