"""Differential tests against Docker's own Go parser, through the PyPI package `dockerfile`.

The package wraps (an older version of) the official parser. It is optional: these tests skip
when it is not installed (`.venv/bin/pip install dockerfile`). Inputs are the golden files and
generated Dockerfiles built from pieces that exercise the line rules.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from builder.parser import parse_nodes

dockerfile = pytest.importorskip("dockerfile")

GOLDEN = Path(__file__).parent / "golden"


def _ours(text: str) -> list[tuple]:
    out = []
    for n in parse_nodes(text).nodes:
        target = n.sub if n.sub is not None else n
        value = list(target.args)
        if target.cmd.lower() in ("env", "label"):
            value = [v for i, v in enumerate(value) if i % 3 != 2]  # the oracle drops separators
        sub = n.sub.cmd.upper() if n.sub is not None else None
        flags = list(n.flags)  # the wrapper reports ONBUILD's own flags, not its trigger's
        json_form = n.json if n.sub is None else n.sub.json
        docs = [(h.name, h.fd, h.content) for h in n.heredocs]
        if n.sub is not None:
            docs = []  # the wrapper does not report an ONBUILD trigger's heredocs (lines agree)
        out.append((n.cmd.upper(), sub, json_form, flags, value, n.start_line, n.end_line, docs))
    return out


def _theirs(text: str) -> list[tuple]:
    out = []
    for c in dockerfile.parse_string(text):
        docs = [(h.name, h.file_descriptor, h.content) for h in c.heredocs]
        out.append(
            (
                (c.cmd or "").upper(),
                c.sub_cmd.upper() if c.sub_cmd else None,
                c.json,
                list(c.flags),
                list(c.value),
                c.start_line,
                c.end_line,
                docs,
            )
        )
    return out


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.Dockerfile")), ids=lambda p: p.stem)
def test_golden_files_parse_as_the_go_parser_does(path: Path) -> None:
    text = path.read_bytes().decode("utf-8")  # keep CRLF line endings as they are
    assert _ours(text) == _theirs(text)


_PIECES = [
    "RUN echo hello",
    "RUN echo a \\\n    b",
    "RUN echo a\\\n# comment\nb",
    "RUN echo a \\\n\n  c",
    "RUN ['x', 'y']",
    'RUN ["x", "y"]',
    'CMD ["a", 1]',
    "CMD",
    "ENTRYPOINT []",
    'ENV A=1 B=\'two words\' C="x\\"y"',
    "ENV LEGACY value with  spaces",
    'LABEL a=b c="d e"',
    'ARG X Y=1 Z="a b"',
    'COPY --chown=1:1 --from="st age" a b /dst/',
    "COPY -- --weird /dst/",
    'ADD ["a b", "/c/"]',
    "EXPOSE 80 443/tcp",
    "VOLUME /a /b",
    "HEALTHCHECK --interval=5s CMD curl -f http://x/ || exit 1",
    "HEALTHCHECK NONE",
    "ONBUILD RUN echo built",
    "ONBUILD",
    "USER app:app",
    "WORKDIR /w",
    "STOPSIGNAL SIGTERM",
    "MAINTAINER me",
    "FOO bar baz",
    "run lower case",
    "RUN <<EOF\nbody\nEOF",
    "RUN <<-EOF\n\tbody\n\tEOF",
    "COPY <<'A' /a\n$X\nA",
    "RUN 3<<A cat <&3 && cat <<B\na\nA\nb\nB",
    "RUN echo trailing \\\\",
    "RUN \\\n  leading",
    "   RUN indented",
    "# just a comment",
    "",
]


@pytest.mark.parametrize("seed", range(40))
def test_generated_dockerfiles_parse_as_the_go_parser_does(seed: int) -> None:
    rng = random.Random(seed)
    pieces = ["FROM alpine"] + [rng.choice(_PIECES) for _ in range(rng.randint(1, 12))]
    eol = "\r\n" if seed % 5 == 0 else "\n"
    text = eol.join("\n".join(pieces).split("\n")) + (eol if seed % 3 else "")
    if 'CMD ["a", 1]' in pieces:
        with pytest.raises(Exception):  # noqa: B017 - both sides must reject it
            dockerfile.parse_string(text)
        with pytest.raises(Exception):  # noqa: B017
            parse_nodes(text)
        return
    assert _ours(text) == _theirs(text)


_KEYWORDS = ["RUN", "CMD", "ENV", "LABEL", "ARG", "COPY", "ADD", "FROM", "EXPOSE", "VOLUME"]
_KEYWORDS += ["HEALTHCHECK", "ONBUILD", "USER", "SHELL", "ENTRYPOINT", "XYZ", "run"]
_ATOMS = ["\\", '"', "'", " ", "  ", "\t", "[", "]", ",", "=", "<<", "<<-", "#", "\n", "-"]
_ATOMS += ["--", "a", "b", "EOF", "$", "{", "}", "x=y", "é", "\\\n", '"q"', "1"]


@pytest.mark.parametrize("seed", range(300))
def test_fuzzed_lines_parse_or_fail_as_the_go_parser_does(seed: int) -> None:
    rng = random.Random(1000 + seed)
    lines = ["FROM alpine"]
    for _ in range(rng.randint(1, 6)):
        body = "".join(rng.choice(_ATOMS) for _ in range(rng.randint(0, 14)))
        lines.append(f"{rng.choice(_KEYWORDS)} {body}")
    text = "\n".join(lines) + "\n"
    try:
        theirs = _theirs(text)
    except Exception:  # noqa: BLE001 - the oracle's error type is not ours
        with pytest.raises(Exception):  # noqa: B017
            parse_nodes(text)
        return
    ours = _ours(text)
    # Known, deliberate difference: the Go flag scanner reads bytes as characters, so a
    # non-ASCII flag comes out as mojibake there ("é" -> "Ã©"); we keep the text intact.
    ours = [(*o[:3], [_as_go_bytes(f) for f in o[3]], *o[4:]) for o in ours]
    assert ours == theirs, text


def _as_go_bytes(flag: str) -> str:
    return flag.encode("utf-8").decode("latin-1")
