"""Images: the `Image` record, the fixed serializers for configs and manifests, `validate_image`.

An image in the store is an OCI manifest blob (uncompressed `application/vnd.oci.image.layer.v1.tar`
layers, so every layer digest is also its diff id) pointing at a config blob. The image id is the
config digest. Configs we write are serialized with sorted keys and compact separators, manifests
in the Go struct order of the image-spec; either way the same input always gives the same bytes,
so the same build gives the same ids on every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from cache.digest import EMPTY_TAR_DIFF_ID, DiffID, Digest, is_digest, sha256_bytes
from cache.errors import InvalidImage
from cache.records import field, record
from cache.refs import Reference, parse_reference

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
# Layer media types whose blob is the uncompressed tar (blob digest == diff id).
UNCOMPRESSED_LAYER_TYPES = frozenset(
    {
        MEDIA_LAYER,
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    }
)
MAX_JSON_BLOB = 8 << 20  # manifests and configs larger than this are refused


def canonical_json(obj: Any) -> bytes:
    """The fixed serializer for configs: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def ordered_json(obj: Any) -> bytes:
    """Compact JSON keeping the dict order as built (manifests are built in Go field order)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def parse_json_blob(data: bytes, what: str) -> dict:
    """Parse a JSON object blob, or raise `InvalidImage` naming `what`."""
    if len(data) > MAX_JSON_BLOB:
        raise InvalidImage(f"{what} is too large ({len(data)} bytes)")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise InvalidImage(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InvalidImage(f"{what} is not a JSON object")
    return obj


def descriptor(media_type: str, digest: str, size: int, annotations: dict | None = None) -> dict:
    """An OCI descriptor in the spec's field order."""
    d: dict[str, Any] = {"mediaType": media_type, "digest": str(digest), "size": size}
    if annotations:
        d["annotations"] = dict(annotations)
    return d


def make_manifest(
    config_digest: Digest, config_size: int, layers: Sequence[tuple[str, int]]
) -> dict:
    """An OCI image manifest for uncompressed layers given as (diff id, size), base first."""
    return {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, config_digest, config_size),
        "layers": [descriptor(MEDIA_LAYER, d, size) for d, size in layers],
    }


def non_empty_history(config: dict) -> int | None:
    """Number of history entries that made a layer, or None when the config has no history."""
    history = config.get("history")
    if history is None:
        return None
    if not isinstance(history, list):
        raise InvalidImage("config history is not a list")
    return sum(1 for h in history if not (isinstance(h, dict) and h.get("empty_layer")))


def config_diff_ids(config: dict) -> list[DiffID]:
    """`rootfs.diff_ids` of a config, checked (raises `InvalidImage`)."""
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidImage('config rootfs.type must be "layers"')
    ids = rootfs.get("diff_ids", [])
    if not isinstance(ids, list) or not all(isinstance(d, str) and is_digest(d) for d in ids):
        raise InvalidImage("config rootfs.diff_ids must be a list of sha256 digests")
    return [DiffID(d) for d in ids]


@record(frozen=True)
class Image:
    """One image of the store: its manifest and config, and the tags pointing at it.

    `diff_ids` are oldest layer first. `tags` are familiar names ("busybox:latest"), in index
    order. `config` and `manifest` are the parsed blobs; treat them as read-only.
    """

    image_id: Digest
    config: dict
    manifest_digest: Digest
    manifest: dict
    diff_ids: tuple[DiffID, ...]
    tags: tuple[str, ...] = ()
    layer_sizes: tuple[int, ...] = field(default=(), compare=False)

    def __hash__(self) -> int:
        # config and manifest are dicts (unhashable); the ids decide anyway.
        return hash((self.image_id, self.manifest_digest, self.tags))

    @property
    def id(self) -> Digest:
        return self.image_id

    @property
    def short_id(self) -> str:
        """Docker's 12-character id."""
        return self.image_id.short

    @property
    def created(self) -> str:
        """RFC 3339 creation time from the config ("" if absent)."""
        c = self.config.get("created")
        return c if isinstance(c, str) else ""

    @property
    def size(self) -> int:
        """Sum of the (uncompressed) layer sizes."""
        return sum(self.layer_sizes)

    @property
    def references(self) -> list[Reference]:
        return [parse_reference(t) for t in self.tags]

    @property
    def repo_digests(self) -> list[str]:
        """name@<manifest digest> for each repository the image is tagged in."""
        seen: list[str] = []
        for ref in self.references:
            rd = f"{ref.familiar_name}@{self.manifest_digest}"
            if rd not in seen:
                seen.append(rd)
        return seen

    @property
    def history(self) -> list[dict]:
        h = self.config.get("history")
        return list(h) if isinstance(h, list) else []

    def with_tags(self, tags: Sequence[str]) -> Image:
        return Image(
            self.image_id,
            self.config,
            self.manifest_digest,
            self.manifest,
            self.diff_ids,
            tuple(tags),
            self.layer_sizes,
        )


