"""Image archives: `pydock load` reads them (`pydock save` writes them: cache/archive_save.py,
whose `save_images` and `select_for_save` are importable from here too).

Read (`load_archive`): OCI layouts (tar or directory), Docker >= 25 archives, containerd-style
archives (layer blobs gzip or zstd compressed) and the legacy `manifest.json` +
`<id>/layer.tar` archives, plain or compressed as a whole. Loading never changes the store
until everything has been checked: the outer tar is screened (tarsafe, plus our own rule that
it holds only files and dirs), every member is copied to a staging dir under ROOT/tmp and
hashed, every blob must match its name and every descriptor its blob, every layer is
decompressed and must match its config diff id, the history must match the layers, and every
layer is applied by the safe applier (which refuses hostile members). Only then, under the
store lock, are layers, configs and tags committed (and taken back if the store still refuses
something); the checked trees then become the layers' unpacked dirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import posixpath
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cache.archive_save import save_images as save_images
from cache.archive_save import select_for_save as select_for_save
from cache.decompress import (
    CompressionError,
    copy_hashing,
    open_decompressed,
    sniff_compression,
)
from cache.digest import COPY_CHUNK, Hasher, is_digest
from cache.errors import PydockError
from cache.records import field, record

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = {MEDIA_INDEX, MEDIA_DOCKER_LIST}
MANIFEST_TYPES = {MEDIA_MANIFEST, MEDIA_DOCKER_MANIFEST}
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
MAX_JSON = 8 << 20


class ArchiveError(PydockError):
    """An archive that cannot be loaded: corrupt, incomplete, inconsistent or hostile."""


# --- records ------------------------------------------------------------------------------------


@record
class _Member:
    """A regular file of the outer archive, copied to `path` in staging and hashed."""

    name: str
    path: Path
    digest: str
    size: int


@record
class _Layer:
    source: str  # archive member name, for messages
    member: _Member
    media_type: str = ""


@record
class _PendingImage:
    config: _Member
    layers: list[_Layer]
    tags: list[str] = field(default_factory=list)
    source: str = ""


@record(frozen=True)
class LoadedImage:
    """What `load_archive` committed: the image id and the tags now pointing at it."""

    image_id: str
    tags: tuple[str, ...]


# --- reading the outer archive ------------------------------------------------------------------


def _clean_name(name: str) -> str:
    n = name
    while n.startswith("./"):
        n = n[2:]
    if n.startswith("/") or not n:
        raise ArchiveError(f"archive member {name!r}: absolute or empty name")
    n = posixpath.normpath(n)
    if n == ".." or n.startswith("../") or "/../" in f"/{n}/":
        raise ArchiveError(f"archive member {name!r}: name leads outside the archive")
    return n


def _spool(src: BinaryIO, dst: Path) -> None:
    with open(dst, "wb") as out:
        shutil.copyfileobj(src, out, COPY_CHUNK)


def _plain_archive(path: Path, staging: Path) -> Path:
    """The archive as an uncompressed, seekable file (decompressed into staging if needed)."""
    with open(path, "rb") as f:
        head = f.read(8)
        kind = sniff_compression(head)
        if kind is None:
            return path
        f.seek(0)
        out = staging / "archive.tar"
        reader, _ = open_decompressed(f, "archive")
        try:
            with open(out, "wb") as o:
                copy_hashing(reader, o, limit=_room(staging))
        except CompressionError as e:
            if "larger than the limit" not in e.message:
                raise
            raise ArchiveError(
                "archive decompresses to more than the free space of the store"
            ) from None
        finally:
            reader.close()
        return out


def _screen(path: Path, staging: Path) -> None:
    """First screen of the outer archive with tarsafe: no member may lead outside."""
    import tarsafe

    class Screen(tarsafe.TarSafe):
        # tarsafe resolves a symlink target against the extraction root; a relative link is
        # relative to its own directory (skopeo's legacy archives link <id>/layer.tar to
        # ../<diffid>.tar), so resolve it there.
        def _is_unsafe_symlink(self, tarinfo: tarfile.TarInfo, root: str) -> bool:
            if not tarinfo.issym():
                return False
            base = os.path.dirname(os.path.join(root, tarinfo.name))
            resolved = os.path.abspath(os.path.join(base, tarinfo.linkname))
            return not self._is_contained(root, resolved)

    try:
        with Screen.open(path, "r:") as tf:
            tf._safetar_check(str(staging))
    except tarsafe.TarSafeException as e:
        text = str(e)
        if "isblk" in text:
            text = "it holds a device node (an image archive holds only files and directories)"
        raise ArchiveError(f"archive refused: {text}") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ArchiveError(_tar_problem(path, e)) from None


def _tar_problem(path: Path, e: BaseException) -> str:
    text = str(e) or type(e).__name__
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if len(head) < 512 or head[257:262] != b"ustar":
        if not head.strip(b"\0"):
            return "not an image archive: empty file"
        return f"not a tar archive ({text})"
    return f"corrupt or truncated tar archive ({text})"


def _check_tar_end(path: Path, offset: int) -> None:
    """tarfile stops silently at a bad header: make sure only the end-of-archive zeros remain."""
    size = path.stat().st_size
    if offset > size:
        raise ArchiveError("truncated tar archive: the last member is cut short")
    with open(path, "rb") as f:
        f.seek(offset)
        rest = f.read(1 << 20)
    if not rest:
        raise ArchiveError("truncated tar archive: no end-of-archive marker")
    if rest.strip(b"\0"):
        raise ArchiveError(f"corrupt tar archive: unreadable data at byte offset {offset}")


def _extract_members(archive: Path, dest: Path) -> dict[str, _Member]:
    """Copy every regular member to `dest/<n>`, hashing it; returns name -> member.

    Directories are skipped, in-archive relative symlinks to regular members become aliases,
    anything else (links out, hard links, devices, fifos) is refused.
    """
    members: dict[str, _Member] = {}
    symlinks: list[tuple[str, str]] = []
    try:
        with tarfile.open(archive, "r:") as tf:
            for n, info in enumerate(tf):
                name = _clean_name(info.name)
                if info.isdir():
                    continue
                if info.issym():
                    symlinks.append((name, info.linkname))
                    continue
                if not info.isreg():
                    raise ArchiveError(
                        f"archive member {info.name!r}: {_kind(info)} not allowed in an image archive"
                    )
                if name in members:
                    raise ArchiveError(f"archive member {name!r} appears twice")
                src = tf.extractfile(info)
                assert src is not None
                out = dest / str(n)
                with open(out, "wb") as o:
                    digest, size = copy_hashing(src, o)
                if size != info.size:
                    raise ArchiveError(f"truncated tar archive: member {name!r} is cut short")
                members[name] = _Member(name, out, digest, size)
            end = tf.offset
    except ArchiveError:
        raise
    except (tarfile.TarError, EOFError, OSError, UnicodeError) as e:
        raise ArchiveError(_tar_problem(archive, e)) from None
    _check_tar_end(archive, end)
    for name, target in symlinks:
        if target.startswith("/"):
            raise ArchiveError(f"archive member {name!r}: symlink to absolute path {target!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if resolved.startswith("../") or resolved == ".." or resolved not in members:
            raise ArchiveError(f"archive member {name!r}: symlink {target!r} leads nowhere")
        members[name] = members[resolved]
    return members


def _members_of_dir(top: Path) -> dict[str, _Member]:
    """The regular files of an OCI layout directory, hashed in place (nothing is copied).

    Symlinks and special files are refused, as in an archive."""
    import stat as st

    members: dict[str, _Member] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = Path(dirpath) / n
            mode = os.lstat(p).st_mode
            rel = p.relative_to(top).as_posix()
            if st.S_ISDIR(mode):
                continue
            if not st.S_ISREG(mode):
                raise ArchiveError(
                    f"{p}: only files and directories are allowed in an image layout"
                )
            with open(p, "rb") as f:
                h = Hasher()
                while chunk := f.read(COPY_CHUNK):
                    h.update(chunk)
            members[rel] = _Member(rel, p, str(h.digest()), h.size)
    return members


def _kind(info: tarfile.TarInfo) -> str:
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device node"
    if info.isfifo():
        return "fifo"
    return f"member type {info.type!r}"


# --- understanding the archive ------------------------------------------------------------------


def _read_json(m: _Member, what: str) -> Any:
    if m.size > MAX_JSON:
        raise ArchiveError(f"{what} is too large ({m.size} bytes)")
    try:
        return json.loads(m.path.read_bytes())
    except (ValueError, UnicodeError, RecursionError) as e:
        raise ArchiveError(f"{what} is not valid JSON ({type(e).__name__}: {e})") from None


def _verify_blobs(members: dict[str, _Member]) -> None:
    for name, m in members.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "blobs":
            want = f"{parts[1]}:{parts[2]}"
            if parts[1] != "sha256" or not is_digest(want):
                continue  # other algorithms are not ours to judge; unreferenced anyway
            if m.digest != want:
                raise ArchiveError(
                    f"blob {name} does not match its digest (content hashes to {m.digest})"
                )


def _blob(members: dict[str, _Member], desc: Any, where: str) -> _Member:
    if not isinstance(desc, dict) or not is_digest(str(desc.get("digest", ""))):
        raise ArchiveError(f"{where}: descriptor without a valid sha256 digest")
    digest = desc["digest"]
    m = members.get(f"blobs/sha256/{digest.split(':', 1)[1]}")
    if m is None:
        raise ArchiveError(f"{where} points to blob {digest}, which is missing from the archive")
    if isinstance(desc.get("size"), int) and desc["size"] != m.size:
        raise ArchiveError(
            f"{where}: blob {digest} is {m.size} bytes but the descriptor says {desc['size']}"
        )
    return m


def _host_arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def _tag_of(annotations: dict) -> str | None:
    """The tag a descriptor carries: containerd's full name, else a ref.name that is a name."""
    from cache.refs import try_parse_reference

    for key in (ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME):
        text = annotations.get(key)
        if not isinstance(text, str) or not text:
            continue
        if key == ANNOTATION_REF_NAME and ":" not in text and "/" not in text:
            continue  # a bare tag ("latest") says nothing about the repository
        ref = try_parse_reference(text)
        if ref is not None and ref.tag is not None:
            return str(ref)
    return None


