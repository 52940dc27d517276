"""The Dockerfile parser: text in, typed instructions with source ranges out.

Public API:

* `parse(text, filename="Dockerfile") -> Dockerfile` reads a whole Dockerfile the way
  `docker build` does and returns its typed instructions (`builder.instructions`), in file
  order, each with `.start_line`/`.end_line` (1-based, covering continuation lines and
  heredoc bodies). `Dockerfile.escape` is the escape character, `.directives` the parser
  directives (`syntax`, `escape`, `check`) by lower-case name. Errors raise
  `builder.errors.DockerfileError` with line and column.
* `parse_nodes(text, filename="Dockerfile") -> ParseResult` stops at Docker's parse tree
  (`builder.nodes.Node`): unknown instructions are kept, nothing is validated beyond the
  syntax. `pybuild debug parse` prints it with `builder.dump.dump`.

Two stages. The physical-line stage (plain Python, line-oriented by nature) reads lines,
strips a BOM and line endings, recognises parser directives, drops comments, joins
continuation lines and consumes heredoc bodies. The logical lines are then parsed together by
the LALR grammar in `dockerfile.lark` (keyword, flags, argument text), whose tables are cached
on disk, and the argument text is shaped by keyword as Docker does (JSON arrays, whitespace
words, key=value pairs, ...).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import DockerfileError
from builder.nodes import Heredoc, Node, SourceMap

if TYPE_CHECKING:
    from builder.instructions import Instruction

__all__ = ["Dockerfile", "ParseResult", "parse", "parse_nodes", "read_dockerfile"]

# Go's unicode.IsSpace, which Docker uses to trim lines and arguments.
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_GO_SPACE_SET = frozenset(GO_SPACE)
# Go's regexp \s (ASCII only, no \v) in the directive pattern.
_DIRECTIVE_RE = re.compile(
    r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z"
)
_VALID_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC_RE = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")
_WHITESPACE_RE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC_COMMANDS = frozenset(("run", "copy", "add"))

_GRAMMAR_FILE = Path(__file__).with_name("dockerfile.lark")
_parsers: dict[str, Any] = {}


@dataclass
class ParseResult:
    """Docker's parse tree of a file: nodes in file order, plus what the file declared."""

    nodes: list[Node]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    filename: str = "Dockerfile"
    lines: list[str] = field(default_factory=list)  # physical lines, without line endings


@dataclass
class Dockerfile:
    """A parsed Dockerfile: typed instructions in file order, each with its source range.

    `lines` are the physical lines (1-based line N is `lines[N - 1]`), kept so later stages can
    show the source of an error; `source_line(n)` returns one of them.
    """

    instructions: list[Instruction]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    filename: str = "Dockerfile"
    lines: list[str] = field(default_factory=list)

    def source_line(self, line: int) -> str | None:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else None

    def error(self, msg: str, line: int, column: int = 0) -> DockerfileError:
        """A `DockerfileError` located in this file."""
        return DockerfileError(
            msg,
            filename=self.filename,
            line=line,
            column=column,
            source_line=self.source_line(line),
        )


# ---------------------------------------------------------------------------------------------
# The grammar (lark, LALR, tables cached on disk)


def _cache_dirs() -> list[Path]:
    dirs = []
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        dirs.append(Path(xdg) / "pydock")
    home = os.environ.get("HOME")
    if home:
        dirs.append(Path(home) / ".cache" / "pydock")
    dirs.append(Path(__file__).parent / "__pycache__")
    return dirs


def _cache_file(escape: str) -> str | None:
    """A writable place for the parser tables, or None (then they are built every time)."""
    name = f"dockerfile-lark-{'backtick' if escape == '`' else 'backslash'}.cache"
    for d in _cache_dirs():
        path = d / name
        if path.exists() and os.access(path, os.R_OK):
            return str(path)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return str(path)
    return None


def _grammar_parser(escape: str) -> Any:
    """The LALR parser for lines using `escape`, loaded from the table cache when possible."""
    parser = _parsers.get(escape)
    if parser is not None:
        return parser
    import lark

    class Collect(lark.Transformer):
        # Applied while parsing (no tree is built): each line becomes its list of tokens.
        def instruction(self, children: list[Any]) -> list[Any]:
            return children

        def start(self, children: list[Any]) -> list[Any]:
            return children

    text = _GRAMMAR_FILE.read_text(encoding="utf-8").replace("@ESC@", re.escape(escape))
    options = {"parser": "lalr", "lexer": "contextual", "transformer": Collect()}
    cache = _cache_file(escape)
    try:
        parser = lark.Lark(text, cache=cache or False, **options)
    except OSError:
        parser = lark.Lark(text, **options)
    _parsers[escape] = parser
    return parser