def validate_image(
    manifest: dict,
    config: dict,
    config_digest: str,
    blob_size: Callable[[str], int] | None = None,
) -> list[DiffID]:
    """Check that a manifest, its config and the stored blobs agree; returns the diff ids.

    - the manifest is an OCI image manifest whose config descriptor is `config_digest`;
    - layers and `rootfs.diff_ids` have the same length, and for uncompressed layers the blob
      digest equals the diff id;
    - the history (when present) has one non-empty entry per layer;
    - with `blob_size` (digest -> size, raising `BlobNotFound`), every blob exists with the size
      its descriptor announces.

    Raises `InvalidImage` (or `BlobNotFound`) naming the first problem found.
    """
    if manifest.get("schemaVersion") != 2:
        raise InvalidImage("manifest schemaVersion is not 2")
    mt = manifest.get("mediaType", MEDIA_MANIFEST)
    if mt not in (MEDIA_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"):
        raise InvalidImage(f"unsupported manifest media type {mt!r}")
    cdesc = manifest.get("config")
    if not isinstance(cdesc, dict) or cdesc.get("digest") != config_digest:
        raise InvalidImage(f"manifest config descriptor does not point at {config_digest}")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise InvalidImage("manifest layers is not a list")
    diff_ids = config_diff_ids(config)
    if len(layers) != len(diff_ids):
        raise InvalidImage(
            f"manifest has {len(layers)} layers but config rootfs.diff_ids has {len(diff_ids)}"
        )
    for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        if not isinstance(layer, dict) or not is_digest(layer.get("digest", "")):
            raise InvalidImage(f"manifest layer {i} has no valid digest")
        if not isinstance(layer.get("size"), int) or layer["size"] < 0:
            raise InvalidImage(f"manifest layer {i} has no valid size")
        if layer.get("mediaType") in UNCOMPRESSED_LAYER_TYPES and layer["digest"] != diff_id:
            raise InvalidImage(
                f"layer {i}: blob {layer['digest']} is uncompressed but config diff_id is {diff_id}"
            )
    empties = non_empty_history(config)
    if empties is not None and empties != len(diff_ids):
        raise InvalidImage(
            f"config history has {empties} non-empty entries but the image has {len(diff_ids)} layers"
        )
    if blob_size is not None:
        for what, desc in [("config", cdesc)] + [(f"layer {i}", la) for i, la in enumerate(layers)]:
            size = blob_size(desc["digest"])
            if desc.get("size") != size:
                raise InvalidImage(
                    f"{what} blob {desc['digest']} is {size} bytes, descriptor says {desc.get('size')}"
                )
    return diff_ids


def prepare_config(config: dict, diff_ids: Sequence[str]) -> dict:
    """A copy of `config` with `rootfs` set to `diff_ids` (checked against any rootfs given)."""
    out = dict(config)
    wanted = {"type": "layers", "diff_ids": [str(d) for d in diff_ids]}
    rootfs = out.get("rootfs")
    if rootfs is not None and rootfs != wanted:
        raise InvalidImage(
            "config rootfs.diff_ids does not match the layers given "
            f"({len((rootfs or {}).get('diff_ids') or [])} vs {len(diff_ids)})"
        )
    out["rootfs"] = wanted
    return out


def is_empty_layer(diff_id: str) -> bool:
    """True for the empty tar (Docker records such a step as `empty_layer`)."""
    return diff_id == EMPTY_TAR_DIFF_ID


def config_digest_of(data: bytes) -> Digest:
    return sha256_bytes(data)
