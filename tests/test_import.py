"""`pydock import`: a one-layer image from a rootfs tarball (plain/gzip/xz/bzip2/zstd, file or
stdin), normalised so the diff id depends on content only, with --change and -m."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from cache.importer import ImportError_, apply_change, import_rootfs

PYDOCK = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "pydock")


def pydock(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYDOCK, "--root", str(root), *args], input=stdin, capture_output=True)


def rootfs_tar(*, reverse: bool = False, uname: str = "", prefix: str = "") -> bytes:
    entries = []
    for name, kind, data in [
        ("bin", "d", None),
        ("bin/tool", "f", b"#!/bin/sh\necho tool\n"),
        ("bin/alias", "l", "tool"),
        ("etc", "d", None),
        ("etc/motd", "f", b"welcome\n"),
        ("tmp", "d", None),
    ]:
        info = tarfile.TarInfo(prefix + name)
        info.mtime = 1700000000
        info.uname = info.gname = uname
        if kind == "d":
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
        elif kind == "l":
            info.type, info.linkname = tarfile.SYMTYPE, data
        else:
            info.size, info.mode = len(data), 0o755
        entries.append((info, data if kind == "f" else None))
    if reverse:
        # children before parents is unusual but legal in a rootfs tarball
        entries.reverse()
    buf = io.BytesIO()
    fmt = tarfile.GNU_FORMAT if uname else tarfile.PAX_FORMAT
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def test_import_file_with_changes_end_to_end(store_root, tmp_path):
    src = tmp_path / "rootfs.tar"
    src.write_bytes(rootfs_tar())
    p = pydock(
        store_root,
        "import",
        "-c",
        'CMD ["/bin/tool", "-v"]',
        "--change",
        "ENV A=1 B='two words'",
        "-c",
        "EXPOSE 80 53/udp",
        "-c",
        "LABEL org.example=yes",
        "-c",
        "WORKDIR /srv",
        "-c",
        "USER nobody",
        "-c",
        "VOLUME /data",
        "-c",
        "STOPSIGNAL SIGINT",
        "-c",
        "ENTRYPOINT /bin/tool",
        "-c",
        "ONBUILD RUN echo hi",
        str(src),
        "me/rootfs:1",
    )
    assert p.returncode == 0, p.stderr
    image_id = p.stdout.decode().strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    from cache.store import Store

    store = Store.open(store_root)
    image = store.get_image("me/rootfs:1")
    assert image.image_id == image_id and len(image.diff_ids) == 1
    cfg = image.config["config"]
    assert cfg["Cmd"] == ["/bin/tool", "-v"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/tool"]
    assert cfg["Env"] == ["A=1", "B=two words"]
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Labels"] == {"org.example": "yes"}
    assert (cfg["WorkingDir"], cfg["User"], cfg["StopSignal"]) == ("/srv", "nobody", "SIGINT")
    assert cfg["Volumes"] == {"/data": {}} and cfg["OnBuild"] == ["RUN echo hi"]
    assert image.config["history"][0]["comment"] == f"Imported from {src}"
    # the layer unpacks to the tarball's content
    [lower] = store.unpacked_lowers(image.diff_ids)
    assert (lower / "etc/motd").read_bytes() == b"welcome\n"
    assert os.readlink(lower / "bin/alias") == "tool"
    assert (lower / "tmp").stat().st_mode & 0o7777 == 0o1777


@pytest.mark.parametrize(
    "variant",
    ["plain", "gzip", "xz", "bzip2", "zstd", "reversed", "owner names", "leading ./"],
)
def test_diff_id_depends_on_content_only(variant, store, tmp_path):
    base = import_rootfs(store, io.BytesIO(rootfs_tar()), tag="base:1")
    data = {
        "plain": lambda: rootfs_tar(),
        "gzip": lambda: gzip.compress(rootfs_tar()),
        "xz": lambda: lzma.compress(rootfs_tar()),
        "bzip2": lambda: bz2.compress(rootfs_tar()),
        "zstd": lambda: zstd(rootfs_tar()),
        "reversed": lambda: rootfs_tar(reverse=True),
        "owner names": lambda: rootfs_tar(uname="someone"),
        "leading ./": lambda: rootfs_tar(prefix="./"),
    }[variant]()
    src = tmp_path / "in.tar"
    src.write_bytes(data)
    image = import_rootfs(store, src, tag="v:1")
    assert image.diff_ids == base.diff_ids


def test_import_from_stdin_with_message(store_root):
    p = pydock(
        store_root, "import", "-m", "my rootfs", "-", "piped", stdin=gzip.compress(rootfs_tar())
    )
    assert p.returncode == 0, p.stderr
    h = pydock(store_root, "history", "--no-trunc", "piped")
    assert h.returncode == 0
    lines = h.stdout.decode().splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(p.stdout.decode().strip()) and lines[1].endswith("my rootfs")
    i = pydock(store_root, "inspect", "-f", "{{.Comment}}", "piped")
    assert i.stdout == b"my rootfs\n"


def snapshot(root: Path) -> list[tuple]:
    out = []
    for dirpath, _dirs, files in sorted(os.walk(root)):
        for n in sorted(_dirs + files):
            p = os.path.join(dirpath, n)
            h = (
                hashlib.sha256(Path(p).read_bytes()).hexdigest()
                if os.path.isfile(p) and not os.path.islink(p)
                else ""
            )
            out.append((os.path.relpath(p, root), os.lstat(p).st_mode, h))
    return out


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (lambda: _evil_tar("../escape"), "leads out of the root"),
        (lambda: gzip.compress(rootfs_tar())[:-30], "truncated gzip"),
        (lambda: b"not a tarball at all" * 50, "tar"),
        (lambda: rootfs_tar()[:1000], "tar"),
    ],
    ids=["dotdot", "truncated gzip", "not a tar", "truncated tar"],
)
def test_bad_rootfs_is_refused_store_unchanged(data, expect, busybox_store, tmp_path):
    src = tmp_path / "bad.tar"
    src.write_bytes(data())
    before = snapshot(busybox_store.root)
    p = pydock(busybox_store.root, "import", str(src), "bad:1")
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1 and expect in err, err
    assert snapshot(busybox_store.root) == before


def _evil_tar(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    return buf.getvalue()


def test_bad_changes_are_refused(store_root, tmp_path):
    src = tmp_path / "rootfs.tar"
    src.write_bytes(rootfs_tar())
    p = pydock(store_root, "import", "-c", "RUN echo no", str(src))
    assert p.returncode == 1 and b"RUN is not supported" in p.stderr
    for bad in ("EXPOSE eighty", "ENV", "ONBUILD FROM x"):
        with pytest.raises(ImportError_):
            apply_change({}, bad)
    cfg: dict = {}
    apply_change(cfg, "WORKDIR /a")
    apply_change(cfg, "WORKDIR b")
    apply_change(cfg, "ENV X 1 2")
    apply_change(cfg, "CMD echo hi")
    assert cfg == {"WorkingDir": "/a/b", "Env": ["X=1 2"], "Cmd": ["/bin/sh", "-c", "echo hi"]}


def tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            body = Path(p).read_bytes() if os.path.isfile(p) and not os.path.islink(p) else b""
            link = os.readlink(p) if os.path.islink(p) else ""
            out[os.path.relpath(p, root)] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                int(st.st_mtime),
                link,
                body,
            )
    return out


def test_imported_tree_becomes_the_unpacked_layer(store, tmp_path, monkeypatch):
    """The staging tree is kept as the layer's lower dir; it equals an unpack of the blob."""
    from cache.applier import apply_layer

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    # a "./" entry with its own mode: the layer has no root entry, so neither may the lower dir
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        top = tarfile.TarInfo("./")
        top.type, top.mode = tarfile.DIRTYPE, 0o700
        tf.addfile(top)
        with tarfile.open(fileobj=io.BytesIO(rootfs_tar(prefix="./"))) as src:
            for m in src:
                tf.addfile(m, src.extractfile(m) if m.isreg() else None)
    image = import_rootfs(store, io.BytesIO(gzip.compress(buf.getvalue())), tag="adopt:1")
    [layer] = store.all_unpacked()
    assert layer.diff_id == image.diff_ids[0] and layer.parent is None
    assert list((store.root / "tmp").iterdir()) == []
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with store.layer_tar(image.diff_ids[0]) as f:
        apply_layer(f, fresh, whiteouts="overlay")
    assert tree(layer.path) == tree(fresh)
    assert os.stat(layer.path).st_mode == os.stat(fresh).st_mode
    [lower] = store.unpacked_lowers(image.diff_ids)
    assert os.path.realpath(lower) == os.path.realpath(layer.path)
