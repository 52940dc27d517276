"""What to run and what came of it: the records passed to and returned by `executor.runtime`.

A `RunSpec` is complete on its own: the executor reads nothing else (no Dockerfile, no image
config, no store). Paths are host paths; `cwd`, mount targets and `user` are container-side
and are resolved inside the container's root, never on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cache.errors import PydockError
from cache.records import asdict, field, record

if TYPE_CHECKING:  # `typing` itself is imported by every run; its names only by checkers
    from typing import Any, Literal

    Network = Literal["none", "host"]


class ExecutorError(PydockError):
    """The container could not be set up or started (Docker's daemon-side failure: 125)."""

    exit_code = 125


class CommandNotFound(ExecutorError):
    """The command to execute does not exist in the container (Docker exits 127)."""

    exit_code = 127


class CommandNotExecutable(ExecutorError):
    """The command exists but cannot be executed (permission, bad format: Docker exits 126)."""

    exit_code = 126


@record
class Mount:
    """One extra mount in the container, applied after the root, /proc, /dev and /sys.

    `type` "bind": `source` (a host path) is bind-mounted on `target` (a container path,
    resolved inside the root; created if missing and removed again after the run so it never
    ends up in a layer). `type` "tmpfs": a fresh tmpfs (`options` e.g. "size=64m,mode=1777").
    """

    target: str
    type: Literal["bind", "tmpfs"] = "bind"
    source: Path | None = None
    readonly: bool = False
    options: str = ""


@record
class Limits:
    """Cgroup limits. None means "no limit". Sizes in bytes; `memory_swap` is memory plus
    swap as in Docker (`-1` unlimited swap); `cpus` is a fraction of CPUs (1.5 = 150 % of one
    CPU, through CFS quota); `cpuset` is a CPU list ("0-1"); `pids` caps the number of tasks."""

    memory: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    cpus: float | None = None
    cpuset: str | None = None
    pids: int | None = None

    def any(self) -> bool:
        return any(v is not None for v in asdict(self).values())


@record
class RunSpec:
    """One container: an overlay root over `lowers` and a process in it.

    `lowers` are oldest layer first (the image's base layer first); they are used read-only.
    `upper` and `work` are empty (or previous) overlay dirs on the same filesystem; `merged`
    is an empty directory the root is mounted on (inside the container's private mount
    namespace only, so it is never visible to, and never left behind on, the host).

    `user`: "", "name", "uid", "name:group", "uid:gid", resolved in the root's own
    /etc/passwd and /etc/group (supplementary groups included). `cwd` is created if missing.
    stdio: an fd is used as is (dup'ed, the caller keeps and closes its own); None means
    /dev/null for stdin and the caller's own fd 1 / fd 2 for stdout / stderr. With `tty`, a
    pty is allocated in the container's /dev/pts and the handle's `pty_master` is its master
    (`run()` relays it to stdin/stdout itself).
    """

    lowers: list[Path]
    upper: Path
    work: Path
    merged: Path
    argv: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = ""
    hostname: str = "pydock"
    network: Network = "none"
    mounts: list[Mount] = field(default_factory=list)
    readonly_root: bool = False
    privileged: bool = False
    limits: Limits = field(default_factory=Limits)
    tty: bool = False
    tty_size: tuple[int, int] | None = None  # (rows, cols); None: taken from the caller's tty
    init: bool = True  # a reaping, signal-forwarding PID 1 runs the command as its child
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    name: str = ""  # container id/name: names the cgroup; a random one when empty
    cgroup_parent: str = "pydock"
    # Own cgroups (pause/unpause, OOM reporting, device rules, a cgroup namespace). None:
    # only when `limits` asks for one (creating and removing them costs ~1 ms, joining on
    # cgroup v2 an RCU grace period, ~10 ms); `pydock run` containers want True.
    use_cgroups: bool | None = None
    extra_hosts: list[str] = field(default_factory=list)  # "host:ip", as `--add-host`
    dns: list[str] = field(default_factory=list)  # nameservers; empty: the host's resolv.conf
    dns_search: list[str] = field(default_factory=list)  # ["."]: no search line at all
    dns_options: list[str] = field(default_factory=list)  # "ndots:2", ...
    state_dir: Path | None = None  # where hosts/hostname/resolv.conf live; None: a temp dir
    seccomp: bool = True  # executor.seccomp's filter (off when privileged, as in Docker)
    no_new_privs: bool = False  # Docker's default is off (setuid binaries keep working)
    cap_add: list[str] = field(default_factory=list)  # "NET_ADMIN" or "CAP_NET_ADMIN"
    cap_drop: list[str] = field(default_factory=list)  # "ALL" drops every default
    ulimits: dict[str, tuple[int, int]] = field(default_factory=dict)  # "nofile": (soft, hard)
    kill_on_parent_death: bool = True  # SIGKILL the container if the calling process dies

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (paths as strings), the inverse of `from_json`."""
        d = asdict(self)
        for key in ("upper", "work", "merged", "state_dir"):
            d[key] = None if d[key] is None else str(d[key])
        d["lowers"] = [str(p) for p in self.lowers]
        for m in d["mounts"]:
            m["source"] = None if m["source"] is None else str(m["source"])
        d["tty_size"] = list(self.tty_size) if self.tty_size else None
        d["ulimits"] = {k: list(v) for k, v in self.ulimits.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunSpec:
        d = dict(d)
        d["lowers"] = [Path(p) for p in d["lowers"]]
        for key in ("upper", "work", "merged", "state_dir"):
            d[key] = None if d.get(key) is None else Path(d[key])
        d["mounts"] = [
            Mount(**{**m, "source": None if m.get("source") is None else Path(m["source"])})
            for m in d.get("mounts", [])
        ]
        d["limits"] = Limits(**d.get("limits", {}))
        d["tty_size"] = tuple(d["tty_size"]) if d.get("tty_size") else None
        d["ulimits"] = {k: (int(v[0]), int(v[1])) for k, v in d.get("ulimits", {}).items()}
        return cls(**d)


@record
class RunResult:
    """How a container ended. `exit_code` is Docker's: the process's exit status, or 128+N
    when it was killed by signal N (then `signal` is N). `oom_killed`: the memory cgroup
    killed a process of the container. Times are Unix epoch seconds. `error` holds a setup
    or exec failure message (then exit_code is 125, 126 or 127)."""

    exit_code: int
    signal: int | None = None
    oom_killed: bool = False
    started_at: float = 0.0
    finished_at: float = 0.0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunResult:
        return cls(**d)
