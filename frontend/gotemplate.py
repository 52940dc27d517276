"""A small Go text/template evaluator for `--format` strings, over JSON-shaped data.

Docker's `--format` runs Go templates over its API objects. Scripts use a narrow part of
that language, and this is that part:

- fields: `{{.Id}}`, `{{.Config.Env}}`, `{{.}}`, `$` (the top object), variables `$x`;
- pipelines: `{{.Name | lower}}`, `{{json .Config}}`, `{{index .RepoTags 0}}`,
  `{{index .Labels "k"}}`, `{{join .Config.Cmd " "}}`, `{{printf "%s:%d" .A .B}}`;
- functions: json, index, join, split, lower, upper, title, len, truncate, printf, print,
  println, eq, ne, lt, le, gt, ge, not, and, or;
- control: `{{if}}...{{else if}}...{{else}}...{{end}}`, `{{range .X}}...{{end}}` (also
  `{{range $i, $v := .X}}` and `{{else}}` for an empty range), `{{with .X}}...{{end}}`;
- trim markers `{{- ... -}}`, and `\\t`/`\\n` escapes as Docker's CLI accepts them.

Values print as Go's fmt `%v` does: lists as `[a b]`, maps as `map[k:v]`, nil as `<nil>`, a
missing map key as `<no value>`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cache.errors import PydockError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||[^\s|()]+')
_NO_VALUE = object()


class TemplateError(PydockError):
    """A --format template that this subset cannot parse or run."""


def go_value(value: Any) -> str:
    """How Go's fmt prints a value with %v."""
    if value is _NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _truthy(value: Any) -> bool:
    if value is None or value is _NO_VALUE:
        return False
    if isinstance(value, bool | int | float | str | list | tuple | dict):
        return bool(value)
    return True


# --- parsing ------------------------------------------------------------------------------------


def _lex(template: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", expr)], with trim markers applied."""
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if m.group(1):
            chunk = chunk.rstrip()
        out.append(("text", chunk))
        out.append(("action", m.group(2).strip()))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip())
    if "{{" in text[pos:]:
        raise TemplateError("template: :1: unclosed action")
    out.append(("text", text[pos:]))
    return [t for t in out if t != ("text", "")]


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list, int, str]:
    """Nodes until one of the `stop` keywords; returns (nodes, next index, keyword met)."""
    nodes: list = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        word = value.split(None, 1)[0] if value else ""
        rest = value[len(word) :].strip()
        if word in stop:
            return nodes, i, value
        if value.startswith("/*"):
            i += 1
            continue
        if word in ("if", "range", "with"):
            body, i, met = _parse(tokens, i + 1, ("else", "end"))
            other: list = []
            if met.startswith("else"):
                tail = met[len("else") :].strip()
                if tail.startswith("if ") and word == "if":
                    # {{else if c}}: a nested if that shares our {{end}}
                    other, i, _ = _parse_if_chain(tokens, i, tail)
                else:
                    other, i, met = _parse(tokens, i + 1, ("end",))
                    if met != "end":
                        raise TemplateError(f"template: unexpected end in {{{{{word}}}}}")
            if i >= len(tokens):
                raise TemplateError(f"template: missing {{{{end}}}} for {{{{{word}}}}}")
            nodes.append((word, rest, body, other))
            i += 1
            continue
        if word in ("else", "end"):
            raise TemplateError(f"template: unexpected {{{{{value}}}}}")
        nodes.append(("action", value))
        i += 1
    if stop:
        raise TemplateError(f"template: missing {{{{{stop[-1]}}}}}")
    return nodes, i, ""


def _parse_if_chain(tokens: list, i: int, cond: str) -> tuple[list, int, str]:
    """The `{{else if cond}}` branch at token i: a nested if ending at the shared {{end}}."""
    body, j, met = _parse(tokens, i + 1, ("else", "end"))
    other: list = []
    if met.startswith("else"):
        tail = met[len("else") :].strip()
        if tail.startswith("if "):
            other, j, _ = _parse_if_chain(tokens, j, tail)
        else:
            other, j, met = _parse(tokens, j + 1, ("end",))
    return [("if", cond[len("if") :].strip(), body, other)], j, "end"


# --- evaluation ---------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, root: Any, struct: bool = False) -> None:
        self.root = root
        self.struct = struct
        self.vars: dict[str, Any] = {"$": root}


def _field(value: Any, path: str, struct: bool = False) -> Any:
    """`.A.B` of `value`; with `struct`, `value` is the object Docker formats (a Go struct,
    so an unknown first field is an error, where a map's missing key prints <no value>)."""
    for n, part in enumerate(p for p in path.split(".") if p):
        if isinstance(value, dict):
            if part in value:
                value = value[part]
                continue
            match = [k for k in value if isinstance(k, str) and k.lower() == part.lower()]
            if not match and struct and n == 0:
                raise TemplateError(
                    f'template: :1: executing "" at <.{part}>: can\'t evaluate field {part}'
                )
            value = value[match[0]] if match else _NO_VALUE
            continue
        if value is None or value is _NO_VALUE:
            raise TemplateError(f"template: nil pointer evaluating .{part}")
        raise TemplateError(f"template: can't evaluate field {part} in type {type(value).__name__}")
    return value