# ---------------------------------------------------------------------------------------------
# The physical-line stage


@dataclass
class _Logical:
    text: str
    start_line: int
    end_line: int
    srcmap: SourceMap
    node: Node | None = None  # already built (lines that may carry heredocs)


class _Directives:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.done = False
        self.values: dict[str, str] = {}
        self.escape = "\\"
        self._cont_re = _continuation_re("\\")

    def feed(self, token: str, lineno: int, raw: str) -> None:
        """Look at a line while directives may still appear (Docker: before anything else)."""
        if self.done:
            return
        m = _DIRECTIVE_RE.match(token)
        if not m:
            self.done = True
            return
        key = m.group(1).lower()
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.values:
            raise DockerfileError(
                f"only one {key} parser directive can be used",
                filename=self.filename,
                line=lineno,
                column=1,
                source_line=raw,
            )
        value = m.group(2)
        if key == "escape":
            if value not in ("`", "\\"):
                raise DockerfileError(
                    f"invalid escape token '{value}' does not match ` or \\",
                    filename=self.filename,
                    line=lineno,
                    column=raw.find(value, m.start(2)) + 1 if value in raw else 1,
                    source_line=raw,
                )
            self.escape = value
            self._cont_re = _continuation_re(value)
        self.values[key] = value

    def trim_continuation(self, line: str) -> tuple[str, bool]:
        """(line without a trailing escape, True if the line does not continue)."""
        m = self._cont_re.search(line)
        if m is None:
            return line, True
        return line[: m.start()] + (m.group(1) or ""), False


def _continuation_re(escape: str) -> re.Pattern[str]:
    # The escape as the last non-blank character continues the line, unless it is itself
    # escaped (`foo\\`); on a line of its own it continues too.
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*\Z|^{e}[ \t]*\Z")


def _lstrip_go(text: str) -> str:
    return text.lstrip(GO_SPACE)


def _is_comment(raw: str) -> bool:
    return _lstrip_go(raw.rstrip("\r\n")).startswith("#")


def _split_lines(text: str) -> list[str]:
    """Physical lines with their line endings, like Docker's scanner (which keeps them)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Parsing allocates many small objects that all stay alive; letting the cyclic collector
    # scan them again and again costs a quarter of the time on big files.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_nodes(text: str, filename: str = "Dockerfile") -> ParseResult:
    """Docker's parse tree of `text` (see the module docstring)."""
    with _gc_paused():
        return _parse_nodes(text, filename)


def _parse_nodes(text: str, filename: str) -> ParseResult:
    raw_lines = _split_lines(text)
    directives = _Directives(filename)
    logicals: list[_Logical] = []
    warnings: list[str] = []
    deferred: DockerfileError | None = None
    n = len(raw_lines)
    i = 0
    while i < n:
        raw = raw_lines[i]
        token = _lstrip_go(raw.rstrip("\r\n"))
        lead = len(raw.rstrip("\r\n")) - len(token)
        directives.feed(token, i + 1, raw)
        i += 1
        if token.startswith("#"):
            token = ""
        start_line = i
        line, eol = directives.trim_continuation(token)
        if eol and line == "":
            continue
        srcmap = SourceMap()
        srcmap.add(0, start_line, lead)
        empty_continuation = False
        while not eol and i < n:
            raw = raw_lines[i]
            token = raw.rstrip("\r\n")
            directives.feed(token, i + 1, raw)
            i += 1
            if _is_comment(raw):
                continue
            if not _lstrip_go(token):
                empty_continuation = True
                continue
            cont, eol = directives.trim_continuation(token)
            srcmap.add(len(line), i, 0)
            line += cont
        if empty_continuation:
            warnings.append(f"line {start_line}: empty continuation line")
        logical = _Logical(line, start_line, i, srcmap)
        logicals.append(logical)
        if "<<" in line:
            # Heredoc bodies follow the instruction line, so whether this line opens any
            # must be known before reading on: parse it now.
            try:
                node = _build_node_single(line, directives.escape, srcmap, filename, raw_lines)
            except DockerfileError as exc:
                deferred = exc
                logicals.pop()
                break
            docs = heredocs_from_line(line) if _can_contain_heredoc(node) else []
            for doc in docs:
                terminated = False
                body: list[str] = []
                while i < n:
                    body_line = raw_lines[i]
                    i += 1
                    candidate = body_line.rstrip("\r\n")
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    body.append(body_line)
                doc.content = "".join(body)
                if not terminated:
                    at = line.find("<<")
                    src_line, col = srcmap.locate(max(at, 0))
                    deferred = DockerfileError(
                        f"unterminated heredoc {doc.name!r}",
                        filename=filename,
                        line=src_line,
                        column=col,
                        source_line=raw_lines[src_line - 1].rstrip("\r\n"),
                    )
                    break
                node.heredocs.append(doc)
            if deferred is not None:
                logicals.pop()
                break
            logical.end_line = i
            node.end_line = i
            logical.node = node

    physical = [r.rstrip("\r\n") for r in raw_lines]
    nodes = _build_nodes(logicals, directives.escape, filename, physical)
    if deferred is not None:
        raise deferred
    if not nodes:
        raise DockerfileError(
            "file with no instructions", filename=filename, line=max(len(raw_lines), 1)
        )
    return ParseResult(
        nodes=nodes,
        escape=directives.escape,
        directives=dict(directives.values),
        warnings=warnings,
        filename=filename,
        lines=physical,
    )


