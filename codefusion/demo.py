"""View helpers for the Gradio app (`app.py`): highlighting, token diffs, tables, plots and JSON export.

Everything here is pure Python over the sampler's `Frame`s and `Candidate`s; no model logic lives
here (sampling is `codefusion.sampler`, validity and edit distance `codefusion.metrics`, CF rule
execution `codefusion.cf`). All text that came from a user or a model is HTML-escaped, including
`$ { } \u0060`, because gr.HTML runs its value through a template engine before it reaches the DOM.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache, partial

from pygments.lexer import RegexLexer
from pygments.lexers import BashLexer, PythonLexer
from pygments.token import (STANDARD_TYPES, Name, Number, Punctuation, String, Text, Token, Whitespace)

from codefusion import LANGUAGE_NAMES, cf, metrics
from codefusion.bash import fill_arguments

# One colour per noise draw, shared by the code cards and the plots (up to 16 draws).
PALETTE = ["#6366f1", "#f59e0b", "#10b981", "#ef4444", "#06b6d4", "#a855f7", "#84cc16", "#f97316",
           "#14b8a6", "#ec4899", "#3b82f6", "#eab308", "#22c55e", "#e11d48", "#0ea5e9", "#8b5cf6"]
LOW_PROB = 0.5          # tokens H is less sure of than this get a dotted underline
MAX_TABLE_ROWS = 8      # CF sample tables shown per candidate
MAX_TABLE_COLS = 5

VIEW_EXPLANATIONS = {
    "decoder": ("<b>Decoder view</b>: what the model would answer if it stopped now: the current clean estimate "
                "x&#770;<sub>0</sub> read out through the decoder D and the head H, the path the paper uses for "
                "its final program. For CF rules a line below it shows the rule with its constants grounded to "
                "the request (the closest words or numbers you wrote), when that changes it; for a Bash model "
                "that writes templates, the command with each ARG filled from the request."),
    "rounding": ("<b>Rounding view</b>: each position of the noisy x<sub>t</sub> snapped to its nearest token "
                 "embedding (Diffusion-LM's rounding); it stays noisy until the very last steps, which is why "
                 "the paper puts a decoder before rounding."),
}


def esc(text) -> str:
    """HTML-escape, and neutralise the characters gr.HTML's template engine would interpret."""
    return (html.escape(str(text), quote=True).replace("$", "&#36;").replace("{", "&#123;")
            .replace("}", "&#125;").replace("`", "&#96;"))


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# ----------------------------------------------------------------------------- syntax highlighting

class CFRuleLexer(RegexLexer):
    """The CF benchmark's rule language: calls like `GreaterThan(c[3], 18)` or `TextEquals(In Progress)`."""

    name = "CF rules"
    aliases = ["cfrule"]
    tokens = {"root": [
        (r"\s+", Whitespace),
        (r"c\[\d+\]", Name.Variable),
        (r"[A-Za-z_]\w*(?=\s*\()", Name.Function),
        (r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?(?=\s*[,)]|\s*$)", Number),
        (r"'[^']*'?|\"[^\"]*\"?", String),
        (r"[(),\[\]]", Punctuation),
        (r"[^(),\s]+", String.Other),
    ]}


@lru_cache(maxsize=None)
def _lexer(lang: str):
    opts = dict(stripnl=False, ensurenl=False, tabsize=0)
    if lang == "python":
        return PythonLexer(**opts)
    if lang == "bash":
        return BashLexer(**opts)
    return CFRuleLexer(**opts)


def _css_class(ttype) -> str:
    while ttype not in STANDARD_TYPES and ttype.parent is not None:
        ttype = ttype.parent
    return STANDARD_TYPES.get(ttype, "")


_BASH_SEPARATORS = {"|", "||", "&&", ";", "$(", "`", "(", "&"}


def char_classes(text: str, lang: str) -> list[str]:
    """A pygments CSS class (short name, e.g. 'k', 's2', 'nf') for every character of `text`."""
    classes = [""] * len(text)
    command_next = True
    try:
        spans = list(_lexer(lang).get_tokens_unprocessed(text))
    except Exception:  # a lexer must never break the page
        return classes
    for start, ttype, value in spans:
        cls = _css_class(ttype)
        if lang == "bash" and ttype in Text and value.strip():
            # pygments' BashLexer leaves commands and flags as plain text: give them colours.
            if value.startswith("-"):
                cls = "na"
            elif command_next:
                cls = "nb"
            command_next = False
        if lang == "bash" and (value.strip() in _BASH_SEPARATORS or ttype in Token.Keyword):
            command_next = True
        for j in range(start, min(start + len(value), len(text))):
            classes[j] = cls
    return classes


