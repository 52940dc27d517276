"""A build holds a store lease: a prune run by another process while a step runs removes
nothing the build adds, reuses from the cache or starts from, and the image comes out whole."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from build_helpers import Recorder, build_ctx, image_view, write_files

from cache.images import validate_image

PRUNE = (
    "import sys\n"
    "from cache.prune import prune\n"
    "from cache.store import Store\n"
    "r = prune(Store.open(sys.argv[1]), all_images=True)\n"
    "print(len(r.deleted_images))\n"
)


def test_prune_from_another_process_during_a_build(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nRUN echo a > /a\n"})
    build_ctx(busybox_store, ctx)  # untagged: its layer is only in the build cache
    text = (
        "FROM busybox\n"
        "RUN echo a > /a\n"  # a cache hit on that layer
        "RUN echo b > /b\n"  # a new layer, before the prune
        "RUN sleep 3 && echo c > /c\n"  # the prune runs during this step
    )
    progress = Recorder()
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = build_ctx(
                busybox_store, ctx, text, progress=progress, tags=["leased:1"]
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not any("sleep 3" in t for t in progress.kinds("started")):
            assert thread.is_alive(), outcome
            assert time.monotonic() < deadline, "the sleeping step never started"
            time.sleep(0.05)
        pruned = subprocess.run(
            [sys.executable, "-c", PRUNE, str(busybox_store.root)],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        thread.join(120)
    assert pruned.returncode == 0, pruned.stderr
    # The prune did run and removed images: the first build's and busybox itself.
    assert int(pruned.stdout.strip()) >= 2
    assert "error" not in outcome, outcome.get("error")
    res = outcome["result"]
    image = busybox_store.get_image("leased:1")
    manifest = json.loads(busybox_store.read_blob(image.manifest_digest))
    config = json.loads(busybox_store.read_blob(image.image_id))
    assert validate_image(manifest, config, str(image.image_id), busybox_store.blob_size) == list(
        image.diff_ids
    )
    assert busybox_store.verify() == []
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/a") == "a\n"
    assert view.read_text("/b") == "b\n"
    assert view.read_text("/c") == "c\n"
    assert view.lstat("/bin/sh") is not None  # the base image's layer is whole too
