"""Container cgroups on both hierarchies: v1 (this machine's controllers) and v2 (the
unified mount, where only the core files exist here: join, freeze, kill, remove)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from executor import cgroups
from executor.cgroups import CgroupSet
from executor.spec import ExecutorError, Limits

UNIFIED = "/sys/fs/cgroup/unified"


def _sleeper() -> int:
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    return pid


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line for line in f if line.startswith("State:")).split()[1]


@pytest.fixture
def v2(monkeypatch):
    if not os.path.exists(os.path.join(UNIFIED, "cgroup.controllers")):
        pytest.skip("no cgroup2 hierarchy mounted at " + UNIFIED)
    monkeypatch.setattr(cgroups, "CGROUP_ROOT", UNIFIED)
    monkeypatch.setattr(cgroups, "is_v2", lambda: True)


@pytest.mark.parametrize("version", [1, 2])
def test_join_freeze_kill_remove(request, version):
    if version == 2:
        request.getfixturevalue("v2")
    elif cgroups.is_v2():
        pytest.skip("a pure cgroup2 host")
    name = f"pytest-cg-{os.getpid()}-{version}"
    cg = CgroupSet.create(name, Limits())
    assert cg.version == version
    pid = _sleeper()
    try:
        cg.join(pid)
        assert pid in cg.pids()
        cg.freeze()
        assert cg.is_frozen()
        deadline = time.monotonic() + 5
        while _state(pid) not in ("D", "S", "T") and time.monotonic() < deadline:
            time.sleep(0.01)
        again = CgroupSet.from_paths(cg.paths)
        assert again.version == version and again.is_frozen()
        again.thaw()
        assert not cg.is_frozen()
        cg.kill_all()
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        cg.remove()
    assert cg.paths == {}
    assert not any(name in p for p, _, _ in os.walk("/sys/fs/cgroup/unified"))


def test_v2_limit_without_its_controller_is_an_error(v2):
    with pytest.raises(ExecutorError, match="memory cgroup controller is not available"):
        CgroupSet.create(f"pytest-cg-{os.getpid()}-lim", Limits(memory=64 << 20))
    assert not os.path.exists(os.path.join(UNIFIED, "pydock", f"pytest-cg-{os.getpid()}-lim"))


def test_v1_limit_files(tmp_path):
    if cgroups.is_v2():
        pytest.skip("a pure cgroup2 host")
    cg = CgroupSet.create(
        f"pytest-cg-{os.getpid()}-v1",
        Limits(memory=64 << 20, memory_swap=-1, cpu_shares=256, cpus=1.5, pids=7),
    )
    try:
        read = lambda ctrl, f: open(os.path.join(cg.paths[ctrl], f)).read().strip()  # noqa: E731
        assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
        assert int(read("memory", "memory.memsw.limit_in_bytes")) > 1 << 60  # unlimited
        assert read("cpu", "cpu.shares") == "256"
        assert read("cpu", "cpu.cfs_quota_us") == "150000"
        assert read("pids", "pids.max") == "7"
        assert "a *:* rwm" not in read("devices", "devices.list")
        assert "c 1:3 rwm" in read("devices", "devices.list")
    finally:
        cg.remove()


@pytest.mark.parametrize("version", [1, 2])
def test_join_self_moves_the_calling_process_into_every_cgroup(request, version):
    """A container's PID 1 joins its cgroups itself (on v1 through `tasks`, which skips the
    kernel's global lock): the whole one-thread process must land in each hierarchy."""
    if version == 2:
        request.getfixturevalue("v2")
    elif cgroups.is_v2():
        pytest.skip("a pure cgroup2 host")
    cg = CgroupSet.create(f"pytest-cgself-{os.getpid()}-{version}", Limits())
    assert cg.self_join_is_cheap == (version == 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            CgroupSet.from_paths(cg.paths).join_self()
            os.write(w, b"joined")
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        os.close(w)
        assert os.read(r, 16) == b"joined"
        for path in cg.paths.values():
            with open(os.path.join(path, "cgroup.procs")) as f:
                assert str(pid) in f.read().split(), path
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        cg.remove()
