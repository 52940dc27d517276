"""A cache of parsed Dockerfiles, so a rebuild of an unchanged file skips the parser (and
the import of lark): ROOT/buildcache/parsed/<key>.json, keyed by the text, the file name and
the parser's own source files (a changed parser never reads an old entry).

Only files that parsed and validated cleanly are stored; the entry holds Docker's parse tree
(`builder.nodes.Node` fields the solver reads).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import xxhash

from builder.nodes import Heredoc, Node

_PARSER_FILES = ("parser.py", "nodes.py", "dockerfile.lark", "instructions.py", "expand.py")


def _key(text: str, filename: str) -> str:
    h = xxhash.xxh3_128()
    here = Path(__file__).resolve().parent
    for name in _PARSER_FILES:
        try:
            st = os.stat(here / name)
        except FileNotFoundError:
            continue
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    h.update(filename.encode() + b"\0")
    h.update(text.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _node_to_json(n: Node) -> dict:
    return {
        "cmd": n.cmd,
        "flags": n.flags,
        "args": n.args,
        "json": n.json,
        "heredocs": [[h.name, h.content, h.expand, h.fd, h.chomp] for h in n.heredocs],
        "original": n.original,
        "start_line": n.start_line,
        "end_line": n.end_line,
        "sub": _node_to_json(n.sub) if n.sub is not None else None,
    }


def _node_from_json(d: dict) -> Node:
    return Node(
        cmd=d["cmd"],
        flags=list(d["flags"]),
        args=list(d["args"]),
        json=d["json"],
        heredocs=[Heredoc(*h) for h in d["heredocs"]],
        original=d["original"],
        start_line=d["start_line"],
        end_line=d["end_line"],
        sub=_node_from_json(d["sub"]) if d.get("sub") else None,
    )


class ParsedFile:
    """What the solver needs of a parse: the nodes and the escape character."""

    def __init__(self, nodes: list[Node], escape: str) -> None:
        self.nodes = nodes
        self.escape = escape


def load(root: Path, text: str, filename: str) -> ParsedFile | None:
    path = Path(root) / "buildcache" / "parsed" / f"{_key(text, filename)}.json"
    try:
        doc = json.loads(path.read_bytes())
        return ParsedFile([_node_from_json(n) for n in doc["nodes"]], doc["escape"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(root: Path, text: str, filename: str, nodes: list[Node], escape: str) -> None:
    d = Path(root) / "buildcache" / "parsed"
    try:
        d.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"escape": escape, "nodes": [_node_to_json(n) for n in nodes]})
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".parsed-")
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, d / f"{_key(text, filename)}.json")
    except OSError:
        pass  # a cache: failing to write it only costs time next run
