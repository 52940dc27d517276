"""ADD/COPY semantics: where sources land and with which owner, mode and mtime.

The layer of a COPY is built directly in a fresh folder (never in a mounted root): the
destination is resolved through the parent image's merged view (`RootView`), so an existing
folder or a symlinked parent is honoured, and the parent folders the layer must contain keep
the attributes they have in the image. With `--link` the view is not consulted for attributes:
the layer is independent of what it lands on, as BuildKit's.

Docker's rules followed here:
- a file source lands at DEST, or at DEST/<name> when DEST ends with `/` or is a folder;
- a folder source copies its contents (not the folder itself) into DEST;
- several sources (or a wildcard matching several) need DEST to end with `/`;
- a relative DEST is taken from WORKDIR;
- context files get uid/gid 0 unless `--chown`; files of another stage or image keep theirs;
  `--chmod` sets the mode of every file and folder copied; mtimes are kept.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path

from builder.rootview import RootView
from cache.errors import PydockError
from cache.records import field, record


class CopyError(PydockError):
    """A COPY/ADD that cannot be carried out as written."""


Entry = tuple[str, Path, os.stat_result]  # (path relative to the source folder, host, lstat)


@record
class CopySource:
    """One source of a COPY/ADD.

    kind: "file" (`host` is the file or symlink), "dir" (`entries` are its contents, parents
    first), "bytes" (`data`, a heredoc or a download; `name` is its file name).
    `keep_owner`: keep uid/gid from the source (files of another stage or image).
    """

    kind: str
    name: str
    host: Path | None = None
    st: os.stat_result | None = None
    entries: list[Entry] = field(default_factory=list)
    data: bytes = b""
    mode: int = 0o644
    mtime: int | None = None
    keep_owner: bool = False
    subdir: str = ""  # --parents: a folder's contents go to DEST/<subdir>, not DEST


@record
class Reuse:
    """The previous layer of the same COPY/ADD, unpacked, whose unchanged files may be
    hard-linked into the new layer instead of copied.

    `files` is that layer's record (layer path -> [size, content hash]). A file is linked only
    when everything the new layer's tar and unpacked dir would hold for it is already what the
    old file has: same content hash and size, permission bits, uid, gid, final mtime
    (SOURCE_DATE_EPOCH clamping included, so `_normalize_tree` never touches a linked file),
    no xattrs, and an inode not linked twice into the tree (the tar writer would make the
    second a hard-link entry). Unpacked layer dirs are read-only overlay lower dirs, so
    sharing an inode between two of them changes neither.
    """

    dir: Path
    files: dict[str, list]
    sde: int | None = None
    used: set[tuple[int, int]] = field(default_factory=set)
    linked: int = 0

    def final_mtime_ns(self, mtime_ns: int) -> int:
        if self.sde is None:
            return mtime_ns
        return min(mtime_ns // 1_000_000_000, self.sde) * 1_000_000_000

    def link(
        self,
        rel: str,
        host: Path,
        st: os.stat_result,
        digest: str,
        owner: tuple[int, int],
        mode: int,
    ) -> bool:
        """Hard-link the old layer's `rel` to `host` if it is what a copy would give."""
        if self.files.get(rel) != [st.st_size, digest]:
            return False
        old = os.path.join(self.dir, rel)
        try:
            ost = os.lstat(old)
            if (
                not stat.S_ISREG(ost.st_mode)
                or ost.st_size != st.st_size
                or stat.S_IMODE(ost.st_mode) != mode
                or (ost.st_uid, ost.st_gid) != owner
                or ost.st_mtime_ns != self.final_mtime_ns(st.st_mtime_ns)
                or (ost.st_dev, ost.st_ino) in self.used
                or os.listxattr(old, follow_symlinks=False)
            ):
                return False
            os.link(old, host, follow_symlinks=False)
        except OSError:
            # Gone (a prune took the old layer), another filesystem, too many links: copy.
            return False
        self.used.add((ost.st_dev, ost.st_ino))
        self.linked += 1
        return True


def dest_path(dest: str, workdir: str) -> str:
    """A COPY destination as written → an absolute container path (keeps a trailing `/`)."""
    trailing = dest.endswith("/") or dest in (".", "./") or dest.endswith("/.")
    path = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    path = posixpath.normpath(path)
    return path + "/" if trailing and path != "/" else path


