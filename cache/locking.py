"""The store's writer lock: an exclusive `fcntl.flock` on ROOT/lock, re-entrant within a process.

flock locks belong to an open file description, so two `open()`s of the same lock file in one
process would deadlock each other. Every `Store` of the same root in a process therefore shares
one `StoreLock` (looked up by the root's real path), which holds a single descriptor and counts
nested acquisitions; threads of the process serialise on an `RLock` around it.

Readers never take the lock: every file they read is replaced by rename, so they see either the
old or the new version, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cache.errors import StoreError


class StoreLocked(StoreError):
    """The lock is held by another process and the caller asked not to wait."""


class StoreLock:
    """Re-entrant exclusive lock on one lock file (shared by all Stores of a root in a process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = os.getpid()

    def _reset_after_fork(self) -> None:
        # A forked child inherits the descriptor, and with it the parent's flock: the lock
        # belongs to the open file description, so as long as the child keeps its copy the
        # lock outlives the parent's release. The child closes its copy (that does not release
        # the parent's hold, which has its own reference) and starts with the lock not held.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._mutex = threading.RLock()
            self._depth = 0
            fd, self._fd = self._fd, None
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        self._reset_after_fork()
        return self._depth > 0

    def acquire(self, blocking: bool = True) -> None:
        self._reset_after_fork()
        if not self._mutex.acquire(blocking):
            raise StoreLocked(f"store is locked by another writer: {self.path}")
        try:
            if self._depth == 0:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except PermissionError:
                    raise StoreError(
                        f"{self.path}: permission denied (changing the store needs root)"
                    ) from None
                except OSError as e:
                    if e.errno != errno.EROFS:
                        raise
                    raise StoreError(
                        f"{self.path.parent}: the store is on a read-only file system "
                        "(it can be read, not changed)"
                    ) from None
                try:
                    flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
                    fcntl.flock(fd, flags)
                except BlockingIOError:
                    os.close(fd)
                    raise StoreLocked(f"store is locked by another writer: {self.path}") from None
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
        except BaseException:
            self._mutex.release()
            raise

    def release(self) -> None:
        self._reset_after_fork()
        if self._depth <= 0:
            raise RuntimeError("release of a store lock that is not held")
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            # Closing the only descriptor drops the flock.
            os.close(fd)
        self._mutex.release()

    @contextmanager
    def __call__(self, blocking: bool = True) -> Iterator[None]:
        self.acquire(blocking)
        try:
            yield
        finally:
            self.release()


_locks: dict[str, StoreLock] = {}
_locks_mutex = threading.Lock()


def _after_fork_in_child() -> None:
    for lock in list(_locks.values()):
        lock._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def lock_for(path: Path) -> StoreLock:
    """The process-wide `StoreLock` of the lock file at `path`."""
    key = os.path.realpath(path)
    with _locks_mutex:
        lock = _locks.get(key)
        if lock is None:
            lock = _locks[key] = StoreLock(Path(key))
        return lock
