"""Container lifecycle: create from an image and run options, start, stop, kill, wait, remove.

`RunOptions` holds every `pydock run`/`create` flag; `create_container` merges them with the
image config as Docker does (Entrypoint/Cmd, Env, WorkingDir, User, Volumes) and writes the
record; `spec_for` turns a record into the executor's `RunSpec`. Holding a running container
(pumping its output into the log, recording how it ended) is `executor.supervisor`'s job.
"""

from __future__ import annotations

import math
import os
import re
import signal
import time
from pathlib import Path

from cache.errors import PydockError
from cache.records import field, record
from executor.containers import Container, ContainerStateError, ContainerStore, State, new_id
from executor.events import log_event

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_STOP_TIMEOUT = 10


class RunError(PydockError):
    """pydock's own failure to create or start a container (Docker exits 125)."""

    exit_code = 125


@record
class RunOptions:
    """Every flag of `pydock run` / `pydock create`, parsed but not yet merged with the image."""

    image: str
    command: list[str] = field(default_factory=list)
    interactive: bool = False
    tty: bool = False
    detach: bool = False
    rm: bool = False
    name: str = ""
    env: list[str] = field(default_factory=list)
    env_file: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str | None = None
    hostname: str = ""
    entrypoint: str | None = None
    cidfile: str = ""
    memory: int | None = None
    memory_swap: int | None = None
    cpu_shares: int | None = None
    cpus: float | None = None
    cpuset_cpus: str | None = None
    pids_limit: int | None = None
    network: str = "none"
    privileged: bool = False
    read_only: bool = False
    init: bool = False
    stop_signal: str | None = None
    stop_timeout: int | None = None
    labels: list[str] = field(default_factory=list)
    expose: list[str] = field(default_factory=list)
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    attach: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    lxc_conf: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    sig_proxy: bool = True
    ulimits: list[str] = field(default_factory=list)
    restart: str = "no"
    security_opt: list[str] = field(default_factory=list)


# --- flag values ---------------------------------------------------------------------------------

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)b?\s*$", re.I)


def parse_bytes(text: str, flag: str = "--memory") -> int:
    """Docker's RAM sizes: 512, 32m, 1.5g, 64k (binary units); -1 passes through."""
    if text.strip() == "-1":
        return -1
    m = _SIZE_RE.match(text)
    if not m:
        raise RunError(f"invalid value {text!r} for {flag}: expected a size like 32m or 1g")
    mult = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    return int(float(m.group(1)) * mult[m.group(2).lower()])


def signal_number(name: str | int | None, default: int = signal.SIGTERM) -> int:
    """A signal from "SIGKILL", "KILL", "kill" or "9"."""
    if name is None or name == "":
        return default
    if isinstance(name, int):
        return name
    text = str(name).strip().upper()
    if text.isdigit():
        if not 0 < int(text) < signal.NSIG:
            raise PydockError(f"invalid signal: {name}")
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise PydockError(f"invalid signal: {name}") from None


