"""Volumes: ROOT/volumes/<name>/_data directories that outlive the containers using them.

A volume is named (`-v data:/srv`, `pydock volume create`) or anonymous (an image's VOLUME, a
bare `-v /path`; its name is 64 random hex digits). Who uses a volume is never counted in a
file that could drift: it is read from the containers' `Mounts`, so a volume is in use exactly
while a container (running or not) lists it. `rm -v` and `--rm` remove a container's anonymous
volumes once no other container uses them; `volume rm` refuses a volume in use; `volume prune`
removes unused anonymous volumes (and named ones with `all=True`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cache.errors import PydockError

VOLUMES_DIR = "volumes"
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class NoSuchVolume(PydockError):
    exit_code = 1


class VolumeInUse(PydockError):
    exit_code = 1


class BadVolumeSpec(PydockError):
    exit_code = 125


@dataclass
class Volume:
    """One volume: its name, data directory and metadata (saved as volume.json)."""

    name: str
    mountpoint: Path
    created: float
    anonymous: bool = False
    labels: dict[str, str] = field(default_factory=dict)

    def inspect(self) -> dict:
        from executor.containers import rfc3339

        return {
            "CreatedAt": rfc3339(self.created).split(".")[0] + "Z",
            "Driver": "local",
            "Labels": self.labels or None,
            "Mountpoint": str(self.mountpoint),
            "Name": self.name,
            "Options": None,
            "Scope": "local",
        }


@dataclass
class MountRequest:
    """A parsed `-v` value: a bind of a host path, or a named/anonymous volume."""

    type: str  # "bind" | "volume"
    source: str  # host path for a bind, volume name ("" = anonymous) for a volume
    destination: str
    rw: bool = True
    mode: str = ""


def parse_volume_spec(spec: str) -> MountRequest:
    """Docker's `-v` grammar: `/ctr`, `name:/ctr[:opts]`, `/host:/ctr[:opts]` (opts ro|rw|z|Z)."""
    parts = spec.split(":")
    if len(parts) == 1:
        src, dst, opts = "", parts[0], ""
    elif len(parts) == 2:
        if parts[1] in ("ro", "rw") and parts[0].startswith("/"):
            src, dst, opts = "", parts[0], parts[1]
        else:
            src, dst, opts = parts[0], parts[1], ""
    elif len(parts) == 3:
        src, dst, opts = parts
    else:
        raise BadVolumeSpec(f"invalid volume specification: '{spec}'")
    if not dst.startswith("/"):
        raise BadVolumeSpec(f"invalid volume specification: '{spec}': mount path must be absolute")
    if os.path.normpath(dst) == "/":
        raise BadVolumeSpec(f"invalid volume specification: '{spec}': destination can't be '/'")
    rw = True
    for opt in filter(None, opts.split(",")):
        if opt == "ro":
            rw = False
        elif opt in ("rw", "z", "Z", "nocopy", "private", "rprivate"):
            pass
        else:
            raise BadVolumeSpec(f"invalid mode: {opt} (in volume specification '{spec}')")
    dst = os.path.normpath(dst)
    if not src:
        return MountRequest("volume", "", dst, rw, opts)
    if src.startswith("/"):
        return MountRequest("bind", os.path.normpath(src), dst, rw, opts)
    if src.startswith("."):
        raise BadVolumeSpec(
            f"invalid volume specification: '{spec}': a host path must be absolute "
            f"(use $(pwd)/{src.lstrip('./')})"
        )
    if not VOLUME_NAME_RE.match(src):
        raise BadVolumeSpec(
            f'"{src}" includes invalid characters for a local volume name, only '
            '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
        )
    return MountRequest("volume", src, dst, rw, opts)


