"""Unpacked layers: once per chain id, staged then renamed, short l/ links, real overlay mounts."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from store_helpers import make_tar, snapshot

from cache.digest import chain_ids
from cache.errors import PydockError
from cache.store import Store


def tar_with(entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti in entries:
            body = (data or {}).get(ti.name)
            if body is not None:
                ti.size = len(body)
            tf.addfile(ti, io.BytesIO(body) if body is not None else None)
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    return ti


def test_busybox_unpacked_once(busybox_store: Store, busybox_image):
    store = busybox_store
    lowers = store.unpacked_lowers(busybox_image.diff_ids)
    assert len(lowers) == 1
    link = lowers[0]
    assert link.parent == store.root / "l" and len(link.name) == 12
    chain = chain_ids(busybox_image.diff_ids)[0]
    assert os.readlink(link) == f"../layers/{chain.hex}/diff"
    diff = store.root / "layers" / chain.hex / "diff"
    assert os.readlink(diff / "bin" / "sh") == "/bin/busybox"
    assert stat.S_IMODE(os.lstat(diff / "tmp").st_mode) == 0o1777
    meta = json.loads((store.root / "layers" / chain.hex / "layer.json").read_bytes())
    assert meta["diff_id"] == busybox_image.diff_ids[0]
    assert meta["chain_id"] == chain and meta["parent"] is None and meta["short"] == link.name
    assert meta["size"] == store.blob_size(busybox_image.diff_ids[0])
    before = snapshot(store.root)
    assert store.unpacked_lowers(busybox_image.diff_ids) == lowers
    assert snapshot(store.root) == before
    assert store.lower_links(busybox_image.diff_ids) == [f"l/{link.name}"]


def test_failed_unpack_leaves_no_layer(store: Store):
    # Well-formed (so it is stored), but the applier refuses a hard link to nothing.
    link = entry("b", tarfile.LNKTYPE)
    link.linkname = "missing"
    data = tar_with([entry("a/", tarfile.DIRTYPE, 0o755), entry("a/f"), link], {"a/f": b"x"})
    info = store.add_layer(io.BytesIO(data))
    before = snapshot(store.root)
    with pytest.raises(PydockError):
        store.unpacked_lowers([info.diff_id])
    assert snapshot(store.root) == before


def test_malformed_whiteout_is_refused_on_ingest(store: Store):
    data = tar_with([entry("a/", tarfile.DIRTYPE, 0o755), entry("a/.wh..")], {"a/.wh..": b""})
    before = snapshot(store.root)
    with pytest.raises(PydockError, match="whiteout"):
        store.add_layer(io.BytesIO(data))
    assert snapshot(store.root) == before


def test_corrupt_blob_is_not_unpacked(store: Store):
    info = store.add_layer(io.BytesIO(make_tar({"f": b"a" * 5000})))
    path = store.blob_path(info.diff_id)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[600] ^= 1  # inside f's content: the tar stays well-formed
    path.write_bytes(bytes(data))
    before = snapshot(store.root)
    with pytest.raises(PydockError, match="corrupt"):
        store.unpacked_lowers([info.diff_id])
    assert snapshot(store.root) == before


def _mount_overlay(cwd: Path, lowerdir: str, upper: Path, work: Path, merged: Path) -> None:
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lowerdir},upperdir={upper},workdir={work}",
            str(merged),
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_whiteouts_work_in_a_real_overlay(store: Store, tmp_path: Path):
    base = store.add_layer(
        io.BytesIO(
            tar_with(
                [entry("d/", tarfile.DIRTYPE, 0o755), entry("d/gone"), entry("d/kept"), entry("x")],
                {"d/gone": b"1", "d/kept": b"2", "x": b"3"},
            )
        )
    )
    top = store.add_layer(
        io.BytesIO(
            tar_with(
                [entry("d/", tarfile.DIRTYPE, 0o755), entry("d/.wh.gone")], {"d/.wh.gone": b""}
            )
        )
    )
    lowers = store.unpacked_lowers([base.diff_id, top.diff_id])
    upper, work, merged = (tmp_path / n for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    _mount_overlay(tmp_path, ":".join(str(p) for p in reversed(lowers)), upper, work, merged)
    try:
        assert sorted(os.listdir(merged / "d")) == ["kept"]
        assert (merged / "x").read_bytes() == b"3"
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_200_layer_lowerdir_fits_in_a_page(store: Store, tmp_path: Path):
    diff_ids = [
        store.add_layer(io.BytesIO(make_tar({f"f{i:03d}": b"%d" % i}))).diff_id for i in range(200)
    ]
    links = store.lower_links(diff_ids)
    upper, work, merged = (tmp_path / n for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    lowerdir = ":".join(reversed(links))
    options = f"lowerdir={lowerdir},upperdir={upper},workdir={work}"
    assert len(options) < 4096
    _mount_overlay(store.root, lowerdir, upper, work, merged)
    try:
        assert len(os.listdir(merged)) == 200
        assert (merged / "f000").read_bytes() == b"0" and (merged / "f199").read_bytes() == b"199"
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def _unpack_in_process(root: str, diff_id: str, q) -> None:  # noqa: ANN001
    q.put([str(p) for p in Store(root).unpacked_lowers([diff_id])])


def test_concurrent_unpacks_of_one_layer_agree(busybox_store: Store, busybox_image):
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_unpack_in_process, args=(str(busybox_store.root), busybox_image.diff_ids[0], q)
        )
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len({tuple(r) for r in results}) == 1
    assert len(os.listdir(busybox_store.root / "layers")) == 1
    assert len(os.listdir(busybox_store.root / "l")) == 1
    assert os.listdir(busybox_store.root / "tmp") == []
    assert busybox_store.verify() == []