def parse_env_file(path: str) -> list[str]:
    """Docker's --env-file: KEY=VALUE lines, # comments, a bare KEY takes the host's value."""
    out = []
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise RunError(f"open {path}: {e.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0]
        if not key or any(c.isspace() for c in key):
            raise RunError(f"{path}:{n}: variable '{key}' contains whitespaces")
        out.append(line)
    return out


def _env_items(entries: list[str]) -> list[tuple[str, str]]:
    out = []
    for e in entries:
        if "=" in e:
            k, v = e.split("=", 1)
            out.append((k, v))
        elif e in os.environ:  # `-e NAME` takes the caller's value, or is dropped
            out.append((e, os.environ[e]))
    return out


def merge_env(base: list[str], *overrides: list[str]) -> list[str]:
    """KEY=VALUE lists, later ones replacing earlier keys in place (order kept)."""
    merged: dict[str, str] = {}
    for k, v in _env_items(base):
        merged[k] = v
    for over in overrides:
        for k, v in _env_items(over):
            merged[k] = v
    return [f"{k}={v}" for k, v in merged.items()]


def _image_runtime_config(image) -> dict:  # noqa: ANN001 - cache.images.Image
    cfg = image.config.get("config") if isinstance(image.config, dict) else None
    return dict(cfg or {})


# --- create --------------------------------------------------------------------------------------


_PORT = r"\d+(-\d+)?(/(tcp|udp|sctp))?"


def _online_cpus() -> tuple[set[int], str]:
    """The CPUs a cpuset may name, and how Docker writes them ("0-1")."""
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
        return _parse_cpuset(text), text
    except (OSError, ValueError):
        n = os.cpu_count() or 1
        return set(range(n)), f"0-{n - 1}"


def _parse_cpuset(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(text)
        out.update(range(int(lo), int(hi if dash else lo) + 1))
    return out


def check_options(opts: RunOptions, *, will_start: bool = False) -> None:
    """Refuse flag values that can never work, before anything is written (Docker checks
    these at create); with `will_start` (`run`), also what would only fail at start."""
    for e in opts.env:
        if not e.split("=", 1)[0]:
            raise RunError(f"invalid environment variable: {e}")
    for t in opts.tmpfs:
        if not t.partition(":")[0].startswith("/"):
            raise RunError(f"invalid tmpfs mount '{t}': mount path must be absolute")
    for a in opts.attach:
        if a.lower() not in ("stdin", "stdout", "stderr"):
            raise RunError(
                f'invalid argument "{a}" for -a: valid streams are STDIN, STDOUT and STDERR'
            )
    for lab in opts.labels:
        if not lab.partition("=")[0]:
            raise RunError(f"invalid label '{lab}': empty name")
    for p in opts.expose:
        if not re.fullmatch(_PORT, p):
            raise RunError(f"invalid range format for --expose: {p}")
    for p in opts.publish:
        parts = p.split(":")
        if (
            len(parts) > 3
            or not re.fullmatch(_PORT, parts[-1])
            or (len(parts) > 1 and parts[-2] and not re.fullmatch(r"\d+(-\d+)?", parts[-2]))
        ):
            raise RunError(
                f"invalid publish value '{p}': expected [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]"
            )
    if opts.cpus is not None:
        n = os.cpu_count() or 1
        if not math.isfinite(opts.cpus) or not 0.01 <= opts.cpus <= n:
            raise RunError(
                f"Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
            )
    if opts.cpu_shares is not None and opts.cpu_shares > 262144:
        raise RunError(f"invalid value {opts.cpu_shares} for --cpu-shares: at most 262144")
    if opts.pids_limit is not None and opts.pids_limit > 2**62:
        raise RunError(f"invalid value {opts.pids_limit} for --pids-limit: too large")
    if opts.workdir and not opts.workdir.startswith("/"):
        raise RunError(f"the working directory {opts.workdir!r} is not absolute")
    for h in opts.add_host:
        name, sep, ip = h.partition(":")
        if not sep or not name or not ip:
            raise RunError(f"invalid extra host {h!r} (want host:ip)")
    from executor.caps import cap_number

    for cap in [*opts.cap_add, *opts.cap_drop]:
        if cap.upper() != "ALL":
            try:
                cap_number(cap)
            except PydockError as e:
                raise RunError(e.message) from None
    if opts.cpu_shares is not None and opts.cpu_shares < 0:
        raise RunError(f"invalid value {opts.cpu_shares} for --cpu-shares: must not be negative")
    if opts.cpuset_cpus:
        try:
            wanted = _parse_cpuset(opts.cpuset_cpus)
        except ValueError:
            raise RunError(f"Invalid value {opts.cpuset_cpus} for cpuset cpus") from None
        online, text = _online_cpus()
        if not wanted <= online:
            raise RunError(
                f"Requested CPUs are not available - requested {opts.cpuset_cpus}, "
                f"available: {text}"
            )
    if will_start and (opts.publish or opts.publish_all) and opts.network != "host":
        raise RunError(
            "port publishing needs a bridge network, which pydock does not have: "
            "use --network host (the container's ports are then the host's) or drop -p/-P"
        )


def _open_cidfile(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise RunError(
            f"Container ID file found, make sure the other container isn't running or delete {path}"
        ) from None
    except OSError as e:
        raise RunError(f"failed to create the container ID file: {path}: {e.strerror}") from None


def create_container(
    root: Path | str,
    opts: RunOptions,
    store=None,  # noqa: ANN001
    *,
    will_start: bool = False,
) -> Container:
    """Write a new container record for `opts` (state "created"); nothing runs yet.

    `will_start` (`pydock run`) also refuses, before writing anything, what start would refuse.
    """
    check_options(opts, will_start=will_start)
    cid_fd = _open_cidfile(opts.cidfile) if opts.cidfile else None
    try:
        c = _create(root, opts, store)
    except BaseException:
        if cid_fd is not None:
            os.close(cid_fd)
            os.unlink(opts.cidfile)
        raise
    if cid_fd is not None:
        os.write(cid_fd, c.id.encode())
        os.close(cid_fd)
    log_event(root, "create", c.id, {"image": opts.image, "name": c.name})
    return c


def _create(root: Path | str, opts: RunOptions, store=None) -> Container:  # noqa: ANN001
    from cache.store import Store
    from executor.volumes import MountRequest, VolumeStore, copy_image_content, parse_volume_spec

    if opts.links:
        raise RunError(
            "--link needs a bridge network, which pydock does not have "
            "(containers share nothing but volumes; use --network host to talk over the host)"
        )
    if opts.restart not in ("", "no"):
        raise RunError(
            f"--restart {opts.restart}: restart policies need a daemon, which pydock does not "
            "have (only --restart no)"
        )
    ulimits = {}
    for u in opts.ulimits:
        name, _, values = u.partition("=")
        soft, _, hard = values.partition(":")
        try:
            ulimits[name] = {"Name": name, "Soft": int(soft), "Hard": int(hard or soft)}
        except ValueError:
            raise RunError(f"invalid ulimit argument: {u!r} (expected name=soft[:hard])") from None
    for so in opts.security_opt:
        known = ("seccomp=unconfined", "no-new-privileges", "no-new-privileges=true")
        if so.replace(":", "=") not in known:
            raise RunError(
                f"--security-opt {so}: not supported (seccomp=unconfined, no-new-privileges)"
            )
    if opts.lxc_conf:
        raise RunError("--lxc-conf: the lxc exec driver is not supported (pydock has its own)")
    root = Path(root)
    store = store or Store.open(root)
    image = find_image(store, opts.image)
    icfg = _image_runtime_config(image)
    cstore = ContainerStore(root)
    cid = new_id()

    # Command: --entrypoint resets the image's Cmd too (Docker's rule).
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entrypoint = list(icfg.get("Entrypoint") or [])
        cmd = list(opts.command) or list(icfg.get("Cmd") or [])
    argv = entrypoint + cmd
    if not argv:
        raise RunError("No command specified")

    hostname = opts.hostname or cid[:12]
    user_env = []
    for f in opts.env_file:
        user_env += parse_env_file(f)
    user_env += opts.env
    # The record keeps the image's and the user's variables (what `commit` saves); HOSTNAME
    # and TERM are added at start, as Docker's daemon does.
    env = merge_env(list(icfg.get("Env") or []), user_env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")

    if opts.network not in ("none", "host", "default", "bridge"):
        raise RunError(
            f"network {opts.network} not found: pydock supports --network none and --network host"
        )
    network = "none" if opts.network in ("default", "bridge") else opts.network

    labels = dict(icfg.get("Labels") or {})
    for lab in opts.labels:
        k, _, v = lab.partition("=")
        labels[k] = v
    exposed = dict(icfg.get("ExposedPorts") or {})
    for p in opts.expose:
        exposed[p if "/" in p else f"{p}/tcp"] = {}
    port_bindings: dict[str, list[dict]] = {}
    for p in opts.publish:
        *host, ctr = p.rsplit(":", 1) if ":" in p else ["", p]
        hip, _, hport = (host[0] if host else "").rpartition(":")
        key = ctr if "/" in ctr else f"{ctr}/tcp"
        port_bindings.setdefault(key, []).append({"HostIp": hip, "HostPort": hport})
        exposed.setdefault(key, {})

    # Under the store lock until the record exists: `volume rm` reads who uses a volume
    # from the records, so it must not run between making a volume and recording its user.
    with cstore.lock():
        # Mounts: --volumes-from first, then the image's VOLUMEs, then -v (a later one for the
        # same destination wins), as Docker orders them.
        vstore = VolumeStore(root)
        by_dest: dict[str, dict] = {}
        for ref in opts.volumes_from:
            cref, _, mode = ref.partition(":")
            if mode not in ("", "ro", "rw"):
                raise RunError(f"invalid mode for volumes-from: {ref}")
            src = cstore.get(cref)
            for m in src.mounts:
                m2 = dict(m)
                if mode:
                    m2["RW"] = mode == "rw"
                    m2["Mode"] = mode
                by_dest[m2["Destination"]] = m2
        requests: list[MountRequest] = [
            MountRequest("volume", "", os.path.normpath(d)) for d in (icfg.get("Volumes") or {})
        ]
        requests += [parse_volume_spec(v) for v in opts.volumes]
        lowers: list[Path] | None = None
        for req in requests:
            if req.type == "volume" and req.source == "" and req.destination in by_dest:
                continue  # an image VOLUME already served by --volumes-from
            if req.type == "bind":
                src_path = Path(req.source)
                if not src_path.exists():
                    src_path.mkdir(parents=True)  # Docker creates a missing bind source for -v
                by_dest[req.destination] = {
                    "Type": "bind",
                    "Source": str(src_path),
                    "Destination": req.destination,
                    "Mode": req.mode,
                    "RW": req.rw,
                    "Propagation": "rprivate",
                }
                continue
            vol, fresh = vstore.create(req.source)
            if fresh:
                if lowers is None:
                    lowers = store.unpacked_lowers(list(image.diff_ids))
                copy_image_content(lowers, req.destination, vol.mountpoint)
            by_dest[req.destination] = {
                "Type": "volume",
                "Name": vol.name,
                "Source": str(vol.mountpoint),
                "Destination": req.destination,
                "Driver": "local",
                "Mode": req.mode,
                "RW": req.rw,
                "Propagation": "",
            }
        mounts = sorted(by_dest.values(), key=lambda m: m["Destination"].count("/"))

        config = {
            "Hostname": hostname,
            "Domainname": "",
            "User": opts.user if opts.user is not None else icfg.get("User", ""),
            "AttachStdin": opts.interactive and not opts.detach,
            "AttachStdout": not opts.detach,
            "AttachStderr": not opts.detach,
            "ExposedPorts": exposed or None,
            "Tty": opts.tty,
            "OpenStdin": opts.interactive,
            "StdinOnce": opts.interactive and not opts.detach,
            "Env": env,
            "Cmd": cmd or None,
            "Image": opts.image,
            "Volumes": {m["Destination"]: {} for m in mounts if m["Type"] == "volume"} or None,
            "WorkingDir": opts.workdir or icfg.get("WorkingDir", "") or "",
            "Entrypoint": entrypoint or None,
            "OnBuild": None,
            "Labels": labels,
        }
        stop_signal = opts.stop_signal or icfg.get("StopSignal")
        if stop_signal:
            signal_number(stop_signal)  # validate now, not at stop time
            config["StopSignal"] = stop_signal
        if opts.stop_timeout is not None:
            config["StopTimeout"] = opts.stop_timeout
        host_config = {
            "Binds": [v for v in opts.volumes if parse_volume_spec(v).type == "bind"] or None,
            "ContainerIDFile": opts.cidfile,
            "NetworkMode": network,
            "PortBindings": port_bindings,
            "AutoRemove": opts.rm,
            "VolumesFrom": opts.volumes_from or None,
            "CapAdd": opts.cap_add or None,
            "CapDrop": opts.cap_drop or None,
            "Dns": opts.dns or None,
            "DnsSearch": opts.dns_search or None,
            "DnsOptions": opts.dns_options or None,
            "Links": None,
            "LxcConf": [],
            "ExtraHosts": opts.add_host or None,
            "Privileged": opts.privileged,
            "PublishAllPorts": opts.publish_all,
            "ReadonlyRootfs": opts.read_only,
            "Tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in opts.tmpfs} or None,
            "Init": opts.init,
            "CpuShares": opts.cpu_shares or 0,
            "Memory": opts.memory or 0,
            "NanoCpus": int((opts.cpus or 0) * 1e9),
            "CpusetCpus": opts.cpuset_cpus or "",
            "MemorySwap": opts.memory_swap or 0,
            "PidsLimit": opts.pids_limit,
            "Ulimits": list(ulimits.values()) or None,
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "SecurityOpt": opts.security_opt or None,
        }
        c = Container(
            id=cid,
            name=opts.name,
            created=time.time(),
            image_id=str(image.image_id),
            image_name=opts.image,
            path=argv[0],
            args=argv[1:],
            config=config,
            host_config=host_config,
            mounts=mounts,
            diff_ids=[str(d) for d in image.diff_ids],
            state=State(),
        )
        cstore.create(c)
    return c


def find_image(store, name: str):  # noqa: ANN001, ANN201 - cache.store.Store -> Image
    """The image `name` from the local store, or a clear error (there is no pulling)."""
    from cache.errors import ImageNotFound

    try:
        return store.get_image(name)
    except ImageNotFound as e:
        if "multiple" in str(e).lower() or "ambiguous" in str(e).lower():
            raise RunError(str(e)) from None
        raise RunError(
            f"Unable to find image '{name}': not in the local store "
            "(pydock does not pull; build it with pybuild or `pydock load` it)"
        ) from None


def runtime_env(c: Container) -> list[str]:
    """The process environment: Docker's PATH/HOSTNAME/TERM defaults, then the record's Env."""
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={c.config.get('Hostname') or c.short_id}"]
    if c.config.get("Tty"):
        base.append("TERM=xterm")
    return merge_env(base, list(c.config.get("Env") or []))


def spec_for(c: Container, store=None):  # noqa: ANN001, ANN201 - -> executor.spec.RunSpec
    """The executor's RunSpec for running container `c` (its layers unpacked if needed)."""
    from executor.spec import Limits, Mount, RunSpec

    hc = c.host_config
    if hc.get("PortBindings") or hc.get("PublishAllPorts"):
        if hc.get("NetworkMode") != "host":
            raise RunError(
                "port publishing needs a bridge network, which pydock does not have: "
                "use --network host (the container's ports are then the host's) or drop -p/-P"
            )
    if store is None:
        from cache.store import Store

        store = Store.open(c.dir.parent.parent)
    lowers = store.unpacked_lowers(list(c.diff_ids)) if c.diff_ids else []
    mounts = [
        Mount(target=m["Destination"], source=Path(m["Source"]), readonly=not m.get("RW", True))
        for m in c.mounts
    ]
    for target, options in (hc.get("Tmpfs") or {}).items():
        mounts.append(Mount(target=target, type="tmpfs", options=options))
    swap = hc.get("MemorySwap") or None
    limits = Limits(
        memory=hc.get("Memory") or None,
        memory_swap=swap,
        cpu_shares=hc.get("CpuShares") or None,
        cpus=(hc.get("NanoCpus") or 0) / 1e9 or None,
        cpuset=hc.get("CpusetCpus") or None,
        pids=hc.get("PidsLimit") or None,
    )
    cfg = c.config
    return RunSpec(
        lowers=lowers,
        upper=c.upper,
        work=c.work,
        merged=c.merged,
        argv=c.argv,
        env=runtime_env(c),
        cwd=cfg.get("WorkingDir") or "/",
        user=cfg.get("User") or "",
        hostname=cfg.get("Hostname") or c.short_id,
        network="host" if hc.get("NetworkMode") == "host" else "none",
        mounts=mounts,
        readonly_root=bool(hc.get("ReadonlyRootfs")),
        privileged=bool(hc.get("Privileged")),
        limits=limits,
        tty=bool(cfg.get("Tty")),
        init=bool(hc.get("Init")),  # Docker runs the command as PID 1 unless --init
        use_cgroups=True,  # pause/unpause, OOM reporting and stats need the cgroups
        name=c.id,
        extra_hosts=list(hc.get("ExtraHosts") or []),
        dns=list(hc.get("Dns") or []),
        dns_search=list(hc.get("DnsSearch") or []),
        dns_options=list(hc.get("DnsOptions") or []),
        state_dir=c.dir,
        cap_add=list(hc.get("CapAdd") or []),
        cap_drop=list(hc.get("CapDrop") or []),
        ulimits={u["Name"]: (u["Soft"], u["Hard"]) for u in hc.get("Ulimits") or []},
        **security_options(hc),
    )


def security_options(hc: dict) -> dict:
    """RunSpec fields set by --security-opt (seccomp, no_new_privs); exec uses them too."""
    opts = [o.replace(":", "=") for o in hc.get("SecurityOpt") or []]
    out: dict = {}
    if "seccomp=unconfined" in opts:
        out["seccomp"] = False
    if "no-new-privileges" in opts or "no-new-privileges=true" in opts:
        out["no_new_privs"] = True
    return out


# --- stop, kill, wait, remove --------------------------------------------------------------------


def _require_running(c: Container) -> None:
    if not c.state.running:
        raise ContainerStateError(f"Container {c.short_id} is not running")


def kill_container(root: Path | str, c: Container, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the container's first process (Docker: "kill")."""
    from executor.containers import process_alive

    _require_running(c)
    st = c.state
    if st.status == "paused" and sig == signal.SIGKILL:
        _thaw_quietly(c)
    if not process_alive(st.pid, st.pid_start):
        return
    try:
        os.kill(st.pid, sig)
    except ProcessLookupError:
        pass
    log_event(root, "kill", c.id, {"name": c.name, "image": c.image_name, "signal": str(sig)})


def wait_exited(root: Path | str, c: Container, timeout: float | None = None) -> Container:
    """Block until the container is not running (or `timeout` seconds); its fresh record."""
    from executor.containers import process_alive

    cstore = ContainerStore(root)
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        fresh = cstore.find(c.id)
        if fresh is None:  # removed (--rm): its "die" event has the exit code
            return _from_die_event(root, c)
        c = fresh
        if not c.state.running:
            return c
        if not process_alive(c.state.pid, c.state.pid_start):
            delay = 0.005  # its holder is recording the exit right now
        if deadline is not None and time.monotonic() >= deadline:
            return c
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _from_die_event(root: Path | str, c: Container) -> Container:
    """`c` with the exit code of its last "die" event (for a container already removed)."""
    from executor.events import read_events

    code = None
    for ev in read_events(root, since=c.created - 1):
        if ev.actor_id == c.id and ev.action == "die":
            code = ev.attributes.get("exitCode")
    if code is not None and code.lstrip("-").isdigit():
        c.state.status = "exited"
        c.state.exit_code = int(code)
    return c


def stop_container(root: Path | str, c: Container, timeout: int | None = None) -> Container:
    """Docker's stop: the stop signal, `timeout` seconds of grace, then SIGKILL."""
    if not c.state.running:
        return c
    if timeout is None:
        timeout = c.config.get("StopTimeout", DEFAULT_STOP_TIMEOUT)
    sig = signal_number(c.config.get("StopSignal"), signal.SIGTERM)
    if c.state.status == "paused":
        _thaw_quietly(c)
    kill_container(root, c, sig)
    c = wait_exited(root, c, timeout)
    if c.state.running:
        kill_container(root, c, signal.SIGKILL)
        c = wait_exited(root, c, 30)
    log_event(root, "stop", c.id, {"name": c.name, "image": c.image_name})
    return c


def remove_container(
    root: Path | str, c: Container, force: bool = False, volumes: bool = False
) -> None:
    """Delete a container (SIGKILLed first with `force`), with its anonymous volumes if asked."""
    from executor.volumes import VolumeStore

    if c.state.running:
        if not force:
            raise ContainerStateError(
                f'cannot remove container "/{c.name}": container is {c.state.status}: '
                "stop the container before removing or force remove"
            )
        kill_container(root, c, signal.SIGKILL)
        c = wait_exited(root, c, 30)
        if c.state.running:
            raise ContainerStateError(f"could not kill container {c.short_id}")
    cstore = ContainerStore(root)
    cstore.remove_record(c)
    if volumes:
        VolumeStore(root).release_anonymous(c.mounts, c.id)
    log_event(root, "destroy", c.id, {"name": c.name, "image": c.image_name})


def _thaw_quietly(c: Container) -> None:
    try:
        set_paused(c, False)
    except Exception:  # noqa: BLE001 - best effort before a kill
        pass


def set_paused(c: Container, paused: bool) -> None:
    """Freeze or thaw every process of the container through the freezer cgroup."""
    from executor.cgroups import CgroupSet

    if not c.state.cgroups:
        raise ContainerStateError(f"container {c.short_id} has no cgroups to freeze")
    cg = CgroupSet.from_paths(c.state.cgroups)
    if paused:
        cg.freeze()
    else:
        cg.thaw()
