"""CF rules: lexer, parser and interpreter for the benchmark's conditional-formatting rule language.

The CF benchmark writes Excel conditional-formatting rules as calls, for example
`TextEquals(Complete)`, `GreaterThan(c[1], 900000)`, `AND(StartsWith(c[0], 'A'), EndsWith(c[0], 'X'))`,
`top(10%)`, `NOT(Blanks(c[1]))`. The paper scores them by *execution match*: a candidate is right
when it formats the same cells of the task's table as the gold rule. Everything here is a plain
parser and tree-walking interpreter; no rule text is ever passed to `eval`.

Semantics (Excel's where they are unambiguous, a documented choice where they are not):
- A table is a list of rows, the first row the header. `c[k]` is the table's k-th column (0-based).
  A rule without a column reference applies to the *default range*: the `Value` column when the
  table starts with an `Index` column (the training tables' layout), else every column.
- Operator names are case-insensitive and the data's variants are accepted (`top`/`Top`,
  `Duplicate`/`Duplicates`, `GreaterThanEqual`/`GreaterThanEquals`, `StartsWith`/`TextStartsWith`).
- Cells are typed like Excel would show them: numbers, numeric strings ('918', '$21.00', '1,200',
  '50%'), dates ('2022-11-15', '24/01/2020', day first) as serial numbers; '#ERR'-style strings are
  errors; '' and None are blanks; anything else is text.
- Comparisons (Equals ... Between) never format blank or error cells and never compare a number
  with text (so GreaterThan(10) leaves text cells alone, as the training labels do); text compares
  case-insensitively. Between accepts its bounds in either order.
- Text operators compare case-insensitively on the cell's displayed text; an unquoted text argument
  runs to the closing parenthesis, commas included (`TextContains(Non-pooled, en)`).
- Top/Bottom(n) keep ties (Excel), default n = 10; `top(10%)` and TopPercent keep
  max(1, int(N * p / 100)) cells. Above/BelowAverage compare to the mean of the numeric cells.
  Duplicates ignores blanks and errors. LastMonth/ThisMonth/NextMonth are relative to the newest
  date in the range (not to today, so that a result never depends on the day it is computed).
- ColorScale, DataBar and IconSet format every numeric cell of their range; their *style* is part of
  the result, so a data bar never "matches" a colour scale over the same cells.
- AND/OR/NOT combine per cell; a leaf with a column reference reads that column of the same row.

Probe tables: 60 of the 178 test tables are header-only (`[['Index', 'Value', 'Point']]`), and
on an empty table every rule formats nothing, so every candidate would "match". When a table has
fewer than MIN_DATA_ROWS data rows, or when the gold rule formats no cell of it (8 test tables:
the same degenerate case), `execution_match` appends deterministic, seeded probe rows built from
the union of both rules' constants: the numbers, their neighbours and midpoints, a ramp long
enough to separate top-n from top-m, each string with case variants and with text around it,
blanks, errors and duplicates, in every column. Two rules that mean different things then format
different cells; the same rule always formats the same cells. Elsewhere the task's own table
decides, as in the paper: rules that agree on it match.
"""

from __future__ import annotations

import difflib
import math
import os
import random
import re
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

MIN_DATA_ROWS = 5  # tables with fewer data rows get probe rows (see the module docstring)
DEFAULT_RANK = 10  # Excel's default for Top/Bottom without n
MAX_PROBE_RANK = 100  # probe tables tell Top(n) from Top(m) up to here (gold rules go to 20): they stay small
MAX_PROBE_NUMBER = 1e15  # larger constants (a generated 1e999 is inf) make no probe values
MAX_DEPTH = 50  # nesting limit of the parser

COMPARE = ("Equals", "NotEquals", "GreaterThan", "GreaterThanEqual", "LessThan", "LessThanEqual")
TEXT_OPS = ("TextEquals", "TextContains", "TextStartsWith", "TextEndsWith")
RANKS = ("Top", "Bottom", "TopPercent", "BottomPercent")
SCALES = ("ColorScale", "DataBar", "IconSet")
MONTHS = {"LastMonth": -1, "ThisMonth": 0, "NextMonth": 1}
COLUMNWISE = ("Duplicates", "Blanks", "Errors", "AboveAverage", "BelowAverage", *SCALES, *MONTHS)
LOGIC = ("AND", "OR", "NOT")
OPERATORS = {name.lower(): name for name in (*COMPARE, "Between", *TEXT_OPS, *RANKS, *COLUMNWISE, *LOGIC)}
OPERATORS.update({
    "startswith": "TextStartsWith", "endswith": "TextEndsWith", "duplicate": "Duplicates",
    "greaterthanequals": "GreaterThanEqual", "lessthanequals": "LessThanEqual",
})
VALUE_FUNCTIONS = {"len"}  # functions that give a value, not a rule