def _runs(text: str, classes: list[str]) -> str:
    out, i = [], 0
    while i < len(text):
        j = i
        while j < len(text) and classes[j] == classes[i]:
            j += 1
        piece = esc(text[i:j])
        out.append(f'<span class="{classes[i]}">{piece}</span>' if classes[i] else piece)
        i = j
    return "".join(out)


def code_html(tokens: list[str], lang: str, changed: list[bool] | None = None, probs: list[float] | None = None) -> str:
    """Model tokens as highlighted HTML: each token a span (marked `chg` when it changed this step,
    `lo` when H gave it a low probability), split further into pygments colour runs."""
    if not tokens:
        return '<span class="cf-empty">(empty: every position is padding)</span>'
    text = "".join(tokens)
    classes = char_classes(text, lang)
    out, pos = [], 0
    for i, tok in enumerate(tokens):
        cls = ["tk"]
        if changed is not None and i < len(changed) and changed[i]:
            cls.append("chg")
        title = ""
        if probs is not None and i < len(probs):
            if probs[i] < LOW_PROB:
                cls.append("lo")
            title = f' title="p = {probs[i]:.2f}"'
        out.append(f'<span class="{" ".join(cls)}"{title}>{_runs(tok, classes[pos:pos + len(tok)])}</span>')
        pos += len(tok)
    return "".join(out)


def changed_mask(now: list, before: list | None) -> list[bool]:
    """Which positions differ from the previous step (every position is new at step 1)."""
    if before is None:
        return [True] * len(now)
    return [i >= len(before) or now[i] != before[i] for i in range(len(now))]


# ----------------------------------------------------------------------------- CF tables

def cf_display_table(table: list | None, rules: list[str]) -> list:
    """The table a CF rule is shown on: the task's own when it has data rows, else the interpreter's
    probe rows built from the rules' constants (so the rule has something to format), trimmed."""
    rows = table if isinstance(table, list) and table else [["Index", "Value"]]
    if len(rows) < 3:
        rows = cf.probe_table(rows, [r for r in rules if r], seed=0)
    return rows


def _shade(t: float) -> str:
    """Colour-scale fill from red (low) through yellow to green (high), as Excel's default 3-colour scale."""
    t = min(max(t, 0.0), 1.0)
    lo, mid, hi = (248, 105, 107), (255, 235, 132), (99, 190, 123)
    a, b, u = (lo, mid, t * 2) if t < 0.5 else (mid, hi, t * 2 - 1)
    return "rgb({},{},{})".format(*(round(x + (y - x) * u) for x, y in zip(a, b)))


