"""Test helper: a busybox root filesystem dir and RunSpecs over it, independent of the store.

`make_busybox_rootfs(dir)` copies the host's static /bin/busybox and links every applet
(like `busybox --install -s`), with the /etc/passwd and /etc/group of Docker's busybox
image plus a test user. Tests use it as the single lower dir of their containers.

Fixtures for the executor and security test modules (they import them): `rootfs`, one
busybox root per session (tests only use it as a lower dir), and `no_leftovers`, which each
module makes autouse: after every test no overlay mount is left in /proc/self/mountinfo and
no cgroup named after a test container exists anywhere.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from executor.runtime import run
from executor.spec import RunResult, RunSpec

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
alice:x:1000:1000:Alice:/home/alice:/bin/sh
"""
GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
mail:x:12:
www-data:x:33:
users:x:100:alice
alice:x:1000:
staff:x:50:alice,bob
nogroup:x:65534:
"""


def applets() -> list[tuple[str, str]]:
    """(directory, name) of every applet of the host busybox, as --install puts them."""
    out = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True)
    result = []
    for line in out.stdout.split():
        d, _, name = line.rpartition("/")
        result.append((d, name))
    return result


_APPLETS: list[tuple[str, str]] | None = None


def make_busybox_rootfs(root: Path) -> Path:
    """Fill `root` with a minimal busybox system; returns `root`."""
    global _APPLETS
    if _APPLETS is None:
        _APPLETS = applets()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "home/alice", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    os.chown(root / "home/alice", 1000, 1000)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for d, name in _APPLETS:
        if name == "busybox":
            continue
        link = root / d / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    for d in ("proc", "sys", "dev"):
        (root / d).mkdir(exist_ok=True)
    for name in ("hosts", "hostname", "resolv.conf"):
        (root / "etc" / name).touch()
    return root


def make_spec(tmp: Path, lower: Path, argv: list[str], **kw) -> RunSpec:
    """A RunSpec over `lower` with fresh upper/work/merged dirs under `tmp`."""
    for d in ("upper", "work", "merged"):
        (tmp / d).mkdir(exist_ok=True)
    return RunSpec(
        lowers=kw.pop("lowers", [lower]),
        upper=tmp / "upper",
        work=tmp / "work",
        merged=tmp / "merged",
        argv=argv,
        **kw,
    )


NAME_PREFIX = "pytest-exec-"


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.isfile("/bin/busybox"):
        pytest.skip("busybox-static is not installed")
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    return make_busybox_rootfs(tmp_path_factory.mktemp("bbroot") / "lower")


# Container names handed out during the current test (other sessions may run concurrently).
_ISSUED: list[str] = []


def _our_cgroups() -> list[str]:
    found = []
    for name in _ISSUED:
        found += glob.glob(f"/sys/fs/cgroup/**/pydock/{name}", recursive=True)
    return found


def _our_mounts(tmp: Path) -> list[str]:
    # Only ours: other areas' tests may have their own overlays mounted at the same time.
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if str(tmp) in line or NAME_PREFIX in line]


@pytest.fixture
def no_leftovers(tmp_path: Path):
    _ISSUED.clear()
    yield
    assert _our_mounts(tmp_path) == []
    assert _our_cgroups() == []


def spec_for(tmp: Path, rootfs: Path, argv: list[str] | str, **kw) -> RunSpec:
    if isinstance(argv, str):
        argv = ["/bin/sh", "-c", argv]
    kw.setdefault("name", NAME_PREFIX + secrets.token_hex(4))
    _ISSUED.append(kw["name"])
    return make_spec(tmp, rootfs, argv, **kw)


def run_capture(spec: RunSpec) -> tuple[RunResult, str, str]:
    """Run with stdout and stderr captured to files; returns (result, out, err)."""
    out_path = spec.upper.parent / "stdout.txt"
    err_path = spec.upper.parent / "stderr.txt"
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        spec.stdout, spec.stderr = out.fileno(), err.fileno()
        result = run(spec)
    return result, out_path.read_text(), err_path.read_text()


def sh(tmp: Path, rootfs: Path, script: str, **kw) -> tuple[RunResult, str, str]:
    return run_capture(spec_for(tmp, rootfs, script, **kw))