_ERROR_RE = re.compile(r"^#(?:DIV/0!|[A-Z][A-Z/_]*[!?]?)$")
_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_GROUPED_RE = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_ISO_DATE_RE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T][\d:.]+)?$")
_SLASH_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_EXCEL_EPOCH = date(1899, 12, 30)


# ----------------------------------------------------------------------------- lexer

@dataclass(frozen=True)
class Token:
    """A lexeme: kind is operator, column, cell, string, number, word or punct; [start, end) in the text."""

    kind: str
    text: str
    start: int
    end: int


_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<column>[cC]\[\s*\d+\s*\])
  | (?P<cell>\$[A-Za-z]+\$?\d*)
  | (?P<string>"[^"]*"?|'[^']*'?)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[^\W\d]\w*)
  | (?P<punct>.)
""", re.VERBOSE | re.DOTALL)


def lex_rule(text: str) -> list[Token]:
    """Split a rule into tokens (never raises). A word directly followed by '(' is an operator.

    A '-' right before a digit at the start or after '(' or ',' belongs to the number, so
    `Between(-5,5)` lexes as one negative number, but `Non-pooled` keeps '-' as punctuation.
    """
    tokens: list[Token] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind == "space":
            continue
        if kind == "number" and tokens and tokens[-1].text == "-" and tokens[-1].end == m.start() and (
                len(tokens) == 1 or tokens[-2].text in ("(", ",")):
            minus = tokens.pop()
            tokens.append(Token("number", text[minus.start:m.end()], minus.start, m.end()))
            continue
        tokens.append(Token(kind, m.group(), m.start(), m.end()))
    for i, tok in enumerate(tokens):
        if tok.kind == "word" and i + 1 < len(tokens) and tokens[i + 1].text == "(":
            tokens[i] = Token("operator", tok.text, tok.start, tok.end)
    return tokens


# ----------------------------------------------------------------------------- cells

@dataclass(frozen=True)
class Cell:
    """A typed cell: kind is number, text, blank or error; `text` is what text operators see."""

    kind: str
    text: str
    num: float | None = None


BLANK = Cell("blank", "")


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _parse_number(s: str) -> float | None:
    t = s.strip()
    percent = t.endswith("%")
    t = t.rstrip("%").strip()
    if t[:1] in "$€£":
        t = t[1:]
    if _GROUPED_RE.match(t):
        t = t.replace(",", "")
    if not _NUMBER_RE.match(t):
        return None
    value = float(t)
    return value / 100 if percent else value


def _parse_date(s: str) -> float | None:
    m = _ISO_DATE_RE.match(s.strip())
    if m:
        y, mo, d = (int(g) for g in m.groups())
    else:
        m = _SLASH_DATE_RE.match(s.strip())
        if not m:
            return None
        a, b, y = (int(g) for g in m.groups())
        d, mo = (b, a) if b > 12 else (a, b)  # day first, as in the benchmark's tables
    try:
        return float((date(y, mo, d) - _EXCEL_EPOCH).days)
    except ValueError:
        return None


def to_cell(value) -> Cell:
    """Type one raw table value the way a spreadsheet would display and compare it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return BLANK
    if isinstance(value, bool):
        return Cell("text", "TRUE" if value else "FALSE")
    if isinstance(value, (int, float)):
        return Cell("number", _number_text(value), float(value))
    text = str(value)
    if not text.strip():
        return BLANK
    if _ERROR_RE.match(text.strip()):
        return Cell("error", text)
    num = _parse_number(text)
    if num is None:
        num = _parse_date(text)
    return Cell("number", text, num) if num is not None else Cell("text", text)


def _sort_key(cell: Cell) -> tuple:
    return (0, cell.num, "") if cell.kind == "number" else (1, 0.0, cell.text.casefold())


# ----------------------------------------------------------------------------- parser

class CFSyntaxError(ValueError):
    """A rule that is not in the CF language (unknown operator, wrong arguments, unbalanced text)."""


@dataclass(frozen=True)
class Column:
    index: int


@dataclass(frozen=True)
class Literal:
    cell: Cell


@dataclass(frozen=True)
class Len:
    arg: object  # Column | Literal | Len


