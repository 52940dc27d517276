"""A cache of parsed and planned Dockerfiles, so a rebuild of an unchanged file skips the
parser (and the imports of lark, the typed instructions and the planner):
ROOT/buildcache/parsed/<key>.json, keyed by the text, the file name and the parser's and
planner's own source files (a changed parser never reads an old entry).

Besides the parse tree, an entry keeps the outcome of `builder.dag.plan` for each set of
build args and target it was planned with (`PlannedStage`s, global ARG values, warnings):
the one planner's answer, remembered, so the solver reads stages the same way either path.

Only files that parsed and validated cleanly are stored; the entry holds Docker's parse tree
(every `builder.nodes.Node` field, source offsets included, so the typed instructions and the
build graph are made from it exactly as from a fresh parse).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import xxhash

from builder.nodes import Heredoc, Node, SourceMap
from cache.staging import atomic_write

_PARSER_FILES = (
    "parser.py",
    "nodes.py",
    "dockerfile.lark",
    "instructions.py",
    "expand.py",
    "parsecache.py",
    "dag.py",
)


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
        "rest": n.rest,
        "rest_offset": n.rest_offset,
        "flag_offsets": n.flag_offsets,
        "srcmap": [n.srcmap.starts, n.srcmap.lines, n.srcmap.cols],
        "base": n.base,
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
        rest=d["rest"],
        rest_offset=d["rest_offset"],
        flag_offsets=list(d["flag_offsets"]),
        srcmap=SourceMap(*(list(x) for x in d["srcmap"])),
        base=d["base"],
    )


class ParsedFile:
    """What the solver needs of a parse: the nodes, the escape character, the directives,
    the parser's warnings, and the plans made of it so far (by `plan_key`)."""

    def __init__(
        self,
        nodes: list[Node],
        escape: str,
        directives: dict[str, str] | None = None,
        warnings: list[str] | None = None,
        plans: dict[str, dict] | None = None,
    ) -> None:
        self.nodes = nodes
        self.escape = escape
        self.directives = dict(directives or {})
        self.warnings = list(warnings or [])
        self.plans = dict(plans or {})


class PlannedStage:
    """One stage of `builder.dag.plan`'s build order as the solver walks it: the FROM line's
    base (global ARGs expanded), the stage it starts from, the stages it needs, and the
    parse-tree nodes of its instructions."""

    __slots__ = ("index", "name", "base", "base_stage", "deps", "from_line", "nodes")

    def __init__(
        self,
        index: int,
        name: str | None,
        base: str,
        base_stage: int | None,
        deps: list[int],
        from_line: int,
        nodes: list[Node],
    ) -> None:
        self.index = index
        self.name = name
        self.base = base
        self.base_stage = base_stage
        self.deps = deps
        self.from_line = from_line
        self.nodes = nodes

    @property
    def display(self) -> str:
        return self.name or f"stage-{self.index}"


def plan_key(build_args: dict[str, str], target: str | None) -> str:
    """The key of a plan among an entry's plans (hashed: build args may be private)."""
    data = json.dumps([sorted(build_args.items()), target or ""])
    return xxhash.xxh3_128_hexdigest(data.encode("utf-8", "surrogateescape"))


def plan_record(graph) -> dict:  # noqa: ANN001 - builder.dag.BuildGraph
    """What `stages_of` needs of a `BuildGraph`, as JSON-able data."""
    return {
        "order": [
            {
                "index": s.index,
                "name": s.name,
                "base": s.base,
                "base_stage": s.base_stage,
                "deps": s.deps,
                "from_line": s.from_instruction.start_line,
            }
            for s in (graph.stages[i] for i in graph.order)
        ],
        "meta_args": {
            **graph.platform_args,
            **{k: v for k, v in graph.meta_args.items() if v is not None},
        },
        "warnings": list(graph.warnings),
        # every stage of the file (built or not), for errors naming a --from stage
        "stages": [[s.index, s.name, s.from_instruction.start_line] for s in graph.stages],
    }


def stages_of(record: dict, nodes: list[Node]) -> list[PlannedStage]:
    """The stages of a plan record, each with its nodes (stage k runs from the k-th FROM
    node to the next one, as `builder.dag.plan` splits the instructions)."""
    starts = [i for i, n in enumerate(nodes) if n.cmd.upper() == "FROM"]
    ends = [*starts[1:], len(nodes)]
    return [
        PlannedStage(
            s["index"],
            s["name"],
            s["base"],
            s["base_stage"],
            list(s["deps"]),
            s["from_line"],
            nodes[starts[s["index"]] + 1 : ends[s["index"]]],
        )
        for s in record["order"]
    ]


def load(root: Path, text: str, filename: str) -> ParsedFile | None:
    path = Path(root) / "buildcache" / "parsed" / f"{_key(text, filename)}.json"
    try:
        doc = json.loads(path.read_bytes())
        return ParsedFile(
            [_node_from_json(n) for n in doc["nodes"]],
            doc["escape"],
            doc["directives"],
            doc["warnings"],
            doc["plans"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(
    root: Path,
    text: str,
    filename: str,
    nodes: list[Node],
    escape: str,
    directives: dict[str, str] | None = None,
    warnings: list[str] | None = None,
    plans: dict[str, dict] | None = None,
) -> None:
    d = Path(root) / "buildcache" / "parsed"
    try:
        d.mkdir(parents=True, exist_ok=True)
        data = json.dumps(
            {
                "escape": escape,
                "directives": dict(directives or {}),
                "warnings": list(warnings or []),
                "plans": dict(plans or {}),
                "nodes": [_node_to_json(n) for n in nodes],
            }
        )
        target = d / f"{_key(text, filename)}.json"
        atomic_write(d, target, data.encode(), 0o600, sync=False, kind=".parsed")
    except OSError:
        pass  # a cache: failing to write it only costs time next run