def _build_nodes(
    logicals: list[_Logical], escape: str, filename: str, physical: list[str]
) -> list[Node]:
    """Nodes for all logical lines: one grammar pass over the lines not parsed yet."""
    pending = [lg for lg in logicals if lg.node is None and lg.text.strip(GO_SPACE)]
    structures: list[Any] = []
    if pending:
        text = "".join(lg.text.strip(GO_SPACE) + "\n" for lg in pending)
        structures = _grammar_parser(escape).parse(text)
    it = iter(structures)
    nodes: list[Node] = []
    for lg in logicals:
        if lg.node is not None:
            nodes.append(lg.node)
            continue
        stripped = lg.text.strip(GO_SPACE)
        base = len(lg.text) - len(lg.text.lstrip(GO_SPACE))
        if not stripped:
            node = Node(cmd="", args=[""], original=lg.text)
        else:
            node = _node_from_tokens(next(it), stripped, escape, lg.srcmap, base)
        node.start_line, node.end_line = lg.start_line, lg.end_line
        node.srcmap, node.base = lg.srcmap, base
        try:
            _shape_args(node, escape)
        except DockerfileError as exc:
            raise _locate(exc, node, filename, physical) from None
        nodes.append(node)
    return nodes


def _locate(
    exc: DockerfileError, node: Node, filename: str, physical: list[str]
) -> DockerfileError:
    line = exc.line or node.start_line
    return DockerfileError(
        exc.msg,
        filename=filename,
        line=line,
        column=exc.column,
        source_line=physical[line - 1] if 0 < line <= len(physical) else None,
    )


def _build_node_single(
    line: str, escape: str, srcmap: SourceMap, filename: str, raw_lines: list[str]
) -> Node:
    stripped = line.strip(GO_SPACE)
    base = len(line) - len(line.lstrip(GO_SPACE))
    if not stripped:
        return Node(cmd="", args=[""], original=line)
    tokens = _grammar_parser(escape).parse(stripped + "\n")[0]
    node = _node_from_tokens(tokens, stripped, escape, srcmap, base)
    node.srcmap, node.base = srcmap, base
    node.start_line = srcmap.lines[0] if srcmap.lines else 0
    try:
        _shape_args(node, escape)
    except DockerfileError as exc:
        raise _locate(exc, node, filename, [r.rstrip("\r\n") for r in raw_lines]) from None
    return node


