"""`pydock cp` (both ways) and `pydock export`: files of a container's root, read or written
safely.

The container's root is `/proc/<init pid>/root` while it runs (its volumes included, as with
Docker); for a stopped container a forked child mounts the overlay (read-write for `cp` into
it, read-only for reading) in a private mount namespace of its own, so nothing can be left
mounted on the host whatever happens. Every container path is resolved inside that root with
openat2(RESOLVE_IN_ROOT) (cache.fsops), so symlinks in the image resolve as they would inside
the container and cannot lead out; the entries themselves are then read or created one
component at a time with *at calls and O_NOFOLLOW. A path that climbs out with ".." is refused.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cache.errors import PydockError
from executor.containers import Container, process_alive
from executor.forked import run_in_child


class CopyError(PydockError):
    exit_code = 1


def container_path(path: str, clamp: bool = False) -> tuple[str, str]:
    """(parent, name) of an absolute container path, refusing ".." that climbs above "/"
    (or, with `clamp`, stopping at "/" as the kernel does inside a root: for link targets).

    name is "" for the root itself; a trailing "/." (copy the contents) is kept as name ".".
    """
    if not path:
        raise CopyError("empty container path")
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                if clamp:
                    continue
                raise CopyError(f"{path}: the path leaves the container's root filesystem")
            parts.pop()
            continue
        parts.append(comp)
    if path.endswith("/.") and parts:
        return "/".join(parts), "."
    if not parts:
        return "", ""
    return "/".join(parts[:-1]), parts[-1]


def _running(c: Container) -> bool:
    return c.state.running and process_alive(c.state.pid, c.state.pid_start)


def _volume_route(c: Container, path: str) -> tuple[str, str, bool] | None:
    """For a stopped container, whose volumes are not mounted anywhere: (volume dir, path
    inside it, writable) when `path` lies in one of its volumes or binds, else None."""
    if _running(c):
        return None  # /proc/<pid>/root has them mounted
    parent, name = container_path(path if path.startswith("/") else "/" + path)
    norm = "/" + "/".join(p for p in (parent, name) if p and p != ".")
    for m in sorted(c.mounts, key=lambda m: len(m["Destination"]), reverse=True):
        dest = m["Destination"].rstrip("/")
        if norm == dest or norm.startswith(dest + "/"):
            rest = norm[len(dest) :] or "/"
            if path.endswith("/.") and rest != "/":
                rest += "/."
            return m["Source"], rest, bool(m.get("RW", True))
    return None


def _in_root(
    c: Container, work: Callable[[str], None], *, writable: bool, root_dir: str | None = None
) -> None:
    """Call `work(root)` in a forked child that sees the container's root at `root` (or the
    directory `root_dir`, a stopped container's volume, as the root)."""
    from executor import overlay, rootfs, syscalls

    running = _running(c)
    lowers: list[Path] = []
    if root_dir is None and not running and c.diff_ids:
        from cache.store import Store

        lowers = Store(c.dir.parent.parent).unpacked_lowers(c.diff_ids)

    def in_child() -> None:
        if root_dir is not None:
            root = root_dir
        elif running:
            root = f"/proc/{c.state.pid}/root"
        else:
            syscalls.unshare(syscalls.CLONE_NEWNS)
            rootfs.make_private()
            root = os.fspath(c.merged)
            if writable:
                overlay.mount_overlay(lowers, c.upper, c.work, root)
            else:
                overlay.mount_overlay([*lowers, c.upper], None, None, root, readonly=True)
        work(root)

    msg = run_in_child(in_child)
    if msg:
        raise CopyError(msg)


def _open_parent(root: str, parent: str, shown: str) -> int:
    from cache.fsops import open_dir_in_root, open_root

    rootfd = open_root(root)
    try:
        return open_dir_in_root(rootfd, parent, readable=True)
    except FileNotFoundError:
        raise CopyError(f"Could not find the file {shown} in container") from None
    except NotADirectoryError:
        raise CopyError(f"{shown}: not a directory") from None
    finally:
        os.close(rootfd)


