"""Store.write_layer_tree: our own tar writer straight into the blob staging file.

The blob must be exactly what `write_layer` gives into memory (one hash, taken by the writer,
is the blob digest and the diff id), and a writer failing halfway must leave the store as it
was: no blob, no staging file.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from cache.errors import DigestMismatch
from cache.tarwriter import LayerWriteError, write_layer
from tests.store_helpers import snapshot


def _tree(root: Path) -> Path:
    src = root / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "motd").write_bytes(b"hello\n")
    # Bigger than the writer's gather buffer, so it is streamed in chunks.
    (src / "big.bin").write_bytes(os.urandom(3 << 20))
    (src / "bin").mkdir()
    (src / "bin" / "sh").write_bytes(b"#!\n" * 100)
    os.chmod(src / "bin" / "sh", 0o4755)
    os.link(src / "bin" / "sh", src / "bin" / "ash")
    os.symlink("sh", src / "bin" / "bash")
    os.chown(src / "etc" / "motd", 12, 34)
    for p in (src / "etc" / "motd", src / "big.bin"):
        os.utime(p, (1_700_000_123, 1_700_000_123))
    return src


@pytest.mark.parametrize("sde", [None, 1_600_000_000])
def test_written_layer_equals_write_layer_bytes(store, tmp_path: Path, sde: int | None) -> None:
    src = _tree(tmp_path)
    mem = io.BytesIO()
    stats = write_layer(src, mem, source_date_epoch=sde)

    info = store.write_layer_tree(src, source_date_epoch=sde)

    blob = store.blob_path(info.diff_id).read_bytes()
    assert blob == mem.getvalue()
    assert info.diff_id == stats.diff_id
    assert info.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert info.size == len(blob) == stats.size
    assert os.stat(store.blob_path(info.diff_id)).st_mode & 0o777 == 0o444
    # A layer the store can hand out and unpack like any other.
    with store.layer_tar(info.diff_id) as r:
        r.read_all_and_verify()
    assert store.unpacked_lowers([info.diff_id])
    assert store.verify() == []
    assert os.listdir(store.root / "tmp") == []


def test_writer_failing_halfway_leaves_nothing(store, tmp_path: Path) -> None:
    src = _tree(tmp_path)
    # An overlay upper whose last folder carries a redirect xattr: the writer has already
    # written (and flushed) big.bin when it reaches it and refuses.
    (src / "zz").mkdir()
    (src / "zz" / "moved").mkdir()
    os.setxattr(src / "zz" / "moved", "trusted.overlay.redirect", b"/elsewhere")
    before = snapshot(store.root)
    with pytest.raises(LayerWriteError, match="redirect"):
        store.write_layer_tree(src, overlay_upper=True)
    assert snapshot(store.root) == before
    assert os.listdir(store.root / "tmp") == []


def test_producer_raising_halfway_leaves_nothing(store) -> None:
    before = snapshot(store.root)

    def produce(out):  # noqa: ANN001, ANN202
        out.write(os.urandom(4 << 20))
        out.flush()
        assert os.listdir(store.root / "tmp")  # it really was writing into staging
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.blobs.stage_written(produce, kind="layer")
    assert snapshot(store.root) == before


def test_producer_miscounting_is_refused(store) -> None:
    before = snapshot(store.root)

    def produce(out):  # noqa: ANN001, ANN202
        out.write(b"x" * 1000)
        return "sha256:" + hashlib.sha256(b"x" * 999).hexdigest(), 999

    with pytest.raises(DigestMismatch):
        store.blobs.stage_written(produce, kind="layer")
    assert snapshot(store.root) == before


def test_build_layer_is_written_directly(busybox_store, tmp_path: Path) -> None:
    """A COPY layer made by pybuild is byte-for-byte the writer's tar of its unpacked dir."""
    from tests.build_helpers import build_ctx

    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY app/ /app/\n")
    image = build_ctx(busybox_store, ctx, source_date_epoch=1_600_000_000).image
    top = image.diff_ids[-1]
    unpacked = busybox_store.unpacked_layers(list(image.diff_ids))[-1]
    mem = io.BytesIO()
    write_layer(unpacked.path, mem, source_date_epoch=1_600_000_000)
    assert busybox_store.blob_path(top).read_bytes() == mem.getvalue()
