"""The progress event stream and its renderers: BuildKit-like plain lines, JSON lines, the rich
live view; logs kept in full."""

from __future__ import annotations

import io
import json

from frontend.progress import JsonRenderer, PlainRenderer, Progress, RichRenderer


def _drive(progress: Progress) -> None:
    progress.cached(1, "[1/3] FROM busybox")
    progress.started(2, "[2/3] RUN make")
    progress.miss(2, "src:app/main.py changed")
    progress.log(2, b"line one\nline ")
    progress.log(2, b"two\n")
    progress.finished(2)
    progress.started(3, "[3/3] RUN false")
    progress.log(3, "no newline")
    progress.failed(3, "exit code: 1")
    progress.close()


def test_plain_lines_like_buildkit(tmp_path):
    out = io.StringIO()
    _drive(Progress(PlainRenderer(out), log_dir=tmp_path))
    lines = out.getvalue().splitlines()
    assert "#1 [1/3] FROM busybox" in lines and "#1 CACHED" in lines
    assert "#2 [2/3] RUN make" in lines
    assert "#2 cache miss: src:app/main.py changed" in lines
    logs = [ln for ln in lines if ln.startswith("#2 ") and ln.endswith(("one", "two"))]
    assert [ln.split(" ", 2)[2] for ln in logs] == ["line one", "line two"]
    assert any(ln.startswith("#2 DONE ") and ln.endswith("s") for ln in lines)
    assert any(ln.startswith("#3 ") and ln.endswith("no newline") for ln in lines)
    assert "#3 ERROR: exit code: 1" in lines
    assert (tmp_path / "2.log").read_text() == "line one\nline two\n"
    assert (tmp_path / "3.log").read_text() == "no newline"


def test_json_lines():
    out = io.StringIO()
    _drive(Progress(JsonRenderer(out)))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["type"] for e in events][:3] == ["cached", "started", "miss"]
    assert events[0] == {**events[0], "step": 1, "name": "[1/3] FROM busybox"}
    assert "".join(e.get("text", "") for e in events if e["type"] == "log" and e["step"] == 2) == (
        "line one\nline two\n"
    )
    assert any(e["type"] == "finished" and "duration" in e for e in events)


def test_rich_view_renders():
    out = io.StringIO()
    _drive(Progress(RichRenderer(out)))
    text = out.getvalue()
    assert "FROM busybox" in text and "CACHED" in text and "ERROR" in text