@dataclass(frozen=True)
class Rule:
    """A parsed rule node. `subject` is the value tested (None: the cell itself)."""

    op: str
    subject: object = None
    values: tuple = ()
    children: tuple = ()
    text: str | None = None
    n: float | None = None


@dataclass(frozen=True)
class _Bare:
    raw: str
    start: int
    end: int
    tokens: tuple


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = lex_rule(text)
        self.i = 0
        self.depth = 0

    def _peek(self) -> Token | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _expect(self, punct: str) -> None:
        tok = self._peek()
        if tok is None or tok.text != punct:
            found = "the end of the rule" if tok is None else repr(tok.text)
            raise CFSyntaxError(f"expected {punct!r}, found {found}")
        self.i += 1

    def parse(self) -> Rule:
        if not self.toks:
            raise CFSyntaxError("empty rule")
        rule = self._rule()
        if self._peek() is not None:
            raise CFSyntaxError(f"unexpected {self._peek().text!r} after the rule")
        return rule

    def _rule(self) -> Rule:
        tok = self._peek()
        if tok is None or tok.kind != "operator":
            found = "the end of the rule" if tok is None else repr(tok.text)
            raise CFSyntaxError(f"expected an operator such as TextEquals(...), found {found}")
        op = OPERATORS.get(tok.text.lower())
        if op is None:
            kind = "a value function, not a rule" if tok.text.lower() in VALUE_FUNCTIONS else "unknown operator"
            raise CFSyntaxError(f"{tok.text!r}: {kind}")
        self.i += 1
        return _build(op, self._args(), self.text)

    def _args(self) -> list:
        self._expect("(")
        self.depth += 1
        if self.depth > MAX_DEPTH:  # keeps recursion far from Python's limit on adversarial input
            raise CFSyntaxError(f"rule nested more than {MAX_DEPTH} levels deep")
        args = []
        if self._peek() is not None and self._peek().text == ")":
            self.i += 1
        else:
            while True:
                args.append(self._arg())
                tok = self._peek()
                if tok is None or tok.text != ",":
                    break
                self.i += 1
            self._expect(")")
        self.depth -= 1
        return args

    def _arg(self):
        tok = self._peek()
        if tok is None:
            raise CFSyntaxError("unbalanced parentheses: the rule ends inside an argument list")
        nxt = self.toks[self.i + 1].text if self.i + 1 < len(self.toks) else None
        if tok.kind == "operator":
            if tok.text.lower() in VALUE_FUNCTIONS:
                self.i += 1
                inner = self._args()
                if len(inner) != 1:
                    raise CFSyntaxError(f"{tok.text}() takes one argument")
                return Len(_value(inner[0]))
            return self._rule()
        if tok.kind == "column" and nxt in (",", ")"):
            self.i += 1
            return Column(int(tok.text[2:-1].strip()))
        if tok.kind == "string" and (len(tok.text) < 2 or tok.text[-1] != tok.text[0]):
            raise CFSyntaxError(f"unterminated string {tok.text[:20]!r}")
        if tok.kind == "string" and nxt in (",", ")"):
            self.i += 1
            return Literal(to_cell(tok.text[1:-1]))  # '37' compares as a number, like 37
        # unquoted text: everything up to the next top-level ',' or ')'
        run = []
        while self._peek() is not None and self._peek().text not in (",", ")"):
            t = self._peek()
            if t.kind in ("string", "operator", "column") or t.text == "(":
                where = f"after {run[-1].text!r}" if run else "at the start of an argument"
                raise CFSyntaxError(f"malformed argument: unexpected {t.text[:20]!r} {where}")
            run.append(t)
            self.i += 1
        if not run:
            raise CFSyntaxError("empty argument")
        return _Bare(self.text[run[0].start:run[-1].end], run[0].start, run[-1].end, tuple(run))


def _no_sheet_cell(arg: _Bare) -> _Bare:
    # `GreaterThan($E$13)` compares with a cell of the user's sheet, which the task's table lacks
    if len(arg.tokens) == 1 and arg.tokens[0].kind == "cell":
        raise CFSyntaxError(f"{arg.raw} refers to a sheet cell outside the rule's table")
    return arg


def _value(arg):
    """An argument used as a value: a column, LEN(...) or a constant."""
    if isinstance(arg, (Column, Len, Literal)):
        return arg
    if isinstance(arg, _Bare):
        return Literal(to_cell(_no_sheet_cell(arg).raw))
    raise CFSyntaxError(f"a rule ({arg.op}) cannot be used as a value")


def _subject(arg):
    if not isinstance(arg, (Column, Len)):
        raise CFSyntaxError("the first of several arguments must be a column reference like c[1] or LEN(c[1])")
    return arg


