"""Build progress: one stream of events and three renderers (rich live view, plain, JSON lines).

The solver reports through `Progress` (see builder/solver.py: it only needs the methods
`started`, `cached`, `miss`, `log`, `finished`, `failed`, `info`); each event goes to the
renderer and, for RUN output, in full to a log file kept with the build. Renderers may shorten
what they show; the event stream and the log files are never clipped.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from cache.records import field, record


@record
class Event:
    """One progress event. kind: started|cached|miss|log|finished|failed|info."""

    kind: str
    step: int
    name: str = ""
    text: str = ""
    time: float = field(default_factory=time.time)
    duration: float | None = None


class Renderer:
    def handle(self, event: Event) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class PlainRenderer(Renderer):
    """BuildKit's plain mode: `#4 [2/5] RUN make`, output lines `#4 0.512 text`, `#4 DONE 1.2s`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.begun: dict[int, float] = {}
        self.partial: dict[int, str] = {}

    def handle(self, ev: Event) -> None:
        w = self.out.write
        if ev.kind == "started":
            self.begun[ev.step] = ev.time
            w(f"\n#{ev.step} {ev.name}\n")
        elif ev.kind == "miss":
            w(f"#{ev.step} cache miss: {ev.text}\n")
        elif ev.kind == "cached":
            if ev.step not in self.begun:
                w(f"\n#{ev.step} {ev.name}\n")
            w(f"#{ev.step} CACHED\n")
        elif ev.kind == "log":
            elapsed = ev.time - self.begun.get(ev.step, ev.time)
            text = self.partial.pop(ev.step, "") + ev.text
            lines = text.split("\n")
            if lines[-1]:
                self.partial[ev.step] = lines[-1]
            for line in lines[:-1]:
                w(f"#{ev.step} {elapsed:.3f} {line}\n")
        elif ev.kind == "finished":
            self._flush_partial(ev.step)
            w(f"#{ev.step} DONE {ev.duration or 0:.1f}s\n")
        elif ev.kind == "failed":
            self._flush_partial(ev.step)
            w(f"#{ev.step} ERROR: {ev.text}\n")
        elif ev.kind == "info":
            w(f"{ev.text}\n")
        self.out.flush()

    def _flush_partial(self, step: int) -> None:
        rest = self.partial.pop(step, "")
        if rest:
            elapsed = time.time() - self.begun.get(step, time.time())
            self.out.write(f"#{step} {elapsed:.3f} {rest}\n")


class JsonRenderer(Renderer):
    """One JSON object per line, for tools."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def handle(self, ev: Event) -> None:
        doc = {"type": ev.kind, "step": ev.step, "time": round(ev.time, 6)}
        if ev.name:
            doc["name"] = ev.name
        if ev.text:
            doc["text"] = ev.text
        if ev.duration is not None:
            doc["duration"] = round(ev.duration, 6)
        self.out.write(json.dumps(doc) + "\n")
        self.out.flush()


class QuietRenderer(Renderer):
    def handle(self, ev: Event) -> None:
        pass


class RichRenderer(Renderer):
    """A live view on a terminal: every step with its state and time, and the tail of the
    running steps' output."""

    TAIL = 6

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self._state_lock = threading.Lock()  # the refresh thread reads what handle() writes
        self.steps: dict[int, dict] = {}
        self.tails: dict[int, deque[str]] = {}
        # get_renderable: the auto-refresh redraws from the current state, so the time of a
        # running step keeps ticking between events.
        self.live = Live(
            console=self.console,
            refresh_per_second=8,
            transient=False,
            get_renderable=self._view,
        )
        self.live.start()

    def _view(self):
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", style="dim")
        table.add_column()
        table.add_column(justify="right")
        with self._state_lock:
            steps = [(n, dict(st)) for n, st in sorted(self.steps.items())]
            tails = {n: list(t) for n, t in self.tails.items()}
        for num, st in steps:
            state = st["state"]
            if state == "running":
                secs = time.time() - st["start"]
                mark = Text(f"{secs:.1f}s", style="yellow")
            elif state == "cached":
                mark = Text("CACHED", style="blue")
            elif state == "done":
                mark = Text(f"{st['dur']:.1f}s", style="green")
            else:
                mark = Text("ERROR", style="bold red")
            table.add_row(f"#{num}", Text(st["name"]), mark)
            if state in ("running", "failed") and tails.get(num):
                for line in tails[num]:
                    table.add_row("", Text("  " + line[:200], style="dim"), "")
            if st.get("why"):
                table.add_row("", Text("  cache miss: " + st["why"], style="dim"), "")
        return table

    def handle(self, ev: Event) -> None:
        if ev.kind == "info":
            self.live.console.print(ev.text)
            return
        with self._state_lock:
            self._apply(ev)
        if ev.kind != "log":  # output is shown by the periodic refresh, not line by line
            self.live.refresh()

    def _apply(self, ev: Event) -> None:
        st = self.steps.setdefault(ev.step, {"name": ev.name, "state": "running", "start": ev.time})
        if ev.kind == "started":
            st.update(name=ev.name, state="running", start=ev.time)
        elif ev.kind == "cached":
            st.update(state="cached")
        elif ev.kind == "miss":
            if ev.text not in ("--no-cache", "not built before"):
                st["why"] = ev.text  # only misses worth explaining take a line
        elif ev.kind == "log":
            tail = self.tails.setdefault(ev.step, deque(maxlen=self.TAIL))
            for line in ev.text.splitlines():
                tail.append(line)
        elif ev.kind == "finished":
            st.update(state="done", dur=ev.duration or 0)
            self.tails.pop(ev.step, None)
        elif ev.kind == "failed":
            st.update(state="failed")

    def close(self) -> None:
        self.live.refresh()
        self.live.stop()


