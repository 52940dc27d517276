"""Leases: what a live process has added to the store but no image or cache entry names yet.

A build adds layers long before it writes the image that names them, and runs steps on unpacked
layers that no image holds. A prune running meanwhile would see those as garbage. So inside a
`with store.lease():` block every blob digest and chain id the process adds (or unpacks) is
recorded in ROOT/leases/<pid>-<start>.json, and GC treats the leases of live processes as
roots (`live_leases`), as containerd does with its leases. The file is written before the
object is committed, under the store lock, so a prune (which holds the lock) sees the lease
whenever it can see the object.

Leases are explicit (a build takes one for its whole run); outside a lease block nothing is
recorded. The lease ends when the outermost block ends, or with the process: a file whose pid
is gone (or now belongs to another process, told apart by the start time in /proc) is ignored
and removed by the next writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path

from cache.records import field, record
from cache.staging import space_error, staging_name


def _publish(tmp_root: Path, path: Path, data: bytes) -> None:
    """Replace `path` with `data` by a rename, without fsync: a lease is read only by live
    processes and means nothing after a crash (a dead process's file is ignored), so it must be
    visible, not durable. The fsyncs cost a cached rebuild several milliseconds."""
    tmp = tmp_root / staging_name("lease")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if err := space_error(e, tmp_root.parent):
            raise err from None
        raise


def _start_time(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parens: split after the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


@record
class Lease:
    """This process's lease on one store root."""

    dir: Path
    tmp: Path
    digests: set[str] = field(default_factory=set)
    chains: set[str] = field(default_factory=set)
    mutex: threading.Lock = field(default_factory=threading.Lock)
    pid: int = field(default_factory=os.getpid)
    depth: int = 0  # nesting of `Store.lease()` blocks; nothing is recorded outside them

    def enter(self) -> None:
        with self.mutex:
            self.depth += 1

    def exit(self) -> None:
        with self.mutex:
            self.depth -= 1
            last = self.depth == 0
        if last:
            self.release()

    @property
    def path(self) -> Path:
        return self.dir / f"{self.pid}-{_start_time(self.pid) or '0'}.json"

    def add(self, digests: tuple[str, ...] = (), chains: tuple[str, ...] = ()) -> None:
        """Record `digests` and `chains` (caller holds the store lock); writes only on change."""
        with self.mutex:
            if self.pid != os.getpid():  # forked: the child's lease is its own
                self.pid = os.getpid()
                self.digests, self.chains = set(), set()
            if self.depth <= 0:
                return
            new_d = set(digests) - self.digests
            new_c = set(chains) - self.chains
            if not new_d and not new_c:
                return
            self.digests |= new_d
            self.chains |= new_c
            self.dir.mkdir(exist_ok=True)
            body = {"pid": self.pid, "digests": sorted(self.digests), "chains": sorted(self.chains)}
            _publish(self.tmp, self.path, json.dumps(body, sort_keys=True).encode())

    def release(self) -> None:
        with self.mutex:
            self.digests, self.chains = set(), set()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


_leases: dict[str, Lease] = {}
_leases_mutex = threading.Lock()


def lease_for(root: Path) -> Lease:
    """This process's lease on the store at `root`."""
    key = os.path.realpath(root)
    with _leases_mutex:
        lease = _leases.get(key)
        if lease is None or lease.pid != os.getpid():
            lease = _leases[key] = Lease(Path(key) / "leases", Path(key) / "tmp")
        return lease


def live_leases(
    root: Path, *, remove_dead: bool = False, include_self: bool = False
) -> tuple[set[str], set[str]]:
    """(blob digests, chain ids) leased by live processes on the store at `root`.

    The calling process's own lease is left out unless `include_self` (a process that prunes
    knows what it is doing with its own work). With `remove_dead` (only under the store lock)
    the files of dead processes are deleted.
    """
    digests: set[str] = set()
    chains: set[str] = set()
    d = Path(root) / "leases"
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return digests, chains
    for name in names:
        stem = name.removesuffix(".json")
        pid_text, _, start = stem.partition("-")
        alive = pid_text.isdigit() and _start_time(int(pid_text)) == start
        if alive and int(pid_text) == os.getpid() and not include_self:
            continue
        if not alive:
            if remove_dead:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(d / name)
            continue
        try:
            body = json.loads((d / name).read_bytes())
        except (OSError, ValueError):
            continue
        digests |= {x for x in body.get("digests", []) if isinstance(x, str)}
        chains |= {x for x in body.get("chains", []) if isinstance(x, str)}
    return digests, chains
