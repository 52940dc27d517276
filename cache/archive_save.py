"""Writing image archives (`pydock save`): Docker >= 25 layout, or a plain OCI layout.

The Docker layout is at the same time an OCI image layout: `oci-layout`, `index.json`,
`blobs/sha256/<hex>`, plus Docker's `manifest.json` and `repositories` (left out with
`fmt="oci"`). Blobs are the store's own bytes (uncompressed layers, so layer digest == diff
id), so the manifest digests are kept; every blob is checked against its digest as it is
copied. Entries are written in a fixed order with fixed metadata, so the same images always
give the same archive bytes.
"""

from __future__ import annotations

import json
import os
import tarfile
from typing import Any, BinaryIO

from cache.digest import Hasher, sha256_bytes
from cache.errors import PydockError

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"


class SaveError(PydockError):
    """An archive that cannot be written: unknown format, a missing or corrupt blob."""


def select_for_save(store: Any, names: list[str]) -> list[tuple[Any, list[str]]]:
    """(image, tags) per name, as `docker save`: a tag saves that tag, a bare repository name
    saves all its tags, an id saves the image untagged."""
    from cache.refs import try_parse_reference

    out: dict[str, tuple[Any, list[str]]] = {}
    for name in names:
        ref = try_parse_reference(name, default_tag=False)
        pairs: list[tuple[Any, str | None]] = []
        if ref is not None and ref.tag is None and ref.digest is None:
            for img in store.list_images():
                for t in img.tags:
                    tref = try_parse_reference(t)
                    if tref is not None and tref.name == ref.name:
                        pairs.append((img, t))
        if not pairs:
            img = store.get_image(name)
            tagged = (
                ref is not None and ref.digest is None and str(ref.with_default_tag()) in img.tags
            )
            pairs.append((img, str(ref.with_default_tag()) if tagged else None))
        for img, t in pairs:
            entry = out.setdefault(str(img.image_id), (img, []))
            if t and t not in entry[1]:
                entry[1].append(t)
    return list(out.values())


def _tar_info(name: str, size: int, *, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if is_dir else size
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _HashingReader:
    """Reads a blob file for the tar writer and checks its digest once all of it was read."""

    def __init__(self, f: BinaryIO, digest: str) -> None:
        self.f = f
        self.digest = digest
        self.h = Hasher()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data

    def check(self) -> None:
        if str(self.h.digest()) != self.digest:
            raise SaveError(
                f"blob {self.digest} in the store is corrupt (hashes to {self.h.digest()})"
            )


def save_images(
    store: Any, selections: list[tuple[Any, list[str]]], out: BinaryIO, *, fmt: str = "docker"
) -> None:
    """Write an archive of images to `out`.

    `selections` are (image, tags to record) pairs, in command-line order; `fmt` is "docker"
    (Docker >= 25 layout: OCI layout plus manifest.json and repositories) or "oci".
    """
    from cache.refs import parse_reference

    if fmt not in ("docker", "oci"):
        raise SaveError(f"unknown archive format {fmt!r} (want docker or oci)")
    index_descs: list[dict] = []
    manifest_items: list[dict] = []
    repositories: dict[str, dict[str, str]] = {}
    blobs: list[str] = []  # in the order written, no repeats

    def want(d: str) -> None:
        if d not in blobs:
            blobs.append(d)

    for image, tags in selections:
        md = str(image.manifest_digest)
        manifest_bytes = _store_blob_bytes(store, md)
        manifest = json.loads(manifest_bytes)
        config_digest = manifest["config"]["digest"]
        layer_digests = [ld["digest"] for ld in manifest.get("layers") or []]
        for d in [md, config_digest, *layer_digests]:
            want(d)
        base = {
            "mediaType": manifest.get("mediaType", MEDIA_MANIFEST),
            "digest": md,
            "size": len(manifest_bytes),
        }
        refs = [parse_reference(t) for t in tags]
        if not refs:
            index_descs.append(base)
        for ref in refs:
            tag_name = ref.tag if fmt == "docker" else str(ref)
            index_descs.append(
                {
                    **base,
                    "annotations": {ANNOTATION_IMAGE_NAME: ref.full, ANNOTATION_REF_NAME: tag_name},
                }
            )
            if layer_digests:
                repositories.setdefault(ref.familiar_name, {})[ref.tag] = image.diff_ids[-1].split(
                    ":", 1
                )[1]
        manifest_items.append(
            {
                "Config": f"blobs/sha256/{config_digest.split(':', 1)[1]}",
                "RepoTags": [str(r) for r in refs] or None,
                "Layers": [f"blobs/sha256/{d.split(':', 1)[1]}" for d in layer_digests],
            }
        )

    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index_descs}
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:

        def add_bytes(name: str, data: bytes) -> None:
            import io

            tf.addfile(_tar_info(name, len(data)), io.BytesIO(data))

        tf.addfile(_tar_info("blobs", 0, is_dir=True))
        tf.addfile(_tar_info("blobs/sha256", 0, is_dir=True))
        for d in blobs:
            path = store.blob_path(d)
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                raise SaveError(f"blob {d} is missing from the store") from None
            with f:
                size = os.fstat(f.fileno()).st_size
                reader = _HashingReader(f, d)
                tf.addfile(_tar_info(f"blobs/sha256/{d.split(':', 1)[1]}", size), reader)
                reader.check()
        add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
        if fmt == "docker":
            items = []
            for item in manifest_items:
                if item["RepoTags"] is None:
                    item = {k: v for k, v in item.items() if k != "RepoTags"}
                items.append(item)
            add_bytes("manifest.json", json.dumps(items, separators=(",", ":")).encode())
            if repositories:
                add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())
        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')


def _store_blob_bytes(store: Any, digest: str) -> bytes:
    reader = getattr(store, "read_blob", None)
    if reader is not None:
        return reader(digest)
    data = store.blob_path(digest).read_bytes()
    if str(sha256_bytes(data)) != digest:
        raise SaveError(f"blob {digest} in the store is corrupt")
    return data
