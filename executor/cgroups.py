"""Container cgroups: limits, OOM detection, freezing and removal, on cgroup v1 or v2.

v1 (one hierarchy per controller, as on this project's CI machine): a `<parent>/<name>` cgroup
is made in each of memory, cpu, cpuacct, cpuset, pids, freezer and devices, below the caller's
own cgroup in that hierarchy (so the caller's limits still hold). The devices controller
allows only the default device nodes: with the nodev mounts this makes any other node inert.
v2 (a pure cgroup2 mount at /sys/fs/cgroup): one `<parent>/<name>` cgroup below the root.

`CgroupSet.paths` is all a later process needs to find a container's cgroups again
(`CgroupSet.from_paths`), e.g. to pause a detached container.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time

from cache.records import field, record
from executor.spec import ExecutorError, Limits

CGROUP_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "pids", "freezer", "devices")
CFS_PERIOD = 100_000

# Default device nodes (runc's AllowedDevices): null zero full random urandom tty console
# ptmx and the pts slaves.
_ALLOWED_DEVICES = (
    "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm",
    "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm",
)  # fmt: skip


def is_v2() -> bool:
    """True when /sys/fs/cgroup itself is a cgroup2 mount (the unified hierarchy only)."""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


def _own_cgroups() -> dict[str, str]:
    """controller -> this process's cgroup path in that v1 hierarchy ("" key: v2)."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                own[""] = path
            for c in controllers.split(","):
                own[c] = path
    return own


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


