"""Deterministic layer tars: a directory tree in, the same bytes out for the same content.

`write_layer` walks a directory depth-first (names sorted by their bytes within each
directory, parents before children, whiteouts before their siblings) and writes a PAX tar in
the form Docker writes layers: relative names, directories as `d/`, whole-second mtimes
(clamped to SOURCE_DATE_EPOCH when given), numeric uid/gid with empty uname/gname, no
atime/ctime, hard links (same device and inode) written as links to the first path seen,
symlinks verbatim, device nodes and fifos kept, xattrs as `SCHILY.xattr.*` records.

Headers are built here rather than with `tarfile`: tarfile's per-member cost (pwd lookups,
float mtimes turned into PAX records, TarInfo objects) is most of the time for trees of many
small files. Small files are gathered into one buffer and written in large chunks; the
SHA-256 of everything written is computed on the way, so the caller gets the diff_id without
reading the layer again.

With `overlay_upper=True` the tree is an overlayfs upper dir: character devices 0/0 (and
zero-size files carrying an `overlay.whiteout` xattr) become `.wh.<name>` whiteouts, opaque
directories get a `.wh..wh..opq` marker, and overlay's own xattrs are never copied.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cache.errors import PydockError
from cache.records import record

BLOCK = 512
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"

# Flush the gathered small entries once this much is pending; bodies at least this large are
# streamed from the file in chunks of the same size instead of being gathered.
_FLUSH_AT = 1 << 20
_CHUNK = 1 << 20

_MAX_OCTAL = {8: 0o7777777, 12: 0o77777777777}

_TYPE_REG = b"0"
_TYPE_LINK = b"1"
_TYPE_SYM = b"2"
_TYPE_CHR = b"3"
_TYPE_BLK = b"4"
_TYPE_DIR = b"5"
_TYPE_FIFO = b"6"
_TYPE_PAX = b"x"

_ZERO_BLOCKS = bytes(BLOCK * 2)


class LayerWriteError(PydockError):
    """The source tree could not be turned into a layer (unreadable file, overlay feature)."""


@record(frozen=True)
class LayerStats:
    """What `write_layer` wrote: the diff_id ("sha256:<hex>" of the tar bytes), the tar's size
    in bytes and the number of tar entries (whiteouts included)."""

    diff_id: str
    size: int
    entries: int


def _is_dropped_xattr(name: str) -> bool:
    """Xattrs a layer never carries.

    `trusted.*` are admin attributes that overlayfs trusts in lower dirs (appliers refuse them,
    ours included); `user.overlay.*` are overlay's own when mounted with userxattr;
    `security.selinux` is a host label, not image content.
    """
    return (
        name.startswith("trusted.")
        or name.startswith("user.overlay.")
        or name == "security.selinux"
    )


def _pax_record(key: str, value: bytes) -> bytes:
    # A record is "<len> <key>=<value>\n" where <len> counts itself.
    body = b" " + key.encode("utf-8", "surrogateescape") + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode("ascii") + body


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _base256(value: int, width: int) -> bytes:
    # GNU base-256 for numbers that do not fit in octal (only device numbers reach here).
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def _header(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    xattrs: list[tuple[str, bytes]] | None = None,
) -> bytes:
    """One member's header block(s): a PAX extended header first when a field does not fit
    ustar (long names, big numbers) or when xattrs are present, then the ustar block."""
    pax: dict[str, bytes] = {}
    if len(name) > 100:
        pax["path"] = name
        name = name[:100]
    if len(linkname) > 100:
        pax["linkpath"] = linkname
        linkname = linkname[:100]
    if uid > _MAX_OCTAL[8]:
        pax["uid"] = str(uid).encode()
        uid = 0
    if gid > _MAX_OCTAL[8]:
        pax["gid"] = str(gid).encode()
        gid = 0
    if size > _MAX_OCTAL[12]:
        pax["size"] = str(size).encode()
        size_field = _octal(0, 12)
    else:
        size_field = _octal(size, 12)
    if mtime < 0 or mtime > _MAX_OCTAL[12]:
        pax["mtime"] = str(mtime).encode()
        mtime = 0
    if xattrs:
        for key, value in xattrs:
            pax["SCHILY.xattr." + key] = value
    out = b""
    if pax:
        records = b"".join(_pax_record(k, pax[k]) for k in sorted(pax))
        out = _ustar(b"././@PaxHeader", 0o644, 0, 0, _octal(len(records), 12), 0, _TYPE_PAX)
        out += records + bytes(-len(records) % BLOCK)
    return out + _ustar(
        name, mode, uid, gid, size_field, mtime, typeflag, linkname, devmajor, devminor
    )


def _ustar(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size_field: bytes,
    mtime: int,
    typeflag: bytes,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    dev = b""
    for num in (devmajor, devminor):
        dev += _octal(num, 8) if num <= _MAX_OCTAL[8] else _base256(num, 8)
    block = b"".join(
        (
            name.ljust(100, b"\0"),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            size_field,
            _octal(mtime, 12),
            b"        ",  # checksum placeholder: eight spaces while summing
            typeflag,
            linkname.ljust(100, b"\0"),
            b"ustar\x0000",
            bytes(64),  # uname, gname: empty on purpose (numeric ids only)
            dev,
            bytes(167),  # prefix (unused: long names go to PAX) and padding
        )
    )
    chksum = sum(block)
    return block[:148] + b"%06o\0 " % chksum + block[156:]


class _Output:
    """The output stream plus the running SHA-256 and byte count; small pieces are gathered."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0
        self.pending = bytearray()

    def add(self, data: bytes) -> None:
        self.pending += data
        if len(self.pending) >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self._emit(self.pending)
            self.pending = bytearray()

    def _emit(self, data: bytes | bytearray | memoryview) -> None:
        self.sha.update(data)
        self.out.write(data)
        self.size += len(data)

    def copy_file(self, fd: int, size: int, path: str) -> None:
        """Append `size` bytes of the open file, padded to a block; the file must not shrink."""
        if size < _FLUSH_AT:
            data = os.read(fd, size) if size else b""
            while len(data) < size:
                more = os.read(fd, size - len(data))
                if not more:
                    raise LayerWriteError(f"{path}: file shrank while being written to the layer")
                data += more
            self.pending += data
            self.pending += bytes(-size % BLOCK)
            if len(self.pending) >= _FLUSH_AT:
                self.flush()
            return
        self.flush()
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        left = size
        while left:
            n = os.readv(fd, [view[: min(left, _CHUNK)]])
            if n == 0:
                raise LayerWriteError(f"{path}: file shrank while being written to the layer")
            self._emit(view[:n])
            left -= n
        self.pending += bytes(-size % BLOCK)


