"""Docker-shaped views of stored images: `inspect` JSON, `images` rows, `history` rows.

Everything here reads `Image` records (image id, parsed config, manifest digest, diff ids,
tags) and the store for layer sizes; nothing writes. The shapes follow what `docker image
inspect`, `docker images` and `docker history` show, so scripts written against Docker keep
working. Human-readable sizes and ages are the front end's job: rows carry raw numbers.

`render_template` (from cache/gotemplate.py) runs the `--format` Go templates.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, NamedTuple

# Docker prints "<missing>" for history rows that are not an image of their own.
MISSING = "<missing>"
NONE = "<none>"

# Config keys Docker always shows in `inspect`, in Docker's order, with their empty values.
_CONFIG_KEYS: list[tuple[str, Any]] = [
    ("Hostname", ""),
    ("Domainname", ""),
    ("User", ""),
    ("AttachStdin", False),
    ("AttachStdout", False),
    ("AttachStderr", False),
    ("ExposedPorts", None),
    ("Tty", False),
    ("OpenStdin", False),
    ("StdinOnce", False),
    ("Env", None),
    ("Cmd", None),
    ("Healthcheck", None),
    ("ArgsEscaped", None),
    ("Image", ""),
    ("Volumes", None),
    ("WorkingDir", ""),
    ("Entrypoint", None),
    ("OnBuild", None),
    ("Labels", None),
    ("StopSignal", None),
    ("Shell", None),
]
# Shown only when set (Docker's omitempty fields).
_OMIT_EMPTY = {"ExposedPorts", "Healthcheck", "ArgsEscaped", "StopSignal", "Shell"}


# --- small field helpers ----------------------------------------------------------------------


def short_id(image_id: str) -> str:
    """Docker's 12-hex short id of "sha256:<hex>"."""
    return image_id.split(":", 1)[-1][:12]


