"""A COPY/ADD that misses the cache hard-links the files that did not change from the layer
the same step made last time, and copies the rest.

What must hold: the layer (tar bytes, diff id) and the image are exactly those of a build
without reuse (`--no-cache`), the unchanged files share their inode with the old layer and
the changed ones do not, and the old layer and image are untouched.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

import pytest

from builder.copy import LayerBuilder, Reuse
from tests.build_helpers import Recorder, build_ctx, run_image

SDE = 1_600_000_000


def _context(ctx: Path) -> None:
    # 40 files: enough for the threaded copy path (32 and more).
    for i in range(40):
        p = ctx / "big" / f"d{i % 4}" / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(2000 + i))
    (ctx / "big" / "d0" / "f0.bin").write_text("original\n" * 100)
    os.chmod(ctx / "big" / "d1" / "f1.bin", 0o750)


def _files(d: Path) -> dict[str, tuple]:
    """Every regular file under `d`: (inode, mode, uid, gid, mtime_ns, sha256)."""
    out = {}
    for dirpath, _dirs, names in os.walk(d):
        for n in names:
            p = Path(dirpath, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out[p.relative_to(d).as_posix()] = (
                    st.st_ino,
                    st.st_mode,
                    st.st_uid,
                    st.st_gid,
                    st.st_mtime_ns,
                    hashlib.sha256(p.read_bytes()).hexdigest(),
                )
    return out


def _add_layer_dir(store, image) -> Path:  # noqa: ANN001
    """The unpacked dir of the image's ADD layer (the one below the RUN layer)."""
    return store.unpacked_layers(list(image.diff_ids))[-2].path


@pytest.mark.parametrize(
    ("sde", "dest"),
    [(SDE, "/data/"), (None, "/")],  # without SOURCE_DATE_EPOCH, no folder gets "now"
)
def test_rebuild_links_unchanged_files(
    busybox_store, busybox_root: Path, tmp_path: Path, sde: int | None, dest: str
) -> None:
    store = busybox_store
    ctx = tmp_path / "ctx"
    _context(ctx)
    inside = dest.rstrip("/") or ""
    (ctx / "Dockerfile").write_text(
        f"FROM busybox\nADD big/ {dest}\nRUN cat {inside}/d0/f0.bin > /out\n"
    )
    first = build_ctx(store, ctx, tags=["r:1"], source_date_epoch=sde).image
    old_dir = _add_layer_dir(store, first)
    old_before = _files(old_dir)
    old_blob = store.blob_path(first.diff_ids[-2]).read_bytes()

    # Change one file's content, and only the mode of another: both must be copied.
    (ctx / "big" / "d0" / "f0.bin").write_bytes(b"edited\n")
    os.chmod(ctx / "big" / "d2" / "f2.bin", 0o600)
    rec = Recorder()
    second = build_ctx(store, ctx, progress=rec, tags=["r:2"], source_date_epoch=sde).image
    assert any("d0/f0.bin changed" in w for w in rec.kinds("miss"))
    new_dir = _add_layer_dir(store, second)
    new = _files(new_dir)

    # A build without reuse (--no-cache, in a store with no earlier layer to link from) of
    # the same context gives the same layer and image, with every file copied.
    from conftest import copy_store

    other = copy_store(busybox_root, tmp_path / "other")
    third = build_ctx(other, ctx, tags=["r:3"], no_cache=True, source_date_epoch=sde).image
    assert third.diff_ids[-2] == second.diff_ids[-2]
    assert other.blob_path(third.diff_ids[-2]).read_bytes() == (
        store.blob_path(second.diff_ids[-2]).read_bytes()
    )
    if sde is not None:
        assert third.image_id == second.image_id
    fresh = _files(_add_layer_dir(other, third))

    pre = f"{inside.strip('/')}/" if inside else ""
    changed = {f"{pre}d0/f0.bin", f"{pre}d2/f2.bin"}
    assert new.keys() == old_before.keys() == fresh.keys()
    for rel, (ino, *attrs) in new.items():
        assert attrs == list(fresh[rel][1:]), rel  # same mode, owner, mtime, content
        if rel in changed:
            assert ino != old_before[rel][0], rel
        else:
            assert ino == old_before[rel][0], f"{rel} was copied, not linked"
    # No hard-link entries crept into the tar (the other link is outside the tree).
    with store.layer_tar(second.diff_ids[-2]) as f, tarfile.open(fileobj=f, mode="r|") as tf:
        assert not [m.name for m in tf if m.islnk()]

    # The old layer and image are untouched and still valid.
    after = _files(old_dir)
    assert {k: v[1:] for k, v in after.items()} == {k: v[1:] for k, v in old_before.items()}
    assert store.blob_path(first.diff_ids[-2]).read_bytes() == old_blob
    assert store.verify() == []
    code, out = run_image(store, first.image_id, ["cat", f"{inside}/d0/f0.bin"])
    assert (code, out) == (0, "original\n" * 100)
    assert run_image(store, second.image_id, ["cat", "/out"]) == (0, "edited\n")