def _build(op: str, args: list, source: str) -> Rule:
    if op in LOGIC:
        if not args or not all(isinstance(a, Rule) for a in args) or (op == "NOT" and len(args) != 1):
            raise CFSyntaxError(f"{op} takes {'one rule' if op == 'NOT' else 'rules'} as arguments")
        nested = [c.op for c in args if c.op in SCALES]
        if nested:
            raise CFSyntaxError(f"{nested[0]} formats a whole range and cannot be combined with {op}")
        return Rule(op, children=tuple(args))
    if op in COMPARE or op == "Between":
        want = 2 if op == "Between" else 1
        if len(args) not in (want, want + 1):
            raise CFSyntaxError(f"{op} takes {want} value(s), optionally after a column")
        subject = _subject(args[0]) if len(args) == want + 1 else None
        return Rule(op, subject=subject, values=tuple(_value(a) for a in args[len(args) - want:]))
    if op in TEXT_OPS:
        subject = None
        if args and isinstance(args[0], (Column, Len)):
            subject, args = args[0], args[1:]
        if not args:
            return Rule(op, subject=subject, text="")
        if len(args) == 1 and isinstance(args[0], Literal):
            return Rule(op, subject=subject, text=args[0].cell.text)
        if all(isinstance(a, _Bare) for a in args):  # unquoted text, maybe with commas in it
            _no_sheet_cell(args[0])
            return Rule(op, subject=subject, text=source[args[0].start:args[-1].end])
        raise CFSyntaxError(f"{op} takes one text, optionally after a column")
    subject = args.pop(0) if args and isinstance(args[0], Column) else None
    if op in RANKS:
        n, percent = None, op.endswith("Percent")
        if args:
            if len(args) > 1 or not isinstance(args[0], _Bare):
                raise CFSyntaxError(f"{op} takes a count (or a percentage), optionally after a column")
            raw = args[0].raw.replace(" ", "")
            percent = percent or raw.endswith("%")
            n = _parse_number(raw.rstrip("%"))
            if n is None or n <= 0 or (not percent and not n.is_integer()) or (percent and n > 100):
                raise CFSyntaxError(f"{op}: {args[0].raw!r} is not a valid {'percentage' if percent else 'count'}")
        return Rule(op.removesuffix("Percent") + ("Percent" if percent else ""), subject=subject, n=n)
    if args:
        raise CFSyntaxError(f"{op} takes at most a column reference like c[1]")
    return Rule(op, subject=subject)


def parse_rule(text: str) -> Rule:
    """Parse a rule into its tree; raises CFSyntaxError with a readable reason."""
    if not isinstance(text, str):
        raise CFSyntaxError("a rule must be a string")
    return _Parser(text).parse()


def is_valid_rule(text: str) -> bool:
    """Syntactic validity: the rule parses (known operators, right arguments)."""
    try:
        parse_rule(text)
    except CFSyntaxError:
        return False
    return True


# ----------------------------------------------------------------------------- grounding

MAX_SPAN_WORDS = 8  # the longest request span a literal may be grounded to (gold text arguments run to 7 words)
_LEAF_CALL_RE = re.compile(r"(\w+)\s*\(([^()]*)(\)|$)")   # a call without nested calls; ')' may be missing at the end
_REQUEST_WORD_RE = re.compile(r"[^\s\"'“”]+")
_QUOTED_RE = re.compile(r"[\"'“”]([^\"'“”]+)[\"'“”]")
_KEEP_ARG_RE = re.compile(r"^(?:[cC]\[\s*\d+\s*\]|\$.*|.*%)$")   # columns, cells, percentages: not literals
_SUBJECT_RE = re.compile(r"^\s*[cC]\[\s*\d+\s*\]\s*,\s*")
_REQUEST_NUMBER_RE = re.compile(r"[+-]?\d+(?:[.,]\d+)*")


@lru_cache(maxsize=256)   # every candidate of one request is grounded to the same spans
def request_spans(request: str) -> tuple[frozenset[str], frozenset[str]]:
    """What a rule's literals may be grounded to: the request's spans of up to MAX_SPAN_WORDS words (edge
    punctuation stripped) and quoted pieces, and the numbers it writes."""
    words = _REQUEST_WORD_RE.findall(request)
    spans = {" ".join(words[i:i + n]).strip(".,;:?!()") for i in range(len(words))
             for n in range(1, min(MAX_SPAN_WORDS, len(words) - i) + 1)}
    spans |= {q.strip() for q in _QUOTED_RE.findall(request)}
    return frozenset(s for s in spans if s), frozenset(_REQUEST_NUMBER_RE.findall(request))


