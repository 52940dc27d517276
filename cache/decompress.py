"""Compressed streams: gzip, zstd, xz and bzip2 told apart by their magic numbers.

`open_decompressed` wraps a stream so that its plain bytes can be read and every
decompression error (corrupt data, a stream cut short) becomes one `CompressionError` line
naming what was being read. zstd goes through the `zstd` program, as Python 3.11 has no zstd
module. Used by the archive loader (whole archives and layer blobs) and by `pydock import`.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import subprocess
import zlib
from typing import Any, BinaryIO

from cache.digest import COPY_CHUNK, Hasher
from cache.errors import PydockError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"


class CompressionError(PydockError):
    """A compressed stream that cannot be read to its end: corrupt, truncated, unsupported."""


def sniff_compression(head: bytes) -> str | None:
    """ "gzip", "zstd", "xz", "bzip2" or None (plain) from the first bytes of a stream."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC) and len(head) > 3 and head[3:4].isdigit():
        return "bzip2"
    return None


class _ZstdReader:
    """Decompresses zstd through the `zstd` program (Python 3.11 has no zstd module); a
    thread feeds the program's stdin so that neither pipe can fill up."""

    def __init__(self, src: Any, what: str) -> None:
        import threading

        self.what = what
        try:
            self._proc = subprocess.Popen(
                ["zstd", "-d", "-c", "-q"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            raise CompressionError(
                f"{what}: zstd-compressed, but the zstd program is not installed"
            ) from None

        def feed() -> None:
            assert self._proc.stdin is not None
            try:
                while chunk := src.read(COPY_CHUNK):
                    self._proc.stdin.write(chunk)
            except (BrokenPipeError, OSError):
                pass
            finally:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()

        self._feeder = threading.Thread(target=feed, daemon=True)
        self._feeder.start()

    def read(self, n: int = -1) -> bytes:
        assert self._proc.stdout is not None
        data = self._proc.stdout.read(n) if n >= 0 else self._proc.stdout.read()
        if not data or (n > 0 and len(data) < n):
            self._finish()
        return data

    def _finish(self) -> None:
        if self._proc.returncode is None:
            assert self._proc.stderr is not None
            err = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
            if self._proc.wait() != 0:
                detail = err[-1] if err else f"exit status {self._proc.returncode}"
                raise CompressionError(f"{self.what}: corrupt zstd stream ({detail})")

    def close(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
        for f in (self._proc.stdout, self._proc.stderr):
            if f is not None:
                f.close()


class _CheckedReader:
    """Wraps a decompressing reader so that its errors become one-line `CompressionError`s."""

    def __init__(self, inner: Any, kind: str, what: str) -> None:
        self.inner = inner
        self.kind = kind
        self.what = what

    def read(self, n: int = -1) -> bytes:
        try:
            return self.inner.read(n)
        except CompressionError:
            raise
        except EOFError:
            raise CompressionError(f"{self.what}: truncated {self.kind} stream") from None
        except (OSError, zlib.error, lzma.LZMAError, ValueError) as e:
            raise CompressionError(f"{self.what}: corrupt {self.kind} stream ({e})") from None

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.inner.close()

    def __enter__(self) -> _CheckedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Peeked:
    """A stream with some bytes already read from its front put back."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                data, self.head = self.head + self.rest.read(), b""
                return data
            data, self.head = self.head[:n], self.head[n:]
            if len(data) < n:
                data += self.rest.read(n - len(data))
            return data
        return self.rest.read(n)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass  # the underlying stream belongs to the caller

    def fileno(self) -> int:
        if self.head:
            raise OSError("peeked stream has buffered bytes")
        return self.rest.fileno()


def open_decompressed(src: BinaryIO, what: str) -> tuple[Any, str | None]:
    """A reader of the plain bytes of `src` (gzip/zstd/xz/bzip2 detected by magic) and the
    compression found (None for plain). Decompression errors are `CompressionError`s naming `what`.
    The caller closes the reader (not `src`)."""
    head = src.read(8)
    kind = sniff_compression(head)
    if kind is None:
        return _Peeked(head, src), None
    if kind == "zstd":
        return _CheckedReader(_ZstdReader(_Peeked(head, src), what), kind, what), kind
    peeked = _Peeked(head, src)
    if kind == "gzip":
        inner: Any = gzip.GzipFile(fileobj=peeked, mode="rb")
    elif kind == "xz":
        inner = lzma.LZMAFile(peeked, "rb")
    else:
        inner = bz2.BZ2File(peeked, "rb")
    return _CheckedReader(inner, kind, what), kind


def copy_hashing(src: Any, dst: BinaryIO, limit: int | None = None) -> tuple[str, int]:
    """Copy `src` to its end into `dst`, returning ("sha256:<hex>", size)."""
    h = Hasher()
    while chunk := src.read(COPY_CHUNK):
        h.update(chunk)
        dst.write(chunk)
        if limit is not None and h.size > limit:
            raise CompressionError(f"content larger than the limit of {limit} bytes")
    return str(h.digest()), h.size