def cf_table_html(rule: str, table: list) -> str:
    """The rule run on `table` by codefusion.cf, formatted cells highlighted (colour scales, data bars
    and icon sets drawn roughly as a spreadsheet would)."""
    res = cf.execute_rule(rule, table)
    if not res.ok:
        return f'<div class="cf-table-msg">cannot run on the sample table: {esc(res.reason)}</div>'
    rows = table[: MAX_TABLE_ROWS + 1]
    width = min(max(len(r) for r in rows), MAX_TABLE_COLS)
    nums = {}
    for (r, c) in res.cells:
        cell = cf.to_cell(table[r][c]) if c < len(table[r]) else None
        if cell is not None and cell.num is not None:
            nums[(r, c)] = cell.num
    lo, hi = (min(nums.values()), max(nums.values())) if nums else (0.0, 1.0)
    span = (hi - lo) or 1.0
    parts = ['<table class="cf-table"><thead><tr>']
    parts += [f"<th>{esc(h)}</th>" for h in list(rows[0])[:width]]
    parts.append("</tr></thead><tbody>")
    for r, row in enumerate(rows[1:], start=1):
        parts.append("<tr>")
        for c in range(width):
            value = row[c] if c < len(row) else ""
            text = esc("" if value is None else (f"{value:.4g}" if isinstance(value, float) else value))
            if (r, c) not in res.cells:
                parts.append(f"<td>{text}</td>")
            elif res.style == "colorscale" and (r, c) in nums:
                parts.append(f'<td class="hit" style="background:{_shade((nums[(r, c)] - lo) / span)};color:#111">{text}</td>')
            elif res.style == "databar" and (r, c) in nums:
                w = 100 * (nums[(r, c)] - min(lo, 0)) / ((hi - min(lo, 0)) or 1.0)
                parts.append(f'<td class="hit bar" style="background:linear-gradient(90deg,#60a5fa {w:.0f}%,'
                             f'transparent {w:.0f}%)">{text}</td>')
            elif res.style == "iconset" and (r, c) in nums:
                t = (nums[(r, c)] - lo) / span
                icon = "&#9650;" if t > 2 / 3 else ("&#9654;" if t > 1 / 3 else "&#9660;")
                parts.append(f'<td class="hit icon">{icon} {text}</td>')
            else:
                parts.append(f'<td class="hit">{text}</td>')
        parts.append("</tr>")
    parts.append("</tbody></table>")
    more = len(table) - 1 - (len(rows) - 1)
    n_hit = len(res.cells)
    note = f"{n_hit} cell{'s' if n_hit != 1 else ''} formatted" + (f" ({more} more rows not shown)" if more > 0 else "")
    return "".join(parts) + f'<div class="cf-table-msg">{note}</div>'


# ----------------------------------------------------------------------------- frames as HTML

@dataclass
class RunInfo:
    """What a rendered frame needs besides the frames themselves."""

    lang: str
    T: int = 1200
    gold: str | None = None           # reference program when the prompt came from the benchmark/examples
    gold_source: str = ""             # "benchmark" or "example"
    table: list | None = None         # CF: the task's own table (execution match against the gold rule)
    sheet: list | None = None         # CF: the table every candidate rule is shown on
    prompt: str = ""
    settings: dict = field(default_factory=dict)


def ranks(candidates, valid=None, scores=None) -> list[int]:
    """1-based rank of each candidate by score (best first), in noise-draw order. valid (a function of the
    text): the programs it accepts first, each part by score (`sampler.rank`'s "parsing first"). scores: used
    instead of the candidates' own (the mean-score ranking's)."""
    scores = [c.score for c in candidates] if scores is None else scores
    accepted = [True if valid is None else valid(c.text) for c in candidates]
    order = sorted(range(len(candidates)), key=lambda i: (not accepted[i], -scores[i]))
    out = [0] * len(candidates)
    for r, i in enumerate(order, start=1):
        out[i] = r
    return out


@lru_cache(maxsize=4096)
def valid(lang: str, text: str) -> bool:
    return bool(text.strip()) and metrics.is_valid(lang, text)


@lru_cache(maxsize=4096)
def grounded(lang: str, prompt: str, text: str) -> str:
    """The program with its literals taken from the request, or "" when that changes nothing (and for Python):
    a CF rule's constants grounded (`cf.ground_literals`, what `evaluate --ground-literals` scores), a Bash
    template's ARG placeholders filled (`bash.fill_arguments`, a display aid: template match ignores arguments)."""
    if lang not in GROUNDING or not text.strip():
        return ""
    out = GROUNDING[lang][0](text, prompt)
    return "" if out == text else out


# language -> (function of (program, request), label, what the badges speak of, tooltip) for `grounded`
GROUNDING = {
    "cf": (cf.ground_literals, "grounded to the request", "the grounded rule",
           "the decoder output with its constants rounded to the closest words or numbers of the request, as "
           "evaluate --ground-literals scores it"),
    "bash": (fill_arguments, "arguments from the request", "the filled command",
             "the template with each ARG filled from the request's paths, file names, numbers and quoted strings "
             "(ARG where the request gives none); a display aid: template match ignores arguments"),
}


VALID_FIRST = "valid-first"   # a run's settings["ranking"] asking for the programs that parse first
MEAN_SCORE = "mean-score"     # ... asking for each draw's score averaged over the steps (sampler's rank_by name)
RANK_LABELS = {VALID_FIRST: "parsing first, then by score", MEAN_SCORE: "by mean score over the steps"}


