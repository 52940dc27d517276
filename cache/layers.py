"""Layers: uncompressed tar blobs (blob digest == diff id) and their unpacked overlay lower dirs.

    blobs/sha256/<diff-id hex>            the layer tar, verified on ingest and on read
    layers/<chain-id hex>/diff/           the layer unpacked once, overlay whiteouts in place
    layers/<chain-id hex>/layer.json      {"chain_id", "diff_id", "parent", "size", "short"}
    l/<short> -> ../layers/<chain-id hex>/diff

`layer.json` is written inside the staging dir before the dir is renamed into `layers/`, so a
`layers/<chain>` that exists is complete: a crash mid-unpack leaves only a staging dir under
ROOT/tmp (removed by the next writer), never a half layer under its final name.

The short names (12 base32 characters derived from the chain id, longer only on a collision)
keep an overlay `lowerdir=` option of 200 layers under a page when the mount is made from ROOT
with relative names (`l/ABC...:l/DEF...`), as Docker's overlay2 driver does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cache.blobs import BlobStore
from cache.digest import ChainID, DiffID, chain_ids
from cache.errors import BadLayerTar, LayerNotFound, StoreError
from cache.records import record
from cache.staging import crash_point, fsync_dir, remove_tree, staging_dir, staging_name

SHORT_LEN = 12
LAYER_JSON = "layer.json"


@record(frozen=True)
class LayerInfo:
    """A stored layer: its diff id (== blob digest here) and tar size in bytes."""

    diff_id: DiffID
    size: int


@record(frozen=True)
class UnpackedLayer:
    """A layer unpacked under layers/<chain>/ (see layer.json)."""

    chain_id: ChainID
    diff_id: DiffID
    parent: ChainID | None
    size: int
    short: str
    path: Path  # layers/<chain>/diff

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "chain_id": self.chain_id,
                "diff_id": self.diff_id,
                "parent": self.parent,
                "size": self.size,
                "short": self.short,
                "complete": True,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()


def _bad_name(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or ".." in parts


_BAD_WHITEOUTS = {".wh.", ".wh..", ".wh..."}


def verify_tar(path: Path, where: str = "layer") -> int:
    """Check that `path` is one complete, well-formed layer tar; returns the number of members.

    The strict reader (`cache.tarcheck`) checks every header, the file data and the end of the
    archive (Python's tarfile stops silently at a corrupt header). On top, what no layer may
    hold is refused before it is stored: member names and hard-link targets leaving the root
    (a leading "/" or a ".." component), whiteouts named ".wh.", ".wh.." or ".wh...", and
    `trusted.*` / `user.overlay.*` xattrs. The applier resolves everything again when it
    unpacks; this is the screen that keeps a bad layer out of the store altogether.
    """
    from cache.tarcheck import TarReader, show

    count = 0
    with open(path, "rb") as f:
        reader = TarReader(f)
        try:
            for m in reader:
                count += 1
                name = m.name.decode("utf-8", "surrogateescape")
                if _bad_name(name):
                    raise BadLayerTar(f"{where}: member {show(m.name)!r} leaves the layer root")
                # type "1" is a hard link (the raw typeflag)
                if m.type == "1" and _bad_name(m.linkname.decode("utf-8", "surrogateescape")):
                    raise BadLayerTar(
                        f"{where}: hard link {show(m.name)!r} -> {show(m.linkname)!r} "
                        "leaves the layer root"
                    )
                if name.rstrip("/").rsplit("/", 1)[-1] in _BAD_WHITEOUTS:
                    raise BadLayerTar(f"{where}: member {show(m.name)!r} is a malformed whiteout")
                for key in m.xattrs:
                    if key.startswith("trusted.") or key.startswith("user.overlay."):
                        raise BadLayerTar(
                            f"{where}: member {show(m.name)!r} carries the xattr {key!r}"
                        )
                reader.skip()
        except BadLayerTar as e:
            if str(e).startswith(where):
                raise
            # Name the usual cause of a short tar the way tar tools do.
            cause = "unexpected end of data: " if "truncated" in str(e) else ""
            raise BadLayerTar(f"{where}: {cause}{e}") from None
    return count


def short_name(chain: ChainID, length: int = SHORT_LEN) -> str:
    return base64.b32encode(bytes.fromhex(chain.hex)).decode()[:length]


class LayerStore:
    """Unpacked layers of a store root (`layers/`, `l/`), built from the blobs."""

    def __init__(
        self,
        root: Path,
        blobs: BlobStore,
        tmp: Path,
        on_unpacked: Callable[[ChainID], None] | None = None,
    ) -> None:
        self.root = root
        # Called under the lock before a new layer dir is renamed into place (the store
        # records the chain in this process's lease) and for every layer handed out.
        self.on_unpacked = on_unpacked or (lambda chain: None)
        self.dir = root / "layers"
        self.links = root / "l"
        self.blobs = blobs
        self.tmp = tmp

    # ---- ingest ------------------------------------------------------------------------
    def add(self, stream: BinaryIO) -> LayerInfo:
        """Store an uncompressed layer tar read from `stream` (to its end; caller closes it).

        Hashes while copying into staging, checks the tar is complete, then commits the blob.
        On any error nothing is left behind.
        """
        tmp, digest, size = self.blobs.stage(stream, kind="layer")
        try:
            verify_tar(tmp, where=f"layer {digest.short}")
            self.blobs.commit_staged(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return LayerInfo(DiffID(digest), size)

    def write_tree(
        self,
        src_dir: Path,
        *,
        overlay_upper: bool = False,
        source_date_epoch: int | None = None,
    ) -> LayerInfo:
        """Write the tree `src_dir` as a layer with our own tar writer, straight into the
        staging file, and commit it (a tree that gives an empty tar is stored too, as `add`
        would: its diff id is EMPTY_TAR_DIFF_ID).

        Unlike `add`, nothing is hashed twice and nothing is parsed again: the digest is the
        writer's own running SHA-256 of exactly the bytes it wrote (the staged size is checked
        against its count), and `verify_tar` is skipped because that screen is for tars from
        outside (load, import, `add`): `cache.tarwriter.write_layer` builds every header itself
        from a directory walk, so its names are relative without "..", hard-link targets are
        earlier names of the same tree, whiteouts are only those it makes, and it never copies
        `trusted.*` or `user.overlay.*` xattrs (see `_is_dropped_xattr`). On any error (the
        tree unreadable, the disk full, an interrupt) the staging file is removed and the
        store is as before.
        """
        from cache.tarwriter import write_layer

        def produce(out: BinaryIO) -> tuple[str, int]:
            stats = write_layer(
                src_dir, out, overlay_upper=overlay_upper, source_date_epoch=source_date_epoch
            )
            return stats.diff_id, stats.size

        tmp, digest, size = self.blobs.stage_written(produce, kind="layer")
        try:
            self.blobs.commit_staged(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return LayerInfo(DiffID(digest), size)

    def open_tar(self, diff_id: str) -> BinaryIO:
        """A verifying reader of the layer tar (raises `LayerNotFound`); caller closes it."""
        d = DiffID(diff_id)
        if not self.blobs.has(d):
            raise LayerNotFound(f"layer {d} is not in the store")
        return self.blobs.open(d)

    def info(self, diff_id: str) -> LayerInfo:
        d = DiffID(diff_id)
        if not self.blobs.has(d):
            raise LayerNotFound(f"layer {d} is not in the store")
        return LayerInfo(d, self.blobs.size(d))

    # ---- unpacked dirs -----------------------------------------------------------------
    def unpacked(self, chain: ChainID) -> UnpackedLayer | None:
        """The unpacked layer of `chain`, or None if it is not (completely) there."""
        d = self.dir / chain.hex
        try:
            meta = json.loads((d / LAYER_JSON).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError:
            raise StoreError(f"{d / LAYER_JSON}: corrupt layer record") from None
        parent = meta.get("parent")
        return UnpackedLayer(
            ChainID(meta["chain_id"]),
            DiffID(meta["diff_id"]),
            ChainID(parent) if parent else None,
            int(meta.get("size", 0)),
            meta["short"],
            d / "diff",
        )

    def all_unpacked(self) -> list[UnpackedLayer]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(self.dir)):
                with contextlib.suppress(StoreError, ValueError, KeyError):
                    u = self.unpacked(ChainID(f"sha256:{name}"))
                    if u is not None:
                        out.append(u)
        return out

    def ensure_unpacked(self, diff_ids: list[str], lock) -> list[UnpackedLayer]:  # noqa: ANN001
        """Unpack every missing layer of the stack `diff_ids` (oldest first); same order out.

        The unpack itself runs without the store lock (in a private staging dir); `lock` (the
        store's lock context) is held only to link and rename the result into place.
        """
        out: list[UnpackedLayer] = []
        parent: ChainID | None = None
        for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
            u = self.unpacked(chain)
            if u is None:
                u = self._unpack(DiffID(diff_id), chain, parent, lock)
            else:
                with lock():
                    # Lease it, and make sure a prune did not take it in between.
                    self.on_unpacked(chain)
                    u = self.unpacked(chain) or self._unpack(DiffID(diff_id), chain, parent, lock)
            out.append(u)
            parent = chain
        return out

    def _free_short(self, chain: ChainID) -> str:
        target = f"../layers/{chain.hex}/diff"
        for length in (SHORT_LEN, 16, 20, 26, 52):
            name = short_name(chain, length)
            try:
                existing = os.readlink(self.links / name)
            except FileNotFoundError:
                return name
            if existing == target:
                return name
        raise StoreError(f"cannot find a free short link name for layer {chain}")

    def _unpack(
        self,
        diff_id: DiffID,
        chain: ChainID,
        parent: ChainID | None,
        lock,  # noqa: ANN001
    ) -> UnpackedLayer:
        from cache.applier import apply_layer  # provided by the layer applier (helper "layers")
        from cache.fsops import syncfs

        with staging_dir(self.tmp, "unpack") as stage:
            target = stage / "diff"
            os.mkdir(target, 0o755)
            with self.open_tar(diff_id) as reader:
                apply_layer(reader, target, whiteouts="overlay")
                # The applier reads to the end of the tar; whatever padding is left must still
                # reach the digest check.
                reader.read_all_and_verify()
            size = self.blobs.size(diff_id)
            # The unpacked files must be on disk before the rename makes the layer look
            # complete (a power loss must not leave empty files under the final name).
            syncfs(target)
            with lock():
                # staging_dir's cleanup finds nothing once the stage was renamed into place,
                # and removes ours if another writer finished first.
                return self._install(stage, chain, diff_id, parent, size)

    def _install(
        self, stage: Path, chain: ChainID, diff_id: DiffID, parent: ChainID | None, size: int
    ) -> UnpackedLayer:
        """Rename the staging dir `stage` (holding `diff/`) to layers/<chain> (under the lock).

        layer.json goes in first, so a layers/<chain> that exists is complete. If the layer is
        already there (another writer finished first) that one is returned and `stage` stays
        for its owner to remove.
        """
        self.on_unpacked(chain)
        existing = self.unpacked(chain)
        if existing is not None:
            return existing
        final = self.dir / chain.hex
        short = self._free_short(chain)
        u = UnpackedLayer(chain, diff_id, parent, size, short, final / "diff")
        meta = stage / LAYER_JSON
        meta.write_bytes(u.to_json())
        with open(meta, "rb") as f:
            os.fsync(f.fileno())
        crash_point("unpack-staged")
        self._link(short, chain)
        if final.exists():
            # A leftover without layer.json cannot come from a rename (layer.json is inside
            # before the rename), but be safe: move it aside and drop it.
            self._discard(final)
        os.rename(stage, final)
        crash_point("unpack-renamed")
        fsync_dir(self.dir)
        return u

    def adopt_base(self, stage: Path, diff_id: DiffID, lock) -> UnpackedLayer:  # noqa: ANN001
        """Install `stage/diff` as the unpacked dir of the base layer `diff_id` (no parent).

        For a writer that made the layer tar *from* that very tree (pydock import): unpacking
        the blob again would rebuild the same tree, and removing this one costs as much as
        writing it. `stage` is a staging dir under ROOT/tmp holding only `diff/`; it is
        renamed into place, or left to its owner when the layer is already unpacked. The blob
        must be stored. Additive, for helper "images" (cache/importer.py).
        """
        from cache.fsops import syncfs

        chain = ChainID(diff_id)
        syncfs(stage / "diff")
        with lock():
            return self._install(stage, chain, DiffID(diff_id), None, self.blobs.size(diff_id))

    def adopt(self, stage: Path, diff_ids: list[str], lock) -> UnpackedLayer:  # noqa: ANN001
        """Install `stage/diff` as the unpacked dir of the top layer of the stack `diff_ids`
        (oldest first; the layers below are its parents). Like `adopt_base`, for a writer
        that made the layer tar from that very tree in overlay form (pybuild: a RUN's upper
        dir, with whiteouts as char devices 0/0 and opaque xattrs, or a COPY's layer dir).
        Additive, for helper "pybuild" (builder/steps.py)."""
        from cache.fsops import syncfs

        chains = chain_ids(diff_ids)
        parent = chains[-2] if len(chains) > 1 else None
        top = DiffID(diff_ids[-1])
        syncfs(stage / "diff")
        with lock():
            return self._install(stage, chains[-1], top, parent, self.blobs.size(top))

    def _link(self, short: str, chain: ChainID) -> None:
        link = self.links / short
        target = f"../layers/{chain.hex}/diff"
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(link) == target:
                return
        tmp = self.tmp / staging_name("link")
        os.symlink(target, tmp)
        os.rename(tmp, link)
        fsync_dir(self.links)

    def _discard(self, path: Path) -> None:
        aside = self.tmp / staging_name("removing")
        os.rename(path, aside)
        remove_tree(aside)

    def remove_unpacked(self, chain: str) -> bool:
        """Remove layers/<chain> and its short link (caller holds the store lock)."""
        c = ChainID(chain)
        u = self.unpacked(c)
        final = self.dir / c.hex
        if u is None and not final.exists():
            return False
        if u is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.links / u.short)
        # Rename first so that a crash mid-removal leaves no half layer under the final name.
        self._discard(final)
        fsync_dir(self.dir)
        return True