def _closest(text: str, pool: frozenset[str], prefix_first: bool) -> str:
    """The pool's member most similar to `text` (ties: closest in length, then the first in sorted order). For
    numbers the longest shared prefix comes first: a garbled number keeps its first pieces (GreaterThan(9000)
    for 900000), which a plain similarity ratio weighs no more than its last."""
    low = text.lower()
    best, best_key = "", None
    matcher = difflib.SequenceMatcher(None, low)   # ratio() is not symmetric: `low` stays the first sequence
    for s in sorted(pool):
        prefix = len(os.path.commonprefix([low, s.lower()])) if prefix_first else 0
        matcher.set_seq2(s.lower())
        if best_key is not None and (prefix, matcher.real_quick_ratio()) < best_key[:2]:
            continue   # an upper bound of its ratio already loses: a long request costs no full comparison per span
        key = (prefix, matcher.ratio(), -abs(len(s) - len(text)))
        if best_key is None or key > best_key:
            best, best_key = s, key
    return best


def _ground_argument(arg: str, spans: frozenset[str], numbers: frozenset[str]) -> str:
    core = arg.strip()
    quote = core[0] if core[:1] in ("'", '"') else ""
    core = core.strip("'\"").strip()
    if not core or _KEEP_ARG_RE.match(core):
        return arg
    is_number = bool(_NUMBER_RE.match(core))
    pool = numbers if is_number else spans
    if not pool or core.lower() in {s.lower() for s in pool}:
        return arg   # nothing to ground to, or already a piece of the request
    return f"{quote}{_closest(core, pool, prefix_first=is_number)}{quote}"


def ground_literals(rule: str, request: str) -> str:
    """Round a generated rule's literal arguments to the request (a decoding step, like rounding an embedding to
    its nearest token): each text argument becomes the most similar span of the request, each number the most
    similar number it writes, unclosed calls are closed and what follows the rule's outermost call is dropped (the
    model writes past its end: `TextEquals(Asain))ian`). Literals already in the request, column references,
    cells and percentages are kept; so is a number when the request writes none ("top ten" -> Top(10)).

    Why: a diffusion model writes all positions at once, so a literal of several pieces copied from the request
    comes out garbled (`TextContains(lBullBululltainBul` for "... contain Bull"); most CF literals are spelt in
    the request (108 of the 117 test rules with arguments), so the closest span is usually the one meant."""
    spans, numbers = request_spans(request)

    def leaf(m: re.Match) -> str:
        op, args = m.group(1), m.group(2)
        if op.lower() in VALUE_FUNCTIONS:
            return m.group(0)
        subject = _SUBJECT_RE.match(args)   # a leading column reference is kept as it is
        head, args = (subject.group(0), args[subject.end():]) if subject else ("", args)
        # a text operator's unquoted argument runs to ')' with its commas; other operators' arguments split at ','
        parts = [args] if OPERATORS.get(op.lower()) in TEXT_OPS else args.split(",")
        new = [_ground_argument(p, spans, numbers) for p in parts]
        if new == parts and m.group(3):
            return m.group(0)   # nothing to change: the model's own spelling stays
        return f"{op}({head}{', '.join(p.strip() for p in new)})"

    grounded = _LEAF_CALL_RE.sub(leaf, rule.strip())
    grounded += ")" * max(0, grounded.count("(") - grounded.count(")"))
    return grounded[:_end_of_first_call(grounded)].rstrip()


def _end_of_first_call(rule: str) -> int:
    """Where the rule's outermost call closes (the lexer's tokens, so a ')' inside a quoted argument does not
    count), or its length: a rule is one call, and what the model writes past it is not part of it."""
    depth = 0
    for tok in lex_rule(rule):
        if tok.text == "(":
            depth += 1
        elif tok.text == ")" and depth:
            depth -= 1
            if depth == 0:
                return tok.end
    return len(rule)


# ----------------------------------------------------------------------------- interpreter

@dataclass(frozen=True)
class CFResult:
    """Outcome of running a rule on a table.

    ok: whether it could run; reason: why not. cells: the formatted (row, column) positions, with
    row counted in the table as given (the header is row 0, data starts at 1). style: "highlight",
    or "colorscale"/"databar"/"iconset" for the range-wide formats.
    """

    ok: bool
    cells: frozenset = frozenset()
    style: str = "highlight"
    reason: str | None = None


def _columns_of(expr) -> set[int]:
    if isinstance(expr, Column):
        return {expr.index}
    if isinstance(expr, Len):
        return _columns_of(expr.arg)
    return set()


