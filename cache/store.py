"""The local image store: one root directory that is an OCI image layout plus unpacked layers.

Layout (see cache/index.py for index.json, cache/layers.py for layers/ and l/):

    ROOT/oci-layout, index.json, blobs/sha256/<hex>   OCI image layout (skopeo/umoci read it)
    ROOT/layers/<chain-id>/{diff/,layer.json}         unpacked layers (overlay lower dirs)
    ROOT/l/<short> -> ../layers/<chain-id>/diff       short names for lowerdir options
    ROOT/buildcache/ containers/ volumes/             owned by the build cache and executor
    ROOT/tmp/                                         staging for every write
    ROOT/leases/<pid>-<start>.json                    what live processes added (GC roots)
    ROOT/lock                                         flock for writers

API overview (everything raises `cache.errors` classes, all `PydockError`s):

    store = Store.open(root)                   # creates the layout if missing
    with store.lock(): ...                     # exclusive writer lock, re-entrant per process
    store.atomic_write(path, data)             # temp in ROOT/tmp, fsync, rename
    with store.tmp_dir() as d: ...             # fresh staging dir under ROOT/tmp, removed after

    store.put_blob(bytes | stream, expected=None) -> Digest       # DigestMismatch
    store.open_blob(digest) -> reader          # verifies the digest at EOF (DigestMismatch)
    store.read_blob(digest) -> bytes           # whole blob, verified
    store.blob_path(digest), store.has_blob(digest), store.blob_size(digest)

    store.add_layer(tar_stream) -> LayerInfo(diff_id, size)      # BadLayerTar
    store.write_layer_tree(dir, overlay_upper=, source_date_epoch=) -> LayerInfo  # own writer
    store.layer_tar(diff_id) -> reader         # verified at EOF
    store.unpacked_lowers(diff_ids) -> [Path]  # ROOT/l/<short> links, oldest first
    store.lower_links(diff_ids) -> ["l/<short>"]                  # relative to ROOT

    store.write_image(config, diff_ids, tags=()) -> Image         # InvalidImage, LayerNotFound
    store.get_image(name | id | id-prefix) -> Image               # ImageNotFound, AmbiguousImage
    store.list_images() -> [Image]             # index order
    store.tag_image(image, ref); store.untag(ref) -> Image; store.remove_image(image)
    store.keep_image(image)                    # keep an image untagged (build results)
    store.image_from_manifest(digest) -> Image # a stored manifest, kept in the index or not

    with store.lease(): ...                    # what this process adds/unpacks survives prune
    store.leased() -> (digests, chain ids)     # GC roots: what live leases hold
    store.all_unpacked(), store.remove_unpacked(chain), store.blobs.digests/remove  # for GC
    store.clean_tmp()                          # staging/leases of dead processes
    store.verify() -> [problem]                # fsck: images, blob hashes, layer dirs, links

Tags are `org.opencontainers.image.ref.name` = "busybox:latest" (plus a bare "busybox" alias
for ":latest", so `skopeo inspect oci:ROOT:busybox` and `oci:ROOT:busybox:latest` both work)
and `io.containerd.image.name` = "docker.io/library/busybox:latest". Untagged images that are
kept have one index.json descriptor without those annotations (see cache/index.py).

Readers take no lock: every file is replaced by rename, so they see a whole old or a whole new
version. Writers of index.json hold the lock around read-modify-replace. A Store may be used
from several threads at once (the lock is re-entrant per process and serialises threads too;
staging names are unique; two threads unpacking one layer agree on one result).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TypeVar

from cache import staging
from cache.blobs import BlobStore, VerifyingReader
from cache.digest import ChainID, DiffID, Digest, chain_ids, is_digest, is_hex_id, sha256_bytes
from cache.errors import (
    AmbiguousImage,
    BadReference,
    BlobNotFound,
    ImageNotFound,
    InvalidImage,
    LayerNotFound,
    StoreError,
)
from cache.images import (
    MEDIA_MANIFEST,
    Image,
    canonical_json,
    config_diff_ids,
    make_manifest,
    ordered_json,
    parse_json_blob,
    prepare_config,
    validate_image,
)
from cache.index import Index
from cache.layers import LayerInfo, LayerStore, UnpackedLayer
from cache.leases import lease_for, live_leases
from cache.locking import StoreLocked, lock_for
from cache.refs import Reference, parse_reference, try_parse_reference

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
SUBDIRS = (
    "blobs",
    "blobs/sha256",
    "layers",
    "l",
    "tmp",
    "leases",
    "buildcache",
    "containers",
    "volumes",
)
_HEX_PREFIX_RE = re.compile(r"[a-f0-9]{1,64}")
T = TypeVar("T")


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except (FileNotFoundError, OSError):
        return None


class Store:
    """A store rooted at `root`. Use `Store.open(root)` to create the layout if needed."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.layers_dir = self.root / "layers"
        self.links_dir = self.root / "l"
        self.tmp_path = self.root / "tmp"
        self.buildcache_dir = self.root / "buildcache"
        self.containers_dir = self.root / "containers"
        self.volumes_dir = self.root / "volumes"
        self.index_path = self.root / "index.json"
        self.lock_path = self.root / "lock"
        self.blobs = BlobStore(self.blobs_dir, self.tmp_path, guard=self._committing)
        self.layers = LayerStore(
            self.root, self.blobs, self.tmp_path, on_unpacked=self._lease_chain
        )
        # manifest digest -> (manifest, config, config digest, diff ids, layer sizes). Blobs
        # are immutable, so what was verified once stays valid for this process.
        self._parsed: dict[
            Digest, tuple[dict, dict, Digest, tuple[DiffID, ...], tuple[int, ...]]
        ] = {}

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ---- layout, lock, staging ---------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Store:
        """The store at `root`, creating the OCI layout and the other directories if missing."""
        store = cls(root)
        store._ensure_layout()
        return store

    def _ensure_layout(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
            for sub in SUBDIRS:
                (self.root / sub).mkdir(exist_ok=True, mode=0o700 if sub == "tmp" else 0o755)
        except OSError as e:
            raise StoreError(f"cannot create store at {self.root}: {e.strerror}") from None
        if (self.root / "oci-layout").exists() and self.index_path.exists():
            # Leftovers of a crashed writer: clean them if no writer is at work right now (and
            # if we may: a reader without write access to the store just reads).
            with contextlib.suppress(StoreLocked, PermissionError):
                if os.listdir(self.tmp_path):
                    with self.lock(blocking=False):
                        staging.clean_stale(self.tmp_path)
            return
        with self.lock():
            if not (self.root / "oci-layout").exists():
                self.atomic_write(self.root / "oci-layout", OCI_LAYOUT)
            if not self.index_path.exists():
                self.atomic_write(self.index_path, Index().to_bytes())
            staging.clean_stale(self.tmp_path)

    def lock(self, blocking: bool = True) -> contextlib.AbstractContextManager[None]:
        """Exclusive writer lock (flock on ROOT/lock); re-entrant within this process."""
        return lock_for(self.lock_path)(blocking)

    def atomic_write(self, path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
        """Replace `path` (inside the root) with `data`: temp file, fsync, rename."""
        staging.atomic_write(self.tmp_path, Path(path), data, mode)

    @contextlib.contextmanager
    def tmp_dir(self, kind: str = "stage") -> Iterator[Path]:
        """A fresh staging dir under ROOT/tmp, removed afterwards (rename results out of it)."""
        with staging.staging_dir(self.tmp_path, kind) as d:
            yield d

    def clean_tmp(self) -> list[str]:
        """Remove staging leftovers and leases of dead processes (takes the lock)."""
        with self.lock():
            live_leases(self.root, remove_dead=True)
            return staging.clean_stale(self.tmp_path)

    # ---- leases ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _committing(self, digest: Digest) -> Iterator[None]:
        with self.lock():
            lease_for(self.root).add(digests=(str(digest),))
            yield

    def _lease_chain(self, chain: ChainID) -> None:
        lease_for(self.root).add(chains=(str(chain),))

    def leased(self, include_self: bool = False) -> tuple[set[str], set[str]]:
        """(blob digests, chain ids) that other live processes added or use: GC roots for prune.

        Call it under `store.lock()`, as prune does: then every blob or unpacked layer that
        exists but no image names is either leased here or truly garbage.
        """
        return live_leases(
            self.root, remove_dead=lock_for(self.lock_path).held, include_self=include_self
        )

    def lease_existing(self, digests: Iterable[str]) -> bool:
        """Add blobs that are already stored to this process's lease (a build reusing a cached
        layer or a base image's layers, which a prune could otherwise remove before the build
        writes its image). False, leasing nothing, when one of them is not stored."""
        wanted = tuple(str(d) for d in digests)
        with self.lock():
            if not all(self.has_blob(d) for d in wanted):
                return False
            lease_for(self.root).add(digests=wanted)
        return True

    def release_lease(self) -> None:
        """Drop this process's lease now (its recorded digests and chains), even inside a block."""
        lease_for(self.root).release()

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        """Protect what this process adds or unpacks from prune until the block ends.

        A build wraps its whole run in it: new layers, config blobs and the unpacked lowers of
        its steps are GC roots while it runs (and a crash ends the lease with the process).
        Blocks nest; the lease is dropped when the outermost ends.
        """
        lease = lease_for(self.root)
        lease.enter()
        try:
            yield
        finally:
            lease.exit()

    # ---- blobs -------------------------------------------------------------------------------
    def put_blob(self, data: bytes | BinaryIO, expected: str | None = None) -> Digest:
        """Store a blob (bytes or a stream read to its end); `DigestMismatch` if not `expected`."""
        return self.blobs.put(data, expected)

    def open_blob(self, digest: str) -> VerifyingReader:
        """Reader of a blob that raises `DigestMismatch` at EOF if the content is wrong."""
        return self.blobs.open(digest)

    def read_blob(self, digest: str) -> bytes:
        return self.blobs.read_bytes(digest)

    def blob_path(self, digest: str) -> Path:
        return self.blobs.path(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blobs.has(digest)

    def blob_size(self, digest: str) -> int:
        return self.blobs.size(digest)

    # ---- layers ------------------------------------------------------------------------------
    def add_layer(self, tar_stream: BinaryIO) -> LayerInfo:
        """Store an uncompressed layer tar; its blob digest is its diff id."""
        return self.layers.add(tar_stream)

    def write_layer_tree(
        self,
        src_dir: str | os.PathLike[str],
        *,
        overlay_upper: bool = False,
        source_date_epoch: int | None = None,
    ) -> LayerInfo:
        """Store the tree `src_dir` as a layer written by our own deterministic tar writer
        (`cache.tarwriter.write_layer`) directly into staging, hashed once on the way, not
        re-parsed. Additive, for helper "pybuild" (see LayerStore.write_tree)."""
        return self.layers.write_tree(
            Path(src_dir), overlay_upper=overlay_upper, source_date_epoch=source_date_epoch
        )

    def layer_tar(self, diff_id: str) -> VerifyingReader:
        """Verified reader of a stored layer tar (the caller closes it)."""
        return self.layers.open_tar(diff_id)  # type: ignore[return-value]

    def layer_info(self, diff_id: str) -> LayerInfo:
        return self.layers.info(diff_id)

    def unpacked_layers(self, diff_ids: Sequence[str]) -> list[UnpackedLayer]:
        """Unpack what is missing of the stack `diff_ids` (oldest first); records, same order."""
        for d in diff_ids:
            if not self.blobs.has(d):
                raise LayerNotFound(f"layer {d} is not in the store")
        return self.layers.ensure_unpacked(list(diff_ids), self.lock)

    def adopt_unpacked_base(self, diff_id: str, stage: Path) -> UnpackedLayer:
        """Make `stage/diff` (a staging dir under ROOT/tmp) the unpacked dir of the stored
        base layer `diff_id`, which was written from that tree (see LayerStore.adopt_base)."""
        if not self.blobs.has(diff_id):
            raise LayerNotFound(f"layer {diff_id} is not in the store")
        return self.layers.adopt_base(Path(stage), DiffID(diff_id), self.lock)

    def adopt_unpacked(self, diff_ids: Sequence[str], stage: Path) -> UnpackedLayer:
        """Make `stage/diff` the unpacked dir of the top layer of the stack `diff_ids` (all
        stored), which was written from that tree (see LayerStore.adopt). Additive, for
        helper "pybuild"."""
        for d in diff_ids:
            if not self.blobs.has(d):
                raise LayerNotFound(f"layer {d} is not in the store")
        return self.layers.adopt(Path(stage), list(diff_ids), self.lock)

    def unpacked_lowers(self, diff_ids: Sequence[str]) -> list[Path]:
        """Overlay lower dirs for the stack `diff_ids`, oldest first: ROOT/l/<short> links.

        Overlay's `lowerdir=` lists the top layer first, so reverse this list for the option.
        For deep stacks mount from ROOT with `lower_links` to keep the option short.
        """
        return [self.links_dir / u.short for u in self.unpacked_layers(diff_ids)]

    def lower_links(self, diff_ids: Sequence[str]) -> list[str]:
        """Like `unpacked_lowers` but "l/<short>" relative to ROOT (for a mount made from ROOT)."""
        return [f"l/{u.short}" for u in self.unpacked_layers(diff_ids)]

    def chain_ids(self, diff_ids: Iterable[str]) -> list[ChainID]:
        return chain_ids(diff_ids)

    def all_unpacked(self) -> list[UnpackedLayer]:
        return self.layers.all_unpacked()

    def remove_unpacked(self, chain: str) -> bool:
        with self.lock():
            return self.layers.remove_unpacked(chain)

    # ---- index -------------------------------------------------------------------------------
    def index(self) -> Index:
        """The current index.json (read without the lock; it is replaced atomically)."""
        return Index.load(self.index_path)

    def _write_index(self, index: Index) -> None:
        # Only under the lock; never edited in place.
        self.atomic_write(self.index_path, index.to_bytes())

    # ---- images: reading ---------------------------------------------------------------------
    def _parse_manifest(self, manifest_digest: Digest):  # noqa: ANN202
        cached = self._parsed.get(manifest_digest)
        if cached is not None:
            return cached
        manifest = parse_json_blob(
            self.blobs.read_bytes(manifest_digest), f"manifest {manifest_digest}"
        )
        cdesc = manifest.get("config")
        if not isinstance(cdesc, dict) or not is_digest(cdesc.get("digest", "")):
            raise InvalidImage(f"manifest {manifest_digest} has no valid config descriptor")
        config_digest = Digest(cdesc["digest"])
        config = parse_json_blob(self.blobs.read_bytes(config_digest), f"config {config_digest}")
        diff_ids = validate_image(manifest, config, config_digest, self.blobs.size)
        sizes = tuple(int(layer["size"]) for layer in manifest["layers"])
        entry = (manifest, config, config_digest, tuple(diff_ids), sizes)
        self._parsed[manifest_digest] = entry
        return entry

    def _image(self, manifest_digest: Digest, index: Index) -> Image:
        manifest, config, config_digest, diff_ids, sizes = self._parse_manifest(manifest_digest)
        return Image(
            config_digest,
            config,
            manifest_digest,
            manifest,
            diff_ids,
            tuple(index.tags_of(manifest_digest)),
            sizes,
        )

    def _read_consistently(self, read: Callable[[Index], T]) -> T:
        # A reader holds no lock: a prune may delete an image's blobs between our reading
        # index.json and the blobs. If a blob is missing and the index has changed meanwhile,
        # read again from the new index; a blob missing from an unchanged index is damage.
        for _ in range(3):
            index = self.index()
            try:
                return read(index)
            except BlobNotFound:
                if self.index() == index:
                    raise
        return read(self.index())

    def list_images(self) -> list[Image]:
        """Every image kept in index.json (tagged or not), in index order, validated."""
        return self._read_consistently(
            lambda index: [self._image(m, index) for m in index.manifests()]
        )

    def get_image(self, name: str | Reference) -> Image:
        """Look up an image by reference, full id, manifest digest or unique id prefix.

        Order as in Docker: a name first (busybox = busybox:latest), then an id prefix
        ("3f57d9401f8d", "sha256:3f57"). Raises `ImageNotFound` / `AmbiguousImage`.
        """
        return self._read_consistently(lambda index: self._lookup(name, index))

    def _lookup(self, name: str | Reference, index: Index) -> Image:
        text = name.familiar if isinstance(name, Reference) else str(name)
        images = None

        def all_images() -> list[Image]:
            nonlocal images
            if images is None:
                images = [self._image(m, index) for m in index.manifests()]
            return images

        if is_digest(text) or is_hex_id(text):
            d = Digest(text if is_digest(text) else f"sha256:{text}")
            for img in all_images():
                if d in (img.image_id, img.manifest_digest):
                    return img
            raise ImageNotFound(f"No such image: {text}")
        ref = name if isinstance(name, Reference) else try_parse_reference(text)
        if ref is not None:
            if ref.digest is not None:
                for img in all_images():
                    if ref.digest in (img.manifest_digest, img.image_id):
                        return img
            else:
                m = index.manifest_of_tag(ref)
                if m is not None:
                    return self._image(m, index)
        prefix = text.removeprefix("sha256:")
        if _HEX_PREFIX_RE.fullmatch(prefix):
            found = [img for img in all_images() if img.image_id.hex.startswith(prefix)]
            ids = {img.image_id for img in found}
            if len(ids) == 1:
                return found[0]
            if len(ids) > 1:
                raise AmbiguousImage(
                    f"multiple IDs found with provided prefix: {text} "
                    f"({', '.join(sorted(i.short for i in ids))})"
                )
        if ref is None and not _HEX_PREFIX_RE.fullmatch(prefix):
            # Neither a valid name nor an id: say why the name is wrong.
            parse_reference(text)
        raise ImageNotFound(f"No such image: {text}")

    def image_exists(self, name: str) -> bool:
        try:
            self.get_image(name)
        except (ImageNotFound, BadReference):
            return False
        return True

    # ---- images: writing ---------------------------------------------------------------------
    def write_image(
        self,
        config: dict | bytes,
        layer_diff_ids: Sequence[str],
        tags: Iterable[str | Reference] = (),
    ) -> Image:
        """Write config and manifest blobs for layers already stored, keep the image, tag it.

        A dict config is serialized with sorted keys and compact separators (its `rootfs` is
        set from `layer_diff_ids`); a bytes config is stored verbatim (to keep an id computed
        elsewhere) and must already name the same diff ids. The history, if any, must have one
        non-empty entry per layer. Without tags the image is kept untagged. Nothing is changed
        when any check fails.
        """
        refs = [self._taggable(t) for t in tags]
        diff_ids = [DiffID(d) for d in layer_diff_ids]
        if isinstance(config, bytes | bytearray):
            config_bytes = bytes(config)
            cfg = parse_json_blob(config_bytes, "image config")
            if config_diff_ids(cfg) != diff_ids:
                raise InvalidImage("config rootfs.diff_ids does not match the layers given")
        else:
            cfg = prepare_config(config, diff_ids)
            config_bytes = canonical_json(cfg)
        with self.lock():
            sizes = []
            for d in diff_ids:
                if not self.blobs.has(d):
                    raise LayerNotFound(f"layer {d} is not in the store")
                sizes.append(self.blobs.size(d))
            config_digest = sha256_bytes(config_bytes)
            manifest = make_manifest(
                config_digest, len(config_bytes), list(zip(diff_ids, sizes, strict=True))
            )
            manifest_bytes = ordered_json(manifest)
            manifest_digest = sha256_bytes(manifest_bytes)
            pending = {config_digest: len(config_bytes), manifest_digest: len(manifest_bytes)}

            def size_of(d: str) -> int:
                return pending[d] if d in pending else self.blobs.size(d)

            validate_image(manifest, cfg, config_digest, size_of)
            new_blobs = [d for d in (config_digest, manifest_digest) if not self.blobs.has(d)]
            try:
                self.blobs.put(config_bytes, config_digest)
                self.blobs.put(manifest_bytes, manifest_digest)
                index = self.index().add_image(manifest_digest, len(manifest_bytes))
                for ref in refs:
                    index = index.set_tag(ref, manifest_digest, len(manifest_bytes))
                self._write_index(index)
            except BaseException:
                # Leave the store as it was: drop the blobs this call added.
                for d in new_blobs:
                    self.blobs.remove(d)
                raise
            return self._image(manifest_digest, index)

    @staticmethod
    def _taggable(ref: str | Reference) -> Reference:
        r = ref if isinstance(ref, Reference) else parse_reference(ref)
        if r.digest is not None:
            raise BadReference(f"refusing to create a tag with a digest reference: {r}")
        text = str(ref)
        if re.fullmatch(r"sha256:[0-9a-f]{64}", text):
            # Docker's rule: "sha256:<hex>" would read back as an image id, not as this tag.
            raise BadReference(
                f"invalid reference format: refusing to create an ambiguous tag using digest "
                f"algorithm as name: {text!r}"
            )
        return r.with_default_tag()

    def _present(self, index: Index, image: Image | str) -> Image:
        img = image if isinstance(image, Image) else self.get_image(image)
        if not index.has_manifest(img.manifest_digest):
            raise ImageNotFound(f"No such image: {img.short_id}")
        return img

    def tag_image(self, image: Image | str, ref: str | Reference) -> Image:
        """Point tag `ref` at `image` (moving it from any other image, which stays untagged)."""
        r = self._taggable(ref)
        with self.lock():
            index = self.index()
            img = self._present(index, image)
            size = index.size_of(img.manifest_digest) or 0
            index = index.set_tag(r, img.manifest_digest, size)
            self._write_index(index)
            return self._image(img.manifest_digest, index)

    def untag(self, ref: str | Reference) -> Image:
        """Remove tag `ref`; returns the image it pointed at (kept, untagged if it was the last)."""
        r = self._taggable(ref)
        with self.lock():
            index = self.index()
            m = index.manifest_of_tag(r)
            if m is None:
                raise ImageNotFound(f"No such image: {r}")
            index = index.remove_tag(r)
            self._write_index(index)
            return self._image(m, index)

    def remove_image(self, image: Image | str) -> Image:
        """Forget an image and all its tags (its blobs and layers stay until a prune)."""
        with self.lock():
            index = self.index()
            img = self._present(index, image)
            self._write_index(index.remove_manifest(img.manifest_digest))
            return img.with_tags(())

    def keep_image(self, image: Image | str) -> Image:
        """Make sure the image is kept in the index (untagged if it has no tag)."""
        img = image if isinstance(image, Image) else self.get_image(image)
        with self.lock():
            index = self.index()
            if not index.has_manifest(img.manifest_digest):
                size = self.blobs.size(img.manifest_digest)
                index = index.add_image(img.manifest_digest, size)
                self._write_index(index)
            return self._image(img.manifest_digest, index)

    # ---- consistency check ------------------------------------------------------------------
    def verify(self, *, blobs: bool = True) -> list[str]:
        """Check the whole store (an fsck); returns the problems found, one line each.

        Every index entry must be a valid image whose blobs exist; with `blobs`, every blob
        must hash to its name; every layers/<chain> must hold layer.json and diff/, with its
        short link in l/; every l/ link must lead to a layer.
        """
        problems: list[str] = []
        fresh = Store(self.root)  # no cached parses: read everything again
        try:
            index = fresh.index()
        except StoreError as e:
            return [str(e)]
        for m in index.manifests():
            try:
                fresh._image(m, index)
            except StoreError as e:
                problems.append(f"image {m}: {e}")
        if blobs:
            for d in self.blobs.digests():
                try:
                    with self.blobs.open(d) as r:
                        r.read_all_and_verify()
                except StoreError as e:
                    problems.append(str(e))
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.layers_dir)):
                d = self.layers_dir / name
                try:
                    u = self.layers.unpacked(ChainID(f"sha256:{name}"))
                except (StoreError, ValueError, KeyError) as e:
                    problems.append(f"layers/{name}: {e}")
                    continue
                if u is None or not (d / "diff").is_dir():
                    problems.append(f"layers/{name}: incomplete (no layer.json or diff/)")
                elif u.chain_id.hex != name:
                    problems.append(f"layers/{name}: layer.json names another chain")
                elif (below := self._parent_diff_ids(u.parent)) is not None and (
                    chain_ids([*below, u.diff_id])[-1] != u.chain_id
                ):
                    problems.append(f"layers/{name}: chain id does not match its layers")
                elif _readlink(self.links_dir / u.short) != f"../layers/{name}/diff":
                    problems.append(f"layers/{name}: short link l/{u.short} is missing or wrong")
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.links_dir)):
                if not (self.links_dir / name).is_dir():
                    problems.append(f"l/{name}: leads nowhere")
        return problems

    def _parent_diff_ids(self, parent: ChainID | None) -> list[DiffID] | None:
        """Diff ids of the chain `parent` from the layer.json records (oldest first), or None
        when some layer of it is not unpacked (then the chain cannot be checked)."""
        out: list[DiffID] = []
        seen: set[str] = set()
        while parent is not None:
            if parent in seen:
                return None
            seen.add(parent)
            u = self.layers.unpacked(parent)
            if u is None:
                return None
            out.append(u.diff_id)
            parent = u.parent
        return out[::-1]

    def image_from_manifest(self, manifest_digest: str) -> Image:
        """An image from a stored manifest blob, whether or not the index keeps it."""
        d = Digest(manifest_digest)
        if not self.blobs.has(d):
            raise BlobNotFound(f"manifest {d} is not in the store")
        return self._image(d, self.index())


__all__ = ["Store", "Image", "LayerInfo", "UnpackedLayer", "MEDIA_MANIFEST"]
