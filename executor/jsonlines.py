"""Following a JSON-lines file as another process appends to it (container logs, events)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def follow_json_lines(
    path: Path,
    offset: int = 0,
    *,
    keep_going: Callable[[], bool] = lambda: True,
    poll: float = 0.2,
) -> Iterator[dict]:
    """Yield each record appended to `path` from byte `offset` on, as it is completed.

    A partly written last line waits for its newline; lines that are not JSON are skipped.
    When nothing new is there, stops if `keep_going()` (asked before that read, so what the
    writer added before it stopped is still read) is false, else sleeps `poll` seconds.
    """
    pending = b""
    while True:
        going = keep_going()
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if not data:
            if not going:
                return
            time.sleep(poll)
            continue
        offset += len(data)
        pending += data
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            try:
                yield json.loads(raw)
            except ValueError:
                continue