def mean_scores(frames: list) -> list[float]:
    """Each draw's score averaged over these frames: over a finished run's, what `sampler.generate(...,
    rank_by="mean-score")` ranks by (the frames carry every step's score, so no model call is needed)."""
    return [sum(f.candidates[i].score for f in frames) / len(frames) for i in range(len(frames[-1].candidates))]


def run_ranks(frames: list, info: RunInfo, means: list[float] | None = None) -> list[int]:
    """The ranks the page shows for the last of `frames` (a run up to the step shown): by score, by the score
    averaged over those steps, or parsing programs first, as the run asked. means: `mean_scores(frames)`, when
    the caller has it already."""
    ranking = info.settings.get("ranking")
    if ranking == MEAN_SCORE and means is None:
        means = mean_scores(frames)
    return ranks(frames[-1].candidates, partial(valid, info.lang) if ranking == VALID_FIRST else None,
                 means if ranking == MEAN_SCORE else None)


def rank_label(info: RunInfo) -> str:
    return RANK_LABELS.get(info.settings.get("ranking"), "by score")


def _badges(lang: str, cand, rank: int, k: int, changed: tuple[int, int], gold: str | None, info: RunInfo,
            mean: float | None = None) -> str:
    """Validity, match with the reference, score, rank (all of the decoder view's program; dimmed in the
    rounding view) and the number of tokens that changed in this step (one per view)."""
    b = _check_badges(lang, cand.text, gold, info, "the decoder output", "badge dim")
    if mean is None:
        b.append(f'<span class="badge dim score" title="mean log-probability of its tokens (ranking score)">'
                 f'score {cand.score:.2f}</span>')
    else:
        b.append(f'<span class="badge dim score" title="mean log-probability of its tokens at this step, and its mean '
                 f'over the steps so far (ranking score)">score {cand.score:.2f} &middot; mean {mean:.2f}</span>')
    if k > 1:
        b.append(f'<span class="badge dim rank{" top" if rank == 1 else ""}" title="rank {rank_label(info)}">#{rank} of {k}</span>')
    b.append(f'<span class="badge delta cf-dec" title="tokens of the decoder output that changed in this step">'
             f'&#916; {changed[0]}</span><span class="badge delta cf-rnd" title="rounded tokens that changed in this step">'
             f'&#916; {changed[1]}</span>')
    return "".join(b)


@lru_cache(maxsize=4096)
def _correct_cached(lang: str, text: str, gold: str, table_json: str) -> bool:
    from codefusion.data import Example

    if not text.strip():
        return False
    table = json.loads(table_json) if table_json else None
    ex = Example(id="demo", nl="", code=gold, data=table)
    gold_ok = lang != "cf" or cf.check_gold(gold, table).ok
    try:
        return metrics.is_correct(lang, text, ex, gold_ok=gold_ok)
    except Exception:  # a metric must never break the page
        return False


def _correct(lang: str, text: str, gold: str, table) -> bool:
    return _correct_cached(lang, text, gold, json.dumps(table, default=str) if table else "")


def _check_badges(lang: str, text: str, gold: str | None, info: RunInfo, what: str, css: str) -> list[str]:
    """The validity badge of `text` (called `what` in its tooltip) and, with a reference, the match badge."""
    ok = valid(lang, text)
    syntax = {"python": "Python", "bash": "Bash (bashlex)", "cf": "a CF rule"}[lang]
    b = [f'<span class="{css} {"ok" if ok else "bad"}" title="{what} {"parses" if ok else "does not parse"}'
         f' as {syntax}">{"&#10003; valid" if ok else "&#10007; invalid"}</span>']
    if gold:
        right = _correct(lang, text, gold, info.table)
        b.append(f'<span class="{css} {"ok" if right else "off"}" title="{esc(metrics.METRIC_NAMES.get(lang, ""))}">'
                 f'{"&#9733; matches reference" if right else "&#8800; reference"}</span>')
    return b


def _grounded_html(text: str, info: RunInfo) -> str:
    """The line under a card: the program with its literals taken from the request (`grounded`), and its own badges."""
    _, label, what, title = GROUNDING[info.lang]
    badges = "".join(_check_badges(info.lang, text, info.gold, info, what, "badge"))
    return (f'<div class="cf-grounded" title="{esc(title)}"><span class="cf-grounded-label">{label}</span>'
            f'<code class="cf-code">{code_html([text], info.lang)}</code>{badges}</div>')


