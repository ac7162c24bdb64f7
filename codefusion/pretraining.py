"""The two code-only pre-training tasks.

- Unsupervised code generation: E_s is replaced by fresh Gaussian noise, so N, D and L learn the
  distribution of programs with no utterance at all (`noise_memory`).
- Code-aware CPD (continuous paragraph denoising, after GENIE): mask the identifiers and built-in
  keywords of a snippet, encode the masked snippet with E, denoise the full snippet (`mask_code`).

What counts as an identifier or keyword comes from each language's real grammar: Python's
`tokenize`, a bash parser (bashlex), the CF rule lexer (codefusion.cf).
"""

from __future__ import annotations

import functools
import io
import keyword
import random
import tokenize

import torch

from codefusion.data import check_language

MASK = "<mask>"
BASH_RESERVED = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
                 "in", "function", "select", "time"}


def python_tokens(code: str):
    """Python's own tokens of `code` with their character spans: (token, start, end). Stops quietly at a
    tokenizer error, keeping the tokens before it (CoNaLa has a few fragments)."""
    lines = code.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            (r0, c0), (r1, c1) = tok.start, tok.end
            yield tok, offsets[r0 - 1] + c0, offsets[r1 - 1] + c1
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return


def python_spans(code: str) -> list[tuple[int, int]]:
    """Character spans of NAME tokens (identifiers, keywords and builtins are all NAMEs)."""
    return [(start, end) for tok, start, end in python_tokens(code)
            if tok.type == tokenize.NAME and (tok.string.isidentifier() or keyword.iskeyword(tok.string))]


def bash_spans(code: str) -> list[tuple[int, int]]:
    """Command names (utilities and builtins), reserved words and parameter names, from bashlex's AST."""
    import bashlex

    spans = []

    class Visitor(bashlex.ast.nodevisitor):
        def visitcommand(self, node, parts):
            words = [p for p in parts if p.kind == "word"]
            if words:
                spans.append(tuple(words[0].pos))

        def visitreservedword(self, node, word):
            if word in BASH_RESERVED:
                spans.append(tuple(node.pos))

        def visitparameter(self, node, value):
            spans.append(tuple(node.pos))

    try:
        for tree in bashlex.parse(code):
            Visitor().visit(tree)
    except Exception:  # bashlex raises many types on NL2Bash's odd lines; fall back to the first word
        first = code.split(maxsplit=1)
        if first:
            spans.append((0, len(first[0])))
    return spans


def cf_spans(code: str) -> list[tuple[int, int]]:
    """Operator names (TextEquals, AND, top, ...) and column references (c[6]) from the rule lexer."""
    from codefusion.cf import lex_rule

    return [(tok.start, tok.end) for tok in lex_rule(code) if tok.kind in ("operator", "column")]


SPANS = {"python": python_spans, "bash": bash_spans, "cf": cf_spans}


@functools.lru_cache(maxsize=1 << 17)
def code_spans(code: str, lang: str) -> tuple[tuple[int, int], ...]:
    """The sorted, distinct maskable spans of `code`. Cached: parsing is most of a run's set-up (bashlex
    takes 10.7 s for NL2Bash's 9,589 training programs) and every run in a process masks the same ones."""
    return tuple(sorted(set(SPANS[lang](code))))


def mask_code(code: str, lang: str, mask_prob: float = 0.5, rng: random.Random | None = None) -> str:
    """Replace each identifier/keyword span by <mask> with probability `mask_prob` (at least one if any).

    GENIE masks ~30% of spans; code's names carry more of its meaning, so we mask more (documented
    default 0.5; the paper does not state its rate)."""
    check_language(lang)
    rng = rng or random.Random()
    spans = code_spans(code, lang)
    chosen = [s for s in spans if rng.random() < mask_prob]
    if spans and not chosen:
        chosen = [rng.choice(spans)]
    out, last = [], 0
    for start, end in chosen:
        if start < last:  # overlapping spans (nested bash nodes): keep the first
            continue
        out.append(code[last:start])
        out.append(MASK)
        last = end
    out.append(code[last:])
    return "".join(out)


def noise_memory(batch: int, length: int, width: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unsupervised generation's stand-in for E_s: Gaussian noise, drawn afresh each call, nothing padded."""
    return torch.randn(batch, length, width, device=device), torch.zeros(batch, length, dtype=torch.bool, device=device)
