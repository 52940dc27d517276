"""Images in the store: write, look up (name, id, prefix, digest), tag, untag, remove, validate."""

from __future__ import annotations

import io
import json
import os

import pytest
from store_helpers import make_tar, simple_config, snapshot

from cache.digest import sha256_bytes
from cache.errors import AmbiguousImage, BadReference, ImageNotFound, InvalidImage
from cache.images import MEDIA_LAYER, MEDIA_MANIFEST, canonical_json, validate_image
from cache.index import ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME
from cache.store import Store


def layer(store: Store, name: str, data: bytes = b"x") -> str:
    return store.add_layer(io.BytesIO(make_tar({name: data}))).diff_id


def image(store: Store, n: int = 1, tags=(), author: str = "") -> object:
    ids = [layer(store, f"f{i}", f"{author}{i}".encode()) for i in range(n)]
    cfg = simple_config(n)
    if author:
        cfg["author"] = author
    return store.write_image(cfg, ids, tags=tags)


def test_write_image_blobs_and_ids(store: Store):
    img = image(store, 2, tags=["app:1"])
    config_bytes = store.read_blob(img.image_id)
    assert img.image_id == sha256_bytes(config_bytes)
    assert config_bytes == canonical_json(json.loads(config_bytes))
    assert json.loads(config_bytes)["rootfs"] == {"type": "layers", "diff_ids": list(img.diff_ids)}
    manifest = json.loads(store.read_blob(img.manifest_digest))
    assert manifest["mediaType"] == MEDIA_MANIFEST
    assert [la["mediaType"] for la in manifest["layers"]] == [MEDIA_LAYER] * 2
    assert [la["digest"] for la in manifest["layers"]] == list(img.diff_ids)
    assert list(manifest) == ["schemaVersion", "mediaType", "config", "layers"]
    assert img.tags == ("app:1",)
    assert img.size == sum(store.blob_size(d) for d in img.diff_ids)
    assert validate_image(manifest, img.config, img.image_id, store.blob_size) == list(img.diff_ids)


def test_same_input_same_ids(tmp_path):
    a = image(Store.open(tmp_path / "a"), 2, tags=["x"])
    b = image(Store.open(tmp_path / "b"), 2)
    assert (a.image_id, a.manifest_digest) == (b.image_id, b.manifest_digest)


def test_index_annotations(store: Store, store_root):
    img = image(store, tags=["busybox", "localhost:5000/app:1.0"])
    index = json.loads((store_root / "index.json").read_bytes())
    anns = [m.get("annotations", {}) for m in index["manifests"]]
    assert {
        ANNOTATION_REF_NAME: "busybox:latest",
        ANNOTATION_IMAGE_NAME: "docker.io/library/busybox:latest",
    } in anns
    assert {ANNOTATION_REF_NAME: "busybox"} in anns  # the short alias for :latest
    assert {
        ANNOTATION_REF_NAME: "localhost:5000/app:1.0",
        ANNOTATION_IMAGE_NAME: "localhost:5000/app:1.0",
    } in anns
    assert all(m["digest"] == img.manifest_digest for m in index["manifests"])
    assert store.get_image("busybox").tags == ("busybox:latest", "localhost:5000/app:1.0")


def test_lookup_by_name_id_prefix_and_digest(store: Store):
    img = image(store, tags=["me/app:1.0"])
    for key in [
        "me/app:1.0",
        "docker.io/me/app:1.0",
        img.image_id,
        img.image_id.hex,
        img.short_id,
        img.image_id.hex[:4],
        "sha256:" + img.image_id.hex[:8],
        img.manifest_digest,
        f"me/app@{img.manifest_digest}",
    ]:
        assert store.get_image(key).image_id == img.image_id, key
    for missing in ["me/app", "me/app:2.0", "other", "0" * 12, f"me/app@{sha256_bytes(b'n')}"]:
        if img.image_id.hex.startswith(missing):
            continue
        with pytest.raises(ImageNotFound, match="No such image"):
            store.get_image(missing)
    with pytest.raises(BadReference):
        store.get_image("Not A Name")


def test_ambiguous_prefix(store: Store):
    images = [image(store, author=str(i)) for i in range(40)]
    by_first: dict[str, list] = {}
    for img in images:
        by_first.setdefault(img.image_id.hex[0], []).append(img)
    first, group = next((k, v) for k, v in by_first.items() if len(v) > 1)
    with pytest.raises(AmbiguousImage, match="multiple IDs"):
        store.get_image(first)
    assert store.get_image(group[0].short_id).image_id == group[0].image_id