def parse_created(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (nanosecond fractions tolerated), or None."""
    if not text or not isinstance(text, str):
        return None
    m = re.match(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:?\d\d)?$", text.strip())
    if not m:
        return None
    tz = m.group(4) or "Z"
    tz = "+00:00" if tz == "Z" else tz
    try:
        base = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{tz}")
    except ValueError:
        return None
    frac = float("0" + m.group(3)) if m.group(3) else 0.0
    return base.timestamp() + frac


def docker_time(text: str | None) -> str:
    """Docker's `CreatedAt` form: "2024-01-02 03:04:05 +0000 UTC" ("" when unknown)."""
    ts = parse_created(text)
    if ts is None:
        return ""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def _repo_and_tag(ref: Any) -> tuple[str, str]:
    """(repository, tag) of a tag reference in its familiar form ("busybox", "latest")."""
    text = str(ref)
    name, tag = text, NONE
    if "@" in name:
        name = name.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    t = getattr(ref, "tag", None)
    if isinstance(t, str) and t:
        tag = t
    return name, tag


def _tags(image: Any) -> list[str]:
    return [str(t) for t in (getattr(image, "tags", None) or [])]


class ImageSummary(NamedTuple):
    """What `pydock images` needs of one image, read straight from the OCI layout."""

    image_id: str
    config: dict
    manifest_digest: str
    diff_ids: tuple[str, ...]
    tags: tuple[str, ...]
    layer_sizes: tuple[int, ...]

    @property
    def size(self) -> int:
        return sum(self.layer_sizes)


_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class _NotSimple(Exception):
    """The fast listing met something it leaves to the store (which explains errors)."""


def _read_verified(blobs: str, digest: str) -> bytes:
    import hashlib

    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise _NotSimple(digest)
    try:
        with open(f"{blobs}/{digest[7:]}", "rb") as f:
            data = f.read()
    except OSError:
        raise _NotSimple(digest) from None
    if hashlib.sha256(data).hexdigest() != digest[7:]:
        raise _NotSimple(digest)
    return data


def list_images_fast(root: str) -> list[ImageSummary] | None:
    """Every image of the store at `root`, in index order, read with plain file reads.

    `pydock images` must answer quickly over hundreds of images, and importing the whole store
    machinery costs more than the listing itself. This reads the OCI layout directly
    (index.json, then each manifest and config blob, each checked against its digest) and
    returns None whenever anything is unusual, so that the caller falls back to
    `Store.list_images()`, which validates fully and reports the problem.
    """
    blobs = f"{root}/blobs/sha256"
    try:
        with open(f"{root}/index.json", "rb") as f:
            index = json.loads(f.read())
        order: list[str] = []
        tags: dict[str, list[str]] = {}
        for desc in index.get("manifests") or []:
            if desc.get("mediaType", _MANIFEST) != _MANIFEST:
                raise _NotSimple("not only image manifests")
            digest = desc["digest"]
            if digest not in tags:
                order.append(digest)
                tags[digest] = []
            ann = desc.get("annotations") or {}
            name = ann.get("org.opencontainers.image.ref.name")
            if name is None and ann.get("io.containerd.image.name"):
                raise _NotSimple("full name only")
            if name is None:
                continue
            if "@" in name or name.startswith(("docker.io/", "index.docker.io/", "library/")):
                raise _NotSimple(name)  # not the familiar form the store writes
            if ":" not in name.rsplit("/", 1)[-1]:
                name += ":latest"  # the store's alias descriptor of a ":latest" tag
            if name not in tags[digest]:
                tags[digest].append(name)
        out = []
        for digest in order:
            manifest = json.loads(_read_verified(blobs, digest))
            config_digest = manifest["config"]["digest"]
            config = json.loads(_read_verified(blobs, config_digest))
            layers = manifest.get("layers") or []
            diff_ids = tuple((config.get("rootfs") or {}).get("diff_ids") or ())
            if len(layers) != len(diff_ids):
                raise _NotSimple(digest)
            out.append(
                ImageSummary(
                    config_digest,
                    config,
                    digest,
                    diff_ids,
                    tuple(tags[digest]),
                    tuple(int(ld["size"]) for ld in layers),
                )
            )
        return out
    except (_NotSimple, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def layer_sizes(store: Any, image: Any) -> list[int]:
    """Size in bytes of each layer tar of `image`, oldest first (0 for a missing blob)."""
    known = getattr(image, "layer_sizes", None)
    if known and len(known) == len(image.diff_ids):
        return list(known)
    out = []
    for d in image.diff_ids:
        try:
            out.append(store.blob_path(d).stat().st_size)
        except OSError:
            out.append(0)
    return out


def image_size(store: Any, image: Any) -> int:
    """The image's size: the sum of its (uncompressed) layer tars."""
    return sum(layer_sizes(store, image))


def repo_digests(image: Any) -> list[str]:
    """`name@<manifest digest>` for each repository the image is tagged in (containerd's view)."""
    md = getattr(image, "manifest_digest", None)
    if not md:
        return []
    seen: list[str] = []
    for t in _tags(image):
        repo, _ = _repo_and_tag(t)
        item = f"{repo}@{md}"
        if item not in seen:
            seen.append(item)
    return seen


# --- inspect ------------------------------------------------------------------------------------


def _docker_config(cfg: dict) -> dict:
    out: dict[str, Any] = {}
    for key, empty in _CONFIG_KEYS:
        value = cfg.get(key, empty)
        if key in _OMIT_EMPTY and not value:
            continue
        out[key] = value
    for key, value in cfg.items():  # keep whatever else the config carries
        if key not in out and key not in _OMIT_EMPTY:
            out[key] = value
    return out


def inspect_image(store: Any, image: Any) -> dict:
    """The object `docker image inspect` prints for `image` (one element of its JSON list)."""
    cfg = image.config
    history = cfg.get("history") or []
    return {
        "Id": image.image_id,
        "RepoTags": _tags(image),
        "RepoDigests": repo_digests(image),
        "Parent": cfg.get("parent", ""),
        "Comment": cfg.get("comment", "") or _last_comment(history),
        "Created": cfg.get("created", ""),
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": _docker_config(cfg.get("config") or {}),
        "Architecture": cfg.get("architecture", ""),
        **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
        "Os": cfg.get("os", ""),
        **({"OsVersion": cfg["os.version"]} if cfg.get("os.version") else {}),
        "Size": image_size(store, image),
        "GraphDriver": {"Data": None, "Name": "overlay2"},
        "RootFS": {
            "Type": (cfg.get("rootfs") or {}).get("type", "layers"),
            "Layers": list((cfg.get("rootfs") or {}).get("diff_ids") or image.diff_ids),
        },
        "History": history,
        "Metadata": {"LastTagTime": getattr(image, "last_tag_time", None) or ""},
        "Descriptor": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": getattr(image, "manifest_digest", "") or "",
        },
    }


def _last_comment(history: list) -> str:
    # Docker's image Comment is the commit message of the last step (`import -m`, `commit -m`);
    # we keep it in the history entry, as the image config has no such field of its own.
    if history and isinstance(history[-1], dict):
        return str(history[-1].get("comment", "") or "")
    return ""


# --- images -------------------------------------------------------------------------------------


class ImageRow(NamedTuple):
    """One line of `pydock images`: raw values, formatted by the front end."""

    repository: str
    tag: str
    image_id: str
    digest: str
    created: str  # RFC 3339 from the config
    size: int
    containers: int | None = None
    sort_key: float = 0.0


def image_rows(store: Any, images: list, *, show_dangling: bool = True) -> list[ImageRow]:
    """Rows of `images`: one per tag (untagged images as <none> <none>), newest first."""
    rows: list[ImageRow] = []
    for image in images:
        size = image_size(store, image)
        created = image.config.get("created", "") or ""
        ts = parse_created(created) or 0.0
        tags = _tags(image)
        md = getattr(image, "manifest_digest", "") or NONE
        if not tags:
            if show_dangling:
                rows.append(ImageRow(NONE, NONE, image.image_id, md, created, size, None, ts))
            continue
        for t in tags:
            repo, tag = _repo_and_tag(t)
            rows.append(ImageRow(repo, tag, image.image_id, md, created, size, None, ts))
    rows.sort(key=lambda r: (-r.sort_key, r.repository, r.tag))
    return rows


# --- history ------------------------------------------------------------------------------------


class HistoryRow(NamedTuple):
    """One line of `pydock history` (newest first): raw values."""

    image: str  # full image id for the top row, MISSING for the others
    created: str
    created_by: str
    size: int
    comment: str
    empty_layer: bool


def history_rows(store: Any, image: Any) -> list[HistoryRow]:
    """History of `image`, newest first, with each non-empty entry matched to its layer size."""
    sizes = layer_sizes(store, image)
    history = [h for h in (image.config.get("history") or []) if isinstance(h, dict)]
    rows: list[HistoryRow] = []
    layer = 0
    for h in history:
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty:
            size = sizes[layer] if layer < len(sizes) else 0
            layer += 1
        rows.append(
            HistoryRow(
                MISSING,
                str(h.get("created", "") or ""),
                str(h.get("created_by", "") or ""),
                size,
                str(h.get("comment", "") or ""),
                empty,
            )
        )
    if not rows:
        # An image without history still has layers: show one row per layer, as Docker does.
        for size in sizes:
            rows.append(HistoryRow(MISSING, image.config.get("created", ""), "", size, "", False))
    rows.reverse()
    if rows:
        rows[0] = rows[0]._replace(image=image.image_id)
    return rows


def history_json(row: HistoryRow, human: Any, since: Any, *, trunc: bool) -> dict:
    """Docker's `history --format '{{json .}}'` object (human: size formatter, since: age)."""
    by = row.created_by
    if trunc and len(by) > 45:
        by = by[:44] + "…"
    return {
        "Comment": row.comment,
        "CreatedAt": _rfc3339(row.created),
        "CreatedBy": by,
        "CreatedSince": since(row.created),
        "ID": row.image if not trunc or row.image == MISSING else short_id(row.image),
        "Size": human(row.size),
    }


def _rfc3339(text: str) -> str:
    ts = parse_created(text)
    if ts is None:
        return ""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
