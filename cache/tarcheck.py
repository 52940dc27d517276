"""A strict, streaming tar reader: every header checked, the end of the archive verified.

Python's `tarfile` treats a bad checksum or a truncated header after the first member as the
end of the archive and stops without an error, and it never reads past the end marker (so a
gzip CRC or trailing garbage goes unnoticed). Layers are content-addressed, so this reader is
strict instead, as Go's `archive/tar` is:

- each header's checksum must match; an unknown format or type flag is an error;
- file data must be all there (a short stream is "truncated", naming the member);
- the archive must end with two zero blocks, and only zero bytes may follow them;
- PAX and GNU long-name records are bounded (1 MiB, as Go), sparse members are refused;
- the whole stream is read to its end and hashed, so `diff_id` is the SHA-256 of exactly the
  bytes the caller gave (and a decompressor underneath was drained, checking its CRC).

It yields `Member` records; the caller must consume each member's body (`copy_to`, `read`,
or `skip`) before asking for the next one (skipping happens automatically if it does not).
"""

from __future__ import annotations

import hashlib
import lzma
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from cache.errors import BadLayer
from cache.records import field, record

BLOCK = 512
MAX_META = 1 << 20  # PAX records and GNU long names, as Go's archive/tar
_CHUNK = 1 << 20
_MAX_MTIME = (1 << 63) // 10**9  # seconds that fit in a signed 64-bit nanosecond count

REG, LINK, SYMLINK, CHR, BLK, DIR, FIFO = "0", "1", "2", "3", "4", "5", "6"
_TYPES = {b"0": REG, b"\0": REG, b"7": REG, b"1": LINK, b"2": SYMLINK, b"3": CHR}
_TYPES.update({b"4": BLK, b"5": DIR, b"6": FIFO})
_HEADER_ONLY = {LINK, SYMLINK, CHR, BLK, DIR, FIFO}  # data size is ignored for these (as Go)


def show(name: bytes | str) -> str:
    """A member name for an error message: decoded leniently, control characters escaped."""
    text = name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@record
class Member:
    """One archive entry after its PAX/GNU extension headers were folded in.

    `name` and `linkname` are raw bytes as stored (not normalised). `type` is one of REG, LINK,
    SYMLINK, CHR, BLK, DIR, FIFO. `xattrs` holds the `SCHILY.xattr.*` records (name → value).
    `offset` is the byte offset of the member's (first) header in the stream.
    """

    name: bytes
    type: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    offset: int = 0


@record(frozen=True)
class TarSummary:
    """What a complete read found: diff_id ("sha256:<hex>" of all bytes read), the byte count
    and the number of members."""

    diff_id: str
    size: int
    entries: int


