"""`pybuild --output`: the built image also written out of the store.

- `type=docker,dest=F`: a `docker load`-able archive (Docker >= 25 layout), via cache.archive;
- `type=oci,dest=F`: an OCI image layout archive;
- `type=tar,dest=F`: a tar of the image's root filesystem (layers applied, deterministic);
- `type=local,dest=DIR`: the root filesystem unpacked into a folder.
Archives and tars are written to a temporary file beside `dest` and renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from cache.errors import PydockError


class OutputError(PydockError):
    pass


def _flatten(store: Any, image: Any, target: Path) -> None:
    from cache.applier import apply_layer

    for diff_id in image.diff_ids:
        with store.layer_tar(diff_id) as stream:
            apply_layer(stream, target, whiteouts="apply")


def export(root: Any, result: Any, kind: str, dest: Path, sde: int | None = None) -> None:
    """Write the image of a build result to `dest` as `kind` (docker, oci, tar, local)."""
    from cache.store import Store

    store = Store.open(root)
    image = result.image if result.image is not None else store.get_image(result.image_id)
    dest = Path(dest)
    if kind == "local":
        dest.mkdir(parents=True, exist_ok=True)
        _flatten(store, image, dest)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            if kind in ("docker", "oci"):
                from cache.archive import save_images

                save_images(store, [(image, list(result.tags))], out, fmt=kind)
            elif kind == "tar":
                from cache.tarwriter import write_layer

                with store.tmp_dir("export") as d:
                    rootfs = d / "rootfs"
                    rootfs.mkdir()
                    _flatten(store, image, rootfs)
                    write_layer(rootfs, out, source_date_epoch=sde)
            else:
                raise OutputError(f"--output: unknown type {kind!r} (docker, oci, tar, local)")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