def test_touched_file_is_copied(busybox_store, tmp_path: Path) -> None:
    """Same content, new mtime (not clamped: SOURCE_DATE_EPOCH is later): the layer's tar
    holds the new mtime, so no link."""
    store = busybox_store
    ctx = tmp_path / "ctx"
    _context(ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY big/ /\nCOPY big/d3/ /again/\n")
    late = 4_000_000_000
    first = build_ctx(store, ctx, source_date_epoch=late).image
    old = _files(store.unpacked_layers(list(first.diff_ids))[-2].path)
    (ctx / "big" / "d0" / "f0.bin").write_bytes(b"x")
    t = os.stat(ctx / "big" / "d0" / "f4.bin").st_mtime_ns + 5_000_000_000
    os.utime(ctx / "big" / "d0" / "f4.bin", ns=(t, t))
    second = build_ctx(store, ctx, source_date_epoch=late).image
    new = _files(store.unpacked_layers(list(second.diff_ids))[-2].path)
    assert new["d0/f4.bin"][0] != old["d0/f4.bin"][0]
    assert new["d0/f4.bin"][4] == t // 10**9 * 10**9  # whole seconds, as the tar
    assert new["d0/f8.bin"][0] == old["d0/f8.bin"][0]
    # The second COPY read nothing that changed: same layer on the new parent.
    assert second.diff_ids[-1] == first.diff_ids[-1]
    assert store.verify() == []


def test_one_inode_is_never_linked_twice(tmp_path: Path) -> None:
    """An old layer holding two names of one inode: the new tree gets it once, the other
    name is copied (else the tar writer would turn the second into a hard-link entry)."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "a").write_bytes(b"same")
    os.link(old / "a", old / "b")
    os.chown(old / "a", 0, 0)
    os.chmod(old / "a", 0o644)
    src = tmp_path / "src"
    src.mkdir()
    st_old = os.stat(old / "a")
    for n in ("a", "b"):
        (src / n).write_bytes(b"same")
        os.utime(src / n, ns=(st_old.st_mtime_ns, st_old.st_mtime_ns))
    upper = tmp_path / "upper"
    upper.mkdir()
    lb = LayerBuilder(upper, None, SDE)
    lb.hashes = {src / "a": "h", src / "b": "h"}
    lb.reuse = Reuse(old, {"a": [4, "h"], "b": [4, "h"]}, None)
    files = [(n, src / n, os.stat(src / n), (0, 0)) for n in ("a", "b")]
    lb.put_files(files, None)
    inos = {os.stat(upper / n).st_ino for n in ("a", "b")}
    assert len(inos) == 2 and st_old.st_ino in inos
    assert lb.reuse.linked == 1
    assert lb.record == {"a": [4, "h"], "b": [4, "h"]}


def test_prune_of_a_layer_sharing_inodes(busybox_store, tmp_path: Path) -> None:
    """Pruning the older of two layers that share inodes frees (and reports) only what was
    its own, keeps the newer layer's files intact, and drops the old layer's file record."""
    from cache.prune import prune

    store = busybox_store
    ctx = tmp_path / "ctx"
    _context(ctx)
    (ctx / "Dockerfile").write_text("FROM busybox\nADD big/ /data/\n")
    first = build_ctx(store, ctx, tags=["p:latest"]).image
    (ctx / "big" / "d0" / "f0.bin").write_bytes(b"edited\n")
    second = build_ctx(store, ctx, tags=["p:latest"]).image  # the first is now dangling
    old_dir = _add_layer_dir_top(store, first)
    new_dir = _add_layer_dir_top(store, second)
    shared = {
        rel: v for rel, v in _files(new_dir).items() if v[0] == _files(old_dir).get(rel, (0,))[0]
    }
    assert len(shared) == 39  # every file but the edited one is linked
    old_files = store.root / "buildcache" / "files" / (first.diff_ids[-1][7:] + ".json")
    assert old_files.exists()
    old_blob = store.blob_size(first.diff_ids[-1])

    report = prune(store, build_cache=True)

    assert str(first.image_id) in report.deleted_images
    assert not old_dir.exists() and not old_files.exists()
    after = _files(new_dir)
    assert {rel: after[rel] for rel in shared} == shared  # the linked files live on
    # Reclaimed: the old blob and the old layer's own file, not the 39 shared ones.
    shared_bytes = sum(os.lstat(new_dir / rel).st_size for rel in shared)
    assert report.reclaimed < old_blob + shared_bytes
    assert report.reclaimed >= old_blob + len("original\n" * 100)
    assert store.verify() == []
    assert run_image(store, second.image_id, ["cat", "/data/d0/f0.bin"]) == (0, "edited\n")


def _add_layer_dir_top(store, image) -> Path:  # noqa: ANN001
    return store.unpacked_layers(list(image.diff_ids))[-1].path