def make_renderer(mode: str, out: TextIO | None = None, quiet: bool = False) -> Renderer:
    """auto → rich on a terminal, else plain; tty|plain|json as asked; quiet → nothing."""
    out = out or sys.stderr
    if quiet:
        return QuietRenderer()
    if mode == "auto":
        mode = "tty" if out.isatty() else "plain"
    if mode == "tty":
        return RichRenderer(out)
    if mode == "json":
        return JsonRenderer(out)
    return PlainRenderer(out)


class Progress:
    """The event stream of one build. Thread-safe: stages may report from several threads.

    RUN output is also appended, unclipped, to `<log_dir>/<step>.log` when a log dir is given.
    """

    def __init__(self, renderer: Renderer, log_dir: Path | None = None) -> None:
        self.renderer = renderer
        self.log_dir = log_dir
        self.lock = threading.Lock()
        self.names: dict[int, str] = {}
        self.starts: dict[int, float] = {}
        self.events: list[Event] = []
        self._logs: dict[int, object] = {}

    def _emit(self, ev: Event) -> None:
        with self.lock:
            if ev.kind != "log":
                self.events.append(ev)
            self.renderer.handle(ev)

    def started(self, step: int, name: str) -> None:
        self.names[step] = name
        self.starts[step] = time.time()
        self._emit(Event("started", step, name))

    def cached(self, step: int, name: str) -> None:
        self.names[step] = name
        self._emit(Event("cached", step, name))

    def miss(self, step: int, why: str) -> None:
        self._emit(Event("miss", step, self.names.get(step, ""), why))

    def log(self, step: int, data: bytes | str) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if self.log_dir is not None:
            with self.lock:
                f = self._logs.get(step)
                if f is None:
                    self.log_dir.mkdir(parents=True, exist_ok=True)
                    f = open(self.log_dir / f"{step}.log", "ab")  # noqa: SIM115 - closed in close()
                    self._logs[step] = f
                f.write(text.encode())
                f.flush()
        self._emit(Event("log", step, self.names.get(step, ""), text))

    def finished(self, step: int) -> None:
        dur = time.time() - self.starts.get(step, time.time())
        self._emit(Event("finished", step, self.names.get(step, ""), duration=dur))

    def failed(self, step: int, message: str) -> None:
        self._emit(Event("failed", step, self.names.get(step, ""), message))

    def info(self, text: str) -> None:
        self._emit(Event("info", 0, "", text))

    def close(self) -> None:
        with self.lock:
            for f in self._logs.values():
                f.close()  # type: ignore[attr-defined]
            self._logs.clear()
            self.renderer.close()
