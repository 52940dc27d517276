"""A writer killed at any point leaves a consistent store, and the next run finishes the job.

The writer runs in a subprocess with $PYDOCK_CRASH_AT naming the point where it dies with
`os._exit(137)` (as under kill -9): no cleanup handlers, no finally blocks.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cache.store import Store

WRITER = """
import io, sys, tarfile
from cache.store import Store
store = Store.open(sys.argv[1])
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tf:
    ti = tarfile.TarInfo("crash.txt"); ti.size = 6; tf.addfile(ti, io.BytesIO(b"crash!"))
buf.seek(0)
info = store.add_layer(buf)
base = store.get_image("busybox")
cfg = dict(base.config)
cfg.pop("rootfs")
cfg["history"] = base.history + [{"created_by": "crash test"}]
img = store.write_image(cfg, list(base.diff_ids) + [info.diff_id], tags=["crash:1"])
store.unpacked_lowers(img.diff_ids)
print("done")
"""

POINTS = ["blob-staged", "blob-committed", "index-staged", "unpack-staged", "unpack-renamed"]


def run_writer(root: Path, crash_at: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYDOCK_CRASH_AT", None)
    if crash_at:
        env["PYDOCK_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-c", WRITER, str(root)], env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("point", POINTS)
def test_crash_leaves_consistent_store(busybox_store: Store, point: str):
    root = busybox_store.root
    busybox_id = busybox_store.get_image("busybox").image_id
    p = run_writer(root, point)
    assert p.returncode == 137, p.stderr
    # Whatever state the crash left is consistent, and the next open cleans the staging.
    store = Store.open(root)
    assert os.listdir(root / "tmp") == []
    assert store.verify() == []
    assert store.get_image("busybox").image_id == busybox_id
    tags = {t for img in store.list_images() for t in img.tags}
    assert tags <= {"busybox:latest", "crash:1"}
    # Running again completes the work.
    p = run_writer(root, None)
    assert p.returncode == 0 and "done" in p.stdout, p.stderr
    store = Store(root)
    img = store.get_image("crash:1")
    lowers = store.unpacked_lowers(img.diff_ids)
    assert (lowers[-1] / "crash.txt").read_bytes() == b"crash!"
    assert store.verify() == []
    assert os.listdir(root / "tmp") == []


def test_verify_reports_damage(busybox_store: Store):
    img = busybox_store.get_image("busybox")
    busybox_store.unpacked_lowers(img.diff_ids)
    assert busybox_store.verify() == []
    path = busybox_store.blob_path(img.diff_ids[0])
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(100_000)
        f.write(b"X")
    (busybox_store.root / "l" / "DANGLINGLINK").symlink_to("../layers/nothing/diff")
    problems = busybox_store.verify()
    assert any("corrupt" in p for p in problems)
    assert any("DANGLINGLINK" in p for p in problems)


def test_verify_reports_broken_layer_records(store: Store):
    from store_helpers import make_tar

    ids = [store.add_layer(io.BytesIO(make_tar({f"f{i}": b"x"}))).diff_id for i in range(3)]
    layers = store.unpacked_layers(ids)
    assert store.verify() == []
    os.unlink(store.root / "l" / layers[0].short)
    record = store.root / "layers" / layers[2].chain_id.hex / "layer.json"
    meta = json.loads(record.read_bytes())
    meta["diff_id"] = ids[0]
    record.write_text(json.dumps(meta))
    problems = store.verify()
    assert any("short link" in p and layers[0].chain_id.hex in p for p in problems)
    assert any("does not match" in p and layers[2].chain_id.hex in p for p in problems)
