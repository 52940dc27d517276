"""The append-only events log of a store: ROOT/events.jsonl, one JSON object a line.

Each record has Docker's event shape: `{"Type", "Action", "Actor": {"ID", "Attributes"},
"time", "timeNano"}`. Lines are appended with one `write` on an O_APPEND descriptor, which the
kernel keeps whole between concurrent writers (lines stay far below the pipe/page limits that
would matter), so no lock is taken. Readers skip a torn last line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from cache.records import field, record

EVENTS_FILE = "events.jsonl"


@record
class Event:
    """One event: what happened (`action`) to which object (`type`, `actor_id`) and when."""

    type: str
    action: str
    actor_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    time_nano: int = 0

    @property
    def time(self) -> float:
        return self.time_nano / 1e9

    def to_json(self) -> dict:
        return {
            "status": self.action,
            "id": self.actor_id,
            "from": self.attributes.get("image", ""),
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time_nano // 1_000_000_000,
            "timeNano": self.time_nano,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Event:
        actor = obj.get("Actor") or {}
        return cls(
            type=obj.get("Type", ""),
            action=obj.get("Action", ""),
            actor_id=actor.get("ID", ""),
            attributes=dict(actor.get("Attributes") or {}),
            time_nano=int(obj.get("timeNano", 0)),
        )


def log_event(
    root: Path | str,
    action: str,
    actor_id: str,
    attributes: dict[str, str] | None = None,
    type: str = "container",  # noqa: A002 - Docker's field name
) -> None:
    """Append one event to the store's log (never fails the caller: events are advisory)."""
    ev = Event(type, action, actor_id, dict(attributes or {}), time.time_ns())
    line = (json.dumps(ev.to_json(), separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(
            Path(root) / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
    except OSError:
        return
    try:
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_events(
    root: Path | str, since: float | None = None, until: float | None = None
) -> Iterator[Event]:
    """The events logged between `since` and `until` (epoch seconds, both inclusive), oldest first."""
    path = Path(root) / EVENTS_FILE
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a line still being written
            try:
                ev = Event.from_json(json.loads(raw))
            except ValueError:
                continue
            if since is not None and ev.time < since:
                continue
            if until is not None and ev.time > until:
                continue
            yield ev


def follow_events(
    root: Path | str, since: float | None = None, poll: float = 0.2
) -> Iterator[Event]:
    """Yield past events from `since`, then new ones as they are appended (until interrupted)."""
    from executor.jsonlines import follow_json_lines

    for line in follow_json_lines(Path(root) / EVENTS_FILE, poll=poll):
        try:
            ev = Event.from_json(line)
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if since is None or ev.time >= since:
            yield ev