def _images_from_index(members: dict[str, _Member]) -> list[_PendingImage]:
    index = _read_json(members["index.json"], "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ArchiveError("index.json has no manifests list")
    out: list[_PendingImage] = []

    def walk(descs: list, where: str, depth: int, tags: list[str]) -> None:
        if depth > 4:
            raise ArchiveError(f"{where}: image indexes nested too deeply")
        chosen = descs
        if depth > 0:
            # A multi-platform index: keep the manifests for this machine.
            mine = [
                d
                for d in descs
                if isinstance(d, dict)
                and (d.get("platform") or {}).get("os", "linux") == "linux"
                and (d.get("platform") or {}).get("architecture") == _host_arch()
            ]
            chosen = mine[:1] or [d for d in descs if isinstance(d, dict)][:1]
        for i, d in enumerate(chosen):
            if not isinstance(d, dict):
                raise ArchiveError(f"{where}: manifest entry {i} is not an object")
            mt = d.get("mediaType", "")
            here = f"{where} entry {i}"
            ann = d.get("annotations") or {}
            if ann.get("vnd.docker.reference.type"):
                continue  # attestation manifests are not images
            blob = _blob(members, d, here)
            t = _tag_of(ann) if isinstance(ann, dict) else None
            if mt in INDEX_TYPES:
                sub = _read_json(blob, f"index {d['digest']}")
                walk(
                    sub.get("manifests") or [],
                    f"index {d['digest']}",
                    depth + 1,
                    tags + ([t] if t else []),
                )
                continue
            if mt and mt not in MANIFEST_TYPES:
                continue  # unknown media types must not be an error (image-spec)
            manifest = _read_json(blob, f"manifest {d['digest']}")
            if not isinstance(manifest, dict):
                raise ArchiveError(f"manifest {d['digest']} is not a JSON object")
            mwhere = f"manifest {d['digest']}"
            config = _blob(members, manifest.get("config"), f"{mwhere} config")
            layers = []
            for j, ld in enumerate(manifest.get("layers") or []):
                layers.append(
                    _Layer(
                        f"{mwhere} layer {j}",
                        _blob(members, ld, f"{mwhere} layer {j}"),
                        ld.get("mediaType", ""),
                    )
                )
            out.append(_PendingImage(config, layers, tags + ([t] if t else []), mwhere))

    walk(index["manifests"], "index.json", 0, [])
    return out


def _images_from_manifest_json(members: dict[str, _Member]) -> list[_PendingImage]:
    items = _read_json(members["manifest.json"], "manifest.json")
    if not isinstance(items, list):
        raise ArchiveError("manifest.json is not a list")
    out: list[_PendingImage] = []
    for i, item in enumerate(items):
        where = f"manifest.json entry {i}"
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise ArchiveError(f"{where} has no Config")

        def member(name: str, what: str, where: str = where) -> _Member:
            try:
                clean = _clean_name(name)
            except ArchiveError:
                raise ArchiveError(
                    f"{where}: {what} path {name!r} leads outside the archive"
                ) from None
            m = members.get(clean)
            if m is None:
                raise ArchiveError(f"{where}: {what} {name} is missing from the archive")
            return m

        config = member(item["Config"], "config")
        layers = [
            _Layer(f"{where} layer {p}", member(p, "layer")) for p in item.get("Layers") or []
        ]
        tags = []
        from cache.refs import try_parse_reference

        for t in item.get("RepoTags") or []:
            ref = try_parse_reference(t) if isinstance(t, str) else None
            if ref is None or ref.tag is None:
                raise ArchiveError(f"{where}: invalid tag {t!r} in RepoTags")
            tags.append(str(ref))
        out.append(_PendingImage(config, layers, tags, where))
    return out


def _plan(members: dict[str, _Member]) -> list[_PendingImage]:
    """The images the archive holds (tags merged by image id), every reference checked."""
    _verify_blobs(members)
    has_index = "index.json" in members
    has_manifest = "manifest.json" in members
    if not has_index and not has_manifest:
        raise ArchiveError("not an image archive: it has neither manifest.json nor index.json")
    images: dict[str, _PendingImage] = {}
    # Docker loads what manifest.json lists; index.json (OCI) is checked as well when present.
    lists = []
    if has_manifest:
        lists.append(_images_from_manifest_json(members))
    if has_index:
        lists.append(_images_from_index(members))
    for found in lists:
        for img in found:
            key = img.config.digest
            if key in images:
                for t in img.tags:
                    if t not in images[key].tags:
                        images[key].tags.append(t)
            else:
                images[key] = img
    if not images:
        raise ArchiveError("the archive holds no image")
    return list(images.values())


# --- layers -------------------------------------------------------------------------------------


def _config_of(img: _PendingImage) -> dict:
    config = _read_json(img.config, f"config {img.config.digest}")
    if not isinstance(config, dict):
        raise ArchiveError(f"config {img.config.digest} is not a JSON object")
    rootfs = config.get("rootfs")
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(d, str) and is_digest(d) for d in ids):
        raise ArchiveError(f"config {img.config.digest}: rootfs.diff_ids is missing or invalid")
    if len(ids) != len(img.layers):
        raise ArchiveError(
            f"{img.source}: {len(img.layers)} layers, but config {img.config.digest} lists "
            f"{len(ids)} diff_ids"
        )
    if rootfs.get("type") != "layers":
        raise ArchiveError(f'config {img.config.digest}: rootfs.type is not "layers"')
    # The store refuses an image whose history does not match its layers: find out now,
    # before anything is committed.
    history = config.get("history")
    if history is not None:
        if not isinstance(history, list):
            raise ArchiveError(f"config {img.config.digest}: history is not a list")
        made = sum(1 for h in history if not (isinstance(h, dict) and h.get("empty_layer")))
        if made != len(ids):
            raise ArchiveError(
                f"config {img.config.digest}: history has {made} non-empty entries but the "
                f"image has {len(ids)} layers"
            )
    return config