def _operand(tok: str, dot: Any, ctx: _Ctx) -> Any:
    if tok == ".":
        return dot
    if tok.startswith("."):
        return _field(dot, tok, struct=ctx.struct and dot is ctx.root)
    if tok.startswith("$"):
        name, _, path = tok.partition(".")
        if name not in ctx.vars:
            raise TemplateError(f"template: undefined variable {name}")
        value = ctx.vars[name]
        return _field(value, path, struct=ctx.struct and value is ctx.root) if path else value
    if tok.startswith('"'):
        return json.loads(tok)
    if tok.startswith("`"):
        return tok[1:-1]
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if tok in ("true", "false"):
        return tok == "true"
    if tok == "nil":
        return None
    raise TemplateError(f"template: function {tok!r} not defined")


def _printf(fmt: str, *args: Any) -> str:
    conv = []
    it = iter(args)

    def repl(m: re.Match) -> str:
        if m.group(0) == "%%":
            return "%"
        try:
            v = next(it)
        except StopIteration:
            return "%!" + m.group(1) + "(MISSING)"
        conv.append(v)
        spec = m.group(0)[:-1]
        if m.group(1) == "d" and isinstance(v, int | float):
            return (spec + "d") % int(v)
        if m.group(1) == "q":
            return json.dumps(go_value(v))
        return (spec + "s") % go_value(v)

    return re.sub(r"%[-+ #0-9.]*([vsdqt])|%%", repl, fmt)


def _call(name: str, args: list[Any]) -> Any:
    def need(n: int) -> None:
        if len(args) != n:
            raise TemplateError(
                f"template: wrong number of args for {name}: want {n} got {len(args)}"
            )

    if name == "json":
        need(1)
        v = args[0]
        return json.dumps(None if v is _NO_VALUE else v, separators=(",", ":"), ensure_ascii=False)
    if name == "index":
        if not args:
            need(2)
        cur = args[0]
        for key in args[1:]:
            try:
                cur = cur[key]
            except (KeyError, IndexError, TypeError):
                if isinstance(cur, dict):
                    return _NO_VALUE
                raise TemplateError(
                    f"template: error calling index: index out of range: {key}"
                ) from None
        return cur
    if name == "join":
        need(2)
        return str(args[1]).join(go_value(v) for v in (args[0] or []))
    if name == "split":
        need(2)
        return str(args[0]).split(str(args[1]))
    if name in ("lower", "upper", "title"):
        need(1)
        return getattr(go_value(args[0]), name)()
    if name == "len":
        need(1)
        return len(args[0] or [])
    if name == "truncate":
        need(2)
        return go_value(args[0])[: int(args[1])]
    if name == "printf":
        if not args:
            need(1)
        return _printf(str(args[0]), *args[1:])
    if name == "print":
        return "".join(go_value(a) for a in args)
    if name == "println":
        return " ".join(go_value(a) for a in args) + "\n"
    if name in ("eq", "ne", "lt", "le", "gt", "ge"):
        if len(args) < 2:
            need(2)
        a, b = args[0], args[1]
        if name == "eq":
            return any(a == x for x in args[1:])
        if name == "ne":
            return a != b
        try:
            return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[name]
        except TypeError:
            raise TemplateError(f"template: incompatible types for comparison in {name}") from None
    if name == "not":
        need(1)
        return not _truthy(args[0])
    if name == "and":
        for a in args:
            if not _truthy(a):
                return a
        return args[-1] if args else True
    if name == "or":
        for a in args:
            if _truthy(a):
                return a
        return args[-1] if args else False
    raise TemplateError(f'template: function "{name}" not defined')


_FUNCS = {
    "json", "index", "join", "split", "lower", "upper", "title", "len", "truncate", "printf",
    "print", "println", "eq", "ne", "lt", "le", "gt", "ge", "not", "and", "or",
}  # fmt: skip


def _command(toks: list[str], dot: Any, ctx: _Ctx, piped: list[Any]) -> Any:
    if not toks:
        raise TemplateError("template: empty command")
    if toks[0] in _FUNCS:
        args = [_term(t, dot, ctx) for t in _group(toks[1:])] + piped
        return _call(toks[0], args)
    if len(toks) > 1 or piped:
        if re.fullmatch(r"[A-Za-z_]\w*", str(toks[0])):
            raise TemplateError(f'template: function "{toks[0]}" not defined')
        raise TemplateError(f"template: can't give argument to non-function {toks[0]}")
    return _term(toks[0], dot, ctx)


def _group(toks: list[str]) -> list:
    """Fold parenthesised sub-pipelines into nested lists."""
    out: list = []
    stack: list[list] = [out]
    for t in toks:
        if t == "(":
            stack.append([])
        elif t == ")":
            if len(stack) == 1:
                raise TemplateError("template: unexpected )")
            inner = stack.pop()
            stack[-1].append(inner)
        else:
            stack[-1].append(t)
    if len(stack) != 1:
        raise TemplateError("template: unclosed (")
    return out


