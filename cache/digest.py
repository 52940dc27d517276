"""Content digests: `Digest` (of a stored blob), `DiffID` (of an uncompressed layer tar), chain ids.

All three are "sha256:<64 lowercase hex>" strings. They are distinct `str` subclasses so that a
type checker (and a reader) can tell a blob digest from a diff id: in this store a layer blob is
kept uncompressed, so its `Digest` and `DiffID` happen to be equal, but a compressed blob read
from an archive or a registry has a different `Digest` with the same `DiffID`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import BinaryIO

from cache.errors import BadDigest

ALGORITHM = "sha256"
_SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_HEX_RE = re.compile(r"[a-f0-9]{64}")

# sha256 of 1024 NUL bytes: the empty tar (Docker's DigestSHA256EmptyTar).
EMPTY_TAR_DIFF_ID_HEX = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"

COPY_CHUNK = 1 << 20

# Small inputs (chain ids, configs, manifests) are hashed by CPython's built-in SHA-256: it
# imports in ~0.3 ms where hashlib's OpenSSL binding takes ~3 ms, which every short-lived
# command (`pydock run`) would pay. Streams and big blobs use hashlib, ~5x faster per byte.
try:
    from _sha256 import sha256 as _builtin_sha256  # Python 3.11
except ImportError:  # pragma: no cover - Python >= 3.12 names the module _sha2
    try:
        from _sha2 import sha256 as _builtin_sha256
    except ImportError:
        from hashlib import sha256 as _builtin_sha256
_SMALL = 1 << 16


class Digest(str):
    """Digest of a blob as stored: "sha256:<hex>"."""

    __slots__ = ()

    def __new__(cls, text: str) -> Digest:
        if type(text) is cls:
            return text  # already checked
        if not isinstance(text, str) or not _SHA256_RE.fullmatch(text):
            raise BadDigest(f"invalid digest {text!r}: want sha256:<64 lowercase hex digits>")
        return super().__new__(cls, text)

    @property
    def algorithm(self) -> str:
        return ALGORITHM

    @property
    def hex(self) -> str:
        """The 64 hex digits after "sha256:"."""
        return self[len(ALGORITHM) + 1 :]

    @property
    def short(self) -> str:
        """Docker's 12-character short id."""
        return self.hex[:12]


class DiffID(Digest):
    """Digest of an uncompressed layer tar (config `rootfs.diff_ids`)."""

    __slots__ = ()


class ChainID(Digest):
    """Identity of a stack of layers (image-spec config.md "Layer ChainID")."""

    __slots__ = ()


EMPTY_TAR_DIFF_ID = DiffID(f"sha256:{EMPTY_TAR_DIFF_ID_HEX}")


def is_digest(text: str) -> bool:
    """True when `text` is a well-formed sha256 digest."""
    return isinstance(text, str) and _SHA256_RE.fullmatch(text) is not None


def is_hex_id(text: str) -> bool:
    """True when `text` is 64 lowercase hex digits (a digest without its algorithm)."""
    return _HEX_RE.fullmatch(text) is not None


def sha256_bytes(data: bytes) -> Digest:
    """The digest of `data`."""
    if len(data) <= _SMALL:
        return Digest(f"{ALGORITHM}:{_builtin_sha256(data).hexdigest()}")
    import hashlib

    return Digest(f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}")


def sha256_stream(stream: BinaryIO) -> tuple[Digest, int]:
    """Digest and length of everything left in `stream` (read to its end; the caller closes it)."""
    import hashlib

    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(COPY_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return Digest(f"{ALGORITHM}:{h.hexdigest()}"), size


class Hasher:
    """Incremental sha256 that also counts bytes; `digest()` may be called once at the end."""

    def __init__(self) -> None:
        import hashlib

        self._h = hashlib.sha256()
        self.size = 0

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.size += len(data)

    def digest(self) -> Digest:
        return Digest(f"{ALGORITHM}:{self._h.hexdigest()}")


def chain_id(parent: ChainID | None, diff_id: DiffID) -> ChainID:
    """ChainID of `parent` + `diff_id`: the diff id itself for a base layer."""
    if parent is None:
        return ChainID(diff_id)
    return ChainID(sha256_bytes(f"{parent} {diff_id}".encode()))


def chain_ids(diff_ids: Iterable[str]) -> list[ChainID]:
    """Chain ids of every prefix of `diff_ids` (oldest layer first, same order out)."""
    out: list[ChainID] = []
    parent: ChainID | None = None
    for d in diff_ids:
        parent = chain_id(parent, DiffID(d))
        out.append(parent)
    return out
