"""The parse-tree dump of `pybuild debug parse`: Docker's s-expression format, byte for byte.

One line per instruction: `(keyword ["--flag" ...] "arg" ...)`, strings quoted as Go's
`strconv.Quote` quotes them, `ONBUILD` nesting its instruction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from builder.parser import Node

_SIMPLE = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(text: str) -> str:
    """`text` quoted like Go's strconv.Quote (printable characters kept as themselves)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    out = ['"']
    for ch in text:
        simple = _SIMPLE.get(ch)
        if simple is not None:
            out.append(simple)
            continue
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            # A byte that was not valid UTF-8 (read with surrogateescape): Go writes \xNN.
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def dump_node(node: Node) -> str:
    """One instruction as an s-expression, without the enclosing parentheses' newline."""
    parts = [node.cmd.lower()]
    if node.flags:
        parts.append("[" + " ".join(go_quote(f) for f in node.flags) + "]")
    if node.sub is not None:
        parts.append(dump_node(node.sub))
    else:
        parts.extend(go_quote(a) for a in node.args)
    return "(" + " ".join(parts).strip() + ")"


def dump(nodes: list[Node]) -> str:
    """The whole dump: one line per instruction, each ending in a newline."""
    return "".join(dump_node(n) + "\n" for n in nodes)