def _term(t: Any, dot: Any, ctx: _Ctx) -> Any:
    if isinstance(t, list):
        return _pipeline(t, dot, ctx)
    return _operand(t, dot, ctx)


def _pipeline(toks: list, dot: Any, ctx: _Ctx) -> Any:
    value: list[Any] = []
    cmd: list = []
    cmds: list[list] = []
    for t in toks:
        if t == "|":
            cmds.append(cmd)
            cmd = []
        else:
            cmd.append(t)
    cmds.append(cmd)
    for c in cmds:
        flat = [x for x in c if isinstance(x, str)]
        if len(flat) == len(c):
            value = [_command(c, dot, ctx, value)]
        else:  # a parenthesised pipeline as an operand or argument
            if c and isinstance(c[0], str) and c[0] in _FUNCS:
                args = [_term(x, dot, ctx) for x in c[1:]] + value
                value = [_call(c[0], args)]
            elif len(c) == 1 and not value:
                value = [_term(c[0], dot, ctx)]
            else:
                raise TemplateError("template: can't give argument to non-function")
    return value[0]


def _eval_expr(expr: str, dot: Any, ctx: _Ctx) -> Any:
    return _pipeline(_group(_TOKEN.findall(expr)), dot, ctx)


def _run(nodes: list, dot: Any, ctx: _Ctx, out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "action":
            m = re.match(r"^(\$\w+)\s*:?=\s*(.*)$", node[1], re.S)
            if m:
                ctx.vars[m.group(1)] = _pipeline(_group(_TOKEN.findall(m.group(2))), dot, ctx)
                continue
            out.append(go_value(_pipeline(_group(_TOKEN.findall(node[1])), dot, ctx)))
        elif kind == "if":
            branch = node[2] if _truthy(_eval_expr(node[1], dot, ctx)) else node[3]
            _run(branch, dot, ctx, out)
        elif kind == "with":
            v = _eval_expr(node[1], dot, ctx)
            if _truthy(v):
                _run(node[2], v, ctx, out)
            else:
                _run(node[3], dot, ctx, out)
        elif kind == "range":
            expr = node[1]
            names: list[str] = []
            m = re.match(r"^(\$\w+)(?:\s*,\s*(\$\w+))?\s*:=\s*(.*)$", expr, re.S)
            if m:
                names = [n for n in (m.group(1), m.group(2)) if n]
                expr = m.group(3)
            v = _pipeline(_group(_TOKEN.findall(expr)), dot, ctx)
            if isinstance(v, dict):
                items = [(k, v[k]) for k in sorted(v)]
            elif isinstance(v, list | tuple):
                items = list(enumerate(v))
            elif v is None or v is _NO_VALUE:
                items = []
            elif isinstance(v, int):
                items = [(i, i) for i in range(v)]
            else:
                raise TemplateError(f"template: range can't iterate over {go_value(v)}")
            if not items:
                _run(node[3], dot, ctx, out)
            for k, item in items:
                if len(names) == 1:
                    ctx.vars[names[0]] = item
                elif len(names) == 2:
                    ctx.vars[names[0]], ctx.vars[names[1]] = k, item
                _run(node[2], item, ctx, out)


def render_template(template: str, data: Any, *, struct: bool = False) -> str:
    """Run a Go-template `--format` over `data` (a dict as Docker's JSON shows it).

    With `struct`, `data` stands for the Go struct Docker formats: an unknown top-level field
    is an error (as Go's is), not `<no value>`; the command line passes it."""
    nodes, _, _ = _parse(_lex(template), 0, ())
    out: list[str] = []
    _run(nodes, data, _Ctx(data, struct), out)
    return "".join(out)


# --- table headers -------------------------------------------------------------------------

_HEADER_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


def template_headers(template: str) -> tuple[bool, str]:
    """(is_table, body) for a format: "table {{.ID}}\\t{{.Size}}" -> (True, "{{.ID}}\\t{{.Size}}")."""
    stripped = template.lstrip()
    if stripped.startswith("table"):
        return True, stripped[len("table") :].lstrip()
    return False, template


def header_for(body: str) -> str:
    """The header line Docker prints for a `table` format: field names in capitals."""
    names = {
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "Tag": "TAG",
        "Digest": "DIGEST",
        "CreatedSince": "CREATED",
        "CreatedAt": "CREATED AT",
        "Size": "SIZE",
        "CreatedBy": "CREATED BY",
        "Comment": "COMMENT",
    }

    def repl(m: re.Match) -> str:
        expr = m.group(1).strip()
        key = expr.lstrip(".").split(".")[-1] if expr.startswith(".") else expr
        return names.get(key, key.upper())

    return _HEADER_ACTION.sub(repl, body.replace("\\t", "\t").replace("\\n", "\n"))