def step_header(frame, T: int, shown_as: str = "") -> str:
    pct = 100.0 * frame.step / max(frame.total_steps, 1)
    state = "done" if frame.final else "running"
    rate = frame.step / frame.elapsed if frame.elapsed > 0 else 0.0
    extra = f'<span class="cf-meta">{esc(shown_as)}</span>' if shown_as else ""
    return (f'<div class="cf-stephead {state}">'
            f'<span id="cf-step" class="cf-step" data-step="{frame.step}" data-total="{frame.total_steps}">'
            f'Step {frame.step} / {frame.total_steps}</span>'
            f'<span class="cf-meta" title="diffusion timestep just denoised (T = {T})">t = {frame.timestep}</span>'
            f'<span class="cf-meta">{frame.elapsed:.2f} s &middot; {rate:.0f} steps/s</span>{extra}'
            f'<div class="cf-progress"><div style="width:{pct:.1f}%"></div></div></div>')


def render_frame(frames: list, index: int, info: RunInfo, shown_as: str = "") -> str:
    """HTML of frame `index` (0-based) of a trajectory: a step header, then one card per noise draw with
    both views (the page's CSS shows one), its badges, and for CF rules the sample table."""
    frame = frames[index]
    prev = frames[index - 1] if index > 0 else None
    k = len(frame.candidates)
    shown = frames[:index + 1]
    means = mean_scores(shown) if info.settings.get("ranking") == MEAN_SCORE else None
    rk = run_ranks(shown, info, means)
    parts = [step_header(frame, info.T, shown_as)]
    if frame.notice:
        parts.append(f'<div class="cf-notice">&#9888; {esc(frame.notice)}</div>')
    if info.gold:
        label = "benchmark gold" if info.gold_source == "benchmark" else "reference"
        parts.append(f'<div class="cf-gold"><span class="cf-gold-label">{label}</span>'
                     f'<code class="cf-code">{code_html([info.gold], info.lang)}</code></div>')
    cf_table = (info.sheet or cf_display_table(info.table, [info.gold or ""])) if info.lang == "cf" else None
    cols = k if k <= 3 else (2 if k == 4 else 3)
    parts.append(f'<div class="cf-grid" style="--cols:{cols}">')
    for i, cand in enumerate(frame.candidates):
        before = prev.candidates[i] if prev is not None and i < len(prev.candidates) else None
        dec_changed = changed_mask(cand.token_ids, before.token_ids if before else None)
        rnd_changed = changed_mask(cand.rounding_tokens, before.rounding_tokens if before else None)
        best = frame.final and rk[i] == 1 and k > 1
        parts.append(f'<div class="cf-card{" best" if best else ""}" style="--draw:{color(i)}" data-draw="{i + 1}">'
                     f'<div class="cf-card-head"><span class="cf-dot"></span><span class="cf-draw">draw {i + 1}</span>'
                     f'{_badges(info.lang, cand, rk[i], k, (sum(dec_changed), sum(rnd_changed)), info.gold, info, means[i] if means else None)}</div>'
                     f'<pre class="cf-code cf-dec" data-text="{esc(cand.text)}">'
                     f'{code_html(cand.tokens, info.lang, dec_changed, cand.probs)}</pre>'
                     f'<pre class="cf-code cf-rnd">{code_html(cand.rounding_tokens, info.lang, rnd_changed)}</pre>')
        rule = grounded(info.lang, info.prompt, cand.text)
        if rule:
            parts.append(_grounded_html(rule, info))
        if cf_table is not None:   # the sheet runs the rule a user would get: the grounded one where there is one
            parts.append(f'<div class="cf-sheet">{cf_table_html(rule or cand.text, cf_table)}</div>')
        parts.append("</div>")
    parts.append("</div>")
    return f'<div class="cf-traj lang-{info.lang}">{"".join(parts)}</div>'


def placeholder_html(message: str, kind: str = "info") -> str:
    return f'<div class="cf-traj"><div class="cf-placeholder {kind}">{message}</div></div>'


def view_explanation_html() -> str:
    return ('<div class="cf-explain">'
            f'<p class="cf-dec">{VIEW_EXPLANATIONS["decoder"]}</p>'
            f'<p class="cf-rnd">{VIEW_EXPLANATIONS["rounding"]}</p></div>')