def _all_columns(node: Rule) -> set[int]:
    cols = _columns_of(node.subject)
    for v in node.values:
        cols |= _columns_of(v)
    for child in node.children:
        cols |= _all_columns(child)
    return cols


def _range_columns(node: Rule, default: list[int]) -> set[int]:
    if node.children:
        return set().union(*(_range_columns(c, default) for c in node.children))
    return _columns_of(node.subject) or set(default)


def _default_columns(header: list, width: int) -> list[int]:
    if width >= 2 and header and str(header[0]).strip().lower() == "index":
        return [1]
    return list(range(width))


class _Interpreter:
    def __init__(self, grid: list[list[Cell]], default: list[int]):
        self.grid = grid
        self.default = default

    def value(self, expr):
        """Compile a value expression to f(row, col) -> Cell."""
        if expr is None:
            return lambda r, c: self.grid[r][c]
        if isinstance(expr, Column):
            return lambda r, c: self.grid[r][expr.index]
        if isinstance(expr, Len):
            inner = self.value(expr.arg)

            def length(r, c):
                cell = inner(r, c)
                return cell if cell.kind == "error" else Cell("number", str(len(cell.text)), float(len(cell.text)))
            return length
        return lambda r, c: expr.cell

    def predicate(self, node: Rule):
        """Compile a rule to f(row, col) -> bool for the cell at `col` of the range."""
        op = node.op
        if op in LOGIC:
            parts = [self.predicate(c) for c in node.children]
            if op == "AND":
                return lambda r, c: all(p(r, c) for p in parts)
            if op == "OR":
                return lambda r, c: any(p(r, c) for p in parts)
            return lambda r, c: not parts[0](r, c)
        subject = self.value(node.subject)
        if op in COMPARE or op == "Between":
            values = [self.value(v) for v in node.values]
            return lambda r, c: _compare(op, subject(r, c), [v(r, c) for v in values])
        if op in TEXT_OPS:
            needle = node.text.casefold()
            test = {"TextEquals": str.__eq__, "TextContains": lambda s, t: t in s,
                    "TextStartsWith": str.startswith, "TextEndsWith": str.endswith}[op]
            return lambda r, c: (cell := subject(r, c)).kind != "error" and test(cell.text.casefold(), needle)
        # range-wide operators: compute the selected positions once
        if node.subject is not None:
            k = node.subject.index
            positions = [(r, k) for r in range(len(self.grid))]
            selected = _select(node, [(p, self.grid[p[0]][p[1]]) for p in positions])
            return lambda r, c: (r, k) in selected
        positions = [(r, c) for r in range(len(self.grid)) for c in self.default]
        selected = _select(node, [(p, self.grid[p[0]][p[1]]) for p in positions])
        return lambda r, c: (r, c) in selected


def _compare(op: str, cell: Cell, values: list[Cell]) -> bool:
    # a number is never compared with text: GreaterThan(10) leaves text cells alone
    if any(v.kind != cell.kind for v in values) or cell.kind not in ("number", "text"):
        return False
    key = _sort_key(cell)
    if op == "Between":
        lo, hi = sorted((_sort_key(v) for v in values))
        return lo <= key <= hi
    other = _sort_key(values[0])
    return {"Equals": key == other, "NotEquals": key != other, "GreaterThan": key > other,
            "GreaterThanEqual": key >= other, "LessThan": key < other, "LessThanEqual": key <= other}[op]


def _select(node: Rule, cells: list[tuple]) -> set:
    """Positions a range-wide operator formats among (position, Cell) pairs."""
    op = node.op
    numeric = [(p, c.num) for p, c in cells if c.kind == "number"]
    if op == "Blanks":
        return {p for p, c in cells if c.kind == "blank"}
    if op == "Errors":
        return {p for p, c in cells if c.kind == "error"}
    if op in SCALES:
        return {p for p, _ in numeric}
    if op == "Duplicates":
        keys = [(p, _sort_key(c)) for p, c in cells if c.kind in ("number", "text")]
        counts: dict = {}
        for _, k in keys:
            counts[k] = counts.get(k, 0) + 1
        return {p for p, k in keys if counts[k] > 1}
    if not numeric:
        return set()
    if op in ("AboveAverage", "BelowAverage"):
        mean = sum(v for _, v in numeric) / len(numeric)
        return {p for p, v in numeric if (v > mean if op == "AboveAverage" else v < mean)}
    if op in RANKS:
        n = node.n if node.n is not None else DEFAULT_RANK
        count = max(1, int(len(numeric) * n / 100)) if op.endswith("Percent") else int(n)
        top = op.startswith("Top")
        ranked = sorted((v for _, v in numeric), reverse=top)
        cut = ranked[min(count, len(ranked)) - 1]
        return {p for p, v in numeric if (v >= cut if top else v <= cut)}
    if op in MONTHS:
        dated = [(p, _EXCEL_EPOCH + timedelta(days=int(v))) for p, v in numeric if 1 <= v < 2958466]
        if not dated:
            return set()
        newest = max(d for _, d in dated)
        month = newest.year * 12 + newest.month - 1 + MONTHS[op]
        return {p for p, d in dated if d.year * 12 + d.month - 1 == month}
    raise AssertionError(f"no semantics for {op}")  # every parsed operator is handled above


