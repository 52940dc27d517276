"""Unpacking layers safely: every path resolved inside the target by the kernel.

`apply_layer` reads a layer tar with the strict reader (`cache.tarcheck`) and creates each
member under `target`. Each member's parent directory is opened with
`openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from an `O_PATH` descriptor of the target,
so `..` stops at the target and absolute symlinks are followed relative to it; the member is
then made with `*at` calls on that descriptor that never follow a final symlink. No string
prefix check decides anything.

Two whiteout modes:
- "apply" (flattening into one tree): `.wh.x` deletes `x` from what lower layers left,
  `.wh..wh..opq` empties its directory of lower-layer children;
- "overlay" (a layer dir used as an overlay lowerdir): `.wh.x` becomes a 0/0 character
  device and `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr, as overlayfs reads them.
Whiteouts hide lower layers only, never what the same layer creates.

Refused (raise `BadLayer` naming the member): `..` components, whiteouts named `.wh.`,
`.wh..` or `.wh...`, `.wh.` names used as directories, `trusted.*` and `user.overlay.*`
xattrs, hard links whose target is missing or a directory, device numbers out of range,
members larger than `max_size` or than the free space, a malformed or truncated tar.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path
from typing import BinaryIO, Literal

from cache import tarcheck
from cache.errors import BadLayer
from cache.fsops import open_root, openat2
from cache.records import record
from cache.tarcheck import Member, TarReader, show

WHITEOUT_PREFIX = b".wh."
OPAQUE_MARKER = b".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

_PATH_DIR = os.O_PATH | os.O_DIRECTORY
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_BIG_MEMBER = 64 << 20  # members this large are checked against the free space first
_MAX_DEV = 0xFFFFFFFF
_MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "leave unchanged" to chown


@record
class ApplyStats:
    """What one `apply_layer` did. `diff_id`/`size` describe the tar bytes read (the SHA-256
    and length of the uncompressed stream); `content_bytes` is the file data written."""

    diff_id: str = ""
    size: int = 0
    entries: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    devices: int = 0  # device nodes and fifos
    whiteouts: int = 0
    content_bytes: int = 0
    skipped_devices: int = 0  # device nodes not created because we are not root
    skipped_xattrs: int = 0  # xattrs the filesystem refused (user.* on symlinks, ...)


def apply_layer(
    stream: BinaryIO,
    target: Path | str,
    *,
    whiteouts: Literal["overlay", "apply"] = "apply",
    max_size: int | None = None,
) -> ApplyStats:
    """Unpack the plain (uncompressed) layer tar `stream` into the existing dir `target`.

    Reads the stream to its end and checks the archive really ended. `max_size` bounds the
    total file data (None: only the free space bounds it). On error (`BadLayer`) the target
    is left partly written: callers unpack into a staging dir and rename it when done.
    """
    if whiteouts not in ("apply", "overlay"):
        raise ValueError(f"whiteouts must be 'apply' or 'overlay', not {whiteouts!r}")
    reader = TarReader(stream)
    applier = _Applier(Path(target), whiteouts, max_size)
    try:
        for member in reader:
            try:
                applier.apply(member, reader)
            except BadLayer:
                raise
            except OSError as e:
                raise BadLayer(f"member {show(member.name)!r}: {e.strerror or e}") from None
            except (ValueError, OverflowError) as e:
                # e.g. a NUL inside an xattr name: a malformed member, not a crash
                raise BadLayer(f"member {show(member.name)!r}: {e}") from None
            applier.end_member()
        try:
            applier.finish()
        except OSError as e:
            raise BadLayer(f"setting directory times in {target}: {e.strerror}") from None
    finally:
        applier.close()
    summary = reader.summary()
    stats = applier.stats
    stats.diff_id, stats.size, stats.entries = summary.diff_id, summary.size, summary.entries
    return stats


def _clean(name: bytes, member: Member) -> tuple[bytes, ...]:
    """Split a member name into components: leading "/" and "." parts dropped, ".." refused."""
    parts = []
    for comp in name.split(b"/"):
        if comp in (b"", b"."):
            continue
        if comp == b"..":
            raise BadLayer(f"member {show(member.name)!r}: path with '..' leads out of the root")
        parts.append(comp)
    return tuple(parts)


class _Applier:
    def __init__(self, target: Path, whiteouts: str, max_size: int | None) -> None:
        self.target = target
        self.overlay = whiteouts == "overlay"
        self.max_size = max_size
        self.is_root = os.geteuid() == 0
        self.stats = ApplyStats()
        try:
            self.rootfd = open_root(target)
        except OSError as e:
            raise BadLayer(f"cannot open layer target {target}: {e.strerror}") from None
        self.created: set[bytes] = set()  # paths this layer made (whiteouts must not hide them)
        self.opaque: set[bytes] = set()  # overlay mode: dirs marked opaque by this layer
        self.dir_times: list[tuple[bytes, int]] = []
        self.parents: dict[bytes, int] = {}  # cache: dir path -> O_PATH fd
        self.stale = False
        self.total = 0
        self.free_checked_at = -1

    # --- descriptors ---------------------------------------------------------------------

    def close(self) -> None:
        self._drop_parents()
        os.close(self.rootfd)

    def _drop_parents(self) -> None:
        for fd in self.parents.values():
            os.close(fd)
        self.parents.clear()

    def end_member(self) -> None:
        # Something was removed or replaced: cached descriptors may name dirs that are gone or
        # paths that now resolve elsewhere. Dropped only between members, so the descriptors a
        # member is using stay open while it uses them.
        if self.stale or len(self.parents) > 512:
            self._drop_parents()
            self.stale = False

    def parent(self, parts: tuple[bytes, ...], member: Member, create: bool = True) -> int:
        """O_PATH fd of the directory `parts` resolved in the root, created (0755) if missing.
        Owned by the cache; do not close it."""
        key = b"/".join(parts)
        fd = self.parents.get(key)
        if fd is not None:
            return fd
        try:
            fd = openat2(self.rootfd, key, _PATH_DIR)
        except FileNotFoundError:
            if not create:
                raise
            fd = self._make_dirs(parts, member)
        except NotADirectoryError:
            raise BadLayer(
                f"member {show(member.name)!r}: parent {show(key)!r} is not a directory"
            ) from None
        self.parents[key] = fd
        return fd

    def _make_dirs(self, parts: tuple[bytes, ...], member: Member, depth: int = 0) -> int:
        """Create the missing directories of `parts` one by one, each resolved in the root.

        A dangling symlink on the way is followed as the kernel would (its target taken
        relative to the root or to its own dir) by asking openat2 for that path in turn, so
        the dirs are made where the link points inside the root, as containerd does."""
        if depth > 40:
            raise BadLayer(f"member {show(member.name)!r}: too many levels of symbolic links")
        fd = os.dup(self.rootfd)
        try:
            for i in range(len(parts)):
                key = b"/".join(parts[: i + 1])
                try:
                    nfd = openat2(self.rootfd, key, _PATH_DIR)
                except FileNotFoundError:
                    try:
                        os.mkdir(parts[i], 0o755, dir_fd=fd)
                        self.created.add(key)
                    except FileExistsError:
                        link = os.readlink(parts[i], dir_fd=fd)  # EINVAL if not a symlink
                        base = () if link.startswith(b"/") else parts[:i]
                        hops = tuple(c for c in link.split(b"/") if c not in (b"", b"."))
                        os.close(self._make_dirs(base + hops, member, depth + 1))
                    nfd = openat2(self.rootfd, key, _PATH_DIR)
                except NotADirectoryError:
                    raise BadLayer(
                        f"member {show(member.name)!r}: parent {show(key)!r} is not a directory"
                    ) from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def remove(self, pfd: int, name: bytes, *, keep_dir: bool) -> bool:
        """Remove `name` in `pfd` (a whole tree for a dir, never following symlinks). With
        keep_dir an existing directory stays. Returns True if a directory was kept."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            self.stale = True
            shutil.rmtree(name, dir_fd=pfd)
        else:
            self.stale = True
            os.unlink(name, dir_fd=pfd)
        return False

    # --- members -------------------------------------------------------------------------

    def apply(self, m: Member, reader: TarReader) -> None:
        parts = _clean(m.name, m)
        if any(p.startswith(WHITEOUT_PREFIX) for p in parts[:-1]):
            if any(p.startswith(b".wh..wh.") for p in parts[:-1]):
                return  # AUFS metadata (.wh..wh.plnk/...): not content
            raise BadLayer(f"member {show(m.name)!r}: whiteout name used as a directory")
        for key in m.xattrs:
            if key.startswith("trusted.") or key.startswith("user.overlay."):
                raise BadLayer(
                    f"member {show(m.name)!r}: refusing xattr {key!r} (admin attributes are "
                    "not accepted from layers)"
                )
        if m.uid > _MAX_ID or m.gid > _MAX_ID:
            raise BadLayer(f"member {show(m.name)!r}: uid/gid out of range")
        if not parts:
            if m.type == tarcheck.DIR:
                self._set_root_attrs(m)
            return  # the root itself is never replaced
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(m, parts)
            return
        self._check_size(m)
        pfd = self.parent(parts[:-1], m)
        key = b"/".join(parts)
        kind = m.type
        if kind == tarcheck.REG:
            self._file(m, pfd, base, reader)
        elif kind == tarcheck.DIR:
            self._dir(m, pfd, base, key)
        elif kind == tarcheck.SYMLINK:
            self._symlink(m, pfd, base)
        elif kind == tarcheck.LINK:
            self._hardlink(m, pfd, base)
        else:
            if not self._node(m, pfd, base):
                return
        self.created.add(key)

    def _check_size(self, m: Member) -> None:
        if not m.size:
            return
        if self.max_size is not None and self.total + m.size > self.max_size:
            raise BadLayer(
                f"member {show(m.name)!r}: layer exceeds the size limit of {self.max_size} bytes"
            )
        if m.size >= _BIG_MEMBER:
            vfs = os.statvfs(self.rootfd)
            free = vfs.f_bavail * vfs.f_frsize
            if m.size > free:
                raise BadLayer(
                    f"member {show(m.name)!r}: declares {m.size} bytes, more than the "
                    f"{free} bytes free in {self.target}"
                )
        self.total += m.size

    def _owner_mode_xattrs_fd(self, fd: int, m: Member) -> None:
        # Order matters: chown clears setuid/setgid bits and file capabilities, so the mode
        # and the xattrs come after it.
        if self.is_root:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode)
        for key, value in sorted(m.xattrs.items()):
            if key == "security.selinux":
                continue  # a host label, not image content
            try:
                os.setxattr(fd, key, value)
            except OSError as e:
                if e.errno not in (1, 95):  # EPERM, EOPNOTSUPP: as Docker, skip and go on
                    raise
                self.stats.skipped_xattrs += 1

    def _file(self, m: Member, pfd: int, base: bytes, reader: TarReader) -> None:
        try:
            fd = os.open(base, _CREATE_FILE, 0o600, dir_fd=pfd)
        except FileExistsError:
            self.remove(pfd, base, keep_dir=False)
            fd = os.open(base, _CREATE_FILE, 0o600, dir_fd=pfd)
        try:
            write = os.write
            for view in reader.body_views():
                while view:
                    n = write(fd, view)
                    view = view[n:]
            self._owner_mode_xattrs_fd(fd, m)
            os.utime(fd, ns=(m.mtime * 10**9, m.mtime * 10**9))
        finally:
            os.close(fd)
        self.stats.files += 1
        self.stats.content_bytes += m.size

    def _dir(self, m: Member, pfd: int, base: bytes, key: bytes) -> None:
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            # Dir over dir keeps the dir (and its lower content); anything else is replaced.
            if not self.remove(pfd, base, keep_dir=True):
                os.mkdir(base, 0o700, dir_fd=pfd)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self._owner_mode_xattrs_fd(fd, m)
        finally:
            os.close(fd)
        self.dir_times.append((key, m.mtime))
        self.stats.dirs += 1

    def _set_root_attrs(self, m: Member) -> None:
        fd = openat2(self.rootfd, b".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._owner_mode_xattrs_fd(fd, m)
        finally:
            os.close(fd)
        self.dir_times.append((b"", m.mtime))

    def _symlink(self, m: Member, pfd: int, base: bytes) -> None:
        if not m.linkname:
            raise BadLayer(f"member {show(m.name)!r}: symlink with an empty target")
        try:
            os.symlink(m.linkname, base, dir_fd=pfd)
        except FileExistsError:
            self.remove(pfd, base, keep_dir=False)
            os.symlink(m.linkname, base, dir_fd=pfd)
        self._path_attrs(m, pfd, base, chmod=False)
        self.stats.symlinks += 1

    def _path_attrs(self, m: Member, pfd: int, base: bytes, *, chmod: bool) -> None:
        """Owner, mode, xattrs and mtime of a symlink or node, never following it."""
        if self.is_root:
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod or m.xattrs:
            # An O_PATH fd of the node itself; /proc/self/fd/N then names exactly that inode
            # for chmod and setxattr, which have no no-follow *at form that works everywhere.
            fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            try:
                via = f"/proc/self/fd/{fd}"
                if chmod:
                    os.chmod(via, m.mode)
                for key, value in sorted(m.xattrs.items()):
                    if key == "security.selinux":
                        continue
                    try:
                        os.setxattr(via, key, value, follow_symlinks=False)
                    except OSError as e:
                        if e.errno not in (1, 95):
                            raise
                        self.stats.skipped_xattrs += 1
            finally:
                os.close(fd)
        ns = m.mtime * 10**9
        os.utime(base, ns=(ns, ns), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, m: Member, pfd: int, base: bytes) -> None:
        tparts = _clean(m.linkname, m)
        if not tparts:
            raise BadLayer(f"member {show(m.name)!r}: hard link to the root directory")
        missing = BadLayer(
            f"member {show(m.name)!r}: hard link target {show(m.linkname)!r} does not exist "
            "in the layer root"
        )
        try:
            tpfd = self.parent(tparts[:-1], m, create=False)
        except (FileNotFoundError, NotADirectoryError):
            raise missing from None
        tbase = tparts[-1]
        try:
            tst = os.stat(tbase, dir_fd=tpfd, follow_symlinks=False)
        except FileNotFoundError:
            raise missing from None
        if stat.S_ISDIR(tst.st_mode):
            raise BadLayer(f"member {show(m.name)!r}: hard link to a directory")
        try:
            dst = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if (dst.st_dev, dst.st_ino) == (tst.st_dev, tst.st_ino):
                return  # already that very file
            self.remove(pfd, base, keep_dir=False)
        # follow_symlinks=False: linkat without AT_SYMLINK_FOLLOW links a symlink itself,
        # never what it points to.
        os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        self.stats.hardlinks += 1

    def _node(self, m: Member, pfd: int, base: bytes) -> bool:
        if m.type == tarcheck.FIFO:
            fmt, dev = stat.S_IFIFO, 0
        else:
            if m.devmajor > _MAX_DEV or m.devminor > _MAX_DEV:
                raise BadLayer(f"member {show(m.name)!r}: device number out of range")
            if not self.is_root:
                self.stats.skipped_devices += 1
                return False
            fmt = stat.S_IFCHR if m.type == tarcheck.CHR else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
        try:
            os.mknod(base, fmt | 0o600, dev, dir_fd=pfd)
        except FileExistsError:
            self.remove(pfd, base, keep_dir=False)
            os.mknod(base, fmt | 0o600, dev, dir_fd=pfd)
        self._path_attrs(m, pfd, base, chmod=True)
        self.stats.devices += 1
        return True

    # --- whiteouts -----------------------------------------------------------------------

    def _whiteout(self, m: Member, parts: tuple[bytes, ...]) -> None:
        base = parts[-1]
        dir_parts = parts[:-1]
        dir_key = b"/".join(dir_parts)
        if base == OPAQUE_MARKER:
            self._opaque(m, dir_parts, dir_key)
            self.stats.whiteouts += 1
            return
        if base.startswith(b".wh..wh."):
            return  # other AUFS metadata: not content
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in (b"", b".", b".."):
            raise BadLayer(f"member {show(m.name)!r}: invalid whiteout name")
        key = b"/".join(parts[:-1] + (victim,))
        self.stats.whiteouts += 1
        if key in self.created:
            return  # a whiteout hides lower layers only
        if not self.overlay:
            try:
                pfd = self.parent(dir_parts, m, create=False)
            except (FileNotFoundError, NotADirectoryError):
                return  # nothing below to hide
            self.remove(pfd, victim, keep_dir=False)
            return
        if dir_key in self.opaque:
            return  # the opaque dir already hides everything below it
        if not self.is_root:
            raise BadLayer(f"member {show(m.name)!r}: overlay whiteouts need root (mknod)")
        pfd = self.parent(dir_parts, m)
        self.remove(pfd, victim, keep_dir=False)
        os.mknod(victim, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)

    def _opaque(self, m: Member, dir_parts: tuple[bytes, ...], dir_key: bytes) -> None:
        try:
            fd = openat2(self.rootfd, dir_key, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            if not self.overlay:
                return  # nothing below to hide
            self.parent(dir_parts, m)
            fd = openat2(self.rootfd, dir_key, os.O_RDONLY | os.O_DIRECTORY)
        except NotADirectoryError:
            raise BadLayer(f"member {show(m.name)!r}: opaque marker in a non-directory") from None
        try:
            if self.overlay:
                if not self.is_root:
                    raise BadLayer(f"member {show(m.name)!r}: overlay opaque dirs need root")
                os.setxattr(fd, OVERLAY_OPAQUE_XATTR, b"y")
                self.opaque.add(dir_key)
                # Whiteout nodes made earlier in this dir are moot now, and overlayfs lists
                # but cannot open them inside an opaque dir: drop them.
                for name in os.listdir(fd):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        os.unlink(name, dir_fd=fd)
                return
            prefix = dir_key + b"/" if dir_key else b""
            for name in os.listdir(fd):
                name_b = os.fsencode(name)
                if prefix + name_b not in self.created:
                    self.remove(fd, name_b, keep_dir=False)
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Directory mtimes last: creating their children changed them."""
        for key, mtime in self.dir_times:
            try:
                fd = openat2(self.rootfd, key, os.O_RDONLY | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed or replaced later in the layer
            try:
                os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))
            finally:
                os.close(fd)


# --- compressed input ----------------------------------------------------------------------

_MAGICS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


class _Prefixed:
    """A reader that gives `head` first, then the rest of `stream`."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head = head
        self.stream = stream

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.stream.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.stream.read(n - len(data))
            return data
        return self.stream.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


class _ZstdReader:
    """Decompresses zstd with the host's `zstd` binary (Python 3.11 has no zstd module).

    The binary is found on a fixed system PATH once, never on a PATH an image could
    influence; a thread feeds it so neither pipe can fill up. A failed decompression is
    reported as BadLayer when the output ends."""

    def __init__(self, stream: _Prefixed) -> None:
        exe = shutil.which("zstd", path="/usr/bin:/bin:/usr/local/bin")
        if exe is None:
            raise BadLayer("zstd-compressed layer but no zstd binary is installed")
        self.proc = subprocess.Popen(
            [exe, "-d", "-c", "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.feeder = threading.Thread(target=self._feed, args=(stream,), daemon=True)
        self.feeder.start()
        self.done = False

    def _feed(self, stream: _Prefixed) -> None:
        try:
            while chunk := stream.read(1 << 20):
                self.proc.stdin.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            pass  # zstd stopped early; its exit status says why
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def read(self, n: int = -1) -> bytes:
        data = self.proc.stdout.read(n) if n >= 0 else self.proc.stdout.read()
        if not data and not self.done:
            self.done = True
            self.feeder.join()
            err = self.proc.stderr.read().decode("utf-8", "replace").strip()
            if self.proc.wait() != 0:
                raise BadLayer(f"corrupt zstd stream: {err.splitlines()[-1] if err else 'failed'}")
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def sniff_compression(head: bytes) -> str | None:
    """ "gzip", "bzip2", "xz", "zstd" from the first bytes of a stream, or None (plain)."""
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    return None


def open_maybe_compressed(stream: BinaryIO) -> BinaryIO:
    """A reader of the uncompressed bytes of `stream` (plain, gzip, bzip2, xz or zstd, told
    apart by their magic numbers). Corrupt or truncated compressed data raises BadLayer when
    read (through `TarReader`/`apply_layer`, or directly for gzip/xz/bzip2 as their modules'
    errors). The caller closes `stream`; closing the result stops a zstd helper."""
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    kind = sniff_compression(head)
    prefixed = _Prefixed(head, stream)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=prefixed, mode="rb")  # type: ignore[arg-type]
    if kind == "bzip2":
        return bz2.BZ2File(prefixed)  # type: ignore[arg-type]
    if kind == "xz":
        return lzma.LZMAFile(prefixed)  # type: ignore[arg-type]
    if kind == "zstd":
        return _ZstdReader(prefixed)  # type: ignore[return-value]
    return prefixed  # type: ignore[return-value]
