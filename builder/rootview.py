"""A read-only merged view of an image's root over its unpacked layer dirs, without mounting.

The store unpacks each layer as an overlay lower dir (whiteouts as char devices 0/0, opaque
dirs marked by an `overlay.opaque` xattr). `RootView` answers what the merged root would show
for a path: the topmost layer holding it, unless a newer layer whited it out or made a parent
opaque. Paths are resolved as the container sees them: symlinks (absolute ones from the root)
are followed inside the view and can never lead out of it.

COPY/ADD use it to resolve the destination (existing folders, symlinked parents), to copy the
attributes of existing parent folders into a new layer, to read /etc/passwd and /etc/group for
`--chown`, and to read the files of another stage for `COPY --from`.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path

_OPAQUE = (b"trusted.overlay.opaque", b"user.overlay.opaque")


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: Path) -> bool:
    for name in _OPAQUE:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


class RootView:
    """The merged root of `lowers` (oldest first), optionally with an `upper` dir on top."""

    def __init__(self, lowers: list[Path], upper: Path | None = None) -> None:
        self.layers = [Path(p) for p in reversed(lowers)]  # newest first
        if upper is not None:
            self.layers.insert(0, Path(upper))

    def _visible(self, rel: str) -> list[Path]:
        """The layer dirs that hold `rel` (no symlink following), newest first; empty: absent."""
        parts = [p for p in rel.split("/") if p]
        visible = list(self.layers)
        prefix = ""
        for part in parts:
            prefix = f"{prefix}/{part}" if prefix else part
            nxt: list[Path] = []
            for layer in visible:
                q = layer / prefix
                try:
                    st = os.lstat(q)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if _is_whiteout(st):
                    break
                nxt.append(layer)
                if not stat.S_ISDIR(st.st_mode) or _is_opaque(q):
                    break  # a file hides lower entries entirely; so does an opaque dir
            visible = nxt
            if not visible:
                return []
        return visible

    def host_path(self, rel: str) -> Path | None:
        """The host path of the visible entry for a resolved path, or None."""
        vis = self._visible(rel)
        return (vis[0] / rel.strip("/")) if vis else None

    def lstat(self, rel: str) -> os.stat_result | None:
        p = self.host_path(rel)
        return os.lstat(p) if p is not None else None

    def resolve(self, path: str, follow_last: bool = True) -> str:
        """A container path → the root-relative path it names after following symlinks
        (absolute targets are taken from the view's root; `..` stops at the root)."""
        todo = [p for p in posixpath.normpath("/" + path).split("/") if p]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            cand = "/".join([*done, part])
            st = self.lstat(cand)
            if st is not None and stat.S_ISLNK(st.st_mode) and (todo or follow_last):
                hops += 1
                if hops > 40:
                    raise OSError(f"too many levels of symbolic links in {path}")
                target = os.readlink(self.host_path(cand))  # type: ignore[arg-type]
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p and p != "."] + todo
                continue
            done.append(part)
        return "/".join(done)

    def is_dir(self, rel: str) -> bool:
        st = self.lstat(rel)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def read_text(self, path: str) -> str | None:
        try:
            p = self.host_path(self.resolve(path))
        except OSError:
            return None
        if p is None:
            return None
        try:
            return p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def listdir(self, rel: str) -> dict[str, Path]:
        """Merged children of a folder: name → host path of the visible entry."""
        out: dict[str, Path] = {}
        hidden: set[str] = set()
        for layer in self._visible(rel):
            d = layer / rel if rel else layer
            try:
                entries = list(os.scandir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for ent in entries:
                if ent.name in out or ent.name in hidden:
                    continue
                st = ent.stat(follow_symlinks=False)
                if _is_whiteout(st):
                    hidden.add(ent.name)
                    continue
                out[ent.name] = Path(ent.path)
            if _is_opaque(d):
                break
        return dict(sorted(out.items()))

    def walk(self, rel: str) -> Iterator[tuple[str, Path, os.stat_result]]:
        """Every entry under a folder (relative to it), parents first, sorted."""
        for name, host in self.listdir(rel).items():
            sub = f"{rel}/{name}" if rel else name
            st = os.lstat(host)
            yield name, host, st
            if stat.S_ISDIR(st.st_mode):
                for child, h, s in self.walk(sub):
                    yield f"{name}/{child}", h, s


def lookup_user(view: RootView, user: str) -> tuple[int, int]:
    """`name|uid[:group|gid]` → (uid, gid) via the view's /etc/passwd and /etc/group.

    A numeric uid without a group uses the same number as gid (Docker's --chown rule); a
    name without a group takes the passwd entry's gid.
    Raises KeyError naming what is missing.
    """
    name, _, group = user.partition(":")
    passwd = _table(view.read_text("/etc/passwd"))
    uid: int | None = None
    gid: int | None = None
    if name.isdigit():
        uid = gid = int(name)
    else:
        for row in passwd:
            if row and row[0] == name and len(row) > 3:
                uid, gid = int(row[2]), int(row[3])
                break
        if uid is None:
            raise KeyError(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            gid = None
            for row in _table(view.read_text("/etc/group")):
                if row and row[0] == group and len(row) > 2:
                    gid = int(row[2])
                    break
            if gid is None:
                raise KeyError(f"unable to find group {group}: no matching entries in group file")
    return uid, gid if gid is not None else 0


def _table(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
