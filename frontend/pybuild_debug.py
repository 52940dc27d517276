"""`pybuild debug ...`: the front end's view of a Dockerfile, for people and for checkers.

    pybuild debug parse [--json] FILE    Docker's parse tree (dump format, or JSON)
    pybuild debug expand                 JSON lines in, JSON lines out (shell-word expansion)
    pybuild debug dag FILE [--target T] [--build-arg K=V ...]   the stage graph

Kept light: only the standard library and builder/ are imported (no rich).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from frontend.cli import make_parser, run_handler


def _read(path: str) -> tuple[str, str]:
    from builder.parser import read_dockerfile

    if path == "-":
        data = sys.stdin.buffer.read().decode("utf-8", errors="surrogateescape")
        return data, "Dockerfile"
    try:
        return read_dockerfile(path), path
    except OSError as exc:
        from cache.errors import PydockError

        raise PydockError(f"cannot read {path}: {exc.strerror}") from None


def _write(text: str) -> None:
    # Bytes that were not UTF-8 in the input go back out as they came.
    sys.stdout.buffer.write(text.encode("utf-8", errors="surrogateescape"))
    sys.stdout.flush()


def cmd_parse(args: argparse.Namespace) -> int:
    from builder.parser import parse, parse_nodes

    text, name = _read(args.file)
    result = parse_nodes(text, name)
    if args.check:
        parse(text, name)
    if args.json:
        _write(json.dumps([_node_json(n) for n in result.nodes], ensure_ascii=False, indent=1))
        _write("\n")
    else:
        from builder.dump import dump

        _write(dump(result.nodes))
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    return 0


def _node_json(node) -> dict:
    value = list(node.args)
    if node.sub is not None:
        value = [node.sub.cmd, *node.sub.args]
    return {
        "cmd": node.cmd.lower(),
        "flags": list(node.flags),
        "json": node.json,
        "value": value,
        "heredocs": [
            {"name": h.name, "content": h.content, "expand": h.expand, "fd": h.fd, "chomp": h.chomp}
            for h in node.heredocs
        ],
        "original": node.original,
        "start_line": node.start_line,
        "end_line": node.end_line,
    }


def cmd_expand(args: argparse.Namespace) -> int:
    from builder.errors import ExpansionError
    from builder.expand import Lexer

    lexers: dict[str, Lexer] = {}
    out = sys.stdout
    for raw in sys.stdin.buffer:
        line = raw.decode("utf-8", errors="surrogateescape").strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            word = req["word"]
            env = {str(k): str(v) for k, v in (req.get("env") or {}).items()}
            escape = req.get("escape") or "\\"
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            out.write(json.dumps({"error": f"bad request: {exc}"}) + "\n")
            continue
        lexer = lexers.get(escape) or lexers.setdefault(escape, Lexer(escape=escape))
        try:
            value, words = lexer.process(word, env)
        except ExpansionError as exc:
            answer: dict = {"error": exc.msg}
        else:
            answer = {"words": words} if req.get("split") else {"value": value}
        out.write(json.dumps(answer, ensure_ascii=False) + "\n")
    out.flush()
    return 0


def cmd_dag(args: argparse.Namespace) -> int:
    from builder.dag import format_graph, plan
    from builder.parser import parse

    text, name = _read(args.file)
    build_args: dict[str, str] = {}
    for item in args.build_arg or []:
        key, eq, value = item.partition("=")
        if not eq:
            import os

            if key not in os.environ:
                continue
            value = os.environ[key]
        build_args[key] = value
    graph = plan(parse(text, name), build_args, args.target)
    sys.stdout.write(format_graph(graph))
    for warning in graph.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser("pybuild debug", "Show how pybuild reads a Dockerfile.", 1)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser.__class__)
    p = sub.add_parser("parse", help="print the parse tree of a Dockerfile")
    p.add_argument("--json", action="store_true", help="one JSON object per instruction")
    p.add_argument("--check", action="store_true", help="also type-check instructions and flags")
    p.add_argument("file", metavar="FILE", help="the Dockerfile ('-' for standard input)")
    p.set_defaults(func=cmd_parse)
    e = sub.add_parser("expand", help="expand words read as JSON lines on standard input")
    e.set_defaults(func=cmd_expand)
    d = sub.add_parser("dag", help="print the stage graph of a Dockerfile")
    d.add_argument("file", metavar="FILE")
    d.add_argument("--target", default=None, help="build only what this stage needs")
    d.add_argument("--build-arg", action="append", metavar="KEY=VALUE")
    d.set_defaults(func=cmd_dag)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 1
    return run_handler("pybuild", args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