def _uncompressed_layer(layer: _Layer, staging: Path) -> tuple[Path, str, int]:
    """The plain tar of a layer (decompressed into staging if needed), its digest and size."""
    what = f"layer {layer.member.name}"
    with open(layer.member.path, "rb") as f:
        head = f.read(8)
        if sniff_compression(head) is None:
            return layer.member.path, layer.member.digest, layer.member.size
        f.seek(0)
        out = staging / f"plain-{layer.member.digest.split(':', 1)[1]}"
        if out.exists():
            return out, str(sha256_file(out)), out.stat().st_size
        reader, _ = open_decompressed(f, what)
        try:
            with open(out, "wb") as o:
                digest, size = copy_hashing(reader, o, limit=_room(staging))
        except CompressionError as e:
            if "larger than the limit" not in e.message:
                raise
            raise ArchiveError(
                f"{what}: decompresses to more than the free space of the store"
            ) from None
        finally:
            reader.close()
        return out, digest, size


def _room(path: Path) -> int:
    """Bytes that may still be written under `path` (a margin is kept for everything else)."""
    st = os.statvfs(path)
    return max(0, st.f_bavail * st.f_frsize - (256 << 20))


def sha256_file(path: Path) -> str:
    h = Hasher()
    with open(path, "rb") as f:
        while chunk := f.read(COPY_CHUNK):
            h.update(chunk)
    return str(h.digest())