def _node_from_tokens(
    tokens: list[Any], line: str, escape: str, srcmap: SourceMap, base: int
) -> Node:
    """Keyword, flags and argument text from the grammar's tokens for one line."""
    keyword = str(tokens[0])
    flags: list[str] = []
    offsets: list[int] = []
    rest_at = len(line)
    for tok in tokens[1:]:
        kind = tok.type
        start = tok.column - 1
        if kind == "FLAG":
            value = _unquote_flag(str(tok), escape)
            if value == "--":
                rest_at = start + len(tok)
                break
            flags.append(value)
            offsets.append(start)
        elif kind == "END_OF_FLAGS":
            rest_at = start + 2
        else:
            rest_at = start
            break
    rest_raw = line[rest_at:]
    rest = rest_raw.strip(GO_SPACE)
    rest_offset = rest_at + (len(rest_raw) - len(rest_raw.lstrip(GO_SPACE)))
    return Node(
        cmd=keyword,
        flags=flags,
        original=line,
        rest=rest,
        rest_offset=rest_offset,
        flag_offsets=offsets,
        srcmap=srcmap,
        base=base,
    )


def _unquote_flag(word: str, escape: str) -> str:
    """A flag word with quotes removed and escapes applied (`--from="a b"` -> `--from=a b`)."""
    if '"' not in word and "'" not in word and escape not in word:
        return word
    out: list[str] = []
    quote = ""
    i, n = 0, len(word)
    while i < n:
        ch = word[i]
        i += 1
        if quote:
            if ch == quote:
                quote = ""
                continue
            if ch == escape:
                if i >= n:
                    quote = ""
                    continue
                ch = word[i]
                i += 1
            out.append(ch)
            continue
        if ch in ("'", '"'):
            quote = ch
            continue
        if ch == escape:
            if i >= n:
                continue
            ch = word[i]
            i += 1
        out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Arguments by keyword (Docker's "line parsers")


def _err(msg: str, node: Node, offset: int | None = None) -> DockerfileError:
    line, col = node.locate(node.rest_offset if offset is None else offset)
    return DockerfileError(msg, line=line, column=col)


def _shape_args(node: Node, escape: str) -> None:
    kind = node.cmd.lower()
    rest = node.rest
    if kind in ("run", "cmd", "entrypoint", "shell"):
        _maybe_json(node, rest, to_list=False)
    elif kind in ("add", "copy", "volume"):
        _maybe_json(node, rest, to_list=True)
    elif kind in ("from", "expose"):
        node.args = _whitespace_split(rest)
    elif kind in ("maintainer", "user", "workdir", "stopsignal"):
        node.args = [rest] if rest else []
    elif kind == "arg":
        node.args = [w for w, _ in parse_words(rest, escape)]
    elif kind in ("env", "label"):
        node.args = _name_values(node, rest, kind.upper(), escape)
    elif kind == "healthcheck":
        _healthcheck(node, rest)
    elif kind == "onbuild":
        if rest:
            sub = _build_sub(node, rest, escape)
            node.sub = sub
    else:
        node.args = [""]


def _build_sub(node: Node, rest: str, escape: str) -> Node:
    tokens = _grammar_parser(escape).parse(rest + "\n")[0]
    sub = _node_from_tokens(tokens, rest, escape, node.srcmap, 0)
    sub.srcmap = node.srcmap
    sub.base = node.base + node.rest_offset
    sub.start_line, sub.end_line = node.start_line, node.end_line
    _shape_args(sub, escape)
    return sub


def _whitespace_split(rest: str) -> list[str]:
    return _WHITESPACE_RE.split(rest) if rest else []


class _NotJSON(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJSON(name)  # NaN / Infinity are not JSON for Go


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotJSON(text)  # Go cannot hold it in a float64: not valid for Go either
    return value


_JSON = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite)


def _json_array(rest: str) -> list[Any] | None:
    """The JSON array at the start of `rest` (trailing text ignored, as Go's decoder does)."""
    text = rest.lstrip(GO_SPACE)
    if not text.startswith("["):
        return None
    try:
        value, _end = _JSON.raw_decode(text)
    except (ValueError, _NotJSON, RecursionError):
        return None
    return value if isinstance(value, list) else None


def _fix_surrogates(s: str) -> str:
    # Go decodes an unpaired \ud800 escape to U+FFFD.
    if any("\ud800" <= c <= "\udfff" for c in s):
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s)
    return s


def _maybe_json(node: Node, rest: str, *, to_list: bool) -> None:
    if not to_list and not rest:
        node.args = []
        return
    arr = _json_array(rest)
    if arr is not None:
        if not all(isinstance(x, str) for x in arr):
            raise _err(
                "when using JSON array syntax, arrays must be comprised of strings only", node
            )
        node.args = [_fix_surrogates(x) for x in arr]
        node.json = True
        return
    node.args = _whitespace_split(rest) if to_list else [rest]


