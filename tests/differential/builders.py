"""The three builders behind one interface: `build(ctx, tag, flags, out) -> ImageDump`.

- `Pybuild`: pybuild and `pydock save` as subprocesses over one store root.
- `Buildah`: Debian's buildah with private storage under a work folder.
- `Docker`: Debian's docker client with BuildKit, against a daemon already running.

`prepare(base_archive)` loads pydock's busybox into a peer (so both build on the same base)
and raises `PeerUnavailable` with the reason when the peer cannot run here; `cleanup()`
removes what the peer made. Nothing here starts a daemon.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from peer_helpers import (
    PARENT_TAG,
    PYBUILD,
    PYDOCK,
    ImageDump,
    PeerUnavailable,
    check_ok,
    read_archive,
    run_tool,
)


class Pybuild:
    """pybuild and pydock as subprocesses over one store root."""

    name = "pybuild"

    def __init__(self, root: Path) -> None:
        self.root = root

    def build(self, ctx: Path, tag: str, flags: list[str], out: Path) -> ImageDump:
        argv = [PYBUILD, "--root", str(self.root), "--progress", "plain", "-t", tag]
        p = run_tool([*argv, *flags, str(ctx)])
        check_ok(p, "pybuild")
        p = run_tool([PYDOCK, "--root", str(self.root), "save", "-o", str(out), tag])
        check_ok(p, "pydock save")
        return read_archive(out)

    def base_archive(self, out: Path, fmt: str, name: str = "busybox:latest") -> Path:
        """Save our busybox (under `name`) for a peer to load: the same base for both."""
        from cache.archive import save_images
        from cache.store import Store

        store = Store.open(self.root)
        with open(out, "wb") as f:
            save_images(store, [(store.get_image("busybox:latest"), [name])], f, fmt=fmt)
        return out


class Buildah:
    """Debian's buildah with private storage under `work` (vfs: no mounts; runc: crun
    refuses this machine's hybrid cgroups)."""

    name = "buildah"
    # runc creates /run in the image for its mounts when the base lacks it.
    artefacts = frozenset({"run"})
    # buildah moves a redefined variable to the end of Env (Docker keeps its place).
    env_order = False
    # buildah makes no layer for WORKDIR (BuildKit commits the folder it creates).
    workdir_layers = False
    history_shape = True

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "TMPDIR": str(work / "tmp")}
        self.base = [
            "buildah",
            "--root",
            str(work / "storage"),
            "--runroot",
            str(work / "run"),
            "--storage-driver",
            "vfs",
        ]

    def _buildah(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return run_tool([*self.base, *args], env=self.env, timeout=timeout)

    @staticmethod
    def precheck() -> None:
        """Cheap: is there a buildah at all (before any base image is made)?"""
        if shutil.which("buildah") is None:
            raise PeerUnavailable("buildah is not installed")

    def prepare(self, base_oci_archive: Path) -> None:
        self.precheck()
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        try:
            p = self._buildah("pull", "-q", f"oci-archive:{base_oci_archive}", timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PeerUnavailable(f"buildah cannot run: {e}") from None
        if p.returncode != 0:
            raise PeerUnavailable(f"buildah cannot load the base image: {p.stderr.strip()[-300:]}")
        # Smoke: a RUN step needs a working runtime here.
        smoke = self.work / "smoke"
        smoke.mkdir(exist_ok=True)
        (smoke / "Dockerfile").write_text("FROM busybox\nRUN true\n")
        p = self._bud(smoke, "pydock-difftest-smoke", [])
        if p.returncode != 0:
            raise PeerUnavailable(f"buildah cannot run a RUN step here: {p.stderr.strip()[-300:]}")

    def _bud(self, ctx: Path, tag: str, flags: list[str]) -> subprocess.CompletedProcess:
        runtime = ["--runtime", "runc"] if shutil.which("runc") else []
        return self._buildah(
            "bud",
            "--pull=never",
            "--layers",
            # Docker's image format: with OCI's, buildah drops SHELL, HEALTHCHECK, ONBUILD.
            "--format",
            "docker",
            "--network",
            "none",
            *runtime,
            "-t",
            tag,
            *flags,
            str(ctx),
        )

    def build(self, ctx: Path, tag: str, flags: list[str], out: Path) -> ImageDump:
        check_ok(self._bud(ctx, tag, flags), "buildah bud")
        check_ok(self._buildah("push", "-q", tag, f"docker-archive:{out}"), "buildah push")
        return read_archive(out)

    def cleanup(self) -> None:
        if shutil.which("buildah") is None or not (self.work / "storage").exists():
            return
        self._buildah("rm", "--all", timeout=60)
        self._buildah("rmi", "--all", "--force", timeout=60)
        # vfs mounts nothing; this is a guard in case a runtime left a mount behind anyway.
        for target in mounts_under(self.work):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return sorted(found, key=len, reverse=True)


class Docker:
    """Debian's docker client with BuildKit, against a daemon that is already running.

    The base is loaded under a unique name (never touching the user's `busybox` tag) and
    the Dockerfile's `FROM busybox` is rewritten to it; every tag made is removed at the end.
    """

    name = "docker"
    artefacts: frozenset[str] = frozenset()
    env_order = True
    workdir_layers = True
    history_shape = True

    def __init__(self) -> None:
        self.bin = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
        self.env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        self.repo = f"pydock-difftest-{uuid.uuid4().hex[:8]}"
        self.base_name = f"{self.repo}/busybox:latest"
        self.tags: list[str] = []

    def _docker(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return run_tool([self.bin, *args], env=self.env, timeout=timeout)

    def precheck(self) -> None:
        """Cheap: a docker client and a daemon that answers (before any base is made)."""
        if shutil.which(self.bin) is None:
            raise PeerUnavailable("docker is not installed")
        try:
            p = self._docker("version", "--format", "{{.Server.Version}}", timeout=15)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PeerUnavailable(f"no docker daemon answers: {e}") from None
        if p.returncode != 0:
            raise PeerUnavailable(f"no docker daemon answers: {p.stderr.strip()[-200:]}")

    def prepare(self, base_archive: Path) -> None:
        self.precheck()
        p = self._docker("load", "-q", "-i", str(base_archive), timeout=60)
        if p.returncode != 0:
            raise PeerUnavailable(f"docker cannot load the base image: {p.stderr.strip()}")
        self.tags.append(self.base_name)
        smoke = base_archive.parent / "docker-smoke"
        smoke.mkdir(exist_ok=True)
        (smoke / "Dockerfile").write_text(f"FROM {self.base_name}\nRUN true\n")
        tag = f"{self.repo}/smoke:latest"
        p = self._docker("build", "--network=none", "-q", "-t", tag, str(smoke))
        if p.returncode != 0:
            raise PeerUnavailable(f"docker build (BuildKit) cannot run here: {p.stderr[-300:]}")
        self.tags.append(tag)

    def rewrite(self, ctx: Path) -> Path:
        """A copy of the Dockerfile, outside the context (which must stay as pybuild saw
        it), with `FROM busybox` / `--from=busybox` pointing at the uniquely named base."""
        text = (ctx / "Dockerfile").read_text()
        df = ctx.parent / f"{ctx.name}.Dockerfile"
        text = re.sub(
            r"(?im)^(\s*FROM\s+(?:--platform=\S+\s+)?)busybox(:latest)?(?=\s|$)",
            lambda m: m.group(1) + self.base_name,
            text,
        )
        text = re.sub(
            rf"(?im)^(\s*FROM\s+){PARENT_TAG}(?=\s|$)",
            lambda m: m.group(1) + f"{self.repo}/{PARENT_TAG}:latest",
            text,
        )
        text = re.sub(r"--from=busybox(:latest)?(?=\s)", f"--from={self.base_name}", text)
        df.write_text(text)
        return df

    def build(self, ctx: Path, tag: str, flags: list[str], out: Path) -> ImageDump:
        df = self.rewrite(ctx)
        name = f"{self.repo}/{tag}:latest"
        own = ["--network=none", "-q", "-f", str(df), "-t", name]
        p = self._docker("build", *own, *flags, str(ctx))
        check_ok(p, "docker build")
        self.tags.append(name)
        check_ok(self._docker("save", "-o", str(out), name), "docker save")
        return read_archive(out)

    def cleanup(self) -> None:
        if self.tags:
            self._docker("rmi", "--force", *reversed(self.tags), timeout=120)
            self.tags.clear()