# --- out of the container ------------------------------------------------------------------------


def _resolve_link(root: str, parent: str, name: str) -> tuple[str, str]:
    """Follow a final symlink `parent/name` inside the root (for -L), as the kernel would
    with the container's root as "/": absolute targets start at the container's root."""
    from cache.fsops import open_dir_in_root, open_root

    rootfd = open_root(root)
    try:
        for _ in range(40):
            try:
                dirfd = open_dir_in_root(rootfd, parent, readable=True)
            except (FileNotFoundError, NotADirectoryError):
                return parent, name
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    return parent, name
                target = os.readlink(name, dir_fd=dirfd)
            except FileNotFoundError:
                return parent, name
            finally:
                os.close(dirfd)
            full = target if target.startswith("/") else f"/{parent}/{target}"
            parent, name = container_path(full, clamp=True)
            if not name:
                return "", "."
    finally:
        os.close(rootfd)
    raise CopyError("too many levels of symbolic links")


def _copy_out(dirfd: int, name: str, dest: str, archive: bool) -> None:
    # Never follows a symlink: every name is one component, opened with O_NOFOLLOW.
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
        try:
            os.makedirs(dest, exist_ok=True)
            for entry in sorted(os.listdir(sub)):
                _copy_out(sub, entry, os.path.join(dest, entry), archive)
        finally:
            os.close(sub)
    elif stat.S_ISREG(st.st_mode):
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd)
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.path.islink(dest):
                    os.unlink(dest)
            out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                while True:
                    n = os.sendfile(out, src, None, 1 << 20)
                    if n == 0:
                        break
            finally:
                os.close(out)
        finally:
            os.close(src)
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink(name, dir_fd=dirfd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
        os.symlink(target, dest)
        return
    else:
        return  # devices, fifos and sockets are not copied out
    os.chmod(dest, stat.S_IMODE(st.st_mode))
    if archive:
        os.chown(dest, st.st_uid, st.st_gid)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def copy_from_container(
    c: Container, src: str, dest: str, *, follow: bool = False, archive: bool = False
) -> None:
    """Copy the container path `src` to the host path `dest` (Docker's `cp CONTAINER:SRC DEST`)."""
    route = _volume_route(c, src)
    parent, name = container_path(route[1] if route else src)
    dest_is_dir = os.path.isdir(dest)
    if name in ("", "."):
        target = dest
    elif dest_is_dir:
        target = os.path.join(dest, name)
    else:
        if dest.endswith("/"):
            raise CopyError(f"{dest}: no such directory")
        if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
            raise CopyError(f"{os.path.dirname(dest)}: no such directory")
        target = dest

    def work(root: str) -> None:
        p, n = parent, name
        if follow and n not in ("", "."):
            p, n = _resolve_link(root, p, n)
        dirfd = _open_parent(root, p, src)
        try:
            if n in ("", "."):
                os.makedirs(target, exist_ok=True)
                for entry in sorted(os.listdir(dirfd)):
                    _copy_out(dirfd, entry, os.path.join(target, entry), archive)
                return
            try:
                os.stat(n, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                raise CopyError(f"Could not find the file {src} in container") from None
            _copy_out(dirfd, n, target, archive)
        finally:
            os.close(dirfd)

    _in_root(c, work, writable=False, root_dir=route[0] if route else None)


# --- into the container --------------------------------------------------------------------------


def _copy_in(src: str, dirfd: int, name: str, archive: bool) -> None:
    st = os.lstat(src)
    try:
        existing = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if stat.S_ISDIR(st.st_mode):
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            os.unlink(name, dir_fd=dirfd)
            existing = None
        if existing is None:
            os.mkdir(name, 0o700, dir_fd=dirfd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
        try:
            for entry in sorted(os.listdir(src)):
                _copy_in(os.path.join(src, entry), sub, entry, archive)
            os.chmod(sub, stat.S_IMODE(st.st_mode))
            os.chown(sub, *((st.st_uid, st.st_gid) if archive else (0, 0)))
        finally:
            os.close(sub)
        return
    if existing is not None and (
        stat.S_ISDIR(existing.st_mode) or not stat.S_ISREG(existing.st_mode)
    ):
        if stat.S_ISDIR(existing.st_mode):
            raise CopyError(f"cannot overwrite directory {name} with non-directory {src}")
        os.unlink(name, dir_fd=dirfd)
    if stat.S_ISREG(st.st_mode):
        fd = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dirfd
        )
        try:
            with open(src, "rb") as f:
                while True:
                    n = os.sendfile(fd, f.fileno(), None, 1 << 20)
                    if n == 0:
                        break
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.fchown(fd, *((st.st_uid, st.st_gid) if archive else (0, 0)))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), name, dir_fd=dirfd)
    # devices, fifos and sockets from the host are not copied in


