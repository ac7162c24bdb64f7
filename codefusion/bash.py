"""NL2Bash templates: the programs a model trained with `--bash-templates` learns (`template`, `as_templates`), and
filling a template's arguments from the request: what such a model writes (`find ARG -name ARG -mtime ARG`), made
into a command a user can read and try (`find . -name '*.log' -mtime +7`).

A display aid, as Tellina (Lin et al., 2018) filled the templates its model predicted: the metric (template match)
ignores arguments, so no figure depends on it. Each ARG gets a kind from where it stands (the flag before it, or the
utility's first operand), then the request's next unused literal of that kind: quoted strings, paths, file names and
globs, numbers (with a size unit, and a sign from "more/less than"), `find -type`'s letter from the words "file",
"directory", "link". An ARG the request has nothing for stays ARG, so the user sees what is missing.
"""

from __future__ import annotations

import dataclasses
import re

from codefusion import metrics

PLACEHOLDER = "ARG"
_SIGNED_FLAGS = {"-mtime", "-atime", "-ctime", "-mmin", "-amin", "-cmin", "-size"}   # find's +N / -N tests
_NUMERIC_FLAGS = _SIGNED_FLAGS | {"-maxdepth", "-mindepth", "-links", "-n", "-c", "-P", "-m", "-A", "-B", "-C", "-k"}
_NAME_FLAGS = {"-name", "-iname", "-path", "-ipath", "-wholename", "-iwholename", "-lname", "-ilname", "--include",
               "--exclude"}   # a file name or glob
_PATTERN_FLAGS = {"-regex", "-iregex", "-e"}   # a regular expression: only a quoted one will do
_TYPE_FLAGS = {"-type", "-xtype"}
_PATTERN_FIRST = {"grep", "egrep", "fgrep", "zgrep", "sed", "awk", "rename"}   # first operand is a pattern/script
_SEPARATORS = {"|", "||", "&&", ";", "$(", "`", "(", "<(", ")", "-exec", "-execdir", "-ok", "xargs", "sudo"}
_EXTENSIONS = {"text": "txt", "python": "py", "perl": "pl", "shell": "sh", "bash": "sh", "javascript": "js",
               "markdown": "md", "jpeg": "jpg"}
_KNOWN_EXT = {"txt", "py", "pl", "sh", "js", "md", "jpg", "php", "html", "htm", "xml", "java", "c", "cpp", "h",
              "log", "mp3", "mp4", "png", "gif", "pdf", "css", "json", "csv", "bak", "tmp", "gz", "zip", "tar",
              "conf", "rb", "go", "rs", "sql", "doc", "docx", "jar", "o", "so", "svg", "yml", "yaml"}

_QUOTED = re.compile(r"`([^`]+)`|'([^']+)'|\"([^\"]+)\"")
_PATH = re.compile(r"(?<![\w.])(?:~?/[\w.\-/~*]*|\.{1,2}/[\w.\-/*]*|~)(?![\w])")
_FILE = re.compile(r"(?<![\w/])(?:\*?[\w\-]*(?:\.[A-Za-z]\w{0,5})+|\*\.?\w+)(?![\w/])")
_NUMBER = re.compile(r"(?<![\w.])(\d+)\s*(k|kb|m|mb|g|gb|kilobytes?|megabytes?|gigabytes?)?(?![\w.])", re.I)
_EXT_WORD = re.compile(r"\b([A-Za-z][A-Za-z0-9]*) (?:files?|fiels|scripts?|documents?|sources?)\b", re.I)
_MORE = re.compile(r"\b(more|greater|bigger|larger|older|over|above|at least|exceed\w*)\b", re.I)
_LESS = re.compile(r"\b(less|smaller|newer|fewer|within|under|below|last|at most)\b", re.I)


def template(code: str) -> str:
    """The program as the template-match metric sees it (`metrics.bash_any_template`), what --bash-templates trains on."""
    return metrics.bash_any_template(code).strip()


def as_templates(examples: list) -> list:
    """The (utterance, program) pairs with each program replaced by its template."""
    return [dataclasses.replace(e, code=template(e.code)) for e in examples]


def _literals(request: str) -> dict[str, list[str]]:
    """The request's literals by kind, in order of appearance."""
    quoted = [next(g for g in m.groups() if g is not None) for m in _QUOTED.finditer(request)]
    bare = _QUOTED.sub(" ", request)
    paths = [p.rstrip(".") or p for p in _PATH.findall(bare)]
    files = [f for f in _FILE.findall(bare) if not re.fullmatch(r"\d+\.\d+", f)]
    names = [f"*{f}" if f.startswith(".") else f for f in files]   # "build.xml", "*.log", ".bak" -> "*.bak"
    kinds = []
    for word in _EXT_WORD.findall(bare):   # "php files" -> *.php
        ext = _EXTENSIONS.get(word.lower(), word.lower())
        if ext in _KNOWN_EXT:
            kinds.append(f"*.{ext}")
    numbers = []
    for m in _NUMBER.finditer(bare):
        unit = (m.group(2) or "")[:1].upper()
        numbers.append(m.group(1) + (unit if unit in "KMG" else ""))
    # where to search: a path right after "in", "under"... (else the current/home/root folder the request names)
    starts = [m.group(1).rstrip(".") or m.group(1) for m in re.finditer(
        r"\b(?:in|under|below|from|within|inside|through|of|at)\s+(?:the\s+)?(?:(?:directory|folder|dir)\s+)?("
        + _PATH.pattern + ")", bare)]
    return {"quoted": quoted, "path": paths, "name": names, "kind": kinds, "number": numbers, "start": starts}