@record
class CgroupSet:
    """The cgroups of one container. `paths`: controller name (v1) or "unified" -> dir."""

    paths: dict[str, str] = field(default_factory=dict)
    version: int = 1

    @classmethod
    def from_paths(cls, paths: dict[str, str]) -> CgroupSet:
        return cls(dict(paths), 2 if "unified" in paths else 1)

    # --- creation -------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, limits: Limits, parent: str = "pydock") -> CgroupSet:
        """Make the container's cgroups and apply `limits`. Controllers that are not there
        are skipped, unless a limit needs them (then an ExecutorError)."""
        if "/" in name or name in ("", ".", ".."):
            raise ExecutorError(f"invalid cgroup name {name!r}")
        parent = parent.strip("/") or "pydock"
        cg = cls(version=2 if is_v2() else 1)
        try:
            if cg.version == 2:
                cg._create_v2(name, parent, limits)
            else:
                cg._create_v1(name, parent, limits)
        except BaseException:
            cg.remove()
            raise
        return cg

    def _create_v1(self, name: str, parent: str, limits: Limits) -> None:
        own = _own_cgroups()
        for ctrl in V1_CONTROLLERS:
            mount = os.path.join(CGROUP_ROOT, ctrl)
            if not os.path.exists(os.path.join(mount, "cgroup.procs")):
                continue
            base = os.path.join(mount, own.get(ctrl, "/").lstrip("/"), parent)
            os.makedirs(base, exist_ok=True)
            _sweep(base)
            if ctrl == "cpuset":
                _cpuset_inherit(base)
            path = os.path.join(base, name)
            os.mkdir(path)
            self.paths[ctrl] = path
            if ctrl == "cpuset":
                _cpuset_inherit(path)
            if ctrl == "devices":
                _write(os.path.join(path, "devices.deny"), "a")
                for rule in _ALLOWED_DEVICES:
                    # a device the parent cgroup does not allow stays denied (EPERM here)
                    with contextlib.suppress(OSError):
                        _write(os.path.join(path, "devices.allow"), rule)
        self._limits_v1(limits)

    def _need(self, ctrl: str) -> str:
        if ctrl not in self.paths:
            raise ExecutorError(f"the {ctrl} cgroup controller is not available for a limit")
        return self.paths[ctrl]

    def _limits_v1(self, lim: Limits) -> None:
        if lim.memory is not None:
            mem = self._need("memory")
            _write(os.path.join(mem, "memory.limit_in_bytes"), str(lim.memory))
            memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                # Docker: --memory alone allows as much swap again; -1 is unlimited.
                if lim.memory_swap is None:
                    swap = 2 * lim.memory
                else:
                    swap = lim.memory_swap
                _write(memsw, str(swap))
        if lim.cpu_shares is not None:
            _write(os.path.join(self._need("cpu"), "cpu.shares"), str(lim.cpu_shares))
        if lim.cpus is not None:
            cpu = self._need("cpu")
            _write(os.path.join(cpu, "cpu.cfs_period_us"), str(CFS_PERIOD))
            _write(os.path.join(cpu, "cpu.cfs_quota_us"), str(int(lim.cpus * CFS_PERIOD)))
        if lim.cpuset is not None:
            _write(os.path.join(self._need("cpuset"), "cpuset.cpus"), lim.cpuset)
        if lim.pids is not None:
            _write(os.path.join(self._need("pids"), "pids.max"), _pids_max(lim.pids))

    def _create_v2(self, name: str, parent: str, limits: Limits) -> None:
        base = os.path.join(CGROUP_ROOT, parent)
        os.makedirs(base, exist_ok=True)
        _sweep(base)
        available = _read(os.path.join(CGROUP_ROOT, "cgroup.controllers")).split()
        wanted = [c for c in ("cpu", "cpuset", "memory", "pids") if c in available]
        for where in (CGROUP_ROOT, base):
            for c in wanted:
                with contextlib.suppress(OSError):
                    _write(os.path.join(where, "cgroup.subtree_control"), f"+{c}")
        path = os.path.join(base, name)
        os.mkdir(path)
        self.paths["unified"] = path
        enabled = set(_read(os.path.join(path, "cgroup.controllers")).split())

        def put(ctrl: str, fname: str, value: str) -> None:
            if ctrl not in enabled:
                raise ExecutorError(f"the {ctrl} cgroup controller is not available for a limit")
            _write(os.path.join(path, fname), value)

        lim = limits
        if lim.memory is not None:
            put("memory", "memory.max", str(lim.memory))
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                if lim.memory_swap is None:
                    swap = str(lim.memory)
                elif lim.memory_swap < 0:
                    swap = "max"
                else:
                    swap = str(max(lim.memory_swap - lim.memory, 0))
                put("memory", "memory.swap.max", swap)
        if lim.cpu_shares is not None:
            # Docker/runc's conversion of shares (2..262144) to weight (1..10000)
            weight = 1 + ((lim.cpu_shares - 2) * 9999) // 262142
            put("cpu", "cpu.weight", str(max(1, min(weight, 10000))))
        if lim.cpus is not None:
            put("cpu", "cpu.max", f"{int(lim.cpus * CFS_PERIOD)} {CFS_PERIOD}")
        if lim.cpuset is not None:
            put("cpuset", "cpuset.cpus", lim.cpuset)
        if lim.pids is not None:
            put("pids", "pids.max", _pids_max(lim.pids))

    # --- use ------------------------------------------------------------------------------

    def join(self, pid: int = 0) -> None:
        """Move `pid` (0: the calling process) into every cgroup of the set."""
        value = str(pid or os.getpid())
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), value)

    @property
    def self_join_is_cheap(self) -> bool:
        """Whether `join_self` avoids the kernel's global threadgroup lock (cgroup v1)."""
        return self.version == 1

    def join_self(self) -> None:
        """Move the calling process, which must have a single thread, into every cgroup.

        Moving a whole process (`cgroup.procs`) takes the kernel's global threadgroup lock
        for writing, which waits for an RCU grace period: 10-20 ms on the first move. On v1
        a thread that moves itself ("0" into `tasks`) skips that lock; for a one-thread
        process (a container's PID 1 just after the fork) that moves the whole process.
        v2 has no such path (`cgroup.threads` is for threaded cgroups only): cgroup.procs.
        """
        name = "tasks" if self.version == 1 else "cgroup.procs"
        for path in self.paths.values():
            _write(os.path.join(path, name), "0")

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of this container."""
        if self.version == 2:
            return _event_count(self.paths.get("unified"), "memory.events", "oom_kill") > 0
        mem = self.paths.get("memory")
        if not mem:
            return False
        try:
            control = _read(os.path.join(mem, "memory.oom_control"))
        except OSError:
            return False
        if "oom_kill " in control:
            return _event_count(mem, "memory.oom_control", "oom_kill") > 0
        # kernels before 4.13 count no kills: the limit was hit (the caller also sees SIGKILL)
        try:
            return int(_read(os.path.join(mem, "memory.failcnt"))) > 0
        except (OSError, ValueError):
            return False

    def pids(self) -> list[int]:
        path = self.paths.get("unified") or self.paths.get("pids") or self.paths.get("freezer")
        if not path:
            return []
        try:
            return [int(x) for x in _read(os.path.join(path, "cgroup.procs")).split()]
        except OSError:
            return []

    def freeze(self, timeout: float = 5.0) -> None:
        """Pause every process of the container (v1 freezer.state FROZEN / v2 cgroup.freeze)."""
        self._set_frozen(True, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        self._set_frozen(False, timeout)

    def _set_frozen(self, frozen: bool, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self.version == 2:
            path = self.paths["unified"]
            _write(os.path.join(path, "cgroup.freeze"), "1" if frozen else "0")
            want = f"frozen {1 if frozen else 0}"
            while want not in _read(os.path.join(path, "cgroup.events")):
                if time.monotonic() > deadline:
                    raise ExecutorError("timed out (un)freezing the container")
                time.sleep(0.005)
            return
        if "freezer" not in self.paths:
            raise ExecutorError("the freezer cgroup controller is not available")
        state = os.path.join(self.paths["freezer"], "freezer.state")
        want = "FROZEN" if frozen else "THAWED"
        _write(state, want)
        while _read(state).strip() != want:
            if time.monotonic() > deadline:
                raise ExecutorError("timed out (un)freezing the container")
            _write(state, want)
            time.sleep(0.005)

    def is_frozen(self) -> bool:
        if self.version == 2:
            return "frozen 1" in _read(os.path.join(self.paths["unified"], "cgroup.events"))
        path = self.paths.get("freezer")
        return bool(path) and _read(os.path.join(path, "freezer.state")).strip() == "FROZEN"

    def kill_all(self, sig: int = 9) -> None:
        """Signal every process left in the container's cgroups (a last resort)."""
        unified = self.paths.get("unified")
        if sig == 9 and unified and os.path.exists(os.path.join(unified, "cgroup.kill")):
            with contextlib.suppress(OSError):  # v2 (Linux 5.14+): all at once, no pid races
                _write(os.path.join(unified, "cgroup.kill"), "1")
                return
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def remove(self, timeout: float = 5.0) -> None:
        """Remove the cgroups (waiting briefly for exiting tasks); missing ones are fine."""
        deadline = time.monotonic() + timeout
        for ctrl, path in list(self.paths.items()):
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise ExecutorError(f"cannot remove cgroup {path}: {e.strerror}") from e
                    if ctrl == "freezer":
                        with contextlib.suppress(OSError):
                            _write(os.path.join(path, "freezer.state"), "THAWED")
                    self.kill_all()
                    time.sleep(0.002)
            self.paths.pop(ctrl, None)


STALE_AFTER = 60.0


def _sweep(base: str) -> None:
    """Remove the empty cgroups of containers whose caller was killed before it could clean
    up. rmdir of a cgroup that still has processes fails (EBUSY), so this never touches a
    live container; young ones are skipped so a cgroup being set up is never taken away."""
    now = time.time()
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False) and now - entry.stat().st_mtime > STALE_AFTER:
                os.rmdir(entry.path)
        except OSError:
            pass


def _pids_max(pids: int) -> str:
    return str(pids) if pids > 0 else "max"  # Docker: 0 or -1 is unlimited


def _cpuset_inherit(path: str) -> None:
    """A new v1 cpuset cgroup starts with no cpus and mems; copy them from the parent."""
    parent = os.path.dirname(path)
    for fname in ("cpuset.cpus", "cpuset.mems"):
        if not _read(os.path.join(path, fname)).strip():
            _write(os.path.join(path, fname), _read(os.path.join(parent, fname)).strip())


def _event_count(path: str | None, fname: str, key: str) -> int:
    if not path:
        return 0
    try:
        for line in _read(os.path.join(path, fname)).splitlines():
            k, _, v = line.partition(" ")
            if k == key:
                return int(v)
    except (OSError, ValueError):
        pass
    return 0
