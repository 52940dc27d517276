"""Staging under ROOT/tmp: every write is a temp file (or dir), fsync, then rename into place.

ROOT/tmp is on the same filesystem as everything it stages for, so the final `rename` is atomic:
a reader or a crash sees the old object or the new one, never a part. Staging names carry the
writer's pid (`<kind>-<pid>-<random>`) so that a later writer can tell leftovers of a dead
process from work in progress and remove them (`clean_stale`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from cache.errors import StoreError

CRASH_ENV = "PYDOCK_CRASH_AT"


def crash_point(name: str) -> None:
    """Fault injection for tests: die at once (as kill -9 would) when $PYDOCK_CRASH_AT == name.

    Points: blob-staged, blob-committed, index-staged, unpack-staged, unpack-renamed.
    """
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def space_error(e: BaseException, where: Path) -> StoreError | None:
    """A one-line store error for a full disk (or quota), else None (re-raise the original)."""
    if isinstance(e, OSError) and e.errno in NO_SPACE:
        return StoreError(f"{where}: {os.strerror(e.errno)} (nothing was stored)")
    return None


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def staging_name(kind: str) -> str:
    """A fresh name for a staging entry: `<kind>-<pid>-<random>`."""
    return f"{kind}-{os.getpid()}-{os.urandom(6).hex()}"


def remove_tree(path: Path) -> None:
    """Remove a file or a directory tree; missing is fine. Symlinks are removed, never followed.

    Directories without write permission (layer trees may hold some) are made writable first so
    that the removal also works for a non-root user. (Our own walk over directory fds rather
    than shutil.rmtree: shutil costs ~3 ms of imports, bz2 and lzma, and `pydock run --rm`
    removes a tree on every run.)
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    fd = _open_dir(path, None)
    try:
        _empty_dir(fd)
    finally:
        os.close(fd)
    _retry_writable(lambda: os.rmdir(path), os.path.dirname(os.fspath(path)) or ".", None)


def _open_dir(name: str | os.PathLike[str], dir_fd: int | None) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(name, flags, dir_fd=dir_fd)


def _retry_writable(op, parent: str, dir_fd: int | None) -> None:  # noqa: ANN001
    """Run `op`; on EACCES/EPERM make `parent` (relative to `dir_fd`) 0700 and run it again."""
    try:
        op()
    except PermissionError:
        with contextlib.suppress(OSError):
            if dir_fd is None:
                os.chmod(parent, stat.S_IRWXU)
            else:
                os.chmod(dir_fd, stat.S_IRWXU)
        op()


def _empty_dir(fd: int) -> None:
    """Remove everything inside the open directory `fd` (depth first, by names relative to
    open directory fds, so a symlink swapped in meanwhile cannot lead the walk elsewhere)."""
    with contextlib.suppress(OSError):  # a 0500 folder: make it writable before emptying it
        if not os.access(f"/proc/self/fd/{fd}", os.W_OK | os.X_OK):
            os.chmod(fd, stat.S_IRWXU)
    with os.scandir(fd) as it:
        entries = list(it)
    for entry in entries:
        name = entry.name
        if entry.is_dir(follow_symlinks=False):
            try:
                sub = _open_dir(name, fd)
            except FileNotFoundError:
                continue
            try:
                _empty_dir(sub)
            finally:
                os.close(sub)
            _retry_writable(lambda n=name: os.rmdir(n, dir_fd=fd), "", fd)
        else:
            with contextlib.suppress(FileNotFoundError):
                _retry_writable(lambda n=name: os.unlink(n, dir_fd=fd), "", fd)


def write_temp(
    tmp_root: Path, data: bytes, kind: str = "file", mode: int = 0o644, sync: bool = True
) -> Path:
    """Write `data` to a fresh file under `tmp_root`, fsync'd unless not `sync`; the caller
    renames or removes it."""
    path = tmp_root / staging_name(kind)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fchmod(fd, mode)  # umask must not change what readers may do
        if sync:
            os.fsync(fd)
    except BaseException as e:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        if err := space_error(e, tmp_root.parent):
            raise err from None
        raise
    os.close(fd)
    return path


def atomic_write(
    tmp_root: Path,
    path: Path,
    data: bytes,
    mode: int = 0o644,
    *,
    sync: bool = True,
    kind: str = "write",
) -> None:
    """Replace `path` with `data`: temp file in `tmp_root`, fsync, rename, fsync the directory.

    `tmp_root` and `path` must be on the same filesystem (both under the store root).
    `sync=False` for caches: readers still never see a part (rename), but a power cut may
    lose or tear the file, which a cache must then read as a miss.
    """
    tmp = write_temp(tmp_root, data, kind=kind, mode=mode, sync=sync)
    if path.name == "index.json":
        crash_point("index-staged")
    try:
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync:
        fsync_dir(path.parent)


@contextlib.contextmanager
def staging_dir(tmp_root: Path, kind: str = "stage") -> Iterator[Path]:
    """A fresh directory under `tmp_root`, removed (with whatever is left in it) afterwards.

    Move results out of it with `os.rename` before the block ends.
    """
    path = tmp_root / staging_name(kind)
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        remove_tree(path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(tmp_root: Path) -> list[str]:
    """Remove staging entries of processes that no longer run; returns the names removed.

    Call it only while holding the store lock, so no live writer of another process can be
    mistaken for a dead one (pids of live writers are alive anyway; the lock guards pid reuse
    by a process that is about to stage under the same name, which `staging_name` makes unlikely).
    """
    removed: list[str] = []
    try:
        names = os.listdir(tmp_root)
    except FileNotFoundError:
        return removed
    for name in names:
        parts = name.split("-")
        pid = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
        if pid is not None and (pid == os.getpid() or _pid_alive(pid)):
            continue
        remove_tree(tmp_root / name)
        removed.append(name)
    return removed