def _check_layer_content(path: Path, name: str, stage: Path) -> Path:
    """Apply the layer to an empty dir with the safe applier: it refuses hostile members
    (escaping names or links, bad whiteouts) and tars that do not end properly.

    The tree is made as the store's unpacked layers are (`<stage>/diff`, overlay whiteouts),
    so that after the commit it can become the layer's lower dir instead of being removed
    (and unpacked again on the first run). Returns `stage`."""
    from cache.applier import apply_layer
    from cache.layers import verify_tar

    try:
        # The store's own screen (what add_layer checks), so the commit cannot fail on it.
        verify_tar(path, where=f"layer {name}")
    except PydockError as e:
        raise ArchiveError(e.message) from None
    stage.mkdir(0o700)
    target = stage / "diff"
    target.mkdir(0o755)
    try:
        with open(path, "rb") as f:
            apply_layer(f, target, whiteouts="overlay")
    except PydockError as e:
        raise ArchiveError(f"layer {name}: {e.message}") from None
    return stage


# --- load ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _staging(store: Any) -> Iterator[Path]:
    maker = getattr(store, "tmp_dir", None)
    if maker is not None:
        with maker() as d:
            yield Path(d)
        return
    from cache.staging import staging_dir

    with staging_dir(Path(store.root) / "tmp", "load") as d:
        yield d