def test_untagged_images_are_kept_and_listed(store: Store):
    a = image(store, author="a")
    b = image(store, author="b", tags=["b"])
    listed = {i.image_id: i.tags for i in store.list_images()}
    assert listed == {a.image_id: (), b.image_id: ("b:latest",)}


def test_tag_moves_and_old_image_dangles(store: Store):
    a = image(store, author="a", tags=["app"])
    b = image(store, author="b")
    store.tag_image(b, "app:latest")
    listed = {i.image_id: i.tags for i in store.list_images()}
    assert listed == {a.image_id: (), b.image_id: ("app:latest",)}
    assert store.get_image("app").image_id == b.image_id
    # Tagging the same again changes nothing.
    store.tag_image(b.short_id, "app")
    assert {i.image_id: i.tags for i in store.list_images()} == listed


def test_tag_refuses_digest_and_unknown_image(store: Store):
    a = image(store, tags=["app"])
    with pytest.raises(BadReference, match="digest"):
        store.tag_image(a, f"app@{a.manifest_digest}")
    with pytest.raises(ImageNotFound):
        store.tag_image("feedface", "x")


def test_untag_and_remove(store: Store, store_root):
    a = image(store, tags=["app:1", "app:2"])
    assert store.untag("app:1").tags == ("app:2",)
    left = store.untag("app:2")
    assert left.tags == ()
    assert [i.image_id for i in store.list_images()] == [a.image_id]  # kept, untagged
    with pytest.raises(ImageNotFound):
        store.untag("app:2")
    store.remove_image(a)
    assert store.list_images() == []
    assert json.loads((store_root / "index.json").read_bytes())["manifests"] == []
    # Blobs stay until a prune.
    assert store.has_blob(a.image_id)
    with pytest.raises(ImageNotFound):
        store.remove_image(a)


def test_write_same_image_untagged_keeps_tags(store: Store):
    a = image(store, author="a", tags=["app"])
    again = store.write_image(a.config, list(a.diff_ids))
    assert again.image_id == a.image_id and again.tags == ("app:latest",)


def test_verbatim_config_bytes(store: Store):
    d = layer(store, "f")
    raw = json.dumps(
        {"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [d]}},
        indent=2,
    ).encode()
    img = store.write_image(raw, [d], tags=["raw"])
    assert img.image_id == sha256_bytes(raw)
    with pytest.raises(InvalidImage):
        store.write_image(raw, [], tags=["raw2"])


def test_readers_detect_corrupt_config(store: Store):
    img = image(store, tags=["app"])
    path = store.blob_path(img.image_id)
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b"amd64", b"arm64"))
    fresh = Store(store.root)  # no cache of verified blobs
    with pytest.raises(Exception, match="corrupt"):
        fresh.get_image("app")


def test_validate_image_refusals():
    d1, d2 = sha256_bytes(b"1"), sha256_bytes(b"2")
    cfg_digest = sha256_bytes(b"c")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": "x", "digest": cfg_digest, "size": 1},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": d1, "size": 1}],
    }
    good = {"rootfs": {"type": "layers", "diff_ids": [d1]}, "history": [{}]}
    assert validate_image(manifest, good, cfg_digest) == [d1]
    bad_cases = [
        (manifest, {"rootfs": {"type": "layers", "diff_ids": [d2]}}, "diff_id"),
        (manifest, {"rootfs": {"type": "layers", "diff_ids": [d1, d2]}}, "layers"),
        (manifest, {"rootfs": {"type": "x", "diff_ids": [d1]}}, "rootfs.type"),
        (manifest, good | {"history": [{}, {}]}, "history"),
        (manifest | {"schemaVersion": 1}, good, "schemaVersion"),
        (manifest | {"config": {"digest": d2}}, good, "config"),
    ]
    for m, c, match in bad_cases:
        with pytest.raises(InvalidImage, match=match):
            validate_image(m, c, cfg_digest)
    with pytest.raises(InvalidImage, match="bytes"):
        validate_image(manifest, good, cfg_digest, lambda d: 2)


def test_failed_write_leaves_store_unchanged(store: Store, store_root):
    image(store, tags=["app"])
    d = layer(store, "g")
    before = snapshot(store_root)
    cfg = simple_config(1) | {"history": "nope"}
    with pytest.raises(InvalidImage):
        store.write_image(cfg, [d], tags=["app"])
    assert snapshot(store_root) == before
