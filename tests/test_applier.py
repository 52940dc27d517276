"""apply_layer on ordinary layers: round trips through write_layer, whiteouts in both modes
(checked through a real overlay mount), replacements, compressed inputs, GNU tar archives."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from cache.applier import apply_layer, open_maybe_compressed
from cache.tarcheck import verify_tar
from cache.tarwriter import write_layer

CAP = bytes.fromhex("0100000200200000000000000000000000000000")


def busybox_tree(root: Path) -> None:
    for d in ("bin", "sbin", "etc", "tmp", "root", "usr/bin", "usr/lib", "dev", "home/user"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "bin/busybox").write_bytes(b"\x7fELF" + os.urandom(200_000))
    for applet in ("sh", "ls", "cat"):
        os.symlink("/bin/busybox", root / "bin" / applet)
    os.symlink("../bin/busybox", root / "sbin/init")
    os.link(root / "bin/busybox", root / "usr/bin/busybox-hard")
    (root / "usr/bin/su").write_bytes(b"su")
    os.chmod(root / "usr/bin/su", 0o4755)
    (root / "usr/bin/wall").write_bytes(b"wall")
    os.chown(root / "usr/bin/wall", 0, 5)
    os.chmod(root / "usr/bin/wall", 0o2755)
    (root / "usr/bin/ping").write_bytes(b"ping")
    os.setxattr(root / "usr/bin/ping", "security.capability", CAP)
    (root / "home/user/owned").write_bytes(b"mine")
    os.chown(root / "home/user/owned", 1000, 1000)
    os.chown(root / "home/user", 1000, 1000)
    (root / "home/user/suid-user").write_bytes(b"suid")
    os.chown(root / "home/user/suid-user", 1000, 1000)
    os.chmod(root / "home/user/suid-user", 0o4750)
    os.setxattr(root / "home/user/suid-user", "security.capability", CAP)
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "root", 0o700)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    os.setxattr(root / "etc/passwd", "user.comment", b"\x00\x01\xff")
    os.symlink("/usr/share/zoneinfo/UTC", root / "etc/localtime")
    os.mkfifo(root / "dev/initctl")
    os.mknod(root / "dev/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev/loop0", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            os.utime(
                os.path.join(dirpath, n), (1_650_000_000, 1_650_000_000), follow_symlinks=False
            )


def describe(root: Path) -> dict[str, tuple]:
    """Everything a layer records about each path, for comparing trees."""
    out = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(p).read_bytes()).hexdigest()
                first = inodes.setdefault((st.st_dev, st.st_ino), rel)
                extra = (extra, first)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = st.st_rdev
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                xattrs = {k: os.getxattr(p, k) for k in os.listxattr(p)}
            out[rel] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                int(st.st_mtime),
                extra,
                xattrs,
            )
    return out


def layer_of(src: Path, **kw) -> bytes:
    buf = io.BytesIO()
    write_layer(src, buf, **kw)
    return buf.getvalue()


def test_round_trip_busybox_like(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    busybox_tree(src)
    data = layer_of(src)
    stats = apply_layer(io.BytesIO(data), dst)
    assert stats.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert stats.size == len(data)
    assert stats.hardlinks == 1 and stats.devices == 3 and stats.symlinks == 5  # 2 devs, 1 fifo
    assert describe(dst) == describe(src)
    assert os.stat(dst / "usr/bin/su").st_mode & 0o7777 == 0o4755
    assert os.stat(dst / "home/user/suid-user").st_mode & 0o7777 == 0o4750
    assert os.getxattr(dst / "home/user/suid-user", "security.capability") == CAP
    assert os.getxattr(dst / "usr/bin/ping", "security.capability") == CAP
    assert os.readlink(dst / "bin/sh") == "/bin/busybox"
    # the same content gives the same bytes back
    assert layer_of(dst) == data
    assert verify_tar(io.BytesIO(data)).diff_id == stats.diff_id


def test_gnu_tar_archives_apply(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    busybox_tree(src)
    deep = src / ("long" * 30) / ("name" * 30)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"deep")
    for fmt in ("gnu", "posix", "ustar"):
        if fmt == "ustar":
            shutil.rmtree(src / ("long" * 30))  # ustar cannot hold the long names
        archive = tmp_path / f"{fmt}.tar"
        subprocess.run(
            [
                "tar",
                f"--format={fmt}",
                "--xattrs",
                "--xattrs-include=*",
                "-cf",
                archive,
                "-C",
                src,
                ".",
            ],
            check=True,
            capture_output=True,
        )
        dst = tmp_path / f"dst-{fmt}"
        dst.mkdir()
        with open(archive, "rb") as f:
            apply_layer(f, dst)
        want = describe(src)
        got = describe(dst)
        if fmt == "ustar":  # no xattrs in ustar
            want = {k: v[:-1] for k, v in want.items()}
            got = {k: v[:-1] for k, v in got.items()}
        assert got == want, fmt


def test_whiteouts_apply_mode(tmp_path: Path) -> None:
    root = tmp_path / "root"
    lower = tmp_path / "lower"
    for d in ("d/sub", "keepdir", "gone-dir/x"):
        (lower / d).mkdir(parents=True)
    for f in ("x", "keep", "d/a", "d/sub/b", "keepdir/k", "gone-dir/x/y"):
        (lower / f).write_bytes(b"lower")
    root.mkdir()
    apply_layer(io.BytesIO(layer_of(lower)), root)
    upper = io.BytesIO()
    with tarfile.open(fileobj=upper, mode="w") as tf:
        for name, kind in [
            ("d/", tarfile.DIRTYPE),
            ("d/new", tarfile.REGTYPE),  # before the opaque marker: still kept
            ("d/.wh..wh..opq", tarfile.REGTYPE),
            (".wh.x", tarfile.REGTYPE),
            (".wh.gone-dir", tarfile.REGTYPE),
            (".wh.never-existed", tarfile.REGTYPE),
            ("fresh", tarfile.REGTYPE),
            (".wh.fresh", tarfile.REGTYPE),  # whiteouts never hide the same layer
        ]:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            tf.addfile(ti)
    stats = apply_layer(io.BytesIO(upper.getvalue()), root, whiteouts="apply")
    assert stats.whiteouts == 5
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert names == ["d", "d/new", "fresh", "keep", "keepdir", "keepdir/k"]


@pytest.fixture
def mounts():
    """Mount points to unmount at the end, even when the test fails."""
    points: list[Path] = []
    yield points
    for p in reversed(points):
        subprocess.run(["umount", p], check=False, capture_output=True)


def test_whiteouts_overlay_mode_through_a_real_mount(tmp_path: Path, mounts) -> None:
    l1, l2 = tmp_path / "l1", tmp_path / "l2"
    src1 = tmp_path / "src1"
    for d in ("d/sub", "e"):
        (src1 / d).mkdir(parents=True)
    for f in ("x", "keep", "d/a", "d/sub/b", "e/gone", "e/stay"):
        (src1 / f).write_bytes(b"lower")
    l1.mkdir()
    l2.mkdir()
    apply_layer(io.BytesIO(layer_of(src1)), l1, whiteouts="overlay")
    # the second layer as the executor would make it: from a real overlay upper dir
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={l1},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, merged], check=True)
    mounts.append(merged)
    os.unlink(merged / "x")
    shutil.rmtree(merged / "d")
    (merged / "d").mkdir()
    (merged / "d/new").write_bytes(b"new")
    os.unlink(merged / "e/gone")
    subprocess.run(["umount", merged], check=True)
    mounts.pop()
    layer2 = layer_of(upper, overlay_upper=True)
    stats = apply_layer(io.BytesIO(layer2), l2, whiteouts="overlay")
    assert stats.whiteouts == 3
    st = os.lstat(l2 / "x")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(l2 / "d", "trusted.overlay.opaque") == b"y"
    assert not os.path.lexists(l2 / "d/.wh..wh..opq")
    # mount both layers read-only and look at the merged view
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={l2}:{l1}", view], check=True
    )
    mounts.append(view)
    names = sorted(str(p.relative_to(view)) for p in view.rglob("*"))
    assert names == ["d", "d/new", "e", "e/stay", "keep"]
    # flattening both layers with whiteouts="apply" gives the same tree
    flat = tmp_path / "flat"
    flat.mkdir()
    apply_layer(io.BytesIO(layer_of(src1)), flat)
    apply_layer(io.BytesIO(layer2), flat)
    assert sorted(str(p.relative_to(flat)) for p in flat.rglob("*")) == names


def test_replacements(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dir-to-file/inner").mkdir(parents=True)
    (root / "dir-to-file/inner/f").write_bytes(b"x")
    (root / "file-to-dir").write_bytes(b"x")
    os.symlink("/somewhere", root / "link-to-dir")
    (root / "keep-dir").mkdir()
    (root / "keep-dir/lower-child").write_bytes(b"x")
    os.chmod(root / "keep-dir", 0o700)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, mode in [
            ("dir-to-file", tarfile.REGTYPE, 0o644),
            ("file-to-dir", tarfile.DIRTYPE, 0o755),
            ("link-to-dir", tarfile.DIRTYPE, 0o755),
            ("keep-dir", tarfile.DIRTYPE, 0o1777),
            ("keep-dir/new", tarfile.REGTYPE, 0o644),
        ]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = kind, mode, 1_600_000_000
            tf.addfile(ti)
    apply_layer(io.BytesIO(buf.getvalue()), root)
    assert (root / "dir-to-file").is_file()
    assert (root / "file-to-dir").is_dir()
    assert (root / "link-to-dir").is_dir() and not (root / "link-to-dir").is_symlink()
    assert sorted(os.listdir(root / "keep-dir")) == ["lower-child", "new"]
    st = os.stat(root / "keep-dir")
    assert stat.S_IMODE(st.st_mode) == 0o1777
    assert st.st_mtime == 1_600_000_000  # set after its children were created


@pytest.mark.parametrize("kind", ["plain", "gzip", "bzip2", "xz", "zstd"])
def test_compressed_inputs(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    busybox_tree(src)
    data = layer_of(src)
    if kind == "gzip":
        blob = gzip.compress(data)
    elif kind == "bzip2":
        blob = bz2.compress(data)
    elif kind == "xz":
        blob = lzma.compress(data)
    elif kind == "zstd":
        blob = subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True).stdout
    else:
        blob = data
    dst = tmp_path / "dst"
    dst.mkdir()
    reader = open_maybe_compressed(io.BytesIO(blob))
    try:
        stats = apply_layer(reader, dst)
    finally:
        reader.close()
    assert stats.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert describe(dst) == describe(src)


def test_empty_layer_and_root_entry(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, 0o700)
    stats = apply_layer(io.BytesIO(bytes(1024)), root)
    assert stats.entries == 0 and os.listdir(root) == []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("./")
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
    apply_layer(io.BytesIO(buf.getvalue()), root)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o755


def test_hardlink_to_lower_file_and_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "lower").write_bytes(b"lower")
    os.symlink("/etc/passwd", root / "sym")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, target in [("h1", "/lower"), ("h2", "sym")]:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.LNKTYPE, target
            tf.addfile(ti)
    apply_layer(io.BytesIO(buf.getvalue()), root)
    assert os.stat(root / "h1").st_ino == os.stat(root / "lower").st_ino
    # the link is to the symlink itself, not to the host's /etc/passwd
    assert os.readlink(root / "h2") == "/etc/passwd"
    assert os.lstat(root / "h2").st_ino == os.lstat(root / "sym").st_ino


class _Trickle(io.RawIOBase):
    """A pipe-like stream that returns at most 7 bytes per read."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = 7 if n < 0 else min(n, 7)
        out, self.data = bytes(self.data[:n]), self.data[n:]
        return out


def test_verify_tar_and_short_reads(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x" * 5000)
    archive = tmp_path / "gnu.tar"
    subprocess.run(["tar", "-cf", archive, "-C", src, "."], check=True)
    data = archive.read_bytes()  # GNU tar pads to 10240 bytes: zeros after the end marker
    summary = verify_tar(io.BytesIO(data))
    assert summary.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert summary.size == len(data) and summary.entries == 2
    dst = tmp_path / "dst"
    dst.mkdir()
    stats = apply_layer(open_maybe_compressed(_Trickle(gzip.compress(data))), dst)
    assert stats.diff_id == summary.diff_id
    assert (dst / "f").read_bytes() == b"x" * 5000