def copy_to_container(
    c: Container, src: str, dest: str, *, follow: bool = False, archive: bool = False
) -> None:
    """Copy the host path `src` into the container at `dest` (`cp SRC CONTAINER:DEST`)."""
    if not os.path.lexists(src):
        raise CopyError(f"stat {src}: no such file or directory")
    if follow:
        src = os.path.realpath(src)
    copy_contents = src.endswith("/.")
    src_base = os.path.basename(os.path.normpath(src))
    route = _volume_route(c, dest)
    if route and not route[2]:
        raise CopyError(f"{dest}: the volume there is mounted read-only")
    target = route[1] if route else dest
    parent, name = container_path(target if target.startswith("/") else "/" + target)
    trailing_slash = dest.endswith("/")

    def work(root: str) -> None:
        from cache.fsops import open_dir_in_root, open_root

        rootfd = open_root(root)
        try:
            # The destination itself: an existing directory takes the source inside it.
            full = f"{parent}/{name}".strip("/") if name else ""
            try:
                destfd = open_dir_in_root(rootfd, full, readable=True)
            except (FileNotFoundError, NotADirectoryError):
                destfd = -1
            if destfd >= 0:
                try:
                    if copy_contents:
                        for entry in sorted(os.listdir(src)):
                            _copy_in(os.path.join(src, entry), destfd, entry, archive)
                    else:
                        _copy_in(src, destfd, src_base, archive)
                finally:
                    os.close(destfd)
                return
            if trailing_slash:
                raise CopyError(f"{dest}: no such directory in the container")
            try:
                pfd = open_dir_in_root(rootfd, parent, readable=True)
            except (FileNotFoundError, NotADirectoryError):
                raise CopyError(
                    f"Could not find the file {posixpath.dirname(dest) or '/'} in container"
                ) from None
            try:
                _copy_in(os.path.normpath(src), pfd, name, archive)
            finally:
                os.close(pfd)
        finally:
            os.close(rootfd)

    _in_root(c, work, writable=True, root_dir=route[0] if route else None)


# --- export --------------------------------------------------------------------------------------


def export_container(c: Container, out: BinaryIO) -> None:
    """Write the container's whole root filesystem to `out` as one tar (`pydock export`).

    Volumes and the /proc, /sys, /dev mounts are not part of it, as with Docker; the tar is
    the deterministic layer format (sorted entries), so `tar t` and `pydock import` read it.
    """
    out.flush()
    fd = out.fileno()

    def work(root: str) -> None:
        from cache.tarwriter import write_layer

        try:
            with os.fdopen(os.dup(fd), "wb") as f:
                write_layer(root, f)
        except (BrokenPipeError, PydockError) as e:
            # The reader stopped early (`export | head`): not an error.
            if not isinstance(e, BrokenPipeError) and "Broken pipe" not in str(e):
                raise

    # Always through a read-only overlay view (upper over the image's layers), also while the
    # container runs: /proc/<pid>/root would include /proc, /sys and the volumes.
    running_state = c.state
    try:
        c.state = type(running_state)(**{**running_state.__dict__, "status": "exited"})
        _in_root(c, work, writable=False)
    finally:
        c.state = running_state
