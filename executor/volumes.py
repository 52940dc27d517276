"""Volumes: ROOT/volumes/<name>/_data directories that outlive the containers using them.

A volume is named (`-v data:/srv`, `pydock volume create`) or anonymous (an image's VOLUME, a
bare `-v /path`; its name is 64 random hex digits). Who uses a volume is never counted in a
file that could drift: it is read from the containers' `Mounts`, so a volume is in use exactly
while a container (running or not) lists it. `rm -v` and `--rm` remove a container's anonymous
volumes once no other container uses them; `volume rm` refuses a volume in use; `volume prune`
removes unused anonymous volumes (and named ones with `all=True`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from pathlib import Path

from cache.errors import PydockError
from cache.records import field, record

VOLUMES_DIR = "volumes"
VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class NoSuchVolume(PydockError):
    exit_code = 1


class VolumeInUse(PydockError):
    exit_code = 1


class BadVolumeSpec(PydockError):
    exit_code = 125


@record
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


@record
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
        self.root = Path(root).absolute()
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
        name = name or os.urandom(32).hex()
        existing = self._load(name)
        if existing is not None:
            return existing, False
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        stage = tmp_root / f"volume-{os.getpid()}-{os.urandom(6).hex()}"
        stage.mkdir(0o700)
        (stage / "_data").mkdir(0o755)
        meta = {"created": time.time(), "anonymous": is_anon, "labels": labels or {}}
        (stage / "volume.json").write_text(json.dumps(meta))
        try:
            os.rename(stage, self.dir / name)
        except OSError:
            # Someone made it meanwhile: theirs stands.
            import shutil

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
        from executor.containers import ContainerStore

        with ContainerStore(self.root).lock():
            self._remove(name, force)

    def _remove(self, name: str, force: bool) -> None:
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
        doomed = tmp_root / f"rmvol-{os.getpid()}-{os.urandom(6).hex()}"
        try:
            os.rename(self.dir / name, doomed)
        except FileNotFoundError:
            return
        remove_tree(doomed)

    def prune(self, all_volumes: bool = False) -> list[tuple[str, int]]:
        """Remove unused volumes (anonymous ones only unless `all_volumes`); (name, bytes) each."""
        from executor.containers import ContainerStore

        removed = []
        with ContainerStore(self.root).lock():
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
    """Seed a fresh, empty volume with what the image holds at `dest`, as Docker does.

    The image's merged view is needed (a directory may get files from several layers, and
    whiteouts hide older ones), so a forked child mounts the layers read-only in a private
    mount namespace of its own (nothing can be left mounted) and copies from there. `dest` is
    resolved inside that root (openat2 RESOLVE_IN_ROOT): a symlink in the image cannot make
    the copy read host files. Symlinks inside are copied as links; devices are skipped.
    """
    if not lowers or not dest.strip("/") or any(volume_data.iterdir()):
        return
    from executor import overlay, rootfs, syscalls
    from executor.forked import run_in_child

    def in_child() -> None:
        if len(lowers) == 1:
            # One layer is its own merged view (overlay needs two lowers without an upper;
            # its whiteouts are devices, which the copy skips).
            view = os.fspath(lowers[0])
        else:
            syscalls.unshare(syscalls.CLONE_NEWNS)
            rootfs.make_private()
            import tempfile

            view = tempfile.mkdtemp(prefix="volseed-", dir=volume_data.parent)
            overlay.mount_overlay(list(lowers), None, None, view, readonly=True)
        _copy_tree_in_root(view, dest.strip("/"), volume_data)

    msg = run_in_child(in_child)
    for leftover in volume_data.parent.glob("volseed-*"):
        with contextlib.suppress(OSError):
            leftover.rmdir()
    if msg:
        raise PydockError(f"cannot copy the image's content into the volume at {dest}: {msg}")


def _copy_tree_in_root(root: str, rel: str, out: Path) -> None:
    from cache.fsops import open_dir_in_root, open_root

    rootfd = open_root(root)
    try:
        try:
            src = open_dir_in_root(rootfd, rel, readable=True)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing (or no directory) there in the image: the volume starts empty
    finally:
        os.close(rootfd)
    try:
        st = os.fstat(src)
        _copy_dir_fd(src, out)
        os.chmod(out, stat.S_IMODE(st.st_mode))
        os.chown(out, st.st_uid, st.st_gid)
    finally:
        os.close(src)


def _copy_dir_fd(dirfd: int, out: Path) -> None:
    for name in os.listdir(dirfd):
        st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        target = out / name
        if stat.S_ISDIR(st.st_mode):
            target.mkdir()
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dirfd)
            try:
                _copy_dir_fd(sub, target)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd)
            try:
                ofd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    while os.sendfile(ofd, fd, None, 1 << 20):
                        pass
                finally:
                    os.close(ofd)
            finally:
                os.close(fd)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(name, dir_fd=dirfd), target)
        else:
            continue
        os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(target, stat.S_IMODE(st.st_mode))
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
