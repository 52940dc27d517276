"""`pydock import`: a one-layer image from a root filesystem tarball.

The tarball (plain, gzip, xz, bzip2 or zstd, from a file or a stream) is unpacked by the safe
applier into a staging dir and written back by the deterministic layer writer, so the layer's
diff id depends only on the content (names, modes, owners, whole-second mtimes, xattrs), never
on the order, the owner names or the compression of the input. The image config is the one
`docker import` makes (`history` = one entry with comment "Imported from <src>" or the
message), changed by Dockerfile instructions given with `--change`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from cache.digest import DiffID
from cache.errors import PydockError

CHANGE_INSTRUCTIONS = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "ONBUILD",
    "USER",
    "VOLUME",
    "WORKDIR",
    "STOPSIGNAL",
)


class ImportError_(PydockError):
    """A rootfs tarball or a --change that cannot be imported."""


def _now_rfc3339() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        t = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
    else:
        t = datetime.datetime.now(datetime.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")


def go_arch() -> str:
    """GOARCH name of this machine (what image configs record)."""
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


# --- --change ------------------------------------------------------------------------------------


def _json_or_shell(rest: str) -> list[str]:
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(rest: str, what: str) -> list[tuple[str, str]]:
    """`K=V K2="v 2"` pairs, or the legacy one-pair form `K V with spaces`."""
    try:
        words = shlex.split(rest, posix=True)
    except ValueError as e:
        raise ImportError_(f"{what}: {e}") from None
    if not words:
        raise ImportError_(f"{what} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        if not value.strip():
            raise ImportError_(f"{what} needs a value for {key!r}")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise ImportError_(f"{what}: {w!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def apply_change(config: dict, change: str) -> None:
    """Apply one Dockerfile instruction (`docker import --change`) to the runtime `config`."""
    text = change.strip()
    word, _, rest = text.partition(" ")
    if not word:
        raise ImportError_("empty --change")
    inst = word.upper()
    where = f"--change {text!r}"
    if inst not in CHANGE_INSTRUCTIONS:
        raise ImportError_(
            f"{where}: {word} is not supported (use one of {', '.join(CHANGE_INSTRUCTIONS)})"
        )
    rest = rest.strip()
    if not rest:
        raise ImportError_(f"{where}: {inst} requires an argument")
    if inst == "CMD":
        config["Cmd"] = _json_or_shell(rest)
    elif inst == "ENTRYPOINT":
        config["Entrypoint"] = _json_or_shell(rest)
    elif inst == "ENV":
        env = list(config.get("Env") or [])
        for key, value in _pairs(rest, where):
            env = [e for e in env if e.split("=", 1)[0] != key] + [f"{key}={value}"]
        config["Env"] = env
    elif inst == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(_pairs(rest, where))
        config["Labels"] = labels
    elif inst == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for p in rest.split():
            port, _, proto = p.partition("/")
            proto = (proto or "tcp").lower()
            lo, _, hi = port.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()) or proto not in ("tcp", "udp", "sctp"):
                raise ImportError_(f"{where}: invalid port {p!r}")
            for n in range(int(lo), int(hi or lo) + 1):
                ports[f"{n}/{proto}"] = {}
        config["ExposedPorts"] = ports
    elif inst == "VOLUME":
        vols = dict(config.get("Volumes") or {})
        paths = _json_or_shell(rest)
        if paths[:2] == ["/bin/sh", "-c"]:
            paths = rest.split()
        for v in paths:
            vols[v] = {}
        config["Volumes"] = vols
    elif inst == "ONBUILD":
        if rest.split(" ", 1)[0].upper() in ("ONBUILD", "FROM", "MAINTAINER"):
            raise ImportError_(f"{where}: {rest.split()[0]} isn't allowed as an ONBUILD trigger")
        config["OnBuild"] = list(config.get("OnBuild") or []) + [rest]
    elif inst == "USER":
        config["User"] = rest
    elif inst == "WORKDIR":
        wd = rest
        if not wd.startswith("/"):
            wd = os.path.normpath(os.path.join(config.get("WorkingDir") or "/", wd))
        config["WorkingDir"] = wd
    elif inst == "STOPSIGNAL":
        config["StopSignal"] = rest


# --- the import ---------------------------------------------------------------------------------


def import_rootfs(
    store: Any,
    source: str | os.PathLike[str] | BinaryIO,
    *,
    tag: str | None = None,
    changes: Sequence[str] = (),
    message: str | None = None,
    source_name: str | None = None,
) -> Any:
    """Import a rootfs tarball (path, or an open stream such as stdin) as a one-layer image.

    Returns the stored `Image`. Errors leave the store unchanged.
    """
    from cache.applier import apply_layer
    from cache.decompress import open_decompressed
    from cache.refs import parse_reference
    from cache.tarwriter import write_layer

    runtime: dict = {}
    for c in changes:
        apply_change(runtime, c)
    ref = parse_reference(tag) if tag else None  # a bad name fails before any work
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        name = source_name or str(path)
        try:
            src: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise ImportError_(f"{path}: no such file") from None
        except IsADirectoryError:
            raise ImportError_(f"{path}: is a directory, not a tarball") from None
        close_src = True
    else:
        src, name, close_src = source, source_name or "-", False
    with store.tmp_dir("import") as staging:
        # rootfs is laid out as the store's unpacked layer dirs are (<stage>/diff), so that
        # it can become the image's unpacked layer afterwards instead of being removed.
        unpack = staging / "unpack"
        unpack.mkdir(0o700)
        rootfs = unpack / "diff"
        rootfs.mkdir(0o755)
        try:
            reader, _ = open_decompressed(src, f"import {name}")
            try:
                apply_layer(reader, rootfs, whiteouts="apply")
            finally:
                reader.close()
        except PydockError as e:
            raise ImportError_(f"{name}: {e.message}") from None
        finally:
            if close_src:
                src.close()
        # The layer is written straight into the staging dir (under ROOT/tmp, the blobs' file
        # system) and committed by link: the tar writer already hashed it, and the store's copy
        # (another pass over a possibly large layer) is not needed. Its format is ours.
        layer = staging / "layer.tar"
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        fd = os.open(layer, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        with open(fd, "wb", buffering=1 << 20) as out:
            stats = write_layer(
                rootfs, out, source_date_epoch=int(epoch) if epoch and epoch.isdigit() else None
            )
            out.flush()
            os.fsync(out.fileno())
        diff_id = DiffID(stats.diff_id)
        created = _now_rfc3339()
        comment = message if message else f"Imported from {name}"
        config = {
            "architecture": go_arch(),
            "os": "linux",
            "created": created,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
            "history": [{"created": created, "comment": comment}],
        }
        with store.lock():
            new_blob = not store.has_blob(diff_id)
            if new_blob:
                store.blobs.commit_staged(layer, diff_id)
            try:
                image = store.write_image(config, [diff_id], tags=[ref] if ref else ())
            except BaseException:
                if new_blob:  # leave the store as it was
                    store.blobs.remove(diff_id)
                raise
        # The tree the layer was written from is that layer unpacked (unless mtimes were
        # clamped in the tar only): keep it as the lower dir `pydock run` needs, which also
        # spares removing thousands of fresh files. Only an optimisation: on any problem the
        # staging dir is removed as usual and the layer is unpacked when first needed.
        adopt = getattr(store, "adopt_unpacked_base", None)
        if adopt is not None and not epoch:
            try:
                _as_unpacked_root(rootfs)
                adopt(diff_id, unpack)
            except (PydockError, OSError):
                pass
        return image


def _as_unpacked_root(rootfs: Path) -> None:
    """Give the tree's top dir what an unpack of the written layer gives it.

    A rootfs tarball may carry a "./" entry (its mode, owner, xattrs land on the top dir), but
    the layer written from the tree has no entry for its root, so an unpack of that layer
    starts from a fresh dir: 0755 (less the umask), owned by this process, no xattrs.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chown(rootfs, os.geteuid(), os.getegid())
    os.chmod(rootfs, 0o755 & ~umask)
    for name in os.listxattr(rootfs):
        os.removexattr(rootfs, name)
