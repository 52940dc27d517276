"""apply_layer against hostile layers: every member stays inside the target or is refused.

Each case is a list of tar members; the test applies it into `box/root` and checks that the
sentinel dir `box/outside`, the rest of `box` and the host's /etc/passwd and /etc/shadow are
exactly as before. Paths meant to reach the sentinel use its absolute path, so an escape would
be seen there rather than on the host.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from cache.applier import apply_layer, open_maybe_compressed
from cache.errors import BadLayer, PydockError


def tar_of(*members: tuple, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar from compact member specs:
    ("file", name, data[, mode]) ("dir", name) ("sym", name, target) ("link", name, target)
    ("chr", name, major, minor) ("fifo", name); a trailing dict gives PAX headers."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for spec in members:
            pax = spec[-1] if isinstance(spec[-1], dict) else {}
            spec = spec[:-1] if pax else spec
            kind, name = spec[0], spec[1]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1_700_000_000
            ti.pax_headers = pax
            data = None
            if kind == "file":
                body = spec[2]
                ti.size = len(body)
                ti.mode = spec[3] if len(spec) > 3 else 0o644
                data = io.BytesIO(body)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, spec[2]
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, spec[2]
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, spec[2], spec[3]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, data)
    return buf.getvalue()


def snapshot(path: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            body = b""
            if os.path.isfile(p) and not os.path.islink(p):
                body = hashlib.sha256(Path(p).read_bytes()).digest()
            elif os.path.islink(p):
                body = os.readlink(p).encode()
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return out


def host_state() -> tuple:
    files = []
    for p in ("/etc/passwd", "/etc/shadow"):
        st = os.stat(p)
        files.append((p, st.st_mtime_ns, st.st_nlink, Path(p).read_bytes()))
    # (not /tmp: other test runs share it)
    return tuple(files), tuple(sorted(os.listdir("/")))


@pytest.fixture
def box(tmp_path: Path):
    box = tmp_path / "box"
    (box / "root").mkdir(parents=True)
    (box / "outside").mkdir()
    (box / "outside/secret").write_text("do not touch")
    (box / "outside/sub").mkdir()
    (box / "outside/sub/file").write_text("x")
    return box


OUT = "@OUT@"  # replaced by the absolute path of box/outside


def _resolve(members: tuple, outside: Path) -> tuple:
    def fix(v):
        return v.replace(OUT, str(outside)) if isinstance(v, str) else v

    return tuple(tuple(fix(v) for v in m) for m in members)


REFUSED = "refused"
INSIDE = "inside"
EITHER = "inside-or-refused"

# (id, members, expectation, message fragment or a check on the root)
CASES = [
    ("dotdot", [("file", "../x", b"p")], REFUSED, "'..'"),
    ("dotdot-deep", [("file", "a/../../x", b"p")], REFUSED, "'..'"),
    ("dotdot-sibling", [("file", "../outside/secret", b"p")], REFUSED, "'..'"),
    ("absolute-name", [("file", "/abs", b"p")], INSIDE, "abs"),
    ("absolute-name-outside", [("file", OUT + "/pwned", b"p")], INSIDE, OUT[1:] + "/pwned"),
    (
        "symlink-root-then-through",
        [("sym", "x", "/"), ("file", "x" + OUT + "/pwned", b"p")],
        INSIDE,
        OUT[1:] + "/pwned",
    ),
    (
        "symlink-root-etc-passwd",
        [("sym", "x", "/"), ("file", "x/etc/passwd", b"root::0:0::/:/bin/sh\n")],
        INSIDE,
        "etc/passwd",
    ),
    (
        "symlink-abs-dir-then-through",
        [("sym", "x", OUT), ("file", "x/pwned", b"p")],
        INSIDE,
        OUT[1:] + "/pwned",
    ),
    (
        "relative-escape",
        [("sym", "x", "../../.."), ("file", "x/pwned", b"p")],
        INSIDE,
        "pwned",
    ),
    (
        "relative-escape-to-sibling",
        [("sym", "x", "../outside"), ("file", "x/secret", b"p")],
        INSIDE,
        "outside/secret",
    ),
    (
        "two-hop",
        [
            ("dir", "inner"),
            ("sym", "inner/up", ".."),
            ("sym", "y", "inner/up/.."),
            ("file", "y/p", b"p"),
        ],
        INSIDE,
        "p",
    ),
    ("symlink-loop", [("sym", "a", "b"), ("sym", "b", "a"), ("file", "a/f", b"p")], REFUSED, ""),
    ("symlink-self", [("sym", "s", "s"), ("file", "s/f", b"p")], REFUSED, ""),
    (
        "tarsafe-chain",
        [("sym", "a", "."), ("sym", "b", "a/" * 38 + "../" * 38), ("file", "b/pwned", b"p")],
        EITHER,
        "pwned",
    ),
    ("hardlink-etc-shadow", [("link", "h", "/etc/shadow")], REFUSED, "does not exist"),
    ("hardlink-dotdot", [("link", "h", "../outside/secret")], REFUSED, "'..'"),
    ("hardlink-abs-outside", [("link", "h", OUT + "/secret")], REFUSED, "does not exist"),
    (
        "hardlink-then-overwrite",
        [("link", "h", OUT + "/secret"), ("file", "h", b"overwrite")],
        REFUSED,
        "does not exist",
    ),
    (
        "hardlink-via-symlink-dir",
        [("sym", "x", OUT), ("link", "h", "x/secret")],
        REFUSED,
        "does not exist",
    ),
    (
        "hardlink-to-symlink-then-write",
        [("sym", "s", OUT + "/secret"), ("link", "h", "s"), ("file", "h", b"overwrite")],
        INSIDE,
        "h",
    ),
    ("hardlink-to-dir", [("dir", "d"), ("link", "h", "d")], REFUSED, "directory"),
    ("whiteout-dotdot", [("file", ".wh..", b"")], REFUSED, "invalid whiteout"),
    ("whiteout-empty", [("file", ".wh.", b"")], REFUSED, "invalid whiteout"),
    ("whiteout-dot", [("file", "d/.wh..", b"")], REFUSED, "invalid whiteout"),
    ("whiteout-as-dir", [("file", ".wh./x", b"")], REFUSED, "whiteout name used as a directory"),
    ("whiteout-as-dir-2", [("file", "a/.wh.b/c", b"")], REFUSED, "whiteout name"),
    ("whiteout-dotdot-path", [("file", "../.wh.outside", b"")], REFUSED, "'..'"),
    (
        "whiteout-through-symlink",
        [("sym", "x", OUT), ("file", "x/.wh.secret", b"")],
        INSIDE,
        "x",
    ),
    (
        "whiteout-through-relative-symlink",
        [("sym", "x", "../outside"), ("file", "x/.wh.secret", b"")],
        INSIDE,
        "x",
    ),
    (
        "opaque-through-symlink",
        [("sym", "x", OUT), ("file", "x/.wh..wh..opq", b"")],
        INSIDE,
        "x",
    ),
    (
        "opaque-through-dotdot-symlink",
        [("file", "keep", b"k"), ("sym", "x", ".."), ("file", "x/.wh..wh..opq", b"")],
        INSIDE,
        "",
    ),
    (
        "trusted-xattr",
        [("file", "f", b"p", {"SCHILY.xattr.trusted.overlay.opaque": "y"})],
        REFUSED,
        "trusted.overlay.opaque",
    ),
    (
        "user-overlay-xattr",
        [("dir", "d", {"SCHILY.xattr.user.overlay.opaque": "y"})],
        REFUSED,
        "user.overlay.opaque",
    ),
    ("xattr-name-with-nul", [("file", "f", b"p", {"SCHILY.xattr.user.a\x00b": "v"})], REFUSED, "f"),
    (
        "mtime-out-of-range",
        [("file", "f", b"p", {"mtime": "99999999999999999999"})],
        REFUSED,
        "mtime",
    ),
    ("path-with-nul", [("file", "f", b"p", {"path": "a\x00b"})], REFUSED, "NUL"),
    ("device-node", [("chr", "dev/null", 1, 3)], INSIDE, "dev/null"),
    ("fifo", [("fifo", "p")], INSIDE, "p"),
    (
        "dir-replaced-by-symlink-then-file",
        [("dir", "d"), ("sym", "d", OUT), ("file", "d/pwned", b"p")],
        INSIDE,
        OUT[1:] + "/pwned",
    ),
    (
        "dir-replaced-by-relative-symlink-then-file",
        [("dir", "d"), ("sym", "d", "../outside"), ("file", "d/secret", b"p")],
        INSIDE,
        "outside/secret",
    ),
    (
        "dangling-symlink-parent",
        [("sym", "x", "/nonexistent"), ("file", "x/f", b"p")],
        INSIDE,
        "nonexistent/f",
    ),
    ("parent-is-file", [("file", "f", b"p"), ("file", "f/g", b"p")], REFUSED, "not a directory"),
    ("empty-symlink", [("sym", "e", "")], REFUSED, "empty target"),
    ("proc-magic-link", [("sym", "p", "/proc/self/root"), ("file", "p/pwned", b"p")], INSIDE, ""),
]


@pytest.mark.parametrize("members,expect,detail", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode", ["apply", "overlay"])
def test_hostile_member(box: Path, members, expect, detail, mode) -> None:
    outside = box / "outside"
    root = box / "root"
    data = tar_of(*_resolve(tuple(members), outside))
    before_box = {k: v for k, v in snapshot(box).items() if not k.startswith("root")}
    before_host = host_state()
    detail = detail.replace(OUT[1:], str(outside)[1:]) if isinstance(detail, str) else detail
    try:
        apply_layer(io.BytesIO(data), root, whiteouts=mode)
    except BadLayer as e:
        assert expect in (REFUSED, EITHER), f"refused unexpectedly: {e}"
        assert detail in str(e)
        assert isinstance(e, PydockError)
    else:
        assert expect in (INSIDE, EITHER), "a hostile layer was accepted"
        if detail:
            assert os.path.lexists(root / detail), sorted(snapshot(root))
    assert {k: v for k, v in snapshot(box).items() if not k.startswith("root")} == before_box
    assert host_state() == before_host


def test_lower_symlink_from_earlier_layer(box: Path) -> None:
    """A symlink left by an earlier layer (flattening) is followed inside the root only."""
    root = box / "root"
    os.symlink(str(box / "outside"), root / "evil")
    os.symlink("../../../../../../..", root / "up")
    before = snapshot(box / "outside")
    layer = tar_of(
        ("file", "evil/secret", b"overwritten?"),
        ("file", "up/pwned", b"p"),
        ("file", "evil/.wh.sub", b""),
        ("file", "up/.wh..wh..opq", b""),
    )
    apply_layer(io.BytesIO(layer), root)
    assert snapshot(box / "outside") == before


def test_huge_declared_size_is_refused(box: Path) -> None:
    ti = tarfile.TarInfo("big")
    ti.size = 1 << 50  # a petabyte: more than the free space
    header = ti.tobuf(tarfile.PAX_FORMAT)
    with pytest.raises(BadLayer, match="free"):
        apply_layer(io.BytesIO(header + b"x" * 4096), box / "root")
    assert not (box / "root/big").exists()


def test_max_size_is_enforced(box: Path) -> None:
    layer = tar_of(("file", "a", b"x" * 3000), ("file", "b", b"x" * 3000))
    with pytest.raises(BadLayer, match="size limit"):
        apply_layer(io.BytesIO(layer), box / "root", max_size=5000)
    apply_layer(io.BytesIO(layer), box / "root", max_size=6000)


def test_device_number_out_of_range(box: Path) -> None:
    layer = tar_of(("chr", "d", 1 << 33, 1), fmt=tarfile.GNU_FORMAT)
    with pytest.raises(BadLayer, match="out of range"):
        apply_layer(io.BytesIO(layer), box / "root")


def _two_members() -> bytes:
    return tar_of(("file", "first", b"1" * 700), ("file", "second", b"2" * 100))


CORRUPT = [
    ("truncated-in-data", lambda d: d[:1000], "truncated"),
    ("truncated-in-header", lambda d: d[: 512 * 4 + 100], "truncated"),
    ("no-end-marker", lambda d: d[: 512 * 5], "end-of-archive"),
    ("single-zero-block", lambda d: d[: 512 * 6], "single zero block"),
    ("empty", lambda d: b"", "empty"),
    (
        "bad-checksum-second-header",
        lambda d: d[: 512 * 3] + b"X" + d[512 * 3 + 1 :],
        "checksum",
    ),
    ("garbage-header", lambda d: d[: 512 * 3] + os.urandom(512) + d[512 * 4 :], "byte 1536"),
    ("trailing-garbage", lambda d: d + b"garbage" + bytes(505), "trailing data"),
    (
        "garbage-after-one-zero-block",
        lambda d: d[: 512 * 6] + b"junk" * 128,
        "zero block",
    ),
]


@pytest.mark.parametrize("mangle,fragment", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_corrupt_tar_is_refused(box: Path, mangle, fragment) -> None:
    data = _two_members()
    # two members of 1+2 and 1+1 blocks, the end marker at block 5, zero padding after it
    assert len(data) >= 512 * 7 and data[512 * 5 :] == bytes(len(data) - 512 * 5)
    with pytest.raises(BadLayer, match=fragment):
        apply_layer(io.BytesIO(mangle(data)), box / "root")


def test_python_tarfile_would_have_stopped_silently(box: Path) -> None:
    """The case the strict reader exists for: tarfile yields one member and no error."""
    data = _two_members()
    bad = data[: 512 * 3] + b"X" + data[512 * 3 + 1 :]
    with tarfile.open(fileobj=io.BytesIO(bad)) as tf:
        assert [m.name for m in tf] == ["first"]
    with pytest.raises(BadLayer, match="checksum"):
        apply_layer(io.BytesIO(bad), box / "root")


def test_sparse_and_oversized_pax_refused(box: Path) -> None:
    ti = tarfile.TarInfo("sparse")
    ti.type = tarfile.GNUTYPE_SPARSE
    blob = ti.tobuf(tarfile.GNU_FORMAT) + bytes(1024)
    with pytest.raises(BadLayer, match="sparse"):
        apply_layer(io.BytesIO(blob), box / "root")
    big = tar_of(("file", "f", b"x", {"comment": "c" * (2 << 20)}))
    with pytest.raises(BadLayer, match="too large"):
        apply_layer(io.BytesIO(big), box / "root")
    pax_sparse = tar_of(("file", "f", b"x", {"GNU.sparse.major": "1"}))
    with pytest.raises(BadLayer, match="sparse"):
        apply_layer(io.BytesIO(pax_sparse), box / "root")


@pytest.mark.parametrize("how", ["truncated", "bad-crc", "flipped-data", "trailing-garbage"])
def test_corrupt_gzip_refused(box: Path, how: str) -> None:
    gz = bytearray(gzip.compress(_two_members(), mtime=0))
    if how == "truncated":
        gz = gz[: len(gz) // 2]
    elif how == "bad-crc":
        gz[-8] ^= 0xFF
    elif how == "flipped-data":
        gz[len(gz) // 2] ^= 0xFF
    else:
        gz += b"not gzip at all"
    with pytest.raises(BadLayer):
        apply_layer(open_maybe_compressed(io.BytesIO(bytes(gz))), box / "root")


def test_corrupt_zstd_refused(box: Path) -> None:
    import subprocess

    z = subprocess.run(
        ["zstd", "-q", "-c"], input=_two_members(), capture_output=True, check=True
    ).stdout
    with pytest.raises(BadLayer, match="zstd"):
        apply_layer(open_maybe_compressed(io.BytesIO(z[: len(z) - 5])), box / "root")