# ----------------------------------------------------------------------------- plots

def _layout(fig, title: str, height: int = 340):
    fig.update_layout(title=dict(text=title, x=0.02, font=dict(size=14)), height=height,
                      margin=dict(l=56, r=20, t=44, b=40), paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(127,127,127,0.06)", font=dict(color="#7a7f8c", size=12),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0, font=dict(size=11)),
                      hoverlabel=dict(font=dict(family="ui-monospace, monospace")))
    fig.update_xaxes(gridcolor="rgba(127,127,127,0.18)", zeroline=False)
    fig.update_yaxes(gridcolor="rgba(127,127,127,0.18)", zeroline=False)
    return fig


def edit_distance_series(frames: list, gold: str | None = None) -> dict:
    """Per draw: normalised token edit distance of each step's program to the draw's own final program
    (and to the gold program when there is one)."""
    final = frames[-1].candidates
    out = {"steps": [f.step for f in frames], "to_final": [], "to_gold": []}
    for i in range(len(final)):
        texts = [f.candidates[i].text for f in frames]
        out["to_final"].append([metrics.token_edit_distance(t, final[i].text) for t in texts])
        if gold:
            out["to_gold"].append([metrics.token_edit_distance(t, gold) for t in texts])
    return out


def edit_distance_figure(frames: list, gold: str | None = None, gold_label: str = "gold"):
    import plotly.graph_objects as go

    s = edit_distance_series(frames, gold)
    fig = go.Figure()
    for i, ys in enumerate(s["to_final"]):
        fig.add_trace(go.Scatter(x=s["steps"], y=ys, mode="lines+markers" if len(ys) <= 60 else "lines",
                                 name=f"draw {i + 1}", line=dict(color=color(i), width=2), marker=dict(size=5),
                                 legendgroup=str(i),
                                 hovertemplate=f"draw {i + 1}<br>step %{{x}}<br>to its final: %{{y:.2f}}<extra></extra>"))
    for i, ys in enumerate(s["to_gold"]):
        fig.add_trace(go.Scatter(x=s["steps"], y=ys, mode="lines", name=f"draw {i + 1} vs gold",
                                 line=dict(color=color(i), width=1.5, dash="dot"), legendgroup=str(i),
                                 showlegend=i == 0,
                                 hovertemplate=f"draw {i + 1}<br>step %{{x}}<br>to the {gold_label}: %{{y:.2f}}<extra></extra>"))
    if s["to_gold"]:
        fig.data[len(s["to_final"])].name = f"dotted: to the {gold_label}"
    _layout(fig, "How far each draw still is from its final program", height=360)
    fig.update_layout(margin=dict(b=96))
    fig.update_xaxes(title_text="denoising step", range=[0.5, len(frames) + 0.5])
    fig.update_yaxes(title_text="normalised token edit distance", range=[-0.03, 1.03])
    return fig


def settle_steps(frames: list) -> list[list[int]]:
    """For each draw and each position of its final program: the step from which that position keeps
    its final token (1 = it never changed after the first step)."""
    final = frames[-1].candidates
    out = []
    for i, cand in enumerate(final):
        settled = []
        for p, tok in enumerate(cand.token_ids):
            s = len(frames)
            while s > 1:
                ids = frames[s - 2].candidates[i].token_ids
                if p < len(ids) and ids[p] == tok:
                    s -= 1
                else:
                    break
            settled.append(frames[s - 1].step)
        out.append(settled)
    return out


# The settle map's cells are as wide as its plot area over the longest program, and Plotly does not clip heatmap
# text: a label wider than its cell spills over its neighbours and the axis. So labels are cut to what the narrowest
# plot area the page gives (SETTLE_MIN_WIDTH less margins and colour bar) holds at the cell font's character width,
# and left out where fewer than two characters would fit; hovering a cell still names its whole token.
SETTLE_MIN_WIDTH = 420      # px: the app's min_width for the settle map's panel
SETTLE_PLOT_PX = 280        # px: the plot area inside a panel that narrow
CELL_CHAR_PX = 6.2          # px: one character of the 10 px monospace cell font
CELL_MAX_CHARS = 6