def _sign(request: str) -> str:
    """find's +N (more than N) or -N (less than N), from the request's words."""
    return "+" if _MORE.search(request) else "-" if _LESS.search(request) else ""


def _default_path(request: str) -> str | None:
    """find's start when the request names no path: the current, home or root folder it names."""
    r = request.lower()
    for pattern, path in ((r"\b(current|this|working) (directory|folder|dir)\b|\bcwd\b", "."),
                          (r"\bhome (directory|folder|dir)\b", "~"),
                          (r"\b(entire|whole) (file ?system|system|disk)\b|\bthe file ?system\b|"
                           r"\broot (directory|folder|file ?system)\b", "/")):
        if re.search(pattern, r):
            return path
    return None


def _type_letter(request: str) -> str | None:
    """find -type's letter for the first kind of thing the request names (not "current folder", "file system")."""
    r = re.sub(r"\b(current|this|working|home|root|parent|same|the) (directory|folder|dir)\b|\bfile ?systems?\b", " ",
               request.lower())
    found = [(m.start(), letter) for words, letter in ((r"symbolic links?|symlinks?", "l"),
                                                        (r"director(?:y|ies)|folders?|dirs?", "d"), (r"files?", "f"))
             for m in [re.search(rf"\b(?:{words})\b", r)] if m]
    return min(found)[1] if found else None


def _kinds(tokens: list[str]) -> list[str | None]:
    """Each token's argument kind (None for tokens that are not ARG): from the flag before it, else the
    utility's operand position."""
    kinds: list[str | None] = []
    utility, operand, flagged = None, 0, False   # the simple command's utility, its operands so far, any flag yet
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else None
        if tok != PLACEHOLDER:
            kinds.append(None)
            if (prev is None or prev in _SEPARATORS or tok in _PATTERN_FIRST) and not tok.startswith("-"):
                utility, operand, flagged = tok, 0, False
            flagged = flagged or tok.startswith("-")
            continue
        if prev in _TYPE_FLAGS:
            kind = "type"
        elif prev in _SIGNED_FLAGS:
            kind = "signed"
        elif prev in _NUMERIC_FLAGS:
            kind = "number"
        elif prev in _NAME_FLAGS:
            kind = "name"
        elif prev in _PATTERN_FLAGS:
            kind = "pattern"
        elif utility == "find":   # its first operand is where to search; later bare ARGs are operators (! \( \))
            kind = "start" if operand == 0 and not flagged else None
            operand += 1
        else:
            kind = "pattern" if utility in _PATTERN_FIRST and operand == 0 else "path"
            operand += 1
        kinds.append(kind)
    return kinds


def fill_arguments(template: str, request: str) -> str:
    """The template with each ARG replaced by the request's next literal of its kind (see the module's doc);
    ARGs the request has nothing for are kept."""
    tokens = template.split()
    if PLACEHOLDER not in tokens:
        return template
    pools = _literals(request)
    used: set[str] = set()

    def take(*kinds: str) -> str | None:
        for kind in kinds:
            for value in pools[kind]:
                if value not in used:
                    used.add(value)
                    return value
        return None

    out = []
    for i, (tok, kind) in enumerate(zip(tokens, _kinds(tokens))):
        if tok == "-NUM" and i and tokens[i - 1] in _SIGNED_FLAGS:   # the template of a negative number: -15
            value = take("number")
            out.append("-" + value if value else tok)
            continue
        if kind is None:
            out.append(tok)
            continue
        if kind == "start":
            value = take("start") or _default_path(request) or take("path")
            used.add(value)   # a default such as "." is no name or pattern for a later ARG
        elif kind == "type":
            value = _type_letter(request)
        elif kind in ("number", "signed"):
            value = take("number")
            value = _sign(request) + value if value is not None and kind == "signed" else value
        elif kind == "name":
            value = take("name", "kind", "quoted")
        elif kind == "pattern":
            value = take("quoted")
        else:
            value = take("path", "quoted", "name")
        out.append(_shell_quote(value) if value is not None else PLACEHOLDER)
    return " ".join(_close_exec(out))


def _close_exec(tokens: list[str]) -> list[str]:
    """Templates drop find's `\\;` (the metric ignores it); a command to run needs it after each -exec's command."""
    out, open_exec = [], False
    for tok in tokens + ["|"]:
        if tok in ("-exec", "-execdir", "-ok", "-okdir"):
            open_exec = True
        elif tok in (";", "\\;", "+") and open_exec:
            open_exec = False
            tok = "\\;" if tok == ";" else tok   # the template's bare ; would end the whole command
        elif tok in ("|", "||", "&&", ")") and open_exec:
            out.append("\\;")
            open_exec = False
        out.append(tok)
    return out[:-1]


def _shell_quote(value: str) -> str:
    """Single-quote what the shell would otherwise split or expand (globs, spaces); paths like ~ stay bare."""
    if re.fullmatch(r"[\w.\-/~+,:=@%]+", value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"
