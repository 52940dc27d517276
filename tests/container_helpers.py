"""Shared harness of the container tests: run `pydock` on a test store, clean up after.

`Pydock(root)` runs the real command line in a subprocess (`pydock(...)` returns the completed
process); `leftovers_check(root)` kills any container of the test still running, then asserts
that no overlay mount under the test's tmp dir and no cgroup of its containers is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Pydock:
    """`pydock --root ROOT ...` as a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __call__(
        self, *args: str, input: str | bytes | None = None, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess:
        text = not isinstance(input, bytes)
        p = subprocess.run(
            [sys.executable, "-m", "frontend.pydock", "--root", str(self.root), *args],
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            cwd=REPO,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"pydock {' '.join(args)} exited {p.returncode}: {p.stderr}")
        return p

    def ok(self, *args: str, **kw) -> str:
        """stdout of a command that must succeed."""
        return self(*args, check=True, **kw).stdout


def _container_ids(root: Path) -> list[str]:
    try:
        return [n for n in os.listdir(root / "containers") if len(n) == 64]
    except FileNotFoundError:
        return []


def _cgroup_dirs(name: str) -> list[str]:
    """Where the executor makes the cgroups of container `name` (see executor.cgroups)."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:  # controller -> our cgroup (the executor nests below)
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for ctrl in controllers.split(","):
                own[ctrl] = path
    out = [
        os.path.join("/sys/fs/cgroup", "pydock", name),
        os.path.join("/sys/fs/cgroup/unified", "pydock", name),
    ]
    for ctrl in os.listdir("/sys/fs/cgroup"):
        base = own.get(ctrl, "/").lstrip("/")
        out.append(os.path.join("/sys/fs/cgroup", ctrl, base, "pydock", name))
    return out


def leftovers_check(root: Path, tmp: Path) -> None:
    """Kill what a test left running, then assert no mount or cgroup of it remains."""
    from executor.containers import ContainerStore, process_alive

    cstore = ContainerStore(root)
    killed = []
    for c in cstore.list():
        if c.state.running and process_alive(c.state.pid, c.state.pid_start):
            os.kill(c.state.pid, signal.SIGKILL)
            killed.append(c.name)
    deadline = time.monotonic() + 10
    while killed and time.monotonic() < deadline:
        if not any(c.state.running for c in cstore.list()):
            break
        time.sleep(0.05)
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if str(tmp) in line]
    ids = _container_ids(root)
    cgroups = [p for cid in ids for p in _cgroup_dirs(cid) if os.path.exists(p)]
    assert not mounts, f"mounts left behind: {mounts}"
    assert not cgroups, f"cgroups left behind: {cgroups}"
    assert not killed, f"the test left containers running: {killed}"


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # noqa: ANN001, ANN201
    """Poll `predicate()` until it returns a true value (returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(interval)


def drive_pty(
    argv: list[str], typed: bytes, timeout: float = 20, prompt: bytes | None = b"# "
) -> tuple[int, bytes]:
    """Run argv on a new pty, type `typed` once `prompt` shows (at once for None), collect
    everything until it exits (killed after `timeout`)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, *argv])
    out = b""
    sent = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            out += data
        if not sent and (prompt is None or prompt in out):
            time.sleep(0.3 if prompt is None else 0)
            os.write(fd, typed)
            sent = True
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out