def cell_chars(positions: int) -> int:
    """How many characters a settle-map cell label may have when the longest program has `positions` tokens
    (0: no labels)."""
    chars = min(CELL_MAX_CHARS, int(SETTLE_PLOT_PX / (max(positions, 1) * CELL_CHAR_PX)))
    return chars if chars >= 2 else 0


def _cell_text(token: str, width: int) -> str:
    t = token.strip() or "\u2423"  # a visible space
    return t if len(t) <= width else t[: width - 1] + "\u2026"


def settle_figure(frames: list):
    import plotly.graph_objects as go

    settled = settle_steps(frames)
    final = frames[-1].candidates
    width = max((len(s) for s in settled), default=0) or 1
    chars = cell_chars(width)
    z, text, custom = [], [], []
    for i, row in enumerate(settled):
        toks = final[i].tokens
        z.append([float(v) for v in row] + [math.nan] * (width - len(row)))
        text.append([_cell_text(t, chars) if chars else "" for t in toks] + [""] * (width - len(row)))
        custom.append([repr(t) for t in toks] + [""] * (width - len(row)))
    n = frames[-1].total_steps
    fig = go.Figure(go.Heatmap(
        z=z, text=text, customdata=custom, texttemplate="%{text}" if chars else None,
        textfont=dict(size=10, family="ui-monospace, monospace"), x=list(range(width)),
        y=[f"draw {i + 1}" for i in range(len(settled))], zmin=1, zmax=max(n, 2), colorscale="Viridis",
        reversescale=True, xgap=1, ygap=2,
        colorbar=dict(title=dict(text="settled<br>at step", side="top"), thickness=12),
        hovertemplate="%{y}, position %{x}<br>token %{customdata}<br>final from step %{z:.0f}<extra></extra>"))
    _layout(fig, "Settle map: when each position took its final token",
            height=max(240, 110 + 46 * len(settled)))
    fig.update_xaxes(title_text="token position", showgrid=False)
    fig.update_yaxes(autorange="reversed", showgrid=False)
    return fig


# ----------------------------------------------------------------------------- export

def trajectory_dict(frames: list, info: RunInfo, model_name: str = "", stopped: bool = False) -> dict:
    last = frames[-1] if frames else None
    ranking = []
    if last is not None:
        means = mean_scores(frames)
        rk = run_ranks(frames, info, means)
        ranking = sorted(({"draw": i + 1, "rank": rk[i], "code": c.text, "score": c.score, "mean_score": means[i],
                           "valid": valid(info.lang, c.text),
                           "grounded": grounded(info.lang, info.prompt, c.text) or None}   # CF, Bash templates: see `grounded`
                          for i, c in enumerate(last.candidates)),
                         key=lambda d: d["rank"])
    return {"format": "codefusion-trajectory/1", "prompt": info.prompt, "language": info.lang,
            "model": model_name, "settings": info.settings, "gold": info.gold, "stopped": stopped,
            "steps": len(frames), "ranking": ranking, "frames": [f.to_dict() for f in frames]}


def write_trajectory(data: dict, directory=None, keep: int | None = None) -> str:
    """Write the trajectory as JSON in a fresh temp file; returns its path. With `keep`, the folder is pruned to its
    `keep` newest trajectories: a server writes one per finished run and must not fill its disk (the page's
    download is served from Gradio's own copy, made when the run's outputs are sent)."""
    lang = data.get("language", "code")
    fd, path = tempfile.mkstemp(prefix=f"codefusion-{lang}-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    if keep is not None:
        prune_folder(os.path.dirname(path), keep, keep_path=path)
    return path


def prune_folder(directory, keep: int, keep_path: str | None = None) -> int:
    """Delete all but the `keep` most recently modified codefusion-*.json files in directory (never keep_path);
    returns how many went. Files that vanish meanwhile (another request pruning too) are skipped."""
    entries = []
    for entry in os.scandir(directory):
        if entry.name.startswith("codefusion-") and entry.name.endswith(".json") and entry.path != keep_path:
            try:
                entries.append((entry.stat().st_mtime, entry.path))
            except FileNotFoundError:
                pass
    entries.sort(reverse=True)
    removed = 0
    for _, old in entries[max(0, keep - (keep_path is not None)):]:
        try:
            os.unlink(old)
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def language_label(lang: str) -> str:
    return LANGUAGE_NAMES.get(lang, lang)