def _grid(table) -> tuple[list, list[list[Cell]]] | str:
    if not isinstance(table, list) or not table or not all(isinstance(r, (list, tuple)) for r in table):
        return "cannot execute: the table must be a non-empty list of rows (header first)"
    width = max(len(r) for r in table)
    grid = [[to_cell(r[j]) if j < len(r) else BLANK for j in range(width)] for r in table[1:]]
    return list(table[0]), grid


def run_rule(node: Rule, table) -> CFResult:
    """Run an already parsed rule on `table` (no probe rows)."""
    built = _grid(table)
    if isinstance(built, str):
        return CFResult(False, reason=built)
    header, grid = built
    width = max(len(r) for r in table)
    outside = sorted(k for k in _all_columns(node) if k >= width)
    if outside:
        return CFResult(False, reason=f"cannot execute: c[{outside[0]}] is outside the table ({width} columns)")
    default = _default_columns(header, width)
    pred = _Interpreter(grid, default).predicate(node)
    columns = sorted(_range_columns(node, default))
    cells = frozenset((r + 1, c) for r in range(len(grid)) for c in columns if pred(r, c))
    return CFResult(True, cells, node.op.lower() if node.op in SCALES else "highlight")


def execute_rule(rule: str, table) -> CFResult:
    """Run a rule on a table; never raises: a malformed rule gives ok=False and the reason."""
    try:
        node = parse_rule(rule)
    except CFSyntaxError as e:
        return CFResult(False, reason=f"cannot execute: {e}")
    return run_rule(node, table)


# ----------------------------------------------------------------------------- probe tables

def _walk(node: Rule):
    yield node
    for child in node.children:
        yield from _walk(child)


def _literals(expr):
    if isinstance(expr, Literal):
        yield expr.cell
    elif isinstance(expr, Len):
        yield from _literals(expr.arg)


def _probe_number(x) -> bool:
    """A constant that may seed probe values: finite and not huge (abs(nan) < x is False)."""
    return x is not None and abs(x) < MAX_PROBE_NUMBER