def _xattrs(path: str) -> list[tuple[str, bytes]]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (95, 61):  # EOPNOTSUPP, ENODATA: filesystem without xattrs
            return []
        raise
    if not names:
        return []
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as e:
            if e.errno != 61:  # vanished between list and get
                raise
    return out


def _check_overlay_features(path: str, attrs: list[tuple[str, bytes]]) -> None:
    # An upper dir written with redirect_dir or metacopy does not hold the full content of a
    # renamed dir or a chowned file; turning it into a layer would silently lose data.
    for name, _ in attrs:
        if name.endswith("overlay.redirect") or name.endswith("overlay.metacopy"):
            raise LayerWriteError(
                f"{path}: overlay {name.rsplit('.', 1)[1]} xattr found; mount the overlay "
                "with redirect_dir=off,metacopy=off to make layers"
            )


def _overlay_get(attrs: list[tuple[str, bytes]], suffix: str) -> bytes | None:
    for name, value in attrs:
        if name in ("trusted.overlay." + suffix, "user.overlay." + suffix):
            return value
    return None


def write_layer(
    src_dir: str | os.PathLike[str],
    out: BinaryIO,
    *,
    overlay_upper: bool = False,
    source_date_epoch: int | None = None,
    exclude: Callable[[str], bool] | None = None,
) -> LayerStats:
    """Write the tree under `src_dir` to `out` as a deterministic layer tar.

    `exclude(rel)` gets each path relative to `src_dir` ("a/b", no leading "./" or trailing
    "/") and skips it (and, for a directory, everything under it) when it returns True. The
    root directory itself is not an entry. The caller owns `out` (it is not closed; it is
    flushed if it has a `flush` method). Returns the diff_id, size and entry count of what
    was written. Raises `LayerWriteError` naming the file when the tree cannot be read.
    """
    root = os.fspath(src_dir)
    output = _Output(out)
    seen_inodes: dict[tuple[int, int], bytes] = {}
    entries = 0
    sde = source_date_epoch

    def mtime_of(st: os.stat_result) -> int:
        m = st.st_mtime_ns // 1_000_000_000
        return m if sde is None or m <= sde else sde

    # Depth-first with an explicit stack of sorted child lists (no recursion: a deep tree must
    # not hit Python's recursion limit). Each child is emitted, and a directory's subtree
    # follows it before its next sibling, as filepath.Walk orders Docker's layers.
    try:
        stack = [iter(_children(root, b"", overlay_upper, exclude))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            _rank, rel, path, st, attrs, is_whiteout = child
            mode = st.st_mode
            mtime = mtime_of(st)
            if is_whiteout:
                # Docker's form: an empty regular file, mode 0600, the node's owner.
                output.add(_header(rel, 0o600, st.st_uid, st.st_gid, 0, mtime, _TYPE_REG))
                entries += 1
                continue
            kept = [(k, v) for k, v in attrs if not _is_dropped_xattr(k)]
            perm = stat.S_IMODE(mode)
            uid, gid = st.st_uid, st.st_gid
            if stat.S_ISDIR(mode):
                output.add(_header(rel + b"/", perm, uid, gid, 0, mtime, _TYPE_DIR, xattrs=kept))
                entries += 1
                if overlay_upper and _overlay_get(attrs, "opaque") == b"y":
                    # The marker inherits the dir's owner, permission bits and mtime.
                    marker = rel + b"/" + OPAQUE_MARKER.encode()
                    output.add(_header(marker, perm & 0o777, uid, gid, 0, mtime, _TYPE_REG))
                    entries += 1
                stack.append(iter(_children(path, rel + b"/", overlay_upper, exclude)))
                continue
            entries += 1
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = seen_inodes.get(key)
                if first is not None:
                    output.add(_header(rel, perm, uid, gid, 0, mtime, _TYPE_LINK, first))
                    continue
                seen_inodes[key] = rel
            if stat.S_ISREG(mode):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    size = st.st_size
                    output.add(_header(rel, perm, uid, gid, size, mtime, _TYPE_REG, xattrs=kept))
                    output.copy_file(fd, size, path)
                finally:
                    os.close(fd)
            elif stat.S_ISLNK(mode):
                target = os.fsencode(os.readlink(path))
                output.add(_header(rel, perm, uid, gid, 0, mtime, _TYPE_SYM, target, xattrs=kept))
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                kind = _TYPE_CHR if stat.S_ISCHR(mode) else _TYPE_BLK
                major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
                output.add(
                    _header(rel, perm, uid, gid, 0, mtime, kind, b"", major, minor, xattrs=kept)
                )
            else:  # fifo (sockets were left out by _children)
                output.add(_header(rel, perm, uid, gid, 0, mtime, _TYPE_FIFO, xattrs=kept))
    except OSError as e:
        raise LayerWriteError(f"{e.filename or root}: {e.strerror}") from e
    output.add(_ZERO_BLOCKS)
    output.flush()
    flush = getattr(out, "flush", None)
    if flush is not None:
        flush()
    return LayerStats("sha256:" + output.sha.hexdigest(), output.size, entries)


_Child = tuple[int, bytes, str, os.stat_result, list[tuple[str, bytes]], bool]


def _children(
    dir_path: str,
    prefix: bytes,
    overlay_upper: bool,
    exclude: Callable[[str], bool] | None,
) -> list[_Child]:
    """The entries of one directory in layer order: (rank, tar name, disk path, lstat,
    xattrs, is_whiteout). Whiteouts (rank 1) come before other names (rank 2); names sort by
    their bytes within a rank."""
    out: list[_Child] = []
    with os.scandir(dir_path) as it:
        listing = list(it)
    for entry in listing:
        name_b = os.fsencode(entry.name)
        if exclude is not None and exclude(os.fsdecode(prefix + name_b)):
            continue
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            continue  # sockets cannot be archived (GNU tar: "socket ignored")
        attrs = _xattrs(entry.path)
        is_whiteout = False
        if overlay_upper:
            _check_overlay_features(entry.path, attrs)
            if stat.S_ISCHR(mode) and st.st_rdev == 0:
                is_whiteout = True
            elif (
                stat.S_ISREG(mode)
                and st.st_size == 0
                and _overlay_get(attrs, "whiteout") is not None
            ):
                is_whiteout = True
        if is_whiteout:
            name_b = WHITEOUT_PREFIX.encode() + name_b
        rank = 1 if name_b.startswith(b".wh.") else 2
        out.append((rank, prefix + name_b, entry.path, st, attrs, is_whiteout))
    out.sort(key=lambda c: (c[0], c[1]))
    return out


def write_layer_file(src_dir: str | os.PathLike[str], dest: Path, **options: object) -> LayerStats:
    """`write_layer` into a new file at `dest` (fsynced); convenience for tests and benches."""
    with open(dest, "wb") as f:
        stats = write_layer(src_dir, f, **options)  # type: ignore[arg-type]
        os.fsync(f.fileno())
    return stats
