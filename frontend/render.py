"""Rendering helpers: rich tables on a terminal, Docker's plain columns otherwise."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, quiet: bool = False
) -> None:
    """Print rows under headers: a rich table on a terminal, else Docker-style columns.

    Docker pads every column but the last to its widest cell plus three spaces.
    """
    out = sys.stdout
    if out.isatty() and not quiet:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for h in headers:
            table.add_column(h, overflow="fold")
        for r in rows:
            table.add_row(*[str(c) for c in r])
        Console().print(table)
        return
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(str(c)))
    lines = []
    for r in [list(headers), *rows]:
        cells = [str(c) for c in r]
        padded = [c.ljust(widths[i] + 3) for i, c in enumerate(cells[:-1])] + cells[-1:]
        lines.append("".join(padded).rstrip())
    out.write("\n".join(lines) + "\n")


def human_size(n: float) -> str:
    """Docker's decimal sizes: 1.23MB, 4.1kB, 512B."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    if i == 0:
        return f"{int(n)}B"
    return f"{n:.3g}{units[i]}"


def human_duration(seconds: float) -> str:
    """Docker's coarse durations: 'Less than a second', '5 seconds', '3 minutes', '2 hours'."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    d = s // 86400
    if d < 14:
        return f"{d} days"
    if d < 60:
        return f"{d // 7} weeks"
    if d < 730:
        return f"{d // 30} months"
    return f"{d // 365} years"


def print_inspect(objects: Sequence[dict], fmt: str | None) -> None:
    """`inspect` output: Docker's indented JSON list, or one rendered `--format` per object."""
    if fmt and fmt != "json":
        from frontend.gotemplate import render_template

        text = "".join(render_template(fmt, obj, struct=True) + "\n" for obj in objects)
    else:
        import json

        text = json.dumps(list(objects), indent=4, ensure_ascii=False) + "\n"
    sys.stdout.write(text)