def parse_words(rest: str, escape: str) -> list[tuple[str, int]]:
    """Words at unquoted whitespace, quotes and escapes kept (Docker's parseWords).

    Returns (word, offset of its first character in `rest`) pairs.
    """
    words: list[tuple[str, int]] = []
    word: list[str] = []
    start = 0
    in_word = False
    quote = ""
    blank_ok = False
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch in _GO_SPACE_SET:
                i += 1
                continue
            in_word = True
            start = i
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    i += 1
                    quote = ""
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if ch in _GO_SPACE_SET:
            if blank_ok or word:
                words.append(("".join(word), start))
            word = []
            blank_ok = False
            in_word = False
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        elif ch == escape:
            if i + 1 == n:
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append(("".join(word), start))
    return words


def _name_values(node: Node, rest: str, key: str, escape: str) -> list[str]:
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0][0]:
        parts = _WHITESPACE_RE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _err(f"{key} must have two arguments", node, node.rest_offset + len(rest))
        return [parts[0], parts[1], ""]
    out: list[str] = []
    for word, at in words:
        if "=" not in word:
            raise _err(
                f"Syntax error - can't find = in {_q(word)}. Must be of the form: name=value",
                node,
                node.rest_offset + at,
            )
        k, v = word.split("=", 1)
        out += [k, v, "="]
    return out


def _q(text: str) -> str:
    from builder.dump import go_quote

    return go_quote(text)


def _healthcheck(node: Node, rest: str) -> None:
    if not rest:
        node.args = []
        return
    sep = 0
    while sep < len(rest) and rest[sep] not in _GO_SPACE_SET:
        sep += 1
    nxt = sep
    while nxt < len(rest) and rest[nxt] in _GO_SPACE_SET:
        nxt += 1
    typ = rest[:sep]
    sub = Node(cmd="", srcmap=node.srcmap, base=node.base, rest_offset=node.rest_offset + nxt)
    _maybe_json(sub, rest[nxt:], to_list=False)
    node.args = [typ, *sub.args]
    node.json = sub.json


# ---------------------------------------------------------------------------------------------
# Heredocs


def _can_contain_heredoc(node: Node) -> bool:
    target = node.sub if node.cmd.lower() == "onbuild" and node.sub is not None else node
    return target.cmd.lower() in _HEREDOC_COMMANDS and not target.json


def heredocs_from_line(line: str) -> list[Heredoc]:
    """The heredocs that a RUN/COPY/ADD line opens, in order (bodies not read yet)."""
    from builder.errors import ExpansionError
    from builder.expand import Lexer

    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process(line, {})[1]
    except ExpansionError:
        return []
    docs = []
    for word in words:
        doc = parse_heredoc(word)
        if doc is not None:
            docs.append(doc)
    return docs


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc that `word` opens (`<<EOF`, `<<-"EOF"`, `3<<EOF`), or None."""
    from builder.expand import Lexer

    m = _HEREDOC_RE.match(word)
    if m is None or not m.group(3):
        return None
    rest = m.group(3)
    plain = Lexer(skip_unset=True).process(rest, {})[1]
    if len(plain) != 1:
        return None
    raw = Lexer(skip_unset=True, raw_quotes=True).process(rest, {})[1]
    name = plain[0]
    expand = (name.count("'") + name.count('"')) == (raw[0].count("'") + raw[0].count('"'))
    return Heredoc(
        name=name, expand=expand, fd=int(m.group(1)) if m.group(1) else 0, chomp=m.group(2) == "-"
    )


# ---------------------------------------------------------------------------------------------
# Typed parse


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile into typed instructions (see the module docstring)."""
    with _gc_paused():
        return _parse(text, filename)


def _parse(text: str, filename: str) -> Dockerfile:
    from builder.instructions import from_nodes

    result = _parse_nodes(text, filename)
    df = Dockerfile(
        instructions=[],
        escape=result.escape,
        directives=result.directives,
        warnings=result.warnings,
        filename=filename,
        lines=result.lines,
    )
    df.instructions = from_nodes(result.nodes, df)
    return df


def read_dockerfile(path: str | os.PathLike[str], filename: str | None = None) -> str:
    """The text of a Dockerfile on disk (bytes that are not UTF-8 kept as escapes)."""
    data = Path(path).read_bytes()
    return data.decode("utf-8", errors="surrogateescape")
