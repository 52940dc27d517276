"""ROOT/index.json: the list of images the store keeps, and their tags.

index.json is an OCI image index. Each tagged image has one manifest descriptor per tag, with
two annotations:

- `org.opencontainers.image.ref.name` = the familiar reference, "busybox:latest" or
  "localhost:5000/app:1.0". skopeo's `oci:` transport splits `oci:PATH:IMAGE` at the first
  colon after the path and compares IMAGE with this annotation exactly, so
  `skopeo inspect oci:ROOT:busybox:latest` (and `umoci unpack --image ROOT:busybox:latest`)
  find it. (Docker's `docker save` puts only the tag there, which is ambiguous as soon as two
  repositories share a tag, so a multi-repository store cannot.)
- `io.containerd.image.name` = the fully qualified reference, "docker.io/library/busybox:latest",
  as Docker and containerd write it.
- A ":latest" tag gets a second descriptor (same manifest) whose ref.name is the bare
  repository, "busybox", without `io.containerd.image.name`, so `skopeo inspect oci:ROOT:busybox`
  works too, as the Docker short form suggests. Reading folds it back into the one tag.

An image kept without any tag (a build result, or an image whose tag moved elsewhere: Docker's
"dangling" `<none>:<none>`) has exactly one descriptor without those annotations. An image is in
the store exactly when some descriptor names its manifest.

The file is never edited in place: writers (holding the store lock) build a new `Index` and
replace the file by rename.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from cache.digest import Digest, is_digest
from cache.errors import StoreError
from cache.images import MEDIA_INDEX, MEDIA_MANIFEST, descriptor, ordered_json
from cache.records import field, record
from cache.refs import DEFAULT_TAG, Reference, parse_reference

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"


class CorruptIndex(StoreError):
    """index.json cannot be read as an OCI image index."""


@record(frozen=True)
class Entry:
    """One descriptor of index.json: a manifest and at most one tag."""

    manifest_digest: Digest
    manifest_size: int
    tag: str | None = None  # familiar reference, e.g. "busybox:latest"
    extra: dict = field(default_factory=dict, compare=False)  # other descriptor fields kept

    def to_descriptor(self) -> dict:
        annotations = dict(self.extra.get("annotations") or {})
        annotations.pop(ANNOTATION_REF_NAME, None)
        annotations.pop(ANNOTATION_IMAGE_NAME, None)
        if self.tag is not None:
            ref = parse_reference(self.tag)
            annotations[ANNOTATION_IMAGE_NAME] = ref.full
            annotations[ANNOTATION_REF_NAME] = ref.familiar
        d = descriptor(
            self.extra.get("mediaType", MEDIA_MANIFEST),
            self.manifest_digest,
            self.manifest_size,
            annotations,
        )
        for k, v in self.extra.items():
            if k not in ("mediaType", "digest", "size", "annotations"):
                d[k] = v
        return d


def _tag_of(desc: dict) -> str | None:
    ann = desc.get("annotations") or {}
    for key in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME):
        v = ann.get(key)
        if isinstance(v, str) and v:
            try:
                ref = parse_reference(v)
            except StoreError:
                continue
            if ref.tag is not None and ref.digest is None:
                return ref.familiar
    return None


def _descriptors(e: Entry) -> list[dict]:
    """The descriptors written for an entry: a ":latest" tag gets a second one whose ref.name
    is the bare repository ("busybox"), so `oci:ROOT:busybox` works in skopeo as well."""
    d = e.to_descriptor()
    if e.tag is None:
        return [d]
    ref = parse_reference(e.tag)
    if ref.tag != DEFAULT_TAG:
        return [d]
    alias = dict(d)
    alias["annotations"] = {
        k: v
        for k, v in d["annotations"].items()
        if k not in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME)
    }
    alias["annotations"][ANNOTATION_REF_NAME] = ref.familiar_name
    return [d, alias]


def _normalised(entries: list[Entry]) -> Index:
    """Drop duplicate descriptors and untagged ones of images that have a tag; keep one
    untagged descriptor for an image that has none."""
    tagged = {e.manifest_digest for e in entries if e.tag is not None}
    out: list[Entry] = []
    seen: set[tuple[str, str | None]] = set()
    for e in entries:
        key = (e.manifest_digest, e.tag)
        if key in seen or (e.tag is None and e.manifest_digest in tagged):
            continue
        seen.add(key)
        out.append(e)
    return Index(tuple(out))


@record(frozen=True)
class Index:
    """An immutable view of index.json; the mutators return a new Index."""

    entries: tuple[Entry, ...] = ()

    # ---- reading -----------------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes, where: str = "index.json") -> Index:
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise CorruptIndex(f"{where}: not valid JSON: {e}") from None
        if not isinstance(obj, dict) or obj.get("schemaVersion") != 2:
            raise CorruptIndex(f"{where}: not an OCI image index (schemaVersion 2)")
        manifests = obj.get("manifests") or []
        if not isinstance(manifests, list):
            raise CorruptIndex(f"{where}: manifests is not a list")
        entries = []
        for i, desc in enumerate(manifests):
            if not isinstance(desc, dict) or not is_digest(desc.get("digest", "")):
                raise CorruptIndex(f"{where}: manifests[{i}] has no valid sha256 digest")
            size = desc.get("size")
            if not isinstance(size, int) or size < 0:
                raise CorruptIndex(f"{where}: manifests[{i}] has no valid size")
            # Nested indexes and artifacts are kept as they are (the spec says to tolerate
            # them); `image_entries` leaves them out.
            entries.append(Entry(Digest(desc["digest"]), size, _tag_of(desc), dict(desc)))
        # The alias descriptors written for ":latest" tags parse to the same tag: fold them.
        return _normalised(entries)

    @classmethod
    def load(cls, path: Path) -> Index:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls()
        return cls.parse(data, str(path))

    def to_bytes(self) -> bytes:
        obj = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [d for e in self.entries for d in _descriptors(e)],
        }
        return ordered_json(obj) + b"\n"

    def image_entries(self) -> list[Entry]:
        return [
            e for e in self.entries if e.extra.get("mediaType", MEDIA_MANIFEST) == MEDIA_MANIFEST
        ]

    def manifests(self) -> list[Digest]:
        """Manifest digests of the images, each once, in index order."""
        seen: dict[Digest, None] = {}
        for e in self.image_entries():
            seen.setdefault(e.manifest_digest, None)
        return list(seen)

    @cached_property
    def _tags_by_manifest(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in self.entries:
            if e.tag is not None:
                out.setdefault(e.manifest_digest, []).append(e.tag)
        return out

    def tags_of(self, manifest: str) -> list[str]:
        return list(self._tags_by_manifest.get(manifest, ()))

    def manifest_of_tag(self, ref: Reference | str) -> Digest | None:
        tag = ref.familiar if isinstance(ref, Reference) else parse_reference(ref).familiar
        for e in self.entries:
            if e.tag == tag:
                return e.manifest_digest
        return None

    def has_manifest(self, manifest: str) -> bool:
        return any(e.manifest_digest == manifest for e in self.entries)

    def size_of(self, manifest: str) -> int | None:
        for e in self.entries:
            if e.manifest_digest == manifest:
                return e.manifest_size
        return None

    # ---- changing (each returns a new Index) -------------------------------------------
    def add_image(self, manifest: Digest, size: int) -> Index:
        """Keep an image (untagged unless it already has tags)."""
        if self.has_manifest(manifest):
            return self
        return _normalised([*self.entries, Entry(manifest, size)])

    def set_tag(self, ref: Reference | str, manifest: Digest, size: int) -> Index:
        """Point `ref` at `manifest`; an image losing its last tag stays, untagged."""
        tag = ref.familiar if isinstance(ref, Reference) else parse_reference(ref).familiar
        entries: list[Entry] = []
        for e in self.entries:
            if e.tag == tag:
                if e.manifest_digest == manifest:
                    return self
                # The old image keeps a record: it becomes dangling, as in Docker.
                entries.append(Entry(e.manifest_digest, e.manifest_size, None, e.extra))
            else:
                entries.append(e)
        entries.append(Entry(manifest, size, tag))
        return _normalised(entries)

    def remove_tag(self, ref: Reference | str) -> Index:
        tag = ref.familiar if isinstance(ref, Reference) else parse_reference(ref).familiar
        entries = [
            Entry(e.manifest_digest, e.manifest_size, None, e.extra) if e.tag == tag else e
            for e in self.entries
        ]
        return _normalised(entries)

    def remove_manifest(self, manifest: str) -> Index:
        return Index(tuple(e for e in self.entries if e.manifest_digest != manifest))