class VolumeStore:
    """The volumes of one store root."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.dir = self.root / VOLUMES_DIR

    def _load(self, name: str) -> Volume | None:
        folder = self.dir / name
        try:
            with open(folder / "volume.json", "rb") as f:
                meta = json.load(f)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return Volume(
            name=name,
            mountpoint=folder / "_data",
            created=meta.get("created", 0.0),
            anonymous=bool(meta.get("anonymous")),
            labels=meta.get("labels") or {},
        )

    def get(self, name: str) -> Volume:
        v = self._load(name) if name and "/" not in name else None
        if v is None:
            raise NoSuchVolume(f"get {name}: no such volume")
        return v

    def list(self) -> list[Volume]:
        try:
            names = sorted(os.listdir(self.dir))
        except FileNotFoundError:
            return []
        return [v for n in names if not n.startswith(".") and (v := self._load(n)) is not None]

    def create(
        self, name: str = "", labels: dict[str, str] | None = None, anonymous: bool | None = None
    ) -> tuple[Volume, bool]:
        """The volume `name`, made if missing (a fresh anonymous one for ""); (volume, created)."""
        if name and not VOLUME_NAME_RE.match(name):
            raise BadVolumeSpec(
                f'"{name}" includes invalid characters for a local volume name, only '
                '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
            )
        is_anon = not name if anonymous is None else anonymous
        name = name or secrets.token_hex(32)
        existing = self._load(name)
        if existing is not None:
            return existing, False
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        stage = tmp_root / f"volume-{os.getpid()}-{secrets.token_hex(6)}"
        stage.mkdir(0o700)
        (stage / "_data").mkdir(0o755)
        meta = {"created": time.time(), "anonymous": is_anon, "labels": labels or {}}
        (stage / "volume.json").write_text(json.dumps(meta))
        try:
            os.rename(stage, self.dir / name)
        except OSError:
            # Someone made it meanwhile: theirs stands.
            shutil.rmtree(stage, ignore_errors=True)
            v = self._load(name)
            if v is None:
                raise
            return v, False
        v = self._load(name)
        assert v is not None
        return v, True

    def users(self, name: str) -> list[str]:
        """Ids of the containers (any state) that mount the volume `name`."""
        from executor.containers import ContainerStore

        out = []
        for cfg in ContainerStore(self.root)._configs():
            for m in cfg.get("Mounts") or []:
                if m.get("Type") == "volume" and m.get("Name") == name:
                    out.append(cfg["Id"])
                    break
        return out

    def remove(self, name: str, force: bool = False) -> None:
        v = self._load(name)
        if v is None:
            if force:
                return
            raise NoSuchVolume(f"get {name}: no such volume")
        users = self.users(name)
        if users:
            raise VolumeInUse(f"remove {name}: volume is in use - [{', '.join(users)}]")
        self._delete(name)

    def _delete(self, name: str) -> None:
        from cache.staging import remove_tree

        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        doomed = tmp_root / f"rmvol-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            os.rename(self.dir / name, doomed)
        except FileNotFoundError:
            return
        remove_tree(doomed)

    def prune(self, all_volumes: bool = False) -> list[tuple[str, int]]:
        """Remove unused volumes (anonymous ones only unless `all_volumes`); (name, bytes) each."""
        removed = []
        for v in self.list():
            if not (v.anonymous or all_volumes) or self.users(v.name):
                continue
            size = dir_size(v.mountpoint)
            self._delete(v.name)
            removed.append((v.name, size))
        return removed

    def release_anonymous(self, mounts: list[dict], gone_container: str) -> list[str]:
        """Remove the anonymous volumes in `mounts` that no container but `gone_container` uses."""
        removed = []
        for m in mounts:
            if m.get("Type") != "volume":
                continue
            v = self._load(m.get("Name", ""))
            if v is None or not v.anonymous:
                continue
            if [u for u in self.users(v.name) if u != gone_container]:
                continue
            self._delete(v.name)
            removed.append(v.name)
        return removed


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def copy_image_content(lowers: list[Path], dest: str, volume_data: Path) -> None:
    """Seed a fresh volume with what the image holds at `dest`, as Docker does.

    `lowers` are the image's unpacked layer dirs, oldest first; the newest one holding `dest`
    as a directory (with no whiteout of it above) is copied. Paths through symlinks in the image
    are not followed (the copy is best effort and must never leave the layer dir).
    """
    rel = dest.strip("/")
    if not rel:
        return
    for lower in reversed(lowers):
        parts = rel.split("/")
        # A whiteout or an opaque marker of dest (or a parent) in this layer hides older ones.
        hidden = False
        cur = Path(lower)
        for part in parts:
            cur = cur / part
            try:
                st = os.lstat(cur)
            except OSError:
                break
            # overlay whiteout (char device 0/0) or a symlink: older layers are hidden here
            if stat.S_ISLNK(st.st_mode) or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                hidden = True
                break
        if hidden:
            return
        src = Path(lower) / rel
        if src.is_dir() and not src.is_symlink():
            if any(volume_data.iterdir()):
                return
            for entry in src.iterdir():
                if entry.name.startswith(".wh."):
                    continue
                target = volume_data / entry.name
                if entry.is_dir() and not entry.is_symlink():
                    shutil.copytree(entry, target, symlinks=True)
                else:
                    shutil.copy2(entry, target, follow_symlinks=False)
            st = src.stat()
            os.chmod(volume_data, st.st_mode & 0o7777)
            os.chown(volume_data, st.st_uid, st.st_gid)
            return
        if src.exists() or src.is_symlink():
            return
