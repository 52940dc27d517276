"""The base image: busybox:latest made from Debian's busybox-static and testdata/busybox/recipe.toml.

`make_busybox` builds the root filesystem in a staging dir under ROOT/tmp (the binary, one
absolute symlink per applet of `busybox --list-full`, /etc/passwd and /etc/group, the usual
directories with exact modes), writes it as ONE layer with every mtime clamped to 0 and every
owner root, and writes a config whose `created` is the epoch. Nothing depends on the clock, the
umask or the host's users, so the same busybox package always gives the same image id.
"""

from __future__ import annotations

import os
import platform
import shutil
import struct
import subprocess
import tomllib
from pathlib import Path

from cache.errors import PydockError
from cache.images import Image
from cache.store import Store

RECIPE = Path(__file__).resolve().parent.parent / "testdata" / "busybox" / "recipe.toml"

# Go's GOARCH names for what `platform.machine()` says.
_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "i686": "386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


class BootstrapError(PydockError):
    """The base image cannot be made (no busybox, a dynamic busybox, a bad recipe)."""


def _is_static_elf(path: Path) -> bool:
    """True when `path` is an ELF executable without a PT_INTERP (dynamic loader) segment."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            raise BootstrapError(f"{path} is not an ELF executable")
        is64 = ident[4] == 2
        endian = "<" if ident[5] == 1 else ">"
        f.seek(0)
        header = f.read(64 if is64 else 52)
        if is64:
            (phoff,) = struct.unpack_from(endian + "Q", header, 32)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
        else:
            (phoff,) = struct.unpack_from(endian + "I", header, 28)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 42)
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            (p_type,) = struct.unpack(endian + "I", f.read(4))
            if p_type == 3:  # PT_INTERP
                return False
    return True


def busybox_version(busybox_path: str | os.PathLike[str]) -> str:
    """First line of busybox's banner, e.g. "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1)"."""
    out = subprocess.run([os.fspath(busybox_path)], capture_output=True, text=True, check=False)
    line = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    return line.removesuffix(" multi-call binary.").strip()


def busybox_applets(busybox_path: str | os.PathLike[str]) -> list[str]:
    """Install paths of every applet ("bin/sh", "usr/bin/env", ...), sorted."""
    out = subprocess.run(
        [os.fspath(busybox_path), "--list-full"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise BootstrapError(f"{busybox_path} --list-full failed: {out.stderr.strip()}")
    return sorted({line.strip().lstrip("/") for line in out.stdout.splitlines() if line.strip()})


def load_recipe(path: Path = RECIPE) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BootstrapError(f"{path}: busybox recipe not found") from None
    except tomllib.TOMLDecodeError as e:
        raise BootstrapError(f"{path}: {e}") from None


def _safe_rel(path: str, where: str) -> str:
    parts = path.split("/")
    if path.startswith("/") or not path or any(p in ("", ".", "..") for p in parts):
        raise BootstrapError(f"{where}: bad path {path!r} in the busybox recipe")
    return path


def build_rootfs(rootfs: Path, busybox_path: Path, recipe: dict) -> list[str]:
    """Fill the empty dir `rootfs` per the recipe; returns the applet paths linked."""
    for d in recipe.get("dir", []):
        p = rootfs / _safe_rel(d["path"], "dir")
        p.mkdir(parents=True, exist_ok=True)
    bb = recipe.get("busybox", {})
    target_rel = _safe_rel(bb.get("path", "bin/busybox"), "busybox")
    target = rootfs / target_rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(busybox_path, target)
    os.chmod(target, bb.get("mode", 0o755))
    link_target = bb.get("link_target", "/" + target_rel)
    applets: list[str] = []
    if bb.get("applets", "list-full") == "list-full":
        names = busybox_applets(busybox_path)
    else:
        names = sorted(bb["applets"])
    for rel in names:
        rel = _safe_rel(rel, "applet")
        if rel == target_rel:
            continue
        link = rootfs / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            continue
        os.symlink(link_target, link)
        applets.append(rel)
    for f in recipe.get("file", []):
        p = rootfs / _safe_rel(f["path"], "file")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f["content"].lstrip("\n"))
        os.chmod(p, f.get("mode", 0o644))
    # Exact modes last (mkdir is subject to the umask; parents made on the way get 0755).
    for d in recipe.get("dir", []):
        os.chmod(rootfs / d["path"], d["mode"])
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            try:
                os.lchown(os.path.join(dirpath, name), 0, 0)
            except PermissionError:
                raise BootstrapError(
                    "making the base image needs root (files owned by uid 0)"
                ) from None
    return applets


def make_busybox(
    store: Store,
    busybox_path: str | os.PathLike[str] = "/bin/busybox",
    tag: str = "busybox:latest",
    recipe_path: Path = RECIPE,
) -> Image:
    """Build busybox:latest (or `tag`) from a static busybox binary into `store`; returns it."""
    from cache.tarwriter import write_layer

    bb = Path(busybox_path)
    if not bb.is_file():
        raise BootstrapError(f"{bb}: busybox not found (on Debian: apt-get install busybox-static)")
    if not _is_static_elf(bb):
        raise BootstrapError(
            f"{bb} is dynamically linked; the base image needs a static busybox "
            "(on Debian: apt-get install busybox-static)"
        )
    recipe = load_recipe(recipe_path)
    image = recipe.get("image", {})
    version = busybox_version(bb)
    with store.tmp_dir("bootstrap") as stage:
        rootfs = stage / "rootfs"
        rootfs.mkdir()
        build_rootfs(rootfs, bb, recipe)
        tar = stage / "layer.tar"
        with open(tar, "wb") as out:
            write_layer(rootfs, out, source_date_epoch=0)
        with open(tar, "rb") as f:
            layer = store.add_layer(f)
    created = image.get("created", "1970-01-01T00:00:00Z")
    config = {
        "architecture": _ARCH.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": created,
        "config": {
            "Env": list(image.get("env", [])),
            "Cmd": list(image.get("cmd", ["sh"])),
        },
        "history": [
            {
                "created": created,
                "created_by": f"pydock bootstrap busybox: {version or bb.name}",
            }
        ],
    }
    return store.write_image(config, [layer.diff_id], tags=[tag] if tag else [])
