"""The parse tree of a Dockerfile: one `Node` per instruction, before any typing.

A `Node` holds what Docker's parser produces for one instruction (keyword as written, flags,
argument strings, JSON-form marker, heredocs, the logical line, its line range) plus where each
part sits in the file, so later stages can report errors at a line and column.
"""

from __future__ import annotations

import bisect

from cache.records import field, record


@record
class Heredoc:
    """A here-document attached to a RUN/COPY/ADD line.

    `content` is the body exactly as read (every line with its newline, tabs kept even for
    `<<-`; use `body` for the text the instruction sees). `expand` is False when the name was
    quoted (`<<"EOF"`, `<<'EOF'`): then variables in the body are not expanded. `fd` is the
    file descriptor of `3<<EOF` (0 when none was written). `chomp` is the `<<-` form.
    """

    name: str
    content: str = ""
    expand: bool = True
    fd: int = 0
    chomp: bool = False

    @property
    def body(self) -> str:
        """The content with leading tabs removed from every line when `chomp` is set."""
        if not self.chomp:
            return self.content
        return "".join(line.lstrip("\t") for line in self.content.splitlines(keepends=True))


@record
class SourceMap:
    """Maps offsets in a logical line back to (line, column) in the file (both 1-based).

    A logical line is made of pieces of physical lines; `starts[i]` is the offset in the
    logical line where piece i begins, at `lines[i]`:`cols[i]` (0-based column).
    """

    starts: list[int] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)

    def add(self, offset: int, line: int, col0: int) -> None:
        self.starts.append(offset)
        self.lines.append(line)
        self.cols.append(col0)

    def locate(self, offset: int) -> tuple[int, int]:
        """(line, column) of a 0-based offset in the logical line."""
        if not self.starts:
            return 0, 0
        i = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        return self.lines[i], self.cols[i] + (offset - self.starts[i]) + 1


@record
class Node:
    """One instruction as Docker's parser sees it.

    `cmd` is the keyword as written; `args` the argument strings (for ENV/LABEL the flat
    key, value, separator triples of the dump format); `json` marks the JSON (exec) form;
    `sub` is the nested instruction of ONBUILD; `original` the logical line; `start_line` and
    `end_line` are 1-based and cover continuation lines and heredoc bodies.
    `flag_offsets` and `rest_offset` are offsets of each flag and of the argument text in
    `original`, mapped to the file by `srcmap`.
    """

    cmd: str
    flags: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    json: bool = False
    heredocs: list[Heredoc] = field(default_factory=list)
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    sub: Node | None = None
    rest: str = ""
    rest_offset: int = 0
    flag_offsets: list[int] = field(default_factory=list)
    srcmap: SourceMap = field(default_factory=SourceMap)
    base: int = 0  # offset of `original` in the logical line that `srcmap` describes

    def locate(self, offset: int) -> tuple[int, int]:
        """(line, column) in the file of an offset in `original`."""
        line, col = self.srcmap.locate(self.base + offset)
        return (line or self.start_line), col

    @property
    def column(self) -> int:
        """1-based column of the keyword."""
        return self.locate(0)[1]
