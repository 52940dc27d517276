"""Errors of the Dockerfile front end: where in the file, and what is wrong there.

`DockerfileError` is a `PydockError` that knows its file, 1-based line and column and the
source line, so the command line can show

    Dockerfile:12:5: unknown instruction "COPPY" (did you mean "COPY"?)
     COPPY . /app
     ^

`str(err)` (and `err.message`) is the first line alone; `render()` adds the excerpt.
"""

from __future__ import annotations

from collections.abc import Iterable

from cache.errors import PydockError


class DockerfileError(PydockError):
    """A Dockerfile that cannot be read or planned, located at `filename:line:column`.

    `line` and `column` are 1-based; `column` 0 means "the whole line" (no marker column is
    known), `line` 0 means "the whole file" (e.g. an empty file). `msg` is the bare message.
    """

    def __init__(
        self,
        msg: str,
        *,
        filename: str = "Dockerfile",
        line: int = 0,
        column: int = 0,
        source_line: str | None = None,
        end_line: int | None = None,
    ) -> None:
        self.msg = msg
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        self.end_line = end_line if end_line is not None else line
        super().__init__(self._located())

    def _located(self) -> str:
        where = self.filename
        if self.line > 0:
            where += f":{self.line}"
            if self.column > 0:
                where += f":{self.column}"
        return f"{where}: {self.msg}"

    def __str__(self) -> str:
        return self._located()

    def render(self) -> str:
        """The located message, then the source line and a `^` under the column."""
        text = self._located()
        if self.source_line is None or self.line <= 0:
            return text
        src = self.source_line.rstrip("\r\n")
        # Tabs keep their width in the marker line so the caret lands under the right place.
        col = max(self.column, 1)
        pad = "".join("\t" if ch == "\t" else " " for ch in src[: col - 1])
        return f"{text}\n {src}\n {pad}^"

    def located(
        self,
        *,
        filename: str | None = None,
        line: int | None = None,
        column: int | None = None,
        source_line: str | None = None,
    ) -> DockerfileError:
        """A copy with the location filled in where this error does not know it yet."""
        return DockerfileError(
            self.msg,
            filename=filename if filename is not None else self.filename,
            line=self.line or (line or 0),
            column=self.column or (column or 0),
            source_line=self.source_line if self.source_line is not None else source_line,
        )


class ExpansionError(PydockError):
    """A word that the shell-word lexer rejects (bad `${...}`, unterminated quote, `${X:?}`).

    `offset` is the 0-based position in the word where the problem was found, when known.
    """

    def __init__(self, msg: str, *, word: str = "", offset: int = -1) -> None:
        self.msg = msg
        self.word = word
        self.offset = offset
        super().__init__(msg)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like `word` (case-insensitive), or None if none is close enough."""
    import difflib  # only for a message: not on every build's path

    upper = {c.upper(): c for c in choices}
    close = difflib.get_close_matches(word.upper(), list(upper), n=1, cutoff=0.6)
    return upper[close[0]] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`' (did you mean "COPY"?)'` for the closest choice to `word`, or `''` if none is close."""
    close = closest(word, choices)
    return f' (did you mean "{close}"?)' if close else ""