class LayerBuilder:
    """Writes the entries of a COPY/ADD layer into `upper` (an empty folder).

    `view` is the parent image's root (None with --link or FROM scratch). Folder mtimes are
    set last (`finish()`), since writing into a folder changes its mtime.
    """

    def __init__(
        self, upper: Path, view: RootView | None, new_dir_mtime: int | None = None
    ) -> None:
        self.upper = Path(upper)
        self.view = view
        self._dirs: dict[str, tuple[int, int, int, int]] = {}  # rel -> mode, uid, gid, mtime_ns
        self.new_dir_owner: tuple[int, int] | None = None  # --chown, for folders it creates
        # Folders the layer creates get SOURCE_DATE_EPOCH when set, else the build's time.
        self._default_mtime = (
            new_dir_mtime * 1_000_000_000 if new_dir_mtime is not None else time.time_ns()
        )
        # Content hashes of source files (host path -> hash) where known (context files), the
        # record of this layer's regular files with a known hash (layer path -> [size, hash],
        # for the next build's `Reuse`), and the previous layer to link unchanged files from.
        self.hashes: dict[Path, str] = {}
        self.record: dict[str, list] = {}
        self.reuse: Reuse | None = None

    # ---- destination --------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """A container path → root-relative path after the parent image's symlinks."""
        if self.view is None:
            return posixpath.normpath(path).strip("/")
        return self.view.resolve(path)

    def target_is_dir(self, rel: str) -> bool:
        if (self.upper / rel).is_dir() and not (self.upper / rel).is_symlink():
            return True
        return self.view is not None and self.view.is_dir(rel)

    def ensure_dir(self, rel: str, owner: tuple[int, int] | None, mode: int | None = None) -> None:
        """Create `rel` and its parents in the layer. Folders the image has keep their
        attributes; new ones get `mode` (0755) and `owner` (root)."""
        if not rel:
            return
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            host = self.upper / sub
            if sub in self._dirs:
                continue
            existing = self.view.lstat(sub) if self.view is not None else None
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                raise CopyError(f"cannot create /{rel}: /{sub} is not a directory in the image")
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                attrs = (
                    stat.S_IMODE(existing.st_mode),
                    existing.st_uid,
                    existing.st_gid,
                    existing.st_mtime_ns,
                )
            else:
                # Docker: new folders get the --chown owner, parents included.
                uid, gid = owner or self.new_dir_owner or (0, 0)
                want = mode if (mode is not None and i == len(parts)) else 0o755
                attrs = (want, uid, gid, self._default_mtime)
            if host.is_symlink() or (host.exists() and not host.is_dir()):
                host.unlink()
                self.record.pop(sub, None)
            host.mkdir(exist_ok=True)
            self._dirs[sub] = attrs

    def set_dir_attrs(self, rel: str, mode: int, uid: int, gid: int, mtime_ns: int) -> None:
        self.ensure_dir(rel, (uid, gid))
        self._dirs[rel] = (mode, uid, gid, mtime_ns)

    def _place(self, rel: str) -> Path:
        parent = posixpath.dirname(rel)
        if parent:
            self.ensure_dir(parent, None)
        host = self.upper / rel
        self.record.pop(rel, None)
        try:
            st = os.lstat(host)  # one syscall: most places are new
        except FileNotFoundError:
            return host
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(host)
            self._dirs.pop(rel, None)
            for sub in [r for r in self.record if r.startswith(rel + "/")]:
                del self.record[sub]
        else:
            host.unlink()
        return host

    def _link_or_note(
        self, rel: str, src: Path, st: os.stat_result, owner: tuple[int, int], mode: int | None
    ) -> bool:
        """Record the content of a regular file placed at `rel` (when its hash is known) and
        link it from the previous layer if it is unchanged there; False: copy it."""
        digest = self.hashes.get(src)
        if digest is None:
            return False
        self.record[rel] = [st.st_size, digest]
        if self.reuse is None:
            return False
        want = mode if mode is not None else stat.S_IMODE(st.st_mode)
        return self.reuse.link(rel, self.upper / rel, st, digest, owner, want)

    def put_host(
        self, rel: str, src: Path, st: os.stat_result, owner: tuple[int, int], mode: int | None
    ) -> None:
        """Copy one non-folder entry (file, symlink, device, fifo) from the host."""
        host = self._place(rel)
        kind = stat.S_IFMT(st.st_mode)
        if stat.S_ISLNK(kind):
            os.symlink(os.readlink(src), host)
        elif stat.S_ISREG(kind):
            if self._link_or_note(rel, src, st, owner, mode):
                return
            shutil.copyfile(src, host, follow_symlinks=False)
            # chown first: a chown clears setuid/setgid bits the chmod must keep
            os.lchown(host, *owner)
            os.chmod(host, mode if mode is not None else stat.S_IMODE(st.st_mode))
        elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind) or stat.S_ISFIFO(kind):
            os.mknod(host, kind | stat.S_IMODE(st.st_mode), st.st_rdev)
        else:
            return  # sockets are not copied, as Docker
        if not stat.S_ISREG(kind):
            os.lchown(host, *owner)
        os.utime(host, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)

    def put_files(
        self, files: list[tuple[str, Path, os.stat_result, tuple[int, int]]], mode: int | None
    ) -> None:
        """Copy many regular files: their places are made one by one, the copies run in a
        few threads (creating and filling files is syscall latency, which overlaps well)."""
        for rel, _src, _st, _owner in files:
            self._place(rel)
        files = [f for f in files if not self._link_or_note(*f, mode)]
        if len(files) < 32:
            for rel, src, st, owner in files:
                self._copy_file(self.upper / rel, src, st, owner, mode)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="copy") as pool:
            jobs = [
                pool.submit(self._copy_file, self.upper / rel, src, st, owner, mode)
                for rel, src, st, owner in files
            ]
            for job in jobs:
                job.result()

    @staticmethod
    def _copy_file(
        host: Path, src: Path, st: os.stat_result, owner: tuple[int, int], mode: int | None
    ) -> None:
        shutil.copyfile(src, host, follow_symlinks=False)
        os.lchown(host, *owner)  # before the chmod, which must keep setuid/setgid bits
        os.chmod(host, mode if mode is not None else stat.S_IMODE(st.st_mode))
        os.utime(host, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)

    def put_bytes(
        self, rel: str, data: bytes, owner: tuple[int, int], mode: int, mtime: int | None
    ) -> None:
        host = self._place(rel)
        host.write_bytes(data)
        os.lchown(host, *owner)
        os.chmod(host, mode)
        if mtime is not None:
            os.utime(host, (mtime, mtime))

    def finish(self) -> None:
        """Apply folder attributes, deepest first (children change a folder's mtime)."""
        for rel in sorted(self._dirs, key=lambda r: r.count("/"), reverse=True):
            mode, uid, gid, mtime_ns = self._dirs[rel]
            host = self.upper / rel
            os.lchown(host, uid, gid)
            os.chmod(host, mode)
            os.utime(host, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def copy_sources(
    builder: LayerBuilder,
    sources: list[CopySource],
    dest: str,
    workdir: str,
    *,
    chown: tuple[int, int] | None = None,
    chmod: int | None = None,
    what: str = "COPY",
) -> list[str]:
    """Place every source under DEST following Docker's rules; returns the layer paths written
    (root-relative) for messages and tests."""
    path = dest_path(dest, workdir)
    many = len(sources) > 1
    ends_slash = path.endswith("/")
    if many and not ends_slash:
        raise CopyError(
            f"{what}: when using {what} with more than one source file, "
            f"the destination must be a directory and end with a / ({dest})"
        )
    base = builder.resolve(path.rstrip("/") or "/")
    builder.new_dir_owner = chown
    written: list[str] = []
    for src in sources:
        default_owner = chown if chown is not None else (0, 0)
        if src.kind == "dir":
            dbase = "/".join(p for p in (base, src.subdir) if p)
            # The folder itself is not copied, only its contents: a missing DEST is made
            # like any new folder (0755, root or the --chown owner).
            builder.ensure_dir(dbase, chown)
            files: list[tuple[str, Path, os.stat_result, tuple[int, int]]] = []
            for rel, host, st in src.entries:
                target = f"{dbase}/{rel}" if dbase else rel
                owner = _owner(st, src.keep_owner, chown)
                if stat.S_ISDIR(st.st_mode):
                    mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
                    builder.set_dir_attrs(target, mode, owner[0], owner[1], st.st_mtime_ns)
                elif stat.S_ISREG(st.st_mode):
                    files.append((target, host, st, owner))
                else:
                    builder.put_host(target, host, st, owner, chmod)
                written.append(target)
            builder.put_files(files, chmod)
            continue
        into_dir = ends_slash or builder.target_is_dir(base)
        target = f"{base}/{src.name}" if into_dir else base
        target = target.strip("/")
        if not target:
            raise CopyError(f"{what}: cannot copy {src.name} onto the root folder")
        if into_dir:
            builder.ensure_dir(base, chown)
        if src.kind == "bytes":
            mode = chmod if chmod is not None else src.mode
            builder.put_bytes(target, src.data, default_owner, mode, src.mtime)
        else:
            assert src.host is not None and src.st is not None
            owner = _owner(src.st, src.keep_owner, chown)
            builder.put_host(target, src.host, src.st, owner, chmod)
        written.append(target)
    builder.finish()
    return written


def _owner(st: os.stat_result, keep: bool, chown: tuple[int, int] | None) -> tuple[int, int]:
    if chown is not None:
        return chown
    return (st.st_uid, st.st_gid) if keep else (0, 0)


def parse_chmod(text: str) -> int:
    """`--chmod=755` (octal) → mode bits; symbolic modes are refused like Docker's old form."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise CopyError(f"invalid --chmod={text}: expected an octal mode such as 755") from None
    if mode > 0o7777:
        raise CopyError(f"invalid --chmod={text}: mode out of range")
    return mode


def entries_from_context(files: dict[str, os.stat_result], root: Path, rel: str) -> list[Entry]:
    """The contents of a context folder (after .dockerignore) as copy entries, parents first."""
    prefix = rel + "/" if rel else ""
    return [
        (p[len(prefix) :], root / p, st)
        for p, st in files.items()
        if p.startswith(prefix) and p != rel
    ]


def entries_from_view(view: RootView, rel: str) -> Iterable[Entry]:
    return list(view.walk(rel))


# ---- archives (ADD of a local tar) ---------------------------------------------------------
_MAGIC = [
    (b"\x1f\x8b", "gz"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zst"),
]


def archive_kind(path: Path) -> str | None:
    """'tar', 'gz', 'bz2', 'xz', 'zst' when the file is a (compressed) tar archive, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind if _compressed_tar(path, kind) else None
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return None


def _compressed_tar(path: Path, kind: str) -> bool:
    try:
        with open_archive(path, kind) as stream:
            head = stream.read(512)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not an archive
        return False
    return len(head) >= 262 and head[257:262] == b"ustar"


def open_archive(path: Path, kind: str):
    """A binary reader of the uncompressed tar stream (the caller closes it)."""
    import bz2
    import gzip
    import lzma

    if kind == "gz":
        return gzip.open(path, "rb")
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    if kind == "zst":
        import subprocess

        proc = subprocess.Popen(
            ["zstd", "-dc", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        return _ProcReader(proc)
    return open(path, "rb")


class _ProcReader:
    def __init__(self, proc) -> None:  # noqa: ANN001
        self.proc = proc

    def read(self, n: int = -1) -> bytes:
        return self.proc.stdout.read(n)

    def readinto(self, b) -> int:  # noqa: ANN001
        return self.proc.stdout.readinto(b)

    def close(self) -> None:
        self.proc.stdout.close()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def unpack_archive(
    builder: LayerBuilder,
    path: Path,
    kind: str,
    dest_rel: str,
    owner: tuple[int, int] | None = None,
) -> None:
    """Unpack a local tar archive into DEST of the layer with the safe layer applier; a
    DEST it creates gets the --chown owner (the archive's entries keep their own)."""
    builder.new_dir_owner = owner
    builder.ensure_dir(dest_rel, owner)
    target = builder.upper / dest_rel if dest_rel else builder.upper
    with open_archive(path, kind) as stream:
        try:
            from cache.applier import apply_layer
        except ImportError:  # the applier has not landed: tarfile's own safety filter
            import tarfile

            with tarfile.open(fileobj=stream, mode="r|") as tf:
                tf.extractall(target, filter="tar")
        else:
            apply_layer(stream, target, whiteouts="apply")