def load_archive(store: Any, source: str | os.PathLike[str] | BinaryIO) -> list[LoadedImage]:
    """Load every image of an archive (a path, or a stream such as stdin) into `store`.

    Raises `ArchiveError` (one line naming the problem) leaving the store as it was.
    """
    with _staging(store) as staging:
        if isinstance(source, str | os.PathLike) and Path(source).is_dir():
            top = Path(source)
            # Checked first: every file of the folder is hashed, so `load -i /` must not walk /.
            if not any((top / n).is_file() for n in ("oci-layout", "index.json", "manifest.json")):
                raise ArchiveError(
                    f"{top}: a folder that is not an image layout (no oci-layout, index.json "
                    "or manifest.json in it)"
                )
            members = _members_of_dir(top)
        else:
            if isinstance(source, str | os.PathLike):
                archive = Path(source)
                if not archive.is_file():
                    raise ArchiveError(
                        f"{archive}: not a regular file"
                        if os.path.lexists(archive)
                        else f"{archive}: no such file"
                    )
            else:
                archive = staging / "stdin.tar"
                _spool(source, archive)
            archive = _plain_archive(archive, staging)
            _screen(archive, staging)
            files = staging / "files"
            files.mkdir()
            members = _extract_members(archive, files)
        plan = _plan(members)
        prepared = []
        checked: dict[str, Path] = {}
        trees: dict[str, Path] = {}  # diff id -> staged unpacked tree (<stage>/diff)
        for img in plan:
            config = _config_of(img)
            diff_ids = config["rootfs"]["diff_ids"]
            layer_files = []
            for layer, want in zip(img.layers, diff_ids, strict=True):
                if want in checked:
                    layer_files.append(checked[want])
                    continue
                plain, got, _ = _uncompressed_layer(layer, staging)
                if got != want:
                    raise ArchiveError(
                        f"layer {layer.member.name}: diff_id mismatch (config says {want}, "
                        f"the uncompressed layer is {got})"
                    )
                if not store.has_blob(want):
                    stage = staging / f"unpack-{len(trees)}"
                    trees[want] = _check_layer_content(plain, layer.member.name, stage)
                checked[want] = plain
                layer_files.append(plain)
            prepared.append((img, config, layer_files))
        loaded = _commit(store, prepared, staging)
        _adopt_trees(store, prepared, trees)
        return loaded