def _probe_values(nodes: list[Rule], rng: random.Random) -> list:
    """Mixed-type values that separate rules built from these nodes' constants."""
    nums, texts, ranks, dated = {0.0, 1.0, 100.0}, set(), [DEFAULT_RANK], False
    for node in (n for root in nodes for n in _walk(root)):
        for cell in (c for v in (node.subject, *node.values) for c in _literals(v)):
            if cell.kind == "number" and _probe_number(cell.num):
                nums.add(cell.num)
            elif cell.kind == "text":
                texts.add(cell.text)
        if node.text:
            texts.add(node.text)
            num = to_cell(node.text).num
            if _probe_number(num):
                nums.add(num)
        if node.op in RANKS and _probe_number(node.n):
            ranks.append(min(int(node.n), MAX_PROBE_RANK))
        dated = dated or node.op in MONTHS
    ordered = sorted(nums)
    values = set(ordered)
    for x in ordered:
        d = max(abs(x) * 0.01, 0.01)
        values |= {x - d, x + d}
    values |= {(a + b) / 2 for a, b in zip(ordered, ordered[1:])}
    lo, hi = ordered[0] - 1 - abs(ordered[0]), ordered[-1] + 1 + abs(ordered[-1])
    values |= {lo, hi}
    need = max(40, 2 * max(ranks) + 2)  # enough distinct numbers to tell top-n from top-m
    for _ in range(100 * need):  # bounded: a generated rule must never hang the evaluator
        if len(values) >= need:
            break
        values.add(round(rng.uniform(lo, hi), 3))
    pool: list = [int(v) if float(v).is_integer() else round(v, 6) for v in sorted(values)]
    for s in sorted(texts):
        pool += list(dict.fromkeys([s, s.upper(), s.lower(), f"pre {s}", f"{s} post", f"pre {s} post"]))
    if dated:
        pool += ["2022-10-15", "2022-11-05", "2022-11-25", "2022-12-10", "2023-01-15", "2023-02-01"]
    pool += ["other", "Other text", "", "", "#DIV/0!", "#N/A"]
    pool += [pool[0], pool[len(pool) // 2]]  # duplicates
    return pool


def _nudge(value, block: int):
    if isinstance(value, (int, float)):
        return value + block * 1e-9 * max(1.0, abs(value))
    return value


def probe_table(table, rules: list[str], seed: int = 0) -> list:
    """`table` (header plus its rows) followed by probe rows built from the rules' constants.

    The probe rows depend only on the rules' constants and the seed: one "diagonal" block where
    every column holds the same value (so AND over columns can hold), then two blocks where each
    column is shuffled independently. Numbers in the shuffled blocks are nudged by a relative 1e-9
    so that no number repeats across blocks: ties would make Top(10) and Top(11) agree.
    A leading Index column keeps counting.
    """
    table = table if isinstance(table, list) and table else [["Index", "Value"]]
    nodes = []
    for rule in rules:
        try:
            nodes.append(parse_rule(rule))
        except CFSyntaxError:
            continue
    rng = random.Random(seed)
    pool = _probe_values(nodes, rng)
    width = max(len(r) for r in table)
    indexed = _default_columns(table[0], width) == [1]
    blocks = [[pool] * width] + [[[_nudge(v, b) for v in rng.sample(pool, len(pool))] for _ in range(width)]
                                 for b in (1, 2)]
    rows = [list(r) + [""] * (width - len(r)) for r in table]
    for block in blocks:
        for i in range(len(pool)):
            row = [block[j][i] for j in range(width)]
            if indexed:
                row[0] = len(rows) - 1
            rows.append(row)
    return rows


@dataclass(frozen=True)
class MatchResult:
    """Execution match of a candidate against the gold rule; `probed`: probe rows were added."""

    match: bool
    candidate: CFResult
    gold: CFResult
    probed: bool


def execution_match(candidate: str, gold: str, table, seed: int = 0) -> MatchResult:
    """Whether `candidate` formats the same cells (and style) as `gold` on `table`.

    Probe rows are added when the table has fewer than MIN_DATA_ROWS data rows, or when the gold
    rule formats no cell of it: an empty selection cannot tell rules apart either.
    """
    gold_res = execute_rule(gold, table)
    small = not isinstance(table, list) or len(table) - 1 < MIN_DATA_ROWS
    probed = small or (gold_res.ok and not gold_res.cells)
    if probed:
        table = probe_table(table, [candidate, gold], seed)
        gold_res = execute_rule(gold, table)
    cand_res = execute_rule(candidate, table)
    same = gold_res.ok and cand_res.ok and (gold_res.style, gold_res.cells) == (cand_res.style, cand_res.cells)
    return MatchResult(same, cand_res, gold_res, probed)


def check_gold(rule: str, table, seed: int = 0) -> CFResult:
    """Run a gold rule as the evaluator does (with probe rows where execution_match adds them)."""
    return execution_match(rule, rule, table, seed).gold


@dataclass
class Coverage:
    """How many gold rules the interpreter executes, and why the others fail."""

    total: int
    executed: int
    failures: list  # (id, rule, reason)

    @property
    def share(self) -> float:
        return 100.0 * self.executed / self.total if self.total else 0.0


def coverage(examples) -> Coverage:
    """Coverage of the interpreter over examples with `.id`, `.code` and `.data`."""
    failures = []
    for ex in examples:
        res = check_gold(ex.code, ex.data)
        if not res.ok:
            failures.append((ex.id, ex.code, res.reason))
    return Coverage(len(examples), len(examples) - len(failures), failures)


def main(argv: list[str] | None = None) -> int:
    """`python -m codefusion.cf [--data-dir DIR]`: print the interpreter's coverage of the gold rules."""
    import argparse

    from codefusion.data import load_benchmark
    from codefusion.errors import run_cli

    parser = argparse.ArgumentParser(prog="python -m codefusion.cf", description=main.__doc__)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    def body():
        for split in ("train", "test"):
            cov = coverage(load_benchmark("cf", split, args.data_dir))
            print(f"{split}: {cov.executed}/{cov.total} gold rules execute ({cov.share:.1f}%)")
            for ex_id, rule, reason in cov.failures:
                print(f"  id {ex_id}: {rule[:70]!r}: {reason}")
    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
