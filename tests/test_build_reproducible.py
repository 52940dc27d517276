"""SOURCE_DATE_EPOCH: two --no-cache builds give one image digest."""

from __future__ import annotations

import time

from build_helpers import build_ctx, write_files

DOCKERFILE = """\
FROM busybox
WORKDIR /w
COPY . /w/
RUN echo hi > /w/when && mkdir -p /w/new/dir && touch /w/new/dir/f
ENV X=1
CMD ["sh"]
"""


def test_two_no_cache_builds_give_one_digest(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": DOCKERFILE, "a.txt": "a\n", "sub/b.txt": "b\n"})
    first = build_ctx(busybox_store, ctx, no_cache=True, source_date_epoch=1700000000)
    time.sleep(1.1)  # a new second: any clock leak would change a timestamp
    (ctx / "a.txt").touch()
    second = build_ctx(busybox_store, ctx, no_cache=True, source_date_epoch=1700000000)
    assert first.image_id == second.image_id
    img = busybox_store.get_image(first.image_id)
    assert img.config["created"] == "2023-11-14T22:13:20Z"
    new = img.config["history"][1:]
    assert {h["created"] for h in new} == {"2023-11-14T22:13:20Z"}
    # Every mtime in the new layers is clamped.
    import tarfile

    for diff_id in img.diff_ids[1:]:
        with busybox_store.layer_tar(diff_id) as f, tarfile.open(fileobj=f, mode="r|") as tf:
            for member in tf:
                assert member.mtime <= 1700000000, member.name


def test_without_epoch_the_cached_rebuild_keeps_the_id(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": DOCKERFILE, "a.txt": "a\n"})
    first = build_ctx(busybox_store, ctx)
    second = build_ctx(busybox_store, ctx)
    assert first.image_id == second.image_id