class TarReader:
    """Reads one tar stream strictly. Iterate it for members; `summary()` after the end."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._buf = b""
        self._pos = 0  # read position inside _buf
        self._consumed = 0  # stream bytes before _buf[0]
        self._sha = hashlib.sha256()
        self._eof = False
        self._body_left = 0  # unread bytes of the current member's body (with padding)
        self._body_data = 0  # of which real data
        self._current: Member | None = None
        self._entries = 0
        self._done = False

    # --- low-level input -------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Bytes of the stream consumed so far."""
        return self._consumed + self._pos

    def _fill(self) -> bool:
        """Load the next chunk; False at the end of the stream."""
        if self._eof:
            return False
        try:
            chunk = self._stream.read(_CHUNK)
        except BadLayer:
            raise
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as e:
            # gzip/bz2/lzma/zstd wrappers report corrupt or truncated input this way.
            raise BadLayer(f"reading the layer failed at byte {self.offset}: {e}") from None
        if not chunk:
            self._eof = True
            return False
        self._sha.update(chunk)
        self._consumed += len(self._buf)
        self._buf = bytes(chunk) if not isinstance(chunk, bytes) else chunk
        self._pos = 0
        return True

    def _take(self, n: int) -> bytes:
        """Exactly n bytes, or what there was (possibly b"") if the stream ended first."""
        end = self._pos + n
        if end <= len(self._buf):
            data = self._buf[self._pos : end]
            self._pos = end
            return data
        parts = [self._buf[self._pos :]]
        got = len(parts[0])
        self._pos = len(self._buf)
        while got < n and self._fill():
            piece = self._buf[: n - got]
            self._pos = len(piece)
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)

    def _views(self, n: int) -> Iterator[memoryview]:
        """Up to n bytes as successive views of the buffer (no copy); ends early at EOF."""
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                return
            k = min(n, len(self._buf) - self._pos)
            yield memoryview(self._buf)[self._pos : self._pos + k]
            self._pos += k
            n -= k

    # --- bodies ----------------------------------------------------------------------

    def _truncated(self) -> BadLayer:
        m = self._current
        what = f"member {show(m.name)!r}" if m else "archive"
        return BadLayer(f"{what}: truncated tar (stream ended at byte {self.offset})")

    def body_views(self) -> Iterator[memoryview]:
        """The current member's data as buffer views (valid until the next call)."""
        want = self._body_data
        self._body_data = 0
        for view in self._views(want):
            self._body_left -= len(view)
            want -= len(view)
            yield view
        if want:
            raise self._truncated()
        self._skip_padding()

    def read(self) -> bytes:
        """The current member's whole body (for small bodies only)."""
        return b"".join(bytes(v) for v in self.body_views())

    def skip(self) -> None:
        for _ in self.body_views():
            pass

    def _skip_padding(self) -> None:
        n = self._body_left
        self._body_left = 0
        if n and len(self._take(n)) != n:
            raise self._truncated()

    # --- headers ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Member]:
        return self

    def __next__(self) -> Member:
        if self._done:
            raise StopIteration
        if self._body_left:
            self.skip()
        self._current = None
        member = self._next_member()
        if member is None:
            self._check_end()
            self._done = True
            raise StopIteration
        self._entries += 1
        self._current = member
        return member

    def _block(self, after_meta: bool) -> bytes:
        start = self.offset
        blk = self._take(BLOCK)
        if len(blk) == BLOCK:
            return blk
        if blk:
            raise BadLayer(f"truncated tar header at byte {start}")
        if start == 0:
            raise BadLayer("empty stream: not a tar archive")
        if after_meta:
            raise BadLayer(
                f"truncated tar: extension header not followed by a member at byte {start}"
            )
        raise BadLayer(f"truncated tar: no end-of-archive marker (stream ended at byte {start})")

    def _next_member(self) -> Member | None:
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        meta = False
        start = self.offset
        while True:
            at = self.offset
            blk = self._block(after_meta=meta)
            if blk == bytes(BLOCK):
                if meta:
                    raise BadLayer(f"extension header at byte {start} is not followed by a member")
                return None
            _check_checksum(blk, at)
            flag = blk[156:157]
            size = _number(blk[124:136], "size", at)
            if flag in (b"x", b"g", b"L", b"K"):
                if size > MAX_META:
                    raise BadLayer(f"extension header at byte {at} is too large ({size} bytes)")
                data = self._take(size + (-size % BLOCK))
                if len(data) != size + (-size % BLOCK):
                    raise BadLayer(f"truncated extension header at byte {at}")
                data = data[:size]
                meta = True
                if flag == b"x":
                    pax.update(_pax_records(data, at))
                elif flag == b"g":
                    # Global records: only harmless keys are meaningful for layers; we accept
                    # the header but do not let it rename or resize later members.
                    _pax_records(data, at)
                elif flag == b"L":
                    long_name = data.split(b"\0", 1)[0]
                else:
                    long_link = data.split(b"\0", 1)[0]
                continue
            break
        kind = _TYPES.get(flag)
        if kind is None:
            what = "sparse" if flag == b"S" else f"unsupported type {flag!r}"
            raise BadLayer(f"member {show(_raw_name(blk))!r} at byte {at}: {what} entry")
        if any(k.startswith("GNU.sparse") for k in pax):
            raise BadLayer(f"member {show(_raw_name(blk))!r}: sparse files are not supported")
        name = _raw_name(blk)
        linkname = blk[157:265].split(b"\0", 1)[0]
        if long_name is not None:
            name = long_name
        if long_link is not None:
            linkname = long_link
        if "path" in pax:
            name = pax["path"]
        if "linkpath" in pax:
            linkname = pax["linkpath"]
        if b"\0" in name or b"\0" in linkname:
            raise BadLayer(f"member {show(name)!r}: NUL byte in a name")
        m = Member(
            name=name,
            type=kind,
            mode=_number(blk[100:108], "mode", at) & 0o7777,
            uid=_pax_int(pax, "uid", _number(blk[108:116], "uid", at), at),
            gid=_pax_int(pax, "gid", _number(blk[116:124], "gid", at), at),
            size=_pax_int(pax, "size", size, at),
            mtime=_pax_int(pax, "mtime", _number(blk[136:148], "mtime", at), at),
            linkname=linkname,
            offset=start,
        )
        if kind in (CHR, BLK):
            m.devmajor = _number(blk[329:337], "devmajor", at)
            m.devminor = _number(blk[337:345], "devminor", at)
        for key, value in pax.items():
            if key.startswith("SCHILY.xattr."):
                m.xattrs[key[len("SCHILY.xattr.") :]] = value
        if m.size < 0 or m.uid < 0 or m.gid < 0:
            raise BadLayer(f"member {show(name)!r}: negative size or id")
        if not -_MAX_MTIME < m.mtime < _MAX_MTIME:
            raise BadLayer(f"member {show(name)!r}: mtime out of range")
        if kind in _HEADER_ONLY:
            m.size = 0
        self._body_data = m.size
        self._body_left = m.size + (-m.size % BLOCK)
        return m

    def _check_end(self) -> None:
        """After the first zero block: a second one, then nothing but zero padding to EOF."""
        at = self.offset
        blk = self._take(BLOCK)
        if blk != bytes(BLOCK):
            if len(blk) < BLOCK and not blk.strip(b"\0"):
                raise BadLayer(f"tar archive ends after a single zero block at byte {at}")
            raise BadLayer(f"data after a zero block at byte {at}: not a valid end of archive")
        while True:
            at = self.offset
            for view in self._views(_CHUNK):
                if any(view):
                    raise BadLayer(f"trailing data after the end of the tar archive at byte {at}")
                at += len(view)
            if self._eof and self._pos >= len(self._buf):
                break

    def summary(self) -> TarSummary:
        """The digest and size of everything read; only valid after iteration ended."""
        if not self._done:
            raise RuntimeError("TarReader.summary() before the end of the archive")
        return TarSummary("sha256:" + self._sha.hexdigest(), self.offset, self._entries)


