"""Content-addressed blobs under ROOT/blobs/sha256/<hex>, verified on the way in and out.

Ingest (`BlobStore.put`) hashes while copying into ROOT/tmp, fsyncs, compares with the expected
digest and only then links the file to its final name. If the name already exists the blob is
already there (content addressing makes the commit idempotent) and the copy is dropped. Blob
files are read-only (0444): nothing ever edits one in place.

Reading (`BlobStore.open`) gives a `VerifyingReader`, which hashes what is read and raises
`DigestMismatch` when it reaches the end and the content does not match, so a corrupted or
truncated file is caught by whoever reads it fully. `read_bytes` is the small-object shortcut
(manifests, configs) that reads and verifies in one go.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cache.digest import COPY_CHUNK, Digest, Hasher, sha256_bytes
from cache.errors import BlobNotFound, DigestMismatch
from cache.staging import crash_point, fsync_dir, space_error, staging_name

BLOB_MODE = 0o444


def _open_blob_fd(path: Path, digest: Digest) -> int:
    """Open a blob file for reading; a symlink or anything but a regular file is damage."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DigestMismatch(f"blob {digest} is a symlink, not content") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DigestMismatch(f"blob {digest} is not a regular file")
    return fd


class VerifyingReader(io.RawIOBase):
    """A read-only stream over a blob file that checks its digest when the end is reached.

    Seeking is not supported (the hash needs every byte once, in order). The caller closes it
    (it is a context manager). `verified` becomes True after a successful check.
    """

    def __init__(self, path: Path, digest: Digest) -> None:
        super().__init__()
        self.digest = digest
        self.path = path
        try:
            self._f = open(_open_blob_fd(path, digest), "rb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is missing from the store") from None
        self.size = os.fstat(self._f.fileno()).st_size
        self._hasher = Hasher()
        self.verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - io API
        n = self._f.readinto(buffer)
        if n:
            self._hasher.update(memoryview(buffer)[:n])
        elif len(buffer) and not self.verified:
            self._check()
        return n or 0

    def _check(self) -> None:
        got = self._hasher.digest()
        if got != self.digest:
            raise DigestMismatch(
                f"blob {self.digest} is corrupt: its content hashes to {got} "
                f"({self._hasher.size} bytes read from {self.path})"
            )
        self.verified = True

    def read_all_and_verify(self) -> None:
        """Read (and discard) the rest of the blob, then check the digest."""
        while self.read(COPY_CHUNK):
            pass

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


class BlobStore:
    """The blobs/sha256 directory of a store root; staging happens in `tmp`."""

    def __init__(
        self,
        blobs_dir: Path,
        tmp_dir: Path,
        guard: Callable[[Digest], contextlib.AbstractContextManager] | None = None,
    ) -> None:
        self.dir = blobs_dir
        self.tmp = tmp_dir
        # Context held around each commit (the store takes its lock and records the digest in
        # this process's lease, so a concurrent prune never removes a blob just committed).
        self.guard = guard or (lambda digest: contextlib.nullcontext())

    def path(self, digest: str) -> Path:
        """Where the blob with `digest` lives (whether or not it exists)."""
        return self.dir / Digest(digest).hex

    def has(self, digest: str) -> bool:
        try:
            return stat.S_ISREG(os.lstat(self.path(digest)).st_mode)
        except FileNotFoundError:
            return False

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is missing from the store") from None

    def open(self, digest: str) -> VerifyingReader:
        """A verifying reader of the blob (raises `BlobNotFound`); the caller closes it."""
        d = Digest(digest)
        return VerifyingReader(self.path(d), d)

    def read_bytes(self, digest: str) -> bytes:
        """The whole blob, verified (for small objects: manifests, configs)."""
        d = Digest(digest)
        try:
            with open(_open_blob_fd(self.path(d), d), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {d} is missing from the store") from None
        got = sha256_bytes(data)
        if got != d:
            raise DigestMismatch(
                f"blob {d} is corrupt: its content hashes to {got} ({len(data)} bytes)"
            )
        return data

    def put(self, data: bytes | BinaryIO, expected: str | None = None) -> Digest:
        """Store `data` (bytes, or a stream read to its end) and return its digest.

        Raises `DigestMismatch` (storing nothing) when `expected` is given and differs.
        """
        tmp, digest, _ = self.stage(data)
        try:
            if expected is not None and digest != Digest(expected):
                raise DigestMismatch(f"content hashes to {digest}, expected {expected}")
            self.commit_staged(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return digest

    def stage(self, data: bytes | BinaryIO, kind: str = "blob") -> tuple[Path, Digest, int]:
        """Copy `data` to a fsync'd temp file, hashing it; returns (temp path, digest, size).

        The caller commits it with `commit_staged` or removes it.
        """

        def copy(out: BinaryIO) -> tuple[str, int]:
            if isinstance(data, bytes | bytearray | memoryview):
                raw = bytes(data)
                out.write(raw)
                return sha256_bytes(raw), len(raw)  # a config or manifest: no hashlib import
            hasher = Hasher()
            while chunk := data.read(COPY_CHUNK):
                hasher.update(chunk)
                out.write(chunk)
            return hasher.digest(), hasher.size

        return self.stage_written(copy, kind)

    def stage_written(
        self, produce: Callable[[BinaryIO], tuple[str, int]], kind: str = "blob"
    ) -> tuple[Path, Digest, int]:
        """Like `stage`, for a producer that writes into the staging file itself and hashes
        what it writes on the way: `produce(out)` returns (digest, size) of its output.

        No second hash is taken: only callers that wrote every byte through their own running
        hash may use it (the store's own tar writer). The size is checked against the file, so
        a producer that wrote around its hash is caught. The caller commits or removes.
        """
        path = self.tmp / staging_name(kind)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with open(fd, "wb", buffering=COPY_CHUNK, closefd=False) as out:
                digest, size = produce(out)
            written = os.fstat(fd).st_size
            if written != size:
                raise DigestMismatch(
                    f"{kind} writer reported {size} bytes but wrote {written}; nothing stored"
                )
            os.fchmod(fd, BLOB_MODE)
            os.fsync(fd)
        except BaseException as e:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if err := space_error(e, self.tmp.parent):
                raise err from None
            raise
        os.close(fd)
        return path, Digest(digest), size

    def commit_staged(self, tmp: Path, digest: Digest) -> None:
        """Give the verified temp file `tmp` its final name (link; an existing blob wins).

        `tmp` is left in place; the caller removes it.
        """
        final = self.path(digest)
        crash_point("blob-staged")
        with self.guard(digest):
            try:
                os.link(tmp, final)
            except FileExistsError:
                # Another writer committed the same content first: same bytes, nothing to do.
                # Anything else there (a truncated copy, a symlink) is damage: replace it.
                st = os.lstat(final)
                if stat.S_ISREG(st.st_mode) and st.st_size == tmp.stat().st_size:
                    return
                os.replace(tmp, final)
            fsync_dir(self.dir)
        crash_point("blob-committed")

    def remove(self, digest: str) -> bool:
        """Delete a blob; True if it existed. Callers (GC) hold the store lock."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def digests(self) -> list[Digest]:
        """Every blob name present (not verified), sorted."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            with contextlib.suppress(Exception):
                out.append(Digest(f"sha256:{name}"))
        return out
