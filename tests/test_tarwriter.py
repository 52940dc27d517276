"""write_layer: deterministic layer tars, checked by reading the bytes back (tarfile, GNU tar)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from cache.tarwriter import LayerWriteError, write_layer

CAP = bytes.fromhex("0100000200200000000000000000000000000000")  # cap_net_bind_service+ep


def make_busybox_like(root: Path) -> None:
    """A small tree with the things real base layers hold."""
    for d in ("bin", "etc", "tmp", "root", "usr/lib", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin/busybox").write_bytes(b"\x7fELF busybox" * 1000)
    os.chmod(root / "bin/busybox", 0o4755)
    os.symlink("/bin/busybox", root / "bin/sh")
    os.symlink("busybox", root / "bin/ls")
    os.link(root / "bin/busybox", root / "bin/hardbox")
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "usr/lib/os-release").write_text("NAME=test\n")
    os.symlink("../usr/lib/os-release", root / "etc/os-release")
    (root / "etc/ping").write_bytes(b"ping")
    os.setxattr(root / "etc/ping", "security.capability", CAP)
    os.setxattr(root / "etc/passwd", "user.note", b"\x00\xffbinary")
    os.setxattr(root / "etc/passwd", "trusted.secret", b"no")
    os.mkfifo(root / "dev/fifo")
    os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    os.chown(root / "etc/passwd", 1000, 1001, follow_symlinks=False)


def layer_bytes(src: Path, **kw) -> bytes:
    buf = io.BytesIO()
    stats = write_layer(src, buf, **kw)
    data = buf.getvalue()
    assert stats.size == len(data)
    assert stats.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    return data


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        return tf.getmembers()


def test_entries_headers_and_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_busybox_like(src)
    data = layer_bytes(src)
    ms = members(data)
    names = [m.name for m in ms]
    # depth-first, names by bytes within each dir, parents first
    assert names == [
        "bin",
        "bin/busybox",
        "bin/hardbox",
        "bin/ls",
        "bin/sh",
        "dev",
        "dev/fifo",
        "dev/null",
        "etc",
        "etc/os-release",
        "etc/passwd",
        "etc/ping",
        "root",
        "tmp",
        "usr",
        "usr/lib",
        "usr/lib/os-release",
    ]
    by = {m.name: m for m in ms}
    assert by["bin/busybox"].mode == 0o4755 and by["bin/busybox"].isreg()
    assert by["bin/hardbox"].islnk() and by["bin/hardbox"].linkname == "bin/busybox"
    assert by["bin/sh"].issym() and by["bin/sh"].linkname == "/bin/busybox"
    assert by["etc/os-release"].linkname == "../usr/lib/os-release"
    assert by["tmp"].mode == 0o1777 and by["root"].mode == 0o700
    assert by["dev/fifo"].isfifo()
    assert by["dev/null"].ischr() and (by["dev/null"].devmajor, by["dev/null"].devminor) == (1, 3)
    assert (by["etc/passwd"].uid, by["etc/passwd"].gid) == (1000, 1001)
    for m in ms:
        assert m.uname == "" and m.gname == ""
        assert isinstance(m.mtime, int)
        assert not {"atime", "ctime", "mtime"} & set(m.pax_headers)
    assert by["etc/ping"].pax_headers == {"SCHILY.xattr.security.capability": CAP.decode("latin-1")}
    assert set(by["etc/passwd"].pax_headers) == {"SCHILY.xattr.user.note"}
    # directories are written as "d/" in the raw header
    assert b"bin/\0" in data and b"usr/lib/\0" in data
    # the archive ends with two zero blocks and nothing else
    assert len(data) % 512 == 0 and data[-1024:] == bytes(1024)


def test_gnu_tar_reads_it_back(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_busybox_like(src)
    (tmp_path / "l.tar").write_bytes(layer_bytes(src))
    listing = subprocess.run(
        ["tar", "-tvf", tmp_path / "l.tar"], check=True, capture_output=True, text=True
    )
    assert "bin/hardbox link to bin/busybox" in listing.stdout
    assert "bin/sh -> /bin/busybox" in listing.stdout
    assert listing.stderr == ""
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-xpf", tmp_path / "l.tar", "-C", out],
        check=True,
    )
    assert (out / "bin/busybox").read_bytes() == (src / "bin/busybox").read_bytes()
    assert os.getxattr(out / "etc/ping", "security.capability") == CAP
    assert os.getxattr(out / "etc/passwd", "user.note") == b"\x00\xffbinary"
    assert "trusted.secret" not in os.listxattr(out / "etc/passwd")
    assert os.stat(out / "bin/hardbox").st_ino == os.stat(out / "bin/busybox").st_ino


def test_deterministic_and_clamped(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    make_busybox_like(a)
    make_busybox_like(b)
    for root, when in ((a, 1_700_000_000), (b, 1_800_000_000)):
        for dirpath, dirnames, filenames in os.walk(root):
            for n in dirnames + filenames:
                os.utime(os.path.join(dirpath, n), (when, when), follow_symlinks=False)
    assert layer_bytes(a) == layer_bytes(a)
    assert layer_bytes(a) != layer_bytes(b)
    sde = 1_600_000_000
    assert layer_bytes(a, source_date_epoch=sde) == layer_bytes(b, source_date_epoch=sde)
    assert {m.mtime for m in members(layer_bytes(a, source_date_epoch=sde))} == {sde}
    # an mtime older than SOURCE_DATE_EPOCH is kept
    assert {m.mtime for m in members(layer_bytes(a, source_date_epoch=1_750_000_000))} == {
        1_700_000_000
    }


def test_long_and_odd_names_and_big_ids(tmp_path: Path) -> None:
    src = tmp_path / "src"
    long_dir = "d" * 120
    (src / long_dir).mkdir(parents=True)
    (src / long_dir / ("f" * 150)).write_bytes(b"x")
    (src / "ünï").write_bytes(b"u")
    bad = os.fsencode(str(src)) + b"/raw\xff"
    with open(bad, "wb") as f:
        f.write(b"r")
    os.symlink("t" * 200, src / "longlink")
    (src / "big").write_bytes(b"b")
    os.chown(src / "big", 3_000_000, 4_000_000)
    data = layer_bytes(src)
    by = {m.name: m for m in members(data)}
    assert by[f"{long_dir}/{'f' * 150}"].size == 1
    assert by["longlink"].linkname == "t" * 200
    assert (by["big"].uid, by["big"].gid) == (3_000_000, 4_000_000)
    assert "ünï" in by
    assert os.fsdecode(b"raw\xff") in by


def test_exclude_and_sockets(tmp_path: Path) -> None:
    import socket

    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "skip").mkdir()
    (src / "skip/inner").write_bytes(b"x")
    (src / "keep/file").write_bytes(b"x")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(src / "keep/sock"))
        names = [m.name for m in members(layer_bytes(src, exclude=lambda p: p == "skip"))]
    finally:
        s.close()
    assert names == ["keep", "keep/file"]


def test_unreadable_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LayerWriteError):
        write_layer(tmp_path / "missing", io.BytesIO())


def test_big_file_streamed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    body = os.urandom(3 * 1024 * 1024 + 17)
    (src / "big").write_bytes(body)
    (src / "small").write_bytes(b"s")
    data = layer_bytes(src)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        assert tf.extractfile("big").read() == body
        assert tf.extractfile("small").read() == b"s"


@pytest.fixture
def overlay(tmp_path: Path):
    """A real overlay mount: yields (lower, upper, merged); unmounted even on failure."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    (lower / "x").write_bytes(b"lower x")
    (lower / "keep").write_bytes(b"keep")
    (lower / "d").mkdir()
    (lower / "d/a").write_bytes(b"a")
    (lower / "d/b").write_bytes(b"b")
    (lower / "e").mkdir()
    (lower / "e/gone").write_bytes(b"g")
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, merged], check=True)
    try:
        yield lower, upper, merged
    finally:
        subprocess.run(["umount", merged], check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_overlay_upper_translation(overlay) -> None:
    lower, upper, merged = overlay
    os.unlink(merged / "x")
    shutil.rmtree(merged / "d")
    (merged / "d").mkdir()
    (merged / "d/new").write_bytes(b"new")
    os.unlink(merged / "e/gone")
    (merged / "e/!first").write_bytes(b"sorts before .wh.")
    subprocess.run(["umount", merged], check=True)
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    data = layer_bytes(upper, overlay_upper=True)
    ms = members(data)
    assert [m.name for m in ms] == [
        ".wh.x",
        "d",
        "d/.wh..wh..opq",
        "d/new",
        "e",
        "e/.wh.gone",
        "e/!first",
    ]
    by = {m.name: m for m in ms}
    for wh in (".wh.x", "e/.wh.gone"):
        assert by[wh].isreg() and by[wh].size == 0 and by[wh].mode == 0o600
    assert by["d/.wh..wh..opq"].isreg() and by["d/.wh..wh..opq"].size == 0
    assert by["d/.wh..wh..opq"].mode == by["d"].mode & 0o777
    for m in ms:
        assert not any("overlay" in k or "trusted" in k for k in m.pax_headers)
    # the plain walk keeps the raw overlay nodes (the kernel may hard-link whiteouts together)
    plain = {m.name: m for m in members(layer_bytes(upper))}
    assert plain["e/gone"].ischr() and plain["x"].type in (tarfile.CHRTYPE, tarfile.LNKTYPE)
    assert "d/.wh..wh..opq" not in plain


def test_overlay_metacopy_refused(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.mkdir()
    (up / "f").write_bytes(b"")
    os.setxattr(up / "f", "trusted.overlay.metacopy", b"")
    with pytest.raises(LayerWriteError, match="metacopy"):
        write_layer(up, io.BytesIO(), overlay_upper=True)
