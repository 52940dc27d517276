"""The Dockerfile parser, from Docker's documented rules: golden files and rule tables.

Golden files (tests/golden/NAME.Dockerfile) are our own excerpts in the style of official
images; NAME.dump is the expected parse dump (checked against the Go parser by
test_parser_differential.py when the `dockerfile` package is installed).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.dump import dump, go_quote
from builder.instructions import (
    AddInstruction,
    ArgInstruction,
    CmdInstruction,
    CopyInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    HealthcheckInstruction,
    LabelInstruction,
    OnbuildInstruction,
    RunInstruction,
    ShellInstruction,
)
from builder.parser import parse, parse_nodes

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).parent.parent


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.Dockerfile")), ids=lambda p: p.stem)
def test_golden_dump(path: Path) -> None:
    text = _read(path)
    expected = _read(path.with_suffix(".dump"))
    assert dump(parse_nodes(text, path.name).nodes) == expected
    parse(text, path.name)  # and every instruction and flag in it is valid


def test_golden_heredocs_json() -> None:
    nodes = parse_nodes(_read(GOLDEN / "heredocs.Dockerfile")).nodes
    want = json.loads(_read(GOLDEN / "heredocs.json"))
    got = [
        {
            "cmd": n.cmd.lower(),
            "start_line": n.start_line,
            "end_line": n.end_line,
            "heredocs": [
                {
                    "name": h.name,
                    "content": h.content,
                    "expand": h.expand,
                    "fd": h.fd,
                    "chomp": h.chomp,
                }
                for h in n.heredocs
            ],
        }
        for n in nodes
    ]
    assert got == [{k: o[k] for k in ("cmd", "start_line", "end_line", "heredocs")} for o in want]


def d(text: str) -> str:
    """The dump of `text` without the trailing newline of its last line."""
    return dump(parse_nodes(text).nodes).rstrip("\n")


# (Dockerfile text, expected dump): one row per documented rule.
RULES = [
    # keywords are case-insensitive and dumped lower-case; arguments keep their case
    ("from Alpine AS Build", '(from "Alpine" "AS" "Build")'),
    # continuation: nothing inserted, leading blanks of the next line kept
    ("RUN echo hello\\\nworld", '(run "echo helloworld")'),
    ("RUN a \\\n    b", '(run "a     b")'),
    # blanks after the escape still continue
    ("RUN a \\  \t\nb", '(run "a b")'),
    # a doubled escape at end of line does not continue
    ("ENV C x\\\\\nENV D y", '(env "C" "x\\\\\\\\" "")\n(env "D" "y" "")'),
    # comments and blank lines inside a continuation are dropped
    ("RUN a \\\n# note\n\n  b", '(run "a   b")'),
    # a line with only the escape continues; a continuation at end of file ends it
    ("RUN a \\\n\\\nb", '(run "a b")'),
    ("RUN last \\", '(run "last")'),
    # flags: quote removal, `--` ends them
    ('COPY --from="a b" x y', '(copy ["--from=a b"] "x" "y")'),
    ("COPY -- --weird /dst/", '(copy "--weird" "/dst/")'),
    ("RUN echo --not-a-flag", '(run "echo --not-a-flag")'),
    # JSON form and its fallbacks
    ('CMD ["a", "b c"]', '(cmd "a" "b c")'),
    ("CMD []", "(cmd)"),
    ("CMD ['a']", "(cmd \"['a']\")"),
    ('CMD ["unterminated"', '(cmd "[\\"unterminated\\"")'),
    ('RUN ["\\u00e9\\t"]', '(run "é\\t")'),
    # ADD/COPY/VOLUME split on blanks without quote handling
    ('COPY "x y" z', '(copy "\\"x" "y\\"" "z")'),
    ("VOLUME /a  /b", '(volume "/a" "/b")'),
    # ENV/LABEL: legacy and key=value forms
    ("ENV K some  value", '(env "K" "some  value" "")'),
    ('ENV A=1 B="x y"', '(env "A" "1" "=" "B" "\\"x y\\"" "=")'),
    ("LABEL a=b", '(label "a" "b" "=")'),
    ("ENV", "(env)"),
    # ARG keeps quotes in the word
    ('ARG abc="123 456" def', '(arg "abc=\\"123 456\\"" "def")'),
    # HEALTHCHECK: type word, then CMD-like
    ("HEALTHCHECK --retries=3 CMD curl x", '(healthcheck ["--retries=3"] "CMD" "curl x")'),
    ("HEALTHCHECK NONE", '(healthcheck "NONE")'),
    ("HEALTHCHECK", "(healthcheck)"),
    # ONBUILD nests
    ("ONBUILD RUN echo built", '(onbuild (run "echo built"))'),
    ("ONBUILD", "(onbuild)"),
    # unknown instructions are kept with one empty argument at this stage
    ("FOO bar baz", '(foo "")'),
    # whole-text instructions
    ("USER  app:app ", '(user "app:app")'),
    ("EXPOSE 80   443/tcp", '(expose "80" "443/tcp")'),
    # heredocs: only the instruction line appears
    ("RUN <<EOF\necho hi\nEOF", '(run "<<EOF")'),
]


@pytest.mark.parametrize("text,expected", RULES, ids=[r[0][:30] for r in RULES])
def test_rule(text: str, expected: str) -> None:
    assert d(text) == expected


def test_crlf_and_bom() -> None:
    text = "\ufeffFROM a\r\nRUN x \\\r\n  y\r\n"
    assert d(text) == '(from "a")\n(run "x   y")'


def test_escape_directive_backtick() -> None:
    text = "# escape=`\nFROM a\nRUN dir C:\\ `\n  && echo done\n"
    result = parse_nodes(text)
    assert result.escape == "`"
    assert result.directives == {"escape": "`"}
    assert dump(result.nodes) == '(from "a")\n(run "dir C:\\\\   && echo done")\n'


def test_directives_only_at_the_top() -> None:
    text = "# syntax=docker/dockerfile:1\n# check=skip=all\n\n# escape=`\nFROM a\n"
    result = parse_nodes(text)
    assert result.directives == {"syntax": "docker/dockerfile:1", "check": "skip=all"}
    assert result.escape == "\\"


def test_line_spans_cover_continuations_and_heredocs() -> None:
    text = "FROM a\n\nRUN a \\\n  b\n\nCOPY <<A <<B /x\n1\nA\n2\nB\n# c\nCMD x\n"
    spans = [(n.start_line, n.end_line) for n in parse_nodes(text).nodes]
    assert spans == [(1, 1), (3, 4), (6, 10), (12, 12)]


HEREDOC_ROWS = [
    # (line, [(name, expand, fd, chomp)])
    ("RUN <<EOF", [("EOF", True, 0, False)]),
    ("RUN <<-EOF", [("EOF", True, 0, True)]),
    ('RUN <<"EOF"', [("EOF", False, 0, False)]),
    ("RUN <<'EOF'", [("EOF", False, 0, False)]),
    ("RUN 3<<EOF", [("EOF", True, 3, False)]),
    ("RUN cat <<A <<B", [("A", True, 0, False), ("B", True, 0, False)]),
    ('RUN ["sh", "<<EOF"]', []),
    ("CMD <<EOF", []),
    ("RUN echo a<<EOF", []),
]


@pytest.mark.parametrize("line,want", HEREDOC_ROWS, ids=[r[0] for r in HEREDOC_ROWS])
def test_heredoc_openers(line: str, want: list) -> None:
    names = [w[0] for w in want]
    body = "".join(f"x\n{n}\n" for n in names)
    text = f"FROM a\n{line}\n{body}"
    node = parse_nodes(text).nodes[1]
    assert [(h.name, h.expand, h.fd, h.chomp) for h in node.heredocs] == want


def test_heredoc_chomp_body_and_copy_sources() -> None:
    text = "FROM a\nCOPY <<-EOF <<'RAW' /dst/\n\tline $X\n\tEOF\n$Y\nRAW\n"
    copy = parse(text).instructions[1]
    assert isinstance(copy, CopyInstruction)
    assert copy.sources == []
    assert [(s.path, s.data, s.expand) for s in copy.heredoc_sources] == [
        ("EOF", "line $X\n", True),
        ("RAW", "$Y\n", False),
    ]
    assert copy.dest == "/dst/"


def test_typed_instructions() -> None:
    text = "\n".join(
        [
            "ARG V=1",
            "FROM --platform=linux/amd64 img:$V AS Build",
            "RUN --mount=type=cache,target=/c,id=x --network=none make",
            'CMD ["a", "b"]',
            'SHELL ["/bin/sh", "-c"]',
            "ENV A=1 B=2",
            'LABEL x="y z"',
            "COPY --from=build --chown=1:2 --chmod=644 --link --exclude=*.o a b /d/",
            "ADD --checksum=sha256:abc --keep-git-dir https://x/y.git /src",
            "EXPOSE 80 53/udp",
            "HEALTHCHECK --interval=1m30s --timeout=500ms --retries=2 CMD curl x",
            "ONBUILD RUN echo hi",
        ]
    )
    ins = parse(text).instructions
    arg, frm, run, cmd, shell, env, label, copy, add, expose, hc, onb = ins
    assert isinstance(arg, ArgInstruction) and arg.args == [("V", "1")]
    assert isinstance(frm, FromInstruction)
    assert (frm.image, frm.stage_name, frm.platform) == ("img:$V", "build", "linux/amd64")
    assert isinstance(run, RunInstruction) and run.command == ["make"] and run.shell_form
    assert run.network == "none"
    assert run.mounts[0].type == "cache" and run.mounts[0].target == "/c"
    assert isinstance(cmd, CmdInstruction) and cmd.command == ["a", "b"] and not cmd.shell_form
    assert isinstance(shell, ShellInstruction) and shell.shell == ["/bin/sh", "-c"]
    assert isinstance(env, EnvInstruction) and env.pairs == [("A", "1"), ("B", "2")]
    assert isinstance(label, LabelInstruction) and label.pairs == [("x", '"y z"')]
    assert isinstance(copy, CopyInstruction)
    assert (copy.from_stage, copy.chown, copy.chmod, copy.link) == ("build", "1:2", "644", True)
    assert copy.exclude == ["*.o"] and copy.sources == ["a", "b"] and copy.dest == "/d/"
    assert isinstance(add, AddInstruction)
    assert add.checksum == "sha256:abc" and add.keep_git_dir
    assert isinstance(expose, ExposeInstruction) and expose.ports == ["80", "53/udp"]
    assert isinstance(hc, HealthcheckInstruction)
    assert hc.test == ["CMD-SHELL", "curl x"]
    assert (hc.interval, hc.timeout, hc.retries) == (90.0, 0.5, 2)
    assert isinstance(onb, OnbuildInstruction) and onb.expression == "RUN echo hi"
    assert isinstance(onb.trigger, RunInstruction)
    assert [(i.start_line, i.end_line) for i in ins] == [(n, n) for n in range(1, 13)]
    assert frm.column == 1


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("\x01\x7f\t") == '"\\x01\\x7f\\t"'
    assert go_quote("é ♥ 한") == '"é ♥ 한"'
    assert go_quote("\u00a0\u2028") == '"\\u00a0\\u2028"'


def test_large_file_parses() -> None:
    text = "FROM a\n" + "RUN echo x \\\n  && echo y\n" * 3000
    df = parse(text)
    assert len(df.instructions) == 3001
    assert df.instructions[-1].end_line == 6001


def _pybuild(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_debug_parse_command(tmp_path: Path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM a\nRUN <<EOF\nhi\nEOF\n")
    p = _pybuild("debug", "parse", str(f))
    assert p.returncode == 0 and p.stdout == '(from "a")\n(run "<<EOF")\n'
    p = _pybuild("debug", "parse", "--json", str(f))
    out = json.loads(p.stdout)
    assert out[1]["heredocs"][0]["content"] == "hi\n"
    assert (out[1]["start_line"], out[1]["end_line"]) == (2, 4)
    assert set(out[0]) >= {"cmd", "flags", "json", "value", "heredocs", "original"}


def test_debug_parse_stays_light(tmp_path: Path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM a\n")
    code = (
        "import sys; from frontend.pybuild import main; main(['debug', 'parse', sys.argv[1]]);"
        "print('rich' in sys.modules, file=sys.stderr)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(f)], capture_output=True, text=True, cwd=ROOT
    )
    assert p.stderr.strip().endswith("False")


def test_debug_expand_command() -> None:
    lines = [
        {"word": "${A:-x}/$B", "env": {"B": "b"}, "split": False},
        {"word": "$W c", "env": {"W": "a b"}, "split": True},
        {"word": "${A:?required}", "env": {}, "split": False},
    ]
    p = _pybuild("debug", "expand", stdin="".join(json.dumps(x) + "\n" for x in lines))
    answers = [json.loads(x) for x in p.stdout.splitlines()]
    assert answers[0] == {"value": "x/b"}
    assert answers[1] == {"words": ["a", "b", "c"]}
    assert "required" in answers[2]["error"]


def test_grammar_tables_are_cached_in_the_user_cache_dir(tmp_path: Path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text("FROM a\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }
    p = subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", "debug", "parse", str(f)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert [c.name for c in (tmp_path / "xdg" / "pydock").iterdir()] == [
        "dockerfile-lark-backslash.cache"
    ]


def test_parser_works_without_a_writable_cache_dir(tmp_path: Path, monkeypatch) -> None:
    import builder.parser as parser_module

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setattr(parser_module, "_cache_dirs", lambda: [blocker / "sub"])
    monkeypatch.setattr(parser_module, "_parsers", {})
    assert parser_module._cache_file("\\") is None
    assert d("FROM a\nRUN b") == '(from "a")\n(run "b")'
