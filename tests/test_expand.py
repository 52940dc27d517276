"""Docker's shell-word expansion, from table files written from the documented rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.errors import DockerfileError, ExpansionError
from builder.expand import Lexer, expand_word, expand_words
from builder.instructions import (
    CopyInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    RunInstruction,
    expand_instruction,
)
from builder.parser import parse

GOLDEN = Path(__file__).parent / "golden"

WORD_ENV = {
    "HOME": "/root",
    "NAME": "app",
    "EMPTY": "",
    "SPACED": "a  b",
    "FILE": "archive.tar.gz",
    "PATHV": "/usr/local/bin",
    "UNI": "é♥",
    "Q": '"quoted"',
}
WORDS_ENV = {"A": "one", "TWO": "a b", "PAD": "  x", "EMPTY": ""}


def _rows(name: str) -> list[tuple[str, str]]:
    rows = []
    for line in (GOLDEN / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        word, _, expected = line.rpartition("|")
        rows.append((word.strip(), expected.strip()))
    return rows


@pytest.mark.parametrize("word,expected", _rows("expand.table"))
def test_expand_word_table(word: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ExpansionError):
            expand_word(word, WORD_ENV)
    else:
        assert expand_word(word, WORD_ENV) == expected


@pytest.mark.parametrize("word,expected", _rows("words.table"))
def test_expand_words_table(word: str, expected: str) -> None:
    if expected == "error":
        with pytest.raises(ExpansionError):
            expand_words(word, WORDS_ENV)
    else:
        assert expand_words(word, WORDS_ENV) == json.loads(expected)


def test_backtick_escape() -> None:
    assert expand_word("C:\\dir`$X", {"X": "1"}, escape="`") == "C:\\dir$X"
    assert expand_word('"a`"b"', {}, escape="`") == 'a"b'


def test_error_messages_name_the_problem() -> None:
    with pytest.raises(ExpansionError, match="X: must be set"):
        expand_word("${X:?must be set}", {})
    with pytest.raises(ExpansionError, match="is not allowed to be empty"):
        expand_word("${X:?}", {"X": ""})
    with pytest.raises(ExpansionError, match="missing '}'"):
        expand_word("${X", {})
    with pytest.raises(ExpansionError, match=r"unsupported modifier \(:=\)"):
        expand_word("${X:=y}", {})
    with pytest.raises(ExpansionError, match="double-quote"):
        expand_word('"abc', {})


def test_heredoc_modes() -> None:
    raw = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    assert raw.process("cat <<'EOF' $X \\n", {})[1] == ["cat", "<<'EOF'", "$X", "\\n"]
    body = Lexer(skip_quotes=True)
    assert body.process("say '$X' \"$X\"\n", {"X": "1"})[0] == "say '1' \"1\"\n"


def _one(text: str, index: int = 1):
    return parse("FROM scratch\n" + text).instructions[index]


def test_expand_instruction_by_kind() -> None:
    env = {"V": "1.2", "D": "/dst", "U": "app", "P": "80 443"}
    env_i = expand_instruction(_one('ENV A=$V B="x $V" C=${V%.*}'), env)
    assert isinstance(env_i, EnvInstruction)
    assert env_i.pairs == [("A", "1.2"), ("B", "x 1.2"), ("C", "1")]
    copy = expand_instruction(_one("COPY --chown=$U:$U --from=st$V src-$V $D/"), env)
    assert isinstance(copy, CopyInstruction)
    assert (copy.chown, copy.from_stage, copy.sources, copy.dest) == (
        "app:app",
        "st1.2",
        ["src-1.2"],
        "/dst/",
    )
    expose = expand_instruction(_one("EXPOSE $P 53/udp"), env)
    assert isinstance(expose, ExposeInstruction) and expose.ports == ["80", "443", "53/udp"]
    # RUN text is left to the shell; only --mount options are expanded
    run = expand_instruction(_one("RUN --mount=type=cache,target=$D echo $V"), env)
    assert isinstance(run, RunInstruction)
    assert run.command == ["echo $V"] and run.mounts[0].target == "/dst"
    frm = expand_instruction(_one("FROM img:$V", 1), env)
    assert isinstance(frm, FromInstruction) and frm.image == "img:1.2"


def test_copy_heredoc_expansion_respects_quoting() -> None:
    copy = _one("COPY <<A <<'B' /d/\nv=$V\nA\nv=$V\nB")
    out = expand_instruction(copy, {"V": "9"})
    assert [s.data for s in out.heredoc_sources] == ["v=9\n", "v=$V\n"]


def test_expand_instruction_error_is_located() -> None:
    instr = _one("WORKDIR ${DIR:?set DIR}")
    with pytest.raises(DockerfileError) as info:
        expand_instruction(instr, {})
    assert info.value.line == 2 and info.value.column == 1
    assert "DIR: set DIR" in str(info.value)
