"""Mount-point stubs: what the executor had to create in a root for its mounts.

Mount targets missing from the image (/etc/hosts, /proc, a volume's directory) are created
in the overlay, so they land in the upper dir; after the run they are taken out again, with
the directories overlay copied up only to hold them, so a layer made from the upper dir
shows no trace of the mounts (BuildKit removes its mount stubs the same way).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from executor import syscalls


def remove_stubs(upper: Path, stubs: list[str], copied_up: list[str]) -> None:
    """Take the mount points the executor created out of the upper dir (deepest first), and
    then the directories overlay copied up only to hold them, when nothing else changed in
    them: a layer made from `upper` then shows no trace of the mounts. Never follows a
    symlink and only removes empty files and empty directories."""
    if not stubs:
        return
    try:
        root = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for path in sorted(set(stubs) | set(copied_up), key=lambda p: -p.count("/")):
            _remove_if_empty(root, path.strip("/"))
    finally:
        os.close(root)


def _remove_if_empty(root: int, rel: str) -> None:
    parent_rel, name = os.path.split(rel)
    try:
        parent = syscalls.openat2(
            root,
            parent_rel or ".",
            os.O_PATH | os.O_DIRECTORY,
            resolve=syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_BENEATH,
        )
    except OSError:
        return
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_nlink == 1:
            os.unlink(name, dir_fd=parent)
        elif stat.S_ISDIR(st.st_mode):
            fd = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
            )
            try:
                empty = not os.listdir(fd) and not _is_opaque(fd)
            finally:
                os.close(fd)
            if empty:
                os.rmdir(name, dir_fd=parent)
    except OSError:
        pass
    finally:
        os.close(parent)


def _is_opaque(fd: int) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(fd, attr) == b"y":
                return True
        except OSError:
            pass
    return False