def _raw_name(blk: bytes) -> bytes:
    name = blk[0:100].split(b"\0", 1)[0]
    if blk[257:263] == b"ustar\0":  # POSIX ustar: a prefix field (GNU uses it for other data)
        prefix = blk[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name


def _check_checksum(blk: bytes, at: int) -> None:
    # POSIX ustar (any version), GNU, or the old v7 form with no magic at all.
    if blk[257:263] != b"ustar\0" and blk[257:265] not in (b"ustar  \0", bytes(8)):
        raise BadLayer(f"not a tar header at byte {at} (unknown format)")
    stored = _number(blk[148:156], "checksum", at)
    rest = blk[:148] + b"        " + blk[156:]
    unsigned = sum(rest)
    signed = sum(b - 256 if b > 127 else b for b in rest) if stored != unsigned else unsigned
    if stored not in (unsigned, signed):
        raise BadLayer(f"bad tar header checksum at byte {at}")


def _number(field_: bytes, what: str, at: int) -> int:
    if field_ and field_[0] & 0x80:
        # GNU base-256: big-endian two's complement, the top bit marking the form.
        if field_[0] == 0xFF:
            raise BadLayer(f"negative {what} in tar header at byte {at}")
        return int.from_bytes(bytes([field_[0] & 0x7F]) + field_[1:], "big")
    text = field_.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise BadLayer(f"invalid {what} field {text!r} in tar header at byte {at}") from None


def _pax_int(pax: dict[str, bytes], key: str, default: int, at: int) -> int:
    value = pax.get(key)
    if value is None:
        return default
    try:
        # mtime may carry a fraction ("1700000000.25"); layers keep whole seconds.
        return int(value.split(b".", 1)[0]) if key == "mtime" else int(value)
    except ValueError:
        raise BadLayer(f"invalid PAX {key} record {value!r} at byte {at}") from None


def _pax_records(data: bytes, at: int) -> dict[str, bytes]:
    """Parse "<len> <key>=<value>\\n" records strictly."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            if not data[pos:].strip(b"\0"):
                break  # NUL padding some writers leave
            raise BadLayer(f"malformed PAX record at byte {at}")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise BadLayer(f"malformed PAX record length at byte {at}") from None
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1 : end] != b"\n":
            raise BadLayer(f"malformed PAX record at byte {at}")
        key_b, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key_b:
            raise BadLayer(f"malformed PAX record at byte {at}")
        try:
            key = key_b.decode("utf-8")
        except UnicodeDecodeError:
            raise BadLayer(f"PAX record key is not UTF-8 at byte {at}") from None
        out[key] = value
        pos = end
    return out


def verify_tar(stream: BinaryIO) -> TarSummary:
    """Read a whole tar stream strictly (see the module docstring) without unpacking it.

    Returns its diff_id, size and member count; raises BadLayer naming the problem."""
    reader = TarReader(stream)
    for _ in reader:
        reader.skip()
    return reader.summary()
