"""Copy augmentation for fine-tuning (`train --copy-augment P`).

The training pairs repeat a few hundred constants (CF's train set has 292 distinct rules for 712 requests), so a
model can memorise them instead of learning to copy them from the request. Test requests name constants no
training pair has (108 of the 117 CF test rules with arguments spell every argument in the request). So with
probability P a fine-tuning pair whose program repeats a literal of its request gets that literal replaced, in
both, by a fresh one of the same shape: a word by another word, a number by another number of as many digits,
anything else letter by letter and digit by digit. A fresh constant can only be copied.

A literal is what each language's grammar calls one, and only where the request spells it:
- CF rules: the arguments of the rule lexer (words, numbers, quoted strings) that the request has as a word;
- Python: names, numbers and string contents that the request quotes (CoNaLa writes `df`, 'hello');
- Bash: quoted strings and file-like words (with . or /) that the request quotes.
Operators, keywords, utilities and column references are never touched, so every program stays valid.
"""

from __future__ import annotations

import keyword
import random
import re
import string
import tokenize

from codefusion.pretraining import python_tokens

_QUOTED = re.compile(r"`([^`]+)`|'([^']+)'|\"([^\"]+)\"")
_BASH_WORD = re.compile(r"'([^']*)'|\"([^\"]*)\"|([^\s'\"|;&<>(){}$`]+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _cf_literals(code: str) -> list[tuple[int, int]]:
    from codefusion.cf import lex_rule

    out = []
    for tok in lex_rule(code):
        if tok.kind in ("word", "number"):
            out.append((tok.start, tok.end))
        elif tok.kind == "string" and len(tok.text) > 2:
            out.append((tok.start + 1, tok.end - 1))
    return out


def _python_literals(code: str) -> list[tuple[int, int]]:
    out = []
    for tok, start, end in python_tokens(code):   # the literals found before a tokenizer error stay usable
        if (tok.type == tokenize.NAME and not keyword.iskeyword(tok.string)) or tok.type == tokenize.NUMBER:
            out.append((start, end))
        elif tok.type == tokenize.STRING and tok.string[:1] in "'\"" and len(tok.string) > 2 \
                and tok.string[1] != tok.string[0]:   # plain '...' or "...", not '''...''' or prefixed
            out.append((start + 1, end - 1))
    return out


def _bash_literals(code: str) -> list[tuple[int, int]]:
    out = []
    for m in _BASH_WORD.finditer(code):
        group = next(g for g in (1, 2, 3) if m.group(g) is not None)
        text = m.group(group)
        if text and (group < 3 or "." in text or "/" in text):
            out.append((m.start(group), m.end(group)))
    return out


LITERALS = {"cf": _cf_literals, "python": _python_literals, "bash": _bash_literals}


def _spelt_in(lang: str, request: str):
    """Whether a literal's text counts as spelt by the request: a whole word of it (CF), or the whole content
    of one of its quoted spans (Python, Bash: their requests quote what the program names)."""
    if lang == "cf":
        return lambda text: re.search(rf"(?<!\w){re.escape(text)}(?!\w)", request) is not None
    quoted = {next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(request)}
    return lambda text: text in quoted


def fresh_like(text: str, rng: random.Random, words: list[str]) -> str:
    """A new literal of `text`'s shape: a number of as many digits, a word from `words` in the same case
    pattern, else each letter and digit redrawn (punctuation kept). Never `text` itself."""
    for _ in range(20):
        if _NUMBER.fullmatch(text):
            out = "".join(rng.choice(string.digits) if c.isdigit() else c for c in text)
            if len(out) > 1 and out[0] == "0" and text[0] != "0":
                out = rng.choice("123456789") + out[1:]
        elif text.isalpha() and words and rng.random() < 0.5:
            out = rng.choice(words)
            out = out.upper() if text.isupper() and len(text) > 1 else out.capitalize() if text[0].isupper() else out.lower()
        else:
            out = "".join(rng.choice(string.ascii_uppercase if c.isupper() else string.ascii_lowercase) if c.isalpha()
                          else rng.choice(string.digits) if c.isdigit() else c for c in text)
            if text.isidentifier() and out[:1].isdigit():   # keep identifiers identifiers
                out = "x" + out[1:]
        if out != text:
            return out
    return text


def augment_pair(lang: str, request: str, code: str, rng: random.Random, words: list[str]) -> tuple[str, str]:
    """(request, code) with every literal that the request spells replaced by a fresh one, consistently in both."""
    spelt = _spelt_in(lang, request)
    spans = [(a, b) for a, b in LITERALS[lang](code) if b > a and spelt(code[a:b])]
    if not spans:
        return request, code
    fresh: dict[str, str] = {}
    for a, b in spans:
        fresh.setdefault(code[a:b], fresh_like(code[a:b], rng, words))
    for a, b in sorted(spans, reverse=True):   # right to left: earlier offsets stay valid
        code = code[:a] + fresh[code[a:b]] + code[b:]
    if lang == "cf":   # one pass, longest first, so that a fresh literal is never replaced again
        words = "|".join(re.escape(old) for old in sorted(fresh, key=len, reverse=True))
        request = re.sub(rf"(?<!\w)(?:{words})(?!\w)", lambda m: fresh[m.group(0)], request)
    else:
        def swap(m: re.Match) -> str:
            inner = next(g for g in m.groups() if g is not None)
            return m.group(0).replace(inner, fresh[inner]) if inner in fresh else m.group(0)
        request = _QUOTED.sub(swap, request)
    return request, code


class CopyAugmenter:
    """Rewrites a fine-tuning batch: each pair with probability `prob`, from an RNG the trainer seeds with
    (seed, step), so a resumed run sees the same batches."""

    def __init__(self, lang: str, requests: list[str], prob: float):
        self.lang, self.prob = lang, prob
        # replacement words: the training requests' own vocabulary, so fresh words split into BPE pieces as
        # real ones do
        self.words = sorted({w.lower() for r in requests for w in re.findall(r"[A-Za-z]{3,12}", r)})

    def __call__(self, requests: list[str], codes: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
        out_r, out_c = [], []
        for request, code in zip(requests, codes):
            if rng.random() < self.prob:
                request, code = augment_pair(self.lang, request, code, rng, self.words)
            out_r.append(request)
            out_c.append(code)
        return out_r, out_c