def _adopt_trees(store: Any, prepared: list, trees: dict[str, Path]) -> None:
    """Give the checked trees to the store as the layers' unpacked dirs (an optimisation:
    whatever is not adopted is removed with the staging dir and unpacked when needed)."""
    adopt = getattr(store, "adopt_unpacked", None)
    if adopt is None:
        return
    for _img, config, _files in prepared:
        diff_ids = config["rootfs"]["diff_ids"]
        for i, d in enumerate(diff_ids):
            stage = trees.get(d)
            if stage is None or not (stage / "diff").is_dir():
                continue
            try:
                adopt(diff_ids[: i + 1], stage)
            except (PydockError, OSError):
                pass


def _commit(store: Any, prepared: list, staging: Path | None = None) -> list[LoadedImage]:
    """Everything is checked: store layers, configs, manifests, then move the tags.

    Should the store still refuse something half way, what this commit added is taken back
    (the blobs it created, and index.json as it was), so a failed load changes nothing.
    """
    loaded: list[LoadedImage] = []
    with store.lock():
        blobs_before = set(os.listdir(store.blob_path(_ZERO).parent))
        index_path = Path(store.root) / "index.json"
        index_before = index_path.read_bytes() if index_path.exists() else None
        try:
            for img, config, layer_files in prepared:
                diff_ids = config["rootfs"]["diff_ids"]
                for path, want in zip(layer_files, diff_ids, strict=True):
                    if store.has_blob(want):
                        continue
                    if staging is not None and path.is_relative_to(staging):
                        # Already hashed, screened and applied; it lives in ROOT/tmp: link it
                        # into blobs/ rather than copy it once more.
                        os.chmod(path, 0o444)
                        with open(path, "rb") as f:
                            os.fsync(f.fileno())
                        store.blobs.commit_staged(path, want)
                        continue
                    with open(path, "rb") as f:
                        info = store.add_layer(f)
                    if str(info.diff_id) != want:
                        raise ArchiveError(f"layer {want}: stored as {info.diff_id}")
                config_bytes = img.config.path.read_bytes()
                # The config keeps its exact bytes, so the image id is the one the archive had.
                image = store.write_image(config_bytes, diff_ids, tags=img.tags)
                loaded.append(LoadedImage(str(image.image_id), tuple(img.tags)))
        except BaseException:
            if index_before is not None:
                store.atomic_write(index_path, index_before)
            for name in set(os.listdir(store.blob_path(_ZERO).parent)) - blobs_before:
                store.blobs.remove(f"sha256:{name}")
            raise
    return loaded


_ZERO = "sha256:" + "0" * 64
