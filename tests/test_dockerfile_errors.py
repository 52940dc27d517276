"""Every Dockerfile error says where (line, column) and what, and renders with a marker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder.dag import plan
from builder.errors import DockerfileError
from builder.parser import parse

ROOT = Path(__file__).parent.parent

# (name, Dockerfile text, line, column, a part of the message)
CASES = [
    (
        "unknown instruction",
        "FROM a\n  COPPY . /app\n",
        2,
        3,
        'unknown instruction "COPPY" (did you mean "COPY"?)',
    ),
    (
        "instruction before FROM",
        "ARG X=1\nRUN echo hi\nFROM a\n",
        2,
        1,
        "RUN instruction before the first FROM",
    ),
    (
        "JSON element not a string",
        'FROM a\nCMD ["echo", 1]\n',
        2,
        5,
        "arrays must be comprised of strings only",
    ),
    (
        "nested JSON array",
        'FROM a\nRUN ["a", ["b"]]\n',
        2,
        5,
        "arrays must be comprised of strings only",
    ),
    ("ENV without value", "FROM a\nENV KEY\n", 2, 8, "ENV must have two arguments"),
    ("LABEL without value", "FROM a\nLABEL key\n", 2, 10, "LABEL must have two arguments"),
    (
        "ENV word without =",
        "FROM a\nENV A=1 B\n",
        2,
        9,
        'can\'t find = in "B"',
    ),
    ("empty file", "", 1, 0, "file with no instructions"),
    ("only comments", "# nothing\n\n# here\n", 3, 0, "file with no instructions"),
    (
        "bad escape directive",
        "# escape=x\nFROM a\n",
        1,
        10,
        "invalid escape token 'x' does not match ` or \\",
    ),
    (
        "escape directive twice",
        "# escape=`\n# escape=\\\nFROM a\n",
        2,
        1,
        "only one escape parser directive can be used",
    ),
    (
        "unterminated heredoc",
        "FROM a\nRUN cat <<EOF\nhello\n",
        2,
        9,
        "unterminated heredoc 'EOF'",
    ),
    (
        "unterminated double quote",
        'FROM a\nENV A="abc\n',
        2,
        7,
        "looking for matching double-quote",
    ),
    (
        "unterminated single quote",
        "FROM a\nWORKDIR '/x\n",
        2,
        9,
        "looking for matching single-quote",
    ),
    ("bad substitution", "FROM a\nUSER ${}\n", 2, 6, "bad substitution"),
    (
        "unknown flag",
        "FROM a\nCOPY --form=b x /y\n",
        2,
        6,
        "unknown flag: --form for COPY (did you mean --from?)",
    ),
    ("flag on an instruction without flags", "FROM a\nENV --x=1 A=b\n", 2, 5, "unknown flag: --x"),
    ("flag without value", "FROM a\nCOPY --chown x /y\n", 2, 6, "missing a value on flag: --chown"),
    (
        "bad boolean flag",
        "FROM a\nCOPY --link=maybe x /y\n",
        2,
        6,
        "expecting boolean value for flag --link, not: maybe",
    ),
    (
        "duplicate flag",
        "FROM a\nCOPY --from=a --from=b x /y\n",
        2,
        15,
        "duplicate flag specified: --from",
    ),
    (
        "bad mount type",
        "FROM a\nRUN --mount=type=nfs,target=/x true\n",
        2,
        5,
        "unsupported mount type 'nfs'",
    ),
    ("bad port", "FROM a\nEXPOSE 80 http\n", 2, 11, "invalid port 'http'"),
    ("port out of range", "FROM a\nEXPOSE 70000/tcp\n", 2, 8, "up to 65535"),
    ("bad protocol", "FROM a\nEXPOSE 80/tcpx\n", 2, 8, "unknown protocol 'tcpx'"),
    (
        "bad stage name",
        "FROM a AS 1st\n",
        1,
        11,
        'invalid name for build stage: "1st"',
    ),
    ("FROM with two words", "FROM a b\n", 1, 6, "FROM requires either one or three arguments"),
    (
        "bad healthcheck duration",
        "FROM a\nHEALTHCHECK --interval=soon CMD true\n",
        2,
        13,
        "invalid duration 'soon' for --interval",
    ),
    ("COPY without destination", "FROM a\nCOPY onlyone\n", 2, 6, "COPY requires at least two"),
    ("SHELL not JSON", "FROM a\nSHELL /bin/sh -c\n", 2, 7, "SHELL requires the arguments"),
    (
        "continued line error points into the right line",
        "FROM a\nRUN --mount=type=cache,target=/x \\\n    --netwrk=none true\n",
        3,
        5,
        "unknown flag: --netwrk for RUN (did you mean --network?)",
    ),
]


@pytest.mark.parametrize("name,text,line,column,message", CASES, ids=[c[0] for c in CASES])
def test_parse_error_location(name: str, text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse(text, "Dockerfile")
    err = info.value
    assert message in err.msg
    assert (err.line, err.column) == (line, column)
    assert str(err).startswith(
        f"Dockerfile:{line}:{column}: " if column else f"Dockerfile:{line}: "
    )


DAG_CASES = [
    (
        "copy from a stage index that does not exist",
        "FROM a\nFROM b\nCOPY --from=5 /x /y\n",
        3,
        1,
        "invalid stage index 5",
    ),
    (
        "duplicate stage name",
        "FROM a AS build\nFROM b AS Build\n",
        2,
        1,
        'duplicate stage name "build"',
    ),
    (
        "cycle",
        "FROM a AS x\nCOPY --from=y / /\nFROM b AS y\nCOPY --from=x / /\n",
        2,
        1,
        "circular dependency detected on stage: y",
    ),
    (
        "bad substitution in FROM",
        "ARG V\nFROM img:${V:?required}\n",
        2,
        1,
        "V: required",
    ),
]


@pytest.mark.parametrize("name,text,line,column,message", DAG_CASES, ids=[c[0] for c in DAG_CASES])
def test_plan_error_location(name: str, text: str, line: int, column: int, message: str) -> None:
    df = parse(text)
    with pytest.raises(DockerfileError) as info:
        plan(df, {}, None)
    assert message in info.value.msg
    assert (info.value.line, info.value.column) == (line, column)


def test_unknown_target_names_the_stages() -> None:
    df = parse("FROM a AS one\nFROM b AS two\n")
    with pytest.raises(DockerfileError, match='target stage "three" could not be found'):
        plan(df, {}, "three")


def test_render_shows_source_and_marker() -> None:
    with pytest.raises(DockerfileError) as info:
        parse("FROM a\n\tCOPPY . /app\n", "df/Dockerfile")
    text = info.value.render()
    assert text.splitlines() == [
        'df/Dockerfile:2:2: unknown instruction "COPPY" (did you mean "COPY"?)',
        " \tCOPPY . /app",
        " \t^",
    ]


def test_cli_reports_error_once_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM a\nCOPY --form=b x /y\n")
    p = subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", "debug", "parse", "--check", str(f)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 1
    lines = p.stderr.splitlines()
    assert (
        lines[0] == f"pybuild: error: {f}:2:6: unknown flag: --form for COPY (did you mean --from?)"
    )
    assert lines[1:] == [" COPY --form=b x /y", "      ^"]
    assert "Traceback" not in p.stderr
