"""`pydock system df` and `pydock system prune`: what the store holds, and removing what no one uses.

References are followed from three kinds of roots:

- images kept in index.json (tagged, or untagged ones that `prune` does not remove): their
  manifest, config and layer blobs, and the unpacked layers of their chains;
- containers (ROOT/containers/<id>/config.json: `Image` = image id, `DiffIDs` = its layers,
  oldest first): the image stays (an image a container uses is never pruned), and so do the
  layer blobs and unpacked chains its overlay root is made of;
- build-cache entries (ROOT/buildcache/<key>.json): every sha256 digest an entry mentions
  (its result layer, its parent) keeps that blob.

Everything else under blobs/, layers/ and l/ is garbage. `prune` removes untagged images
that no container uses (with `all_images`, every image no container uses), build-cache entries
whose layer is no longer stored or that no kept image builds on (with `all_images`, all of
them), then unreferenced blobs and unpacked layers, all under the store lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from cache.digest import chain_ids
from cache.errors import PydockError
from cache.records import field, record

_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")


@record
class ContainerRef:
    """What a container record pins: its image id, layers and named volumes."""

    id: str
    image_id: str
    diff_ids: list[str]
    running: bool
    volumes: list[str]
    dir: Path
    name: str = ""
    status: str = ""
    created: float = 0.0
    command: str = ""
    image_name: str = ""


@record
class DfRow:
    """One line of `system df`: sizes in bytes."""

    kind: str
    total: int
    active: int
    size: int
    reclaimable: int


@record
class PruneReport:
    """What `prune` did: images untagged/deleted, and bytes freed."""

    untagged: list[str] = field(default_factory=list)
    deleted_images: list[str] = field(default_factory=list)
    deleted_blobs: int = 0
    deleted_layers: int = 0
    deleted_cache_entries: int = 0
    reclaimed: int = 0


# --- reading the roots --------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def containers(root: Path) -> list[ContainerRef]:
    """Every container record under ROOT/containers (unreadable ones are skipped)."""
    out = []
    cdir = Path(root) / "containers"
    try:
        names = sorted(os.listdir(cdir))
    except FileNotFoundError:
        return out
    for name in names:
        if name.startswith("."):
            continue
        cfg = _read_json(cdir / name / "config.json")
        if not isinstance(cfg, dict):
            continue
        state = _read_json(cdir / name / "state.json") or {}
        status = state.get("status", state.get("Status", "")) if isinstance(state, dict) else ""
        vols = [
            m.get("Name")
            for m in cfg.get("Mounts") or []
            if isinstance(m, dict) and m.get("Type") == "volume" and m.get("Name")
        ]
        diff_ids = [d for d in cfg.get("DiffIDs") or [] if isinstance(d, str)]
        out.append(
            ContainerRef(
                str(cfg.get("Id", name)),
                str(cfg.get("Image", "") or cfg.get("ImageID", "")),
                diff_ids,
                str(status).lower() in ("running", "paused", "restarting"),
                vols,
                cdir / name,
                str(cfg.get("Name", "")).lstrip("/"),
                str(status),
                float(cfg.get("Created") or 0)
                if isinstance(cfg.get("Created"), int | float)
                else 0.0,
                " ".join(
                    [str(cfg.get("Path", ""))] + [str(a) for a in cfg.get("Args") or []]
                ).strip(),
                str(cfg.get("ImageName", "")),
            )
        )
    return out


def cache_entries(root: Path) -> list[tuple[Path, set[str]]]:
    """(path, sha256 digests mentioned) of every build-cache entry."""
    out = []
    bdir = Path(root) / "buildcache"
    try:
        names = sorted(os.listdir(bdir))
    except FileNotFoundError:
        return out
    for name in names:
        if not name.endswith(".json"):
            continue
        path = bdir / name
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        out.append((path, set(_DIGEST_RE.findall(text))))
    return out


def tree_size(path: Path, links: dict[tuple[int, int], int] | None = None) -> int:
    """Bytes of the regular files under `path` (not following links, each inode once).

    With `links` (shared across calls: inode -> links seen so far), a file with several
    links counts only once all of them have been seen, in this tree or an earlier one: what
    removing every tree passed so far frees. (pybuild hard-links a COPY's unchanged files
    from the layer the same step made before, so two unpacked layers may share inodes.)
    """
    total = 0
    seen: dict[tuple[int, int], int] = {} if links is None else links
    for dirpath, _dirnames, filenames in os.walk(path):
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if (st.st_mode & 0o170000) != 0o100000:
                continue
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                count = seen[key] = seen.get(key, 0) + 1
                if links is None and count > 1:
                    continue  # each inode once in the tree
                if links is not None and count != st.st_nlink:
                    continue  # freed only when its last link goes
            total += st.st_size
    return total


def _image_blobs(image: Any) -> set[str]:
    m = image.manifest or {}
    out = {str(image.manifest_digest), str(image.image_id)}
    for ld in m.get("layers") or []:
        if isinstance(ld, dict) and isinstance(ld.get("digest"), str):
            out.add(ld["digest"])
    return out


# --- rmi ----------------------------------------------------------------------------------------


class ImageInUse(PydockError):
    """`rmi` of an image that a container uses, or of several tags at once, without force."""


def remove_image(
    store: Any, name: str, *, force: bool, containers: list[ContainerRef]
) -> list[tuple[str, str]]:
    """Docker's `rmi` of one name; returns what happened as ("Untagged"|"Deleted", what).

    A tag of an image with other tags is only untagged. Otherwise the image goes (all its tags
    first), unless a container uses it (refused; with `force` only for stopped containers: the
    container keeps its layers, which prune leaves alone) or it is named by id while tagged in
    several repositories (refused without `force`). Blobs and layers go at the next prune.
    """
    from cache.errors import ImageNotFound
    from cache.refs import try_parse_reference

    image = store.get_image(name)
    ref = try_parse_reference(name)
    by_tag = ref is not None and ref.digest is None and str(ref) in image.tags
    if by_tag and len(image.tags) > 1:
        store.untag(str(ref))
        return [("Untagged", str(ref))]
    if not by_tag and len(image.tags) > 1 and not force:
        raise ImageInUse(
            f"conflict: unable to delete {image.short_id} (must be forced) - image is referenced "
            "in multiple repositories"
        )
    using = [c for c in containers if c.image_id == str(image.image_id)]
    running = [c for c in using if c.running]
    if running:
        raise ImageInUse(
            f"conflict: unable to delete {image.short_id} (cannot be forced) - image is being "
            f"used by running container {running[0].id[:12]}"
        )
    if using and not force:
        what = f'repository reference "{name}"' if by_tag else image.short_id
        raise ImageInUse(
            f"conflict: unable to remove {what} (must force) - container {using[0].id[:12]} "
            f"is using its referenced image {image.short_id}"
        )
    done = [("Untagged", t) for t in image.tags]
    try:
        store.remove_image(image)
    except ImageNotFound:
        pass  # removed meanwhile by another process: the outcome is the same
    done.append(("Deleted", str(image.image_id)))
    return done


# --- system df ----------------------------------------------------------------------------------


def disk_usage(store: Any) -> list[DfRow]:
    """The four rows of `docker system df`: Images, Containers, Local Volumes, Build Cache."""
    root = Path(store.root)
    images = store.list_images()
    ctrs = containers(root)
    used_ids = {c.image_id for c in ctrs}
    layer_size: dict[str, int] = {}
    for img in images:
        for d, s in zip(img.diff_ids, img.layer_sizes or [0] * len(img.diff_ids), strict=False):
            layer_size[str(d)] = s
    active_layers = {str(d) for img in images if img.image_id in used_ids for d in img.diff_ids}
    img_total = sum(layer_size.values())
    img_reclaim = sum(s for d, s in layer_size.items() if d not in active_layers)
    active_images = sum(1 for img in images if img.image_id in used_ids)

    c_sizes = [(c, tree_size(c.dir / "upper")) for c in ctrs]
    c_total = sum(s for _, s in c_sizes)
    c_reclaim = sum(s for c, s in c_sizes if not c.running)

    vroot = root / "volumes"
    vols = []
    with contextlib.suppress(FileNotFoundError):
        vols = sorted(n for n in os.listdir(vroot) if (vroot / n).is_dir())
    used_vols = {v for c in ctrs for v in c.volumes}
    v_sizes = {v: tree_size(vroot / v) for v in vols}

    # Build cache: the blobs its entries name (layers of steps, shared with images or not);
    # what only the cache holds is what `prune -a` would give back.
    image_layers = set(layer_size)
    cache = cache_entries(root)
    cache_blobs: dict[str, int] = {}
    for _, digests in cache:
        for d in digests:
            if d not in cache_blobs and store.has_blob(d):
                cache_blobs[d] = store.blob_size(d)
    cache_entry_bytes = sum(p.stat().st_size for p, _ in cache if p.exists())
    cache_size = sum(cache_blobs.values()) + cache_entry_bytes
    cache_reclaim = (
        sum(s for d, s in cache_blobs.items() if d not in image_layers) + cache_entry_bytes
    )
    return [
        DfRow("Images", len(images), active_images, img_total, img_reclaim),
        DfRow("Containers", len(ctrs), sum(1 for c in ctrs if c.running), c_total, c_reclaim),
        DfRow(
            "Local Volumes",
            len(vols),
            sum(1 for v in vols if v in used_vols),
            sum(v_sizes.values()),
            sum(s for v, s in v_sizes.items() if v not in used_vols),
        ),
        DfRow("Build Cache", len(cache), 0, cache_size, cache_reclaim),
    ]


# --- system prune -------------------------------------------------------------------------------


def prune(store: Any, *, all_images: bool = False, build_cache: bool = True) -> PruneReport:
    """Remove unused images, build-cache entries, blobs and unpacked layers (see module doc).

    With `build_cache=False` (`pydock image prune`) the cache entries stay, and so does what
    they name."""
    report = PruneReport()
    root = Path(store.root)
    with store.lock():
        ctrs = containers(root)
        used_ids = {c.image_id for c in ctrs}
        # 1. images
        for img in store.list_images():
            if img.image_id in used_ids:
                continue
            if img.tags and not all_images:
                continue
            for t in img.tags:
                report.untagged.append(t)
            store.remove_image(img)
            report.deleted_images.append(str(img.image_id))
        kept = store.list_images()
        keep_blobs: set[str] = set()
        keep_chains: set[str] = set()
        # What other live processes added or unpacked and no image names yet (a build's new
        # layers, the lowers of a running step) is leased: a GC root (cache/leases.py).
        if hasattr(store, "leased"):
            leased_blobs, leased_chains = store.leased()
            keep_blobs |= leased_blobs
            keep_chains |= leased_chains
        for img in kept:
            keep_blobs |= _image_blobs(img)
            keep_chains |= {str(c) for c in chain_ids(img.diff_ids)}
        for c in ctrs:
            keep_blobs |= set(c.diff_ids)
            keep_blobs.add(c.image_id)
            with contextlib.suppress(Exception):
                keep_chains |= {str(ch) for ch in chain_ids(c.diff_ids)}
        # 2. build cache: without -a an entry survives while the layer it made is stored and
        # is a layer of some kept image or container (entries that made no layer survive too);
        # with -a every entry goes. What a surviving entry mentions stays stored.
        image_layers = {str(d) for img in kept for d in img.diff_ids}
        image_layers |= {d for c in ctrs for d in c.diff_ids}
        for path, digests in cache_entries(root):
            entry = _read_json(path)
            result = entry.get("result") if isinstance(entry, dict) else None
            made = result.get("diff_id") if isinstance(result, dict) else None
            dangling = bool(made) and (made not in image_layers or not store.has_blob(made))
            if build_cache and (all_images or entry is None or dangling):
                with contextlib.suppress(FileNotFoundError):
                    size = path.stat().st_size
                    path.unlink()
                    report.reclaimed += size
                    report.deleted_cache_entries += 1
                continue
            keep_blobs |= digests
        _drop_stale_families(root)
        # 3. blobs (and the file record pybuild keeps for a COPY layer: buildcache/files/)
        for d in store.blobs.digests():
            if str(d) in keep_blobs:
                continue
            try:
                size = store.blob_size(d)
            except Exception:  # noqa: BLE001 - vanished meanwhile
                size = 0
            if store.blobs.remove(d):
                report.deleted_blobs += 1
                report.reclaimed += size
                with contextlib.suppress(FileNotFoundError):
                    (root / "buildcache" / "files" / f"{str(d).split(':', 1)[-1]}.json").unlink()
        # 4. unpacked layers (and their l/ links)
        links: dict[tuple[int, int], int] = {}
        for u in store.all_unpacked():
            if str(u.chain_id) in keep_chains:
                continue
            size = tree_size(u.path, links)
            if store.layers.remove_unpacked(str(u.chain_id)):
                report.deleted_layers += 1
                report.reclaimed += size
        _drop_dangling_links(root)
        with contextlib.suppress(Exception):
            store.clean_tmp()
    return report


def _drop_stale_families(root: Path) -> None:
    # buildcache/family/<key> files name an entry; those whose entry is gone mean nothing.
    fam = root / "buildcache" / "family"
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(fam):
            p = fam / name
            with contextlib.suppress(OSError):
                key = p.read_text().strip()
                if not (root / "buildcache" / f"{key}.json").exists():
                    p.unlink()


def _drop_dangling_links(root: Path) -> None:
    ldir = root / "l"
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(ldir):
            p = ldir / name
            if p.is_symlink() and not p.exists():
                with contextlib.suppress(OSError):
                    p.unlink()


# --- system df -v -------------------------------------------------------------------------------


@record
class ImageUsage:
    """One image of `system df -v`: its size split into layers shared with other images and
    layers only it has, and how many containers use it."""

    image: Any
    size: int
    shared: int
    unique: int
    containers: int


@record
class VolumeUsage:
    name: str
    links: int
    size: int


@record
class Usage:
    images: list[ImageUsage]
    containers: list[tuple[ContainerRef, int]]  # (container, size of its upper dir)
    volumes: list[VolumeUsage]
    build_cache: int


def disk_usage_verbose(store: Any) -> Usage:
    """The detail behind `system df`: per image, per container, per volume."""
    root = Path(store.root)
    images = store.list_images()
    ctrs = containers(root)
    users: dict[str, int] = {}
    for c in ctrs:
        users[c.image_id] = users.get(c.image_id, 0) + 1
    holders: dict[str, int] = {}
    for img in images:
        for d in set(img.diff_ids):
            holders[str(d)] = holders.get(str(d), 0) + 1
    out_images = []
    for img in images:
        sizes = dict(zip([str(d) for d in img.diff_ids], img.layer_sizes, strict=False))
        shared = sum(s for d, s in sizes.items() if holders.get(d, 0) > 1)
        total = sum(sizes.values())
        out_images.append(
            ImageUsage(img, total, shared, total - shared, users.get(str(img.image_id), 0))
        )
    vroot = root / "volumes"
    vols = []
    with contextlib.suppress(FileNotFoundError):
        for n in sorted(os.listdir(vroot)):
            if (vroot / n).is_dir():
                links = sum(1 for c in ctrs if n in c.volumes)
                vols.append(VolumeUsage(n, links, tree_size(vroot / n)))
    rows = {r.kind: r for r in disk_usage(store)}
    return Usage(
        out_images,
        [(c, tree_size(c.dir / "upper")) for c in ctrs],
        vols,
        rows["Build Cache"].size,
    )
