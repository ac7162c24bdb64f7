"""Metrics of the paper's protocol: per-language correctness and validity, top-k, diversity, edit distance.

- Python: exact match after AST normalisation (`ast.dump(ast.parse(code))`, so quoting, spacing and
  redundant parentheses do not matter), sacreBLEU of the top-1, validity = `ast.parse` succeeds.
  The paper's CodeBERTScore needs a CodeBERT model from the Hub; `codebertscore` says so and gives
  None when it cannot run, it is never approximated.
- Bash: NL2Bash-style template match: bashlex parses the command, utilities, flags and structure
  (pipes, lists, substitutions, redirections) are kept, every argument becomes ARG. Validity =
  bashlex parses it. When bashlex rejects either side, both sides are compared by a simpler
  token-level template, so a gold command bashlex cannot read still matches itself.
- CF rules: execution match by the interpreter in `codefusion.cf`; validity = the rule parses.
  A gold rule the interpreter cannot execute (the data's noisy rows) falls back to comparing
  tokens (whitespace aside).
- All languages: token-level normalised edit distance (rapidfuzz Levenshtein on token lists) and
  the diversity of a candidate list (distinct n-grams, n = 1..4, and mean pairwise edit distance).
Nothing is ever executed as Python or shell: Python and Bash are only parsed.
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
import re
import sys
import warnings

from rapidfuzz.distance import Levenshtein

from codefusion import cf
from codefusion.data import Example
from codefusion.errors import CodeFusionError

METRIC_NAMES = {
    "python": "exact match after AST normalisation (CodeBERTScore needs the Hub; see --codebertscore)",
    "bash": "template match (NL2Bash style)",
    "cf": "execution match",
}

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def code_tokens(text: str) -> list[str]:
    """Language-neutral tokens: runs of word characters and single punctuation marks."""
    return _TOKEN_RE.findall(text or "")


def token_edit_distance(a: str, b: str) -> float:
    """Levenshtein distance between the token lists, divided by the longer length (0 = same)."""
    return Levenshtein.normalized_distance(code_tokens(a), code_tokens(b))


# ----------------------------------------------------------------------------- diversity

def distinct_ngrams(candidates: list[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the candidates (Li et al. 2016); None if there are none."""
    grams = [tuple(t[i:i + n]) for t in map(code_tokens, candidates) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def pairwise_edit_distance(candidates: list[str]) -> float | None:
    """Mean token edit distance over all pairs of candidates; None with fewer than two."""
    pairs = list(itertools.combinations(candidates, 2))
    return sum(token_edit_distance(a, b) for a, b in pairs) / len(pairs) if pairs else None


def diversity(candidates: list[str]) -> dict | None:
    """distinct_1..distinct_4 and pairwise_ed of one task's candidates; None with fewer than two."""
    if len(candidates) < 2:
        return None
    out = {f"distinct_{n}": distinct_ngrams(candidates, n) for n in range(1, 5)}
    out["pairwise_ed"] = pairwise_edit_distance(candidates)
    return out


# ----------------------------------------------------------------------------- python

def _python_ast(code: str) -> ast.Module | None:
    """The parse tree, or None when `code` does not parse. Compiler warnings (invalid escapes and
    decimal literals in generated code) are silenced, and so are the errors a pathological input raises
    (MemoryError for very deep nesting) instead of SyntaxError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(code)
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            return None


def python_valid(code: str) -> bool:
    """Whether `code` parses as Python 3 (it is never run)."""
    return _python_ast(code) is not None


def python_normalise(code: str) -> str:
    """The AST dump when the code parses, else its tokens joined by spaces."""
    tree = _python_ast(code)
    return ast.dump(tree) if tree is not None else " ".join(code_tokens(code))


def python_match(candidate: str, gold: str) -> bool:
    """Exact match after AST normalisation."""
    return python_normalise(candidate) == python_normalise(gold)


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus sacreBLEU (0-100) of one hypothesis per reference."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references]).score)


def codebertscore(hypotheses: list[str], references: list[str], lang: str = "python") -> float | None:
    """CodeBERTScore F1 (0-100) when the code_bert_score package and its CodeBERT model are here.

    The model comes from the Hugging Face Hub, which cannot be reached from this project's
    machines, so this normally prints why it is unavailable and returns None.
    """
    try:
        import code_bert_score
    except ImportError:
        print("CodeBERTScore unavailable offline: the code_bert_score package and its CodeBERT model "
              "(from the Hugging Face Hub) are not installed; reporting null.", file=sys.stderr)
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # use a cached model or fail, never download silently
    try:
        _, _, f1, _ = code_bert_score.score(cands=hypotheses, refs=references, lang=lang)
    except OSError as e:
        print(f"CodeBERTScore unavailable offline ({e}); reporting null.", file=sys.stderr)
        return None
    return 100.0 * float(f1.mean())


# ----------------------------------------------------------------------------- bash

_WRAPPERS = {"sudo", "xargs", "nohup", "time", "nice", "env", "exec", "watch", "timeout", "command"}
_EXEC_FLAGS = {"-exec", "-execdir", "-ok", "-okdir"}
_LITERAL_WORDS = {"{}", ";", "\\;", "+", "]", "]]", "--"}
_COMMAND_NAME = re.compile(r"[\w./+-]+")


def _flag(word: str) -> str | None:
    """The template form of an option word, or None when the word is not an option."""
    if len(word) < 2 or not word.startswith("-") or word == "--":
        return None
    if re.fullmatch(r"-\d+", word):  # head -5, find -mtime -7
        return "-NUM"
    return word.split("=", 1)[0] + ("=ARG" if "=" in word else "")


def _utility(word: str) -> str:
    return os.path.basename(word) or word


def _substitutions(node, out: list[str]) -> bool:
    """Emit the templates of $(...), `...` and <(...) inside a word; whether there were any."""
    subs = [p for p in getattr(node, "parts", []) if p.kind in ("commandsubstitution", "processsubstitution")]
    for sub in subs:
        out.append("$(" if sub.kind == "commandsubstitution" else "<(")
        _emit(sub.command, out)
        out.append(")")
    return bool(subs)


def _is_command_name(word: str) -> bool:
    return (not _flag(word) and bool(_COMMAND_NAME.fullmatch(word)) and not word.isdigit()
            and word not in _LITERAL_WORDS)


class _SimpleCommand:
    """Template of one simple command's words: the utility, its flags, literal words, else None (an argument).

    The first word is the utility; after a wrapper (xargs, sudo...) or find's -exec the next
    command-like word is one too, so `xargs rm` and `xargs grep` differ.
    """

    def __init__(self):
        self.expect_utility, self.wrapped = True, False

    def word(self, word: str) -> str | None:
        if self.expect_utility and (not self.wrapped or _is_command_name(word)):
            self.expect_utility = self.wrapped = word in _WRAPPERS
            return _utility(word)
        if _flag(word):
            if word in _EXEC_FLAGS:
                self.expect_utility, self.wrapped = True, False
            return _flag(word)
        return word if word in _LITERAL_WORDS else None


def _command_template(node, out: list[str]) -> None:
    command = _SimpleCommand()
    for part in node.parts:
        if part.kind != "word":
            _emit(part, out)
            continue
        tok = command.word(part.word)
        if tok is not None:
            out.append(tok)
        elif not _substitutions(part, out):
            out.append("ARG")


def _emit(node, out: list[str]) -> None:
    kind = node.kind
    if kind == "command":
        _command_template(node, out)
    elif kind == "pipe":
        out.append(node.pipe)
    elif kind == "operator":
        out.append(node.op)
    elif kind == "reservedword":
        out.append(node.word)
    elif kind == "assignment":
        out.append("ASSIGN")
        _substitutions(node, out)
    elif kind == "word":
        if not _substitutions(node, out):
            out.append("ARG")
    elif kind == "redirect":
        fd = "" if node.input is None else str(node.input)
        if isinstance(node.output, int):  # 2>&1
            out.append(f"{fd}{node.type}{node.output}")
        else:
            out.append(fd + node.type)
            if node.output is not None and not _substitutions(node.output, out):
                out.append("ARG")
    elif kind == "compound":
        for part in list(node.list) + list(getattr(node, "redirects", [])):
            _emit(part, out)
    else:  # list, pipeline, if, for, while, until, function
        for part in getattr(node, "parts", []):
            _emit(part, out)


@functools.cache
def _bashlex():
    """bashlex, with a guard on its `${` expansion, installed once: on a word such as `'"${x'` (a `${` with no
    `}` inside quotes, which models do generate) bashlex 0.18 rewinds to the word's start and loops forever,
    which would hang the evaluator and a demo worker. The guard turns "no progress" into a parsing error."""
    import bashlex
    from bashlex import subst

    expand = subst._paramexpand

    def guarded(parserobj, string, sindex):
        node, end = expand(parserobj, string, sindex)
        if end <= sindex:
            raise bashlex.errors.ParsingError("unterminated ${ expansion", string, sindex)
        return node, end

    subst._paramexpand = guarded
    return bashlex


def bash_template(command: str) -> str | None:
    """The NL2Bash-style template from bashlex's parse, or None when bashlex cannot parse it."""
    bashlex = _bashlex()
    try:
        trees = bashlex.parse(command)
    except Exception:  # bashlex raises many types (ParsingError, NotImplementedError, IndexError...)
        return None
    out: list[str] = []
    for tree in trees:
        _emit(tree, out)
    while out and out[-1] == ";":
        out.pop()
    return " ".join(out)


_SHELL_TOKEN_RE = re.compile(r"""
    \|\||&&|[0-9]*>&[0-9]*|[0-9]*>>|[0-9]*>|<<|<\(|<|\||;|\$\(|`|\(|\)
  | '[^']*'?|"(?:\\.|[^"\\])*"?
  | (?:\\.|[^\s|;&<>()`'"])+
""", re.VERBOSE)
_SHELL_SEPARATOR_RE = re.compile(r"\|\||&&|\||;|\$\(|`|\(|<\(|\)")
_SHELL_REDIRECT_RE = re.compile(r"[0-9]*(>&[0-9]*|>>|>|<<|<)")


def bash_fallback_template(command: str) -> str:
    """A token-level template for commands bashlex rejects: utilities and flags kept, arguments ARG."""
    out, simple = [], _SimpleCommand()
    for tok in _SHELL_TOKEN_RE.findall(command):
        if _SHELL_SEPARATOR_RE.fullmatch(tok):
            out.append(tok)
            simple = _SimpleCommand()
        elif _SHELL_REDIRECT_RE.fullmatch(tok):
            out.append(tok)
        else:
            out.append(simple.word(tok) or "ARG")
    return " ".join(out)


def bash_any_template(command: str) -> str:
    """bashlex's template, or the token-level one where bashlex cannot parse the command."""
    template = bash_template(command)
    return template if template is not None else bash_fallback_template(command)


def bash_valid(command: str) -> bool:
    """Syntactic validity: bashlex parses the command (it is never run)."""
    return bash_template(command) is not None


def bash_match(candidate: str, gold: str) -> bool:
    """Template match; both sides use the simpler template when bashlex rejects either."""
    cand, ref = bash_template(candidate), bash_template(gold)
    if cand is None or ref is None:
        cand, ref = bash_fallback_template(candidate), bash_fallback_template(gold)
    return cand == ref


# ----------------------------------------------------------------------------- dispatch

def is_valid(lang: str, code: str) -> bool:
    """Syntactic validity of one program in `lang` (an empty program is not valid)."""
    if not code.strip():
        return False
    if lang == "python":
        return python_valid(code)
    if lang == "bash":
        return bash_valid(code)
    return cf.is_valid_rule(code)


def program_key(lang: str, code: str) -> str:
    """Which programs count as one for voting (no gold needed): the metric's own normal form where it has one
    (Bash template, Python AST), the tokens of a CF rule (its execution needs the task's table)."""
    if lang == "bash":
        template = bash_template(code)
        return template if template is not None else "\0" + bash_fallback_template(code)
    if lang == "python":
        return python_normalise(code)
    return " ".join(code_tokens(code))


def literal_grounding(lang: str, request: str):
    """A function that rounds a program's literals to the request (`cf.ground_literals`; CF rules only)."""
    if lang != "cf":
        raise CodeFusionError(f"grounding literals to the request is defined for CF rules only, not {lang}")
    return lambda code: cf.ground_literals(code, request)


def gold_issue(lang: str, example: Example) -> str | None:
    """Why the language's metric cannot use this gold program as is (None when it can)."""
    if lang == "cf":
        res = cf.check_gold(example.code, example.data)
        return None if res.ok else f"gold rule {res.reason}; compared token by token"
    if lang == "bash" and bash_template(example.code) is None:
        return "bashlex cannot parse the gold command; compared by the token-level template"
    if lang == "python" and not python_valid(example.code):
        return "gold code does not parse; compared token by token"
    return None


def is_correct(lang: str, candidate: str, example: Example, gold_ok: bool | None = None) -> bool:
    """Whether `candidate` solves the task by the language's metric (see the module docstring).

    gold_ok=False says the CF gold rule is known not to run (it is then compared token by token);
    None checks it.
    """
    if lang == "python":
        return python_match(candidate, example.code)
    if lang == "bash":
        return bash_match(candidate, example.code)
    if gold_ok is not False:
        res = cf.execution_match(candidate, example.code, example.data)
        if res.gold.ok:
            return res.match
    return code_tokens(candidate) == code_tokens(example.code)


def top_k(solved_at: list[int | None], k: int) -> float:
    """Percentage of tasks whose first correct candidate has rank <= k (ranks start at 1)."""
    return 100.0 * sum(1 for r in solved_at if r is not None and r <= k) / len(solved_at) if solved_at else 0.0
