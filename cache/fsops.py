"""Path resolution confined to a root directory, for the store's own file work (ctypes).

Everything that touches a tree an image controls (unpacking a layer, whiteouts, hard-link
targets) resolves paths with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from an
`O_PATH` descriptor of the root: `..` stops at the root and absolute symlinks are followed
relative to it, all inside the kernel's single lookup, so no string check is involved and no
symlink swapped in between a check and a use can lead out. The caller then works on the
returned directory descriptor with the `*at` calls and `O_NOFOLLOW`.

The executor has its own syscall module (`executor/syscalls.py`); this one is `cache/`'s.
"""

from __future__ import annotations

import ctypes
import errno
import os

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

IN_ROOT = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS

# openat2 has the same number on every architecture (it was added after the tables unified).
_SYS_OPENAT2 = 437

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(
    dirfd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = IN_ROOT
) -> int:
    """openat2(2): open `path` relative to `dirfd` with the given RESOLVE_* flags.

    With the default `resolve`, `dirfd` acts as the root for the whole lookup. Returns a new
    close-on-exec descriptor; raises OSError (with the path) on failure.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path) if path else b"."
    while True:
        fd = _syscall(_SYS_OPENAT2, dirfd, raw, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        # EAGAIN: a concurrent rename/mount raced the lookup (RESOLVE_IN_ROOT is strict); retry.
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), os.fsdecode(raw))


def open_root(path: str | os.PathLike[str]) -> int:
    """An `O_PATH` descriptor of a directory to use as the root for `openat2`."""
    return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dir_in_root(rootfd: int, rel: str | bytes, *, readable: bool = False) -> int:
    """A descriptor of the directory `rel` resolved inside the root (O_PATH unless `readable`,
    which is needed for listing it and for fsetxattr). An empty `rel` is the root itself."""
    flags = (os.O_RDONLY if readable else os.O_PATH) | os.O_DIRECTORY
    return openat2(rootfd, rel, flags)


def proc_path(dirfd: int, name: str | bytes) -> bytes:
    """A path naming `name` in the directory `dirfd`, for the few calls that have no `*at` form
    (lsetxattr on symlinks and device nodes). Only the last component is left to resolve, so
    use it with follow_symlinks=False."""
    return b"/proc/self/fd/%d/" % dirfd + os.fsencode(name)


def set_xattr_at(dirfd: int, name: str | bytes, key: str, value: bytes) -> None:
    """lsetxattr(2) on `name` inside `dirfd`, never following a final symlink."""
    os.setxattr(proc_path(dirfd, name), key, value, follow_symlinks=False)


def openat2_available() -> bool:
    """Whether the kernel has openat2 (Linux >= 5.6)."""
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        os.close(openat2(root, ".", os.O_PATH))
    except OSError as e:
        return e.errno != errno.ENOSYS
    finally:
        os.close(root)
    return True


def syncfs(path: str | os.PathLike[str]) -> None:
    """syncfs(2) on the filesystem holding `path`: one flush for a whole unpacked tree, where
    an fsync per file would cost a round trip each (used before a layer dir is renamed into
    place, so a power loss cannot leave a complete-looking layer with empty files)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(path))
    finally:
        os.close(fd)
