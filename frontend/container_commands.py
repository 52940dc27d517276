"""`pydock run`, `ps`, `stop` and the rest of Docker's container commands (parsing, rendering).

The logic lives in `executor.lifecycle` (create, stop, kill, remove), `executor.supervisor`
(holding a running container), `executor.containers` (records, inspect) and `executor.containerviews`
(diff, top, stats); this module turns flags into calls and results into Docker's output.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from cache.errors import PydockError
from frontend.cli import store_root as _given_root
from frontend.cli import write_output


def store_root(args) -> str:  # noqa: ANN001
    """The store root as an absolute path (a detached supervisor runs from /)."""
    import os.path

    return os.path.abspath(_given_root(args))


# --- helpers -------------------------------------------------------------------------------------


def docker_table(headers, rows, min_width: int = 10) -> None:  # noqa: ANN001
    """Print columns as Docker's CLI does (Go tabwriter: cells padded to the widest plus 3,
    at least `min_width`; 20 for `top`); the last column is not padded."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(str(cell)))
    out = []
    for r in [list(headers), *rows]:
        cells = [str(x) for x in r]
        line = "".join(
            cell.ljust(max(widths[i] + 3, min_width)) for i, cell in enumerate(cells[:-1])
        )
        out.append(line + (cells[-1] if cells else ""))
    sys.stdout.write("".join(line + "\n" for line in out))


def _cstore(args: argparse.Namespace):  # noqa: ANN202
    from executor.containers import ContainerStore

    return ContainerStore(store_root(args))


def _each(args: argparse.Namespace, refs: list[str], action) -> int:  # noqa: ANN001
    """Apply `action(container)` to every ref, printing ref on success, errors per ref (Docker)."""
    cstore = _cstore(args)
    code = 0
    for ref in refs:
        try:
            c = cstore.get(ref)
            action(c)
            print(ref, flush=True)
        except PydockError as e:
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
    return code


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags shared by `run` and `create` (Docker's names and short forms)."""
    p.add_argument("--help", action="help", help="show this help message and exit")
    a = p.add_argument
    a("-i", "--interactive", action="store_true", help="keep STDIN open")
    a("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    a("--rm", action="store_true", help="remove the container when it exits")
    a("--name", default="", help="assign a name to the container")
    a("-e", "--env", action="append", default=[], help="set an environment variable")
    a("--env-file", action="append", default=[], help="read environment variables from a file")
    a("-v", "--volume", dest="volumes", action="append", default=[], help="bind mount a volume")
    a("--volumes-from", action="append", default=[], help="mount volumes of a container")
    a("--tmpfs", action="append", default=[], help="mount a tmpfs directory")
    a("-w", "--workdir", default="", help="working directory inside the container")
    a("-u", "--user", default=None, help="username or UID (format: <name|uid>[:<group|gid>])")
    a("-h", "--hostname", default="", help="container host name")
    a("--entrypoint", default=None, help="overwrite the default ENTRYPOINT of the image")
    a("--cidfile", default="", help="write the container ID to the file")
    a("-m", "--memory", default=None, help="memory limit")
    a("--memory-swap", default=None, help="swap limit equal to memory plus swap: -1 unlimited")
    a("-c", "--cpu-shares", type=int, default=None, help="CPU shares (relative weight)")
    a("--cpus", type=float, default=None, help="number of CPUs")
    a("--cpuset-cpus", "--cpuset", dest="cpuset_cpus", default=None, help="CPUs allowed (0-3, 0,1)")
    a("--pids-limit", type=int, default=None, help="tune container pids limit (-1 unlimited)")
    a("--net", "--network", dest="network", default="none", help="network: none or host")
    a("--privileged", action="store_true", help="give extended privileges to this container")
    a("--read-only", action="store_true", help="mount the container's root read-only")
    a("--init", action="store_true", help="run an init inside the container")
    a("--stop-signal", default=None, help="signal to stop the container")
    a("--stop-timeout", type=int, default=None, help="timeout (seconds) to stop a container")
    a("-l", "--label", dest="labels", action="append", default=[], help="set metadata")
    a("--expose", action="append", default=[], help="expose a port")
    a("-p", "--publish", action="append", default=[], help="publish a port to the host")
    a("-P", "--publish-all", action="store_true", help="publish all exposed ports")
    a("-a", "--attach", action="append", default=[], help="attach to STDIN, STDOUT or STDERR")
    a("--add-host", action="append", default=[], help="add a custom host-to-IP mapping")
    a("--dns", action="append", default=[], help="set custom DNS servers")
    a("--dns-search", action="append", default=[], help="set custom DNS search domains")
    a(
        "--dns-option",
        "--dns-opt",
        dest="dns_option",
        action="append",
        default=[],
        help="set DNS options",
    )
    a("--link", action="append", default=[], help="(needs a bridge network: refused)")
    a("--lxc-conf", action="append", default=[], help="(lxc exec driver: refused)")
    a("--cap-add", action="append", default=[], help="add Linux capabilities")
    a("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    a("--sig-proxy", default="true", help="proxy received signals to the process")
    a("--ulimit", action="append", default=[], help="ulimit options (nofile=1024:2048)")
    a("--restart", default="no", help="restart policy (only 'no' is supported)")
    a("--security-opt", action="append", default=[], help="seccomp=unconfined is understood")
    a("image", metavar="IMAGE")
    a("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def run_options(args: argparse.Namespace, detach: bool = False):  # noqa: ANN201
    """The `RunOptions` of parsed run/create flags."""
    from executor.lifecycle import RunOptions, parse_bytes

    if args.network in ("bridge", "default"):
        sys.stderr.write(
            "WARNING: pydock has no bridge network; the container gets --network none "
            "(only lo). Use --network host to reach the network.\n"
        )
    if (args.publish or args.publish_all) and args.network == "host":
        sys.stderr.write("WARNING: Published ports are discarded when using host network mode\n")

    mem = parse_bytes(args.memory, "--memory") if args.memory else None
    swap = parse_bytes(args.memory_swap, "--memory-swap") if args.memory_swap else None
    return RunOptions(
        image=args.image,
        command=list(args.command),
        interactive=args.interactive,
        tty=args.tty,
        detach=detach,
        rm=args.rm,
        name=args.name,
        env=args.env,
        env_file=args.env_file,
        volumes=args.volumes,
        volumes_from=args.volumes_from,
        tmpfs=args.tmpfs,
        workdir=args.workdir,
        user=args.user,
        hostname=args.hostname,
        entrypoint=args.entrypoint,
        cidfile=args.cidfile,
        memory=mem,
        memory_swap=swap,
        cpu_shares=args.cpu_shares,
        cpus=args.cpus,
        cpuset_cpus=args.cpuset_cpus,
        pids_limit=args.pids_limit if args.pids_limit and args.pids_limit > 0 else None,
        network=args.network,
        privileged=args.privileged,
        read_only=args.read_only,
        init=args.init,
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout,
        labels=args.labels,
        expose=args.expose,
        publish=args.publish,
        publish_all=args.publish_all,
        attach=args.attach,
        add_host=args.add_host,
        dns=args.dns,
        dns_search=args.dns_search,
        dns_options=args.dns_option,
        links=args.link,
        lxc_conf=args.lxc_conf,
        cap_add=args.cap_add,
        cap_drop=args.cap_drop,
        sig_proxy=str(args.sig_proxy).lower() not in ("false", "0", "no"),
        ulimits=args.ulimit,
        restart=args.restart,
        security_opt=args.security_opt,
    )


def _as_125(exc: PydockError) -> PydockError:
    """Docker exits 125 when `run` fails before the container's command ran."""
    if exc.exit_code not in (125, 126, 127):
        exc.exit_code = 125
    return exc


# --- run / create / start ------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from executor.lifecycle import create_container

    root = store_root(args)
    try:
        opts = run_options(args, detach=args.detach)
        c = create_container(root, opts, will_start=True)
    except PydockError as e:
        raise _as_125(e) from None
    if args.detach:
        from executor.supervisor import start_detached

        try:
            start_detached(root, c)
        except PydockError as e:
            raise _as_125(e) from None
        print(c.id, flush=True)
        return 0
    from executor.supervisor import hold

    sys.stdout.flush()
    try:
        return hold(
            root,
            c,
            attach=True,
            stdin=opts.interactive or "stdin" in [a.lower() for a in opts.attach],
            sig_proxy=opts.sig_proxy,
            streams=tuple(a.lower() for a in opts.attach) or ("stdout", "stderr"),
        )
    except PydockError as e:
        raise _as_125(e) from None


def cmd_create(args: argparse.Namespace) -> int:
    from executor.lifecycle import create_container

    try:
        c = create_container(store_root(args), run_options(args))
    except PydockError as e:
        raise _as_125(e) from None
    print(c.id)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from executor.supervisor import hold, start_detached

    root = store_root(args)
    cstore = _cstore(args)
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            raise PydockError("you cannot start and attach multiple containers at once")
        c = cstore.get(args.containers[0])
        if c.state.running:
            raise PydockError(f"container {c.short_id} is already running")
        return hold(root, c, attach=True, stdin=args.interactive)

    def start(c) -> None:  # noqa: ANN001
        if not c.state.running:
            start_detached(root, c)

    return _each(args, args.containers, start)


def cmd_stop(args: argparse.Namespace) -> int:
    from executor.lifecycle import stop_container

    root = store_root(args)
    return _each(args, args.containers, lambda c: stop_container(root, c, args.time))


def cmd_restart(args: argparse.Namespace) -> int:
    from executor.lifecycle import stop_container
    from executor.supervisor import start_detached

    root = store_root(args)

    def restart(c) -> None:  # noqa: ANN001
        c = stop_container(root, c, args.time)
        start_detached(root, c)

    return _each(args, args.containers, restart)


def cmd_kill(args: argparse.Namespace) -> int:
    from executor.lifecycle import kill_container, signal_number

    root = store_root(args)
    sig = signal_number(args.signal, 9)
    return _each(args, args.containers, lambda c: kill_container(root, c, sig))


def cmd_wait(args: argparse.Namespace) -> int:
    from executor.lifecycle import wait_exited

    root = store_root(args)
    cstore = _cstore(args)
    code = 0
    for ref in args.containers:
        try:
            c = wait_exited(root, cstore.get(ref))
            print(c.state.exit_code, flush=True)
        except PydockError as e:
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
    return code


def cmd_rm(args: argparse.Namespace) -> int:
    from executor.lifecycle import remove_container

    root = store_root(args)
    return _each(
        args, args.containers, lambda c: remove_container(root, c, args.force, args.volumes)
    )


def cmd_pause(args: argparse.Namespace) -> int:
    from executor.events import log_event
    from executor.lifecycle import set_paused

    root = store_root(args)
    cstore = _cstore(args)

    def pause(c) -> None:  # noqa: ANN001
        if c.state.status != "running":
            raise PydockError(
                f"Container {c.id} is not running"
                if not c.state.running
                else f"Container {c.id} is already paused"
            )
        set_paused(c, True)
        cstore.update_state(c, lambda s: setattr(s, "status", "paused"))
        log_event(root, "pause", c.id, {"name": c.name, "image": c.image_name})

    return _each(args, args.containers, pause)


def cmd_unpause(args: argparse.Namespace) -> int:
    from executor.events import log_event
    from executor.lifecycle import set_paused

    root = store_root(args)
    cstore = _cstore(args)

    def unpause(c) -> None:  # noqa: ANN001
        if c.state.status != "paused":
            raise PydockError(f"Container {c.id} is not paused")
        set_paused(c, False)
        cstore.update_state(c, lambda s: setattr(s, "status", "running"))
        log_event(root, "unpause", c.id, {"name": c.name, "image": c.image_name})

    return _each(args, args.containers, unpause)


def cmd_rename(args: argparse.Namespace) -> int:
    from executor.events import log_event

    cstore = _cstore(args)
    c = cstore.get(args.container)
    old = c.name
    cstore.rename(c, args.new_name)
    log_event(store_root(args), "rename", c.id, {"name": c.name, "oldName": "/" + old})
    return 0


# --- ps ------------------------------------------------------------------------------------------


def _status_text(c) -> str:  # noqa: ANN001
    from frontend.render import human_duration

    st = c.state
    now = time.time()
    if st.status == "running":
        return f"Up {human_duration(now - st.started_at)}"
    if st.status == "paused":
        return f"Up {human_duration(now - st.started_at)} (Paused)"
    if st.status == "exited":
        return f"Exited ({st.exit_code}) {human_duration(now - st.finished_at)} ago"
    if st.status == "dead":
        return "Dead"
    return "Created"


def _command_text(c, trunc: bool) -> str:  # noqa: ANN001
    cmd = " ".join(c.argv)
    if trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return '"' + cmd.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ports_text(c) -> str:  # noqa: ANN001
    ports = []
    for key in c.config.get("ExposedPorts") or {}:
        ports.append(key)
    return ", ".join(sorted(ports))


def ps_row(c, trunc: bool = True) -> dict:  # noqa: ANN001
    """A container as `ps --format` sees it (Docker's field names)."""
    from executor.containers import rfc3339
    from frontend.render import human_duration

    labels = c.config.get("Labels") or {}
    return {
        "ID": c.short_id if trunc else c.id,
        "Image": c.image_name,
        "Command": _command_text(c, trunc),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(c.created)),
        "Created": rfc3339(c.created),
        "RunningFor": human_duration(time.time() - c.created) + " ago",
        "Ports": _ports_text(c),
        "State": c.state.status,
        "Status": _status_text(c),
        "Names": c.name,
        "Labels": ",".join(f"{k}={v}" for k, v in labels.items()),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in c.mounts),
        "Size": "",
        "Networks": c.host_config.get("NetworkMode", ""),
    }


def _matches(c, filters: list[str], cstore) -> bool:  # noqa: ANN001
    import re

    groups: dict[str, list[str]] = {}
    for f in filters:
        key, sep, value = f.partition("=")
        if not sep:
            raise PydockError(f'bad format of filter (expected name=value): "{f}"')
        groups.setdefault(key.strip().lower(), []).append(value)
    for key, values in groups.items():
        if key == "status":
            ok = c.state.status in values
        elif key == "name":
            ok = any(re.search(v, c.name) for v in values)
        elif key == "id":
            ok = any(c.id.startswith(v) for v in values)
        elif key == "exited":
            ok = c.state.status == "exited" and str(c.state.exit_code) in values
        elif key == "label":
            labels = c.config.get("Labels") or {}
            ok = all(
                (k in labels and (not sep or labels[k] == v))
                for k, sep, v in (x.partition("=") for x in values)
            )
        elif key == "ancestor":
            ok = any(_is_ancestor(c, v, cstore) for v in values)
        elif key == "volume":
            ok = any(
                v in (m.get("Name"), m.get("Source"), m.get("Destination"))
                for m in c.mounts
                for v in values
            )
        else:
            raise PydockError(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def _is_ancestor(c, ref: str, cstore) -> bool:  # noqa: ANN001
    if c.image_name == ref or c.image_name == ref.removesuffix(":latest"):
        return True
    if ref.removeprefix("sha256:") and c.image_id.removeprefix("sha256:").startswith(
        ref.removeprefix("sha256:")
    ):
        return True
    try:
        from cache.store import Store

        img = Store.open(cstore.root).get_image(ref)
    except Exception:  # noqa: BLE001 - an unknown image is simply no ancestor
        return False
    return str(img.image_id) == c.image_id or (
        len(img.diff_ids) <= len(c.diff_ids)
        and [str(d) for d in img.diff_ids] == c.diff_ids[: len(img.diff_ids)]
    )


def cmd_ps(args: argparse.Namespace) -> int:
    cstore = _cstore(args)
    containers = cstore.list()
    if args.latest:
        args.last = 1
    if args.last is not None and args.last >= 0:
        containers = containers[: args.last]
    elif not args.all:
        containers = [c for c in containers if c.state.running]
    if args.filter:
        containers = [c for c in containers if _matches(c, args.filter, cstore)]
    trunc = not args.no_trunc
    if args.quiet:
        sys.stdout.write("".join((c.short_id if trunc else c.id) + "\n" for c in containers))
        return 0
    rows = [ps_row(c, trunc) for c in containers]
    if args.format:
        from frontend.gotemplate import render_template, template_headers

        is_table, body = template_headers(args.format)
        lines = [render_template(body, r, struct=True) for r in rows]
        if is_table:
            hdr = body
            names = {
                "ID": "CONTAINER ID",
                "Image": "IMAGE",
                "Command": "COMMAND",
                "CreatedAt": "CREATED AT",
                "RunningFor": "CREATED",
                "Ports": "PORTS",
                "State": "STATE",
                "Status": "STATUS",
                "Names": "NAMES",
            }
            import re

            hdr = re.sub(
                r"\{\{\s*\.(\w+)\s*\}\}", lambda m: names.get(m.group(1), m.group(1).upper()), hdr
            ).replace("\\t", "\t")
            if "\t" in hdr:
                docker_table(hdr.split("\t"), [ln.split("\t") for ln in lines])
                return 0
            lines.insert(0, hdr)
        sys.stdout.write("".join(ln + "\n" for ln in lines))
        return 0
    headers = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    table = [
        [r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]]
        for r in rows
    ]
    if args.size:
        from executor.volumes import dir_size
        from frontend.render import human_size

        headers.append("SIZE")
        for row, c in zip(table, containers, strict=True):
            row.append(human_size(dir_size(c.upper)))
    docker_table(headers, table)
    return 0


# --- logs / attach -------------------------------------------------------------------------------


def _parse_since(text: str | None) -> float | None:
    """Docker's --since/--until: RFC 3339, a Unix timestamp, or a duration ago ("10m", "1h30m")."""
    import re

    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", text):
        units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
        total = sum(
            float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ns|us|ms|s|m|h)", text)
        )
        return time.time() - total
    from datetime import datetime

    try:
        t = text.replace("Z", "+00:00")
        dt = datetime.fromisoformat(t)
        if dt.tzinfo is None:
            from datetime import UTC

            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    except ValueError:
        raise PydockError(f"invalid time value: {text!r}") from None


def _emit_log(rec: dict, timestamps: bool) -> None:
    data = rec.get("log", "")
    if timestamps:
        data = rec.get("time", "") + " " + data
    out = sys.stderr if rec.get("stream") == "stderr" else sys.stdout
    out.write(data)


def cmd_logs(args: argparse.Namespace) -> int:
    from executor.containers import parse_rfc3339, read_log

    cstore = _cstore(args)
    c = cstore.get(args.container)
    since = _parse_since(args.since)
    until = _parse_since(args.until)
    records = read_log(c.log_path)
    if since is not None or until is not None:
        records = [
            r
            for r in records
            if (since is None or parse_rfc3339(r.get("time", "")) >= since)
            and (until is None or parse_rfc3339(r.get("time", "")) <= until)
        ]
    if args.tail not in (None, "all"):
        try:
            n = int(args.tail)
        except ValueError:
            raise PydockError(f"invalid value for --tail: {args.tail}") from None
        records = records[-n:] if n > 0 else []
    for r in records:
        _emit_log(r, args.timestamps)
    sys.stdout.flush()
    sys.stderr.flush()
    if args.follow and until is None:
        _follow_log(cstore, c, args.timestamps)
    return 0


def _follow_log(cstore, c, timestamps: bool) -> None:  # noqa: ANN001
    """Print records appended to the log until the container stops running."""
    from executor.jsonlines import follow_json_lines

    def running() -> bool:
        fresh = cstore.find(c.id)
        return fresh is not None and fresh.state.running

    try:
        offset = c.log_path.stat().st_size
    except FileNotFoundError:
        offset = 0
    for record in follow_json_lines(c.log_path, offset, keep_going=running, poll=0.05):
        _emit_log(record, timestamps)
        sys.stdout.flush()
        sys.stderr.flush()


def cmd_attach(args: argparse.Namespace) -> int:
    from executor.lifecycle import wait_exited
    from executor.supervisor import attach_client

    cstore = _cstore(args)
    c = cstore.get(args.container)
    if not c.state.running:
        raise PydockError("You cannot attach to a stopped container, start it first")
    stdin = bool(c.config.get("OpenStdin")) and not args.no_stdin
    ended = attach_client(c, stdin=stdin)
    if ended is False:
        sys.stderr.write("read escape sequence\n")
        return 0
    if ended is None:  # held by a foreground `pydock run`: its output is in the log
        _follow_log(cstore, c, False)
    c = wait_exited(store_root(args), c)
    return c.state.exit_code


# --- inspect / port / top / stats ----------------------------------------------------------------


def cmd_inspect(args: argparse.Namespace) -> int:

    from executor.containers import inspect_container

    out = []
    code = 0
    for ref in args.containers:
        try:
            out.append(inspect_container(store_root(args), ref))
        except PydockError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            code = 1
    from frontend.render import print_inspect

    print_inspect(out, args.format)
    return code


def cmd_port(args: argparse.Namespace) -> int:
    c = _cstore(args).get(args.container)
    bindings = c.host_config.get("PortBindings") or {}
    if c.host_config.get("NetworkMode") == "host":
        for key in sorted(c.config.get("ExposedPorts") or {}):
            if args.port and args.port not in (key, key.split("/")[0]):
                continue
            print(f"{key} -> 0.0.0.0:{key.split('/')[0]}")
        return 0
    if args.port and bindings:
        raise PydockError(f"No public port '{args.port}' published for {args.container}")
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from executor.containerviews import container_processes

    c = _cstore(args).get(args.container)
    if not c.state.running:
        raise PydockError(f"Container {c.id} is not running")
    headers, rows = container_processes(c, args.ps_args)
    docker_table(headers, rows, min_width=20)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from executor.containerviews import container_stats

    cstore = _cstore(args)
    headers = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O"]
    while True:
        if args.containers:
            cs = [cstore.get(r) for r in args.containers]
        else:
            cs = [c for c in cstore.list() if c.state.running or args.all]
        rows = [container_stats(c) for c in cs]
        if not args.no_stream:
            sys.stdout.write("\x1b[2J\x1b[H")  # Docker redraws the table in place
        docker_table([*headers, "BLOCK I/O", "PIDS"], rows)
        sys.stdout.flush()
        if args.no_stream or (args.containers and not any(c.state.running for c in cs)):
            return 0
        time.sleep(max(0.0, 1.0 - 0.1 * max(1, len(cs))))


# --- filesystem: diff / cp / export / commit -----------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    from executor.containerviews import container_changes

    c = _cstore(args).get(args.container)
    for kind, path in container_changes(c):
        print(f"{kind} {path}")
    return 0


def cmd_cp(args: argparse.Namespace) -> int:
    from executor.copy import copy_from_container, copy_to_container

    cstore = _cstore(args)
    src, dst = args.src, args.dst

    def split(text: str) -> tuple[str, str] | None:
        if ":" in text and not text.startswith(("/", ".")):
            ref, _, path = text.partition(":")
            return ref, path
        return None

    s, d = split(src), split(dst)
    if "-" in (src, dst):
        # Docker streams a tar through stdin/stdout for "-"; pydock does not, and must not
        # read or write a file that happens to be called "-" instead.
        raise PydockError("cp: '-' (a tar archive on stdin/stdout) is not supported; give a path")
    if s and d:
        raise PydockError("copying between containers is not supported")
    if not s and not d:
        raise PydockError("must specify at least one container source")
    if s:
        c = cstore.get(s[0])
        copy_from_container(c, s[1], dst, follow=args.follow_link, archive=args.archive)
    else:
        c = cstore.get(d[0])
        copy_to_container(c, src, d[1], follow=args.follow_link, archive=args.archive)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from executor.copy import export_container

    c = _cstore(args).get(args.container)
    if args.output:
        write_output(args.output, lambda f: export_container(c, f))
    else:
        if sys.stdout.isatty():
            raise PydockError(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect"
            )
        sys.stdout.flush()
        with os.fdopen(os.dup(1), "wb") as f:
            export_container(c, f)
    return 0


def _shlex(line: str, rest: str) -> list[str]:
    import shlex

    try:
        return shlex.split(rest)
    except ValueError as e:
        raise PydockError(f"commit -c {line!r}: {e}") from None


def commit_changes(changes: list[str]) -> dict:
    """Config changes from `commit -c` lines ("CMD [...]", "ENV K=V", "EXPOSE 80", ...)."""
    import json

    out: dict = {}
    for line in changes:
        word, _, rest = line.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word in ("CMD", "ENTRYPOINT"):
            if rest.startswith("["):
                try:
                    value = json.loads(rest)
                except ValueError:
                    raise PydockError(f"commit -c {line!r}: not a JSON array") from None
            else:
                value = ["/bin/sh", "-c", rest]
            out["Cmd" if word == "CMD" else "Entrypoint"] = value
        elif word == "ENV":
            parts = _shlex(line, rest)
            if parts and "=" not in parts[0]:
                k, _, v = rest.partition(" ")
                pairs = [f"{k}={v.strip()}"]
            else:
                pairs = parts
            out.setdefault("Env", []).extend(pairs)
        elif word == "LABEL":
            out.setdefault("Labels", {}).update(
                dict(p.partition("=")[::2] for p in _shlex(line, rest))
            )
        elif word == "EXPOSE":
            out.setdefault("ExposedPorts", {}).update(
                {(p if "/" in p else f"{p}/tcp"): {} for p in rest.split()}
            )
        elif word == "VOLUME":
            try:
                vols = json.loads(rest) if rest.startswith("[") else rest.split()
            except ValueError:
                raise PydockError(f"commit -c {line!r}: not a JSON array") from None
            out.setdefault("Volumes", {}).update({v: {} for v in vols})
        elif word in ("USER", "WORKDIR", "STOPSIGNAL"):
            out[{"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[word]] = rest
        else:
            raise PydockError(
                f"commit -c: {word} is not a supported change (CMD ENTRYPOINT ENV EXPOSE LABEL USER VOLUME WORKDIR STOPSIGNAL)"
            )
    return out


def cmd_commit(args: argparse.Namespace) -> int:
    from executor.commit import commit_container

    root = store_root(args)
    c = _cstore(args).get(args.container)
    image = commit_container(
        root,
        c,
        repository=args.repository,
        message=args.message or "",
        author=args.author or "",
        config_changes=commit_changes(args.change),
        pause=str(args.pause).lower() not in ("false", "0", "no"),
    )
    print(image.image_id)
    return 0


# --- exec ----------------------------------------------------------------------------------------


def cmd_exec(args: argparse.Namespace) -> int:
    from executor.exec import exec_in_container

    c = _cstore(args).get(args.container)
    for e in args.env:
        if not e.split("=", 1)[0]:
            raise PydockError(f"invalid environment variable: {e}", exit_code=125)
    if not c.state.running:
        raise PydockError(f"Container {c.id} is not running", exit_code=1)
    if c.state.status == "paused":
        raise PydockError(f"Container {c.id} is paused, unpause the container before exec")
    if not args.command:
        raise PydockError("exec needs a command to run", exit_code=125)
    return exec_in_container(
        store_root(args),
        c,
        list(args.command),
        env=args.env,
        user=args.user,
        workdir=args.workdir,
        interactive=args.interactive,
        tty=args.tty,
        detach=args.detach,
        privileged=args.privileged,
    )


# --- events / info / version ---------------------------------------------------------------------


def cmd_events(args: argparse.Namespace) -> int:
    import json

    from executor.events import follow_events, read_events

    root = store_root(args)
    since = _parse_since(args.since)
    until = _parse_since(args.until)
    filters: dict[str, list[str]] = {}
    for f in args.filter:
        k, sep, v = f.partition("=")
        if not sep:
            raise PydockError(f'bad format of filter (expected name=value): "{f}"')
        if k.lower() not in ("type", "event", "action", "container", "image", "label"):
            raise PydockError(f"invalid filter '{k}'")
        filters.setdefault(k.lower(), []).append(v)

    def keep(ev) -> bool:  # noqa: ANN001
        for k, vs in filters.items():
            if k == "type" and ev.type not in vs:
                return False
            if k in ("event", "action") and ev.action not in vs:
                return False
            if k == "container" and not any(
                ev.actor_id.startswith(v) or ev.attributes.get("name") == v for v in vs
            ):
                return False
            if k == "image" and ev.attributes.get("image") not in vs:
                return False
            if k == "label" and not any(
                ev.attributes.get(v.partition("=")[0]) == v.partition("=")[2] for v in vs
            ):
                return False
        return True

    events = read_events(root, since, until) if until is not None else follow_events(root, since)
    for ev in events:
        if not keep(ev):
            continue
        if args.format:
            if args.format.strip() == "{{json .}}":
                print(json.dumps(ev.to_json(), separators=(",", ":")), flush=True)
            else:
                from frontend.gotemplate import render_template

                print(render_template(args.format, ev.to_json(), struct=True), flush=True)
            continue
        ts = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ev.time))
            + f".{ev.time_nano % 10**9:09d}Z"
        )
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(ev.attributes.items()))
        print(f"{ts} {ev.type} {ev.action} {ev.actor_id} ({attrs})", flush=True)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    root = store_root(args)
    cs = _cstore(args).list()
    try:
        from cache.store import Store

        n_images = len(Store.open(root).list_images())
    except PydockError:
        n_images = 0
    running = sum(c.state.status == "running" for c in cs)
    paused = sum(c.state.status == "paused" for c in cs)
    cg = "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"
    lines = [
        "Client:",
        " Version:    0.1.0",
        " Context:    default",
        "",
        "Server:",
        f" Containers: {len(cs)}",
        f"  Running: {running}",
        f"  Paused: {paused}",
        f"  Stopped: {len(cs) - running - paused}",
        f" Images: {n_images}",
        " Server Version: pydock 0.1.0",
        " Storage Driver: overlay2",
        "  Backing Filesystem: " + _fs_type(root),
        " Logging Driver: json-file",
        f" Cgroup Version: {cg}",
        " Runtimes: pydock",
        " Default Runtime: pydock",
        f" Kernel Version: {platform.release()}",
        f" Operating System: {_os_name()}",
        f" OSType: {platform.system().lower()}",
        f" Architecture: {platform.machine()}",
        f" CPUs: {os.cpu_count()}",
        f" Total Memory: {_mem_total()}",
        f" Name: {platform.node()}",
        f" Docker Root Dir: {root}",
        " Networks: none host",
    ]
    print("\n".join(lines))
    return 0


def _fs_type(root: str) -> str:
    best, fstype = "", "unknown"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and (root + "/").startswith(parts[1].rstrip("/") + "/"):
                    if len(parts[1]) >= len(best):
                        best, fstype = parts[1], parts[2]
    except OSError:
        pass
    return fstype


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "Linux"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kb = int(line.split()[1])
                return f"{kb / 1024 / 1024:.2f}GiB"
    except OSError:
        pass
    return "unknown"


def cmd_version(args: argparse.Namespace) -> int:
    import platform

    print(
        "\n".join(
            [
                "Client:",
                " Version:           0.1.0",
                " API version:       1.41",
                f" Python version:    {platform.python_version()}",
                f" OS/Arch:           linux/{platform.machine()}",
                "",
                "Server: pydock",
                " Engine:",
                "  Version:          0.1.0",
                f"  OS/Arch:          linux/{platform.machine()}",
                "  Experimental:     false",
            ]
        )
    )
    return 0


# --- registration --------------------------------------------------------------------------------


def _register_container_commands(sub, prefix: str = "") -> None:  # noqa: ANN001
    def add(name: str, func, help_text: str, **kw) -> argparse.ArgumentParser:  # noqa: ANN001
        p = sub.add_parser(name, help=help_text, description=help_text, **kw)
        p.set_defaults(func=func)
        return p

    p = add("run", cmd_run, "Run a command in a new container", add_help=False)
    p.add_argument(
        "-d", "--detach", action="store_true", help="run in the background, print the id"
    )
    _add_run_flags(p)
    p = add("create", cmd_create, "Create a new container", add_help=False)
    _add_run_flags(p)

    p = add("start", cmd_start, "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
    p.add_argument("-i", "--interactive", action="store_true", help="attach STDIN")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    for name, func, text in (
        ("stop", cmd_stop, "Stop one or more running containers"),
        ("restart", cmd_restart, "Restart one or more containers"),
    ):
        p = add(name, func, text)
        p.add_argument(
            "-t", "--time", type=int, default=None, help="seconds to wait before killing"
        )
        p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("kill", cmd_kill, "Kill one or more running containers")
    p.add_argument("-s", "--signal", default="KILL", help="signal to send (default KILL)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("wait", cmd_wait, "Block until containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("rm", cmd_rm, "Remove one or more containers")
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes too")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")

    for name, func, text in (
        ("pause", cmd_pause, "Pause all processes within containers"),
        ("unpause", cmd_unpause, "Unpause all processes within containers"),
    ):
        p = add(name, func, text)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")

    p = add("rename", cmd_rename, "Rename a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")

    p = add("ps" if not prefix else "ls", cmd_ps, "List containers")
    p.add_argument("-a", "--all", action="store_true", help="show all containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    p.add_argument("-l", "--latest", action="store_true", help="show the latest created container")
    p.add_argument("-n", "--last", type=int, default=None, help="show n last created containers")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter output")
    p.add_argument("--format", default=None, help="format output using a Go template")
    p.add_argument(
        "-s", "--size", action="store_true", help="show the size of each container's changes"
    )

    p = add("logs", cmd_logs, "Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-n", "--tail", default="all", help="number of lines from the end")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("--since", default=None, help="show logs since a time or duration")
    p.add_argument("--until", default=None, help="show logs before a time or duration")
    p.add_argument("container", metavar="CONTAINER")

    p = add("attach", cmd_attach, "Attach to a running container's output")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("container", metavar="CONTAINER")

    p = add("exec", cmd_exec, "Run a command in a running container")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    p.add_argument("-e", "--env", action="append", default=[], help="set environment variables")
    p.add_argument("-u", "--user", default=None, help="username or UID")
    p.add_argument("-w", "--workdir", default=None, help="working directory")
    p.add_argument("--privileged", action="store_true", help="extended privileges")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")

    p = add("top", cmd_top, "Display the running processes of a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS")

    p = add("diff", cmd_diff, "Inspect changes to files on a container's filesystem")
    p.add_argument("container", metavar="CONTAINER")

    p = add("cp", cmd_cp, "Copy files between a container and the host")
    p.add_argument("-L", "--follow-link", action="store_true", help="follow symlinks in SRC")
    p.add_argument("-a", "--archive", action="store_true", help="keep uid/gid (always done)")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DEST")

    p = add("export", cmd_export, "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default=None, help="write to a file instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")

    p = add("commit", cmd_commit, "Create a new image from a container's changes")
    p.add_argument("-m", "--message", default="", help="commit message")
    p.add_argument("-a", "--author", default="", help="author")
    p.add_argument(
        "-c", "--change", action="append", default=[], help="apply a Dockerfile instruction"
    )
    p.add_argument("-p", "--pause", default="true", help="pause the container during commit")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("repository", nargs="?", default=None, metavar="REPOSITORY[:TAG]")

    p = add("port", cmd_port, "List port mappings for the container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("port", nargs="?", default=None, metavar="PRIVATE_PORT[/PROTO]")

    p = add("stats", cmd_stats, "Display container resource usage statistics")
    p.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")

    p = add("inspect", cmd_inspect, "Display detailed information on containers")
    p.add_argument("-f", "--format", default=None, help="format output using a Go template")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")


class _Discard:
    """Stands in for the parsers of commands not being run (building them all costs ~25 ms)."""

    def __getattr__(self, name: str):  # noqa: ANN204
        return lambda *a, **k: self


def _wanted_command() -> str | None:
    """The sub-command of this process's own command line, when it is one of ours."""
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--root":
            i += 2
            continue
        if word.startswith("-"):
            i += 1
            continue
        return word
    return None


_TOP_LEVEL = {
    "run", "create", "start", "stop", "kill", "restart", "wait", "rm", "ps", "logs", "attach",
    "exec", "top", "diff", "cp", "export", "commit", "pause", "unpause", "rename", "port",
    "stats",
}  # fmt: skip


class _Only:
    """A subparsers proxy that builds only the parser of `wanted` (and never `inspect`)."""

    def __init__(self, sub, wanted: str | None) -> None:  # noqa: ANN001
        self.sub = sub
        self.wanted = wanted

    def add_parser(self, name: str, **kw):  # noqa: ANN003, ANN201
        # Top-level `inspect` belongs to the image commands (which call Container.inspect).
        if name == "inspect" or (self.wanted is not None and name != self.wanted):
            return _Discard()
        return self.sub.add_parser(name, **kw)


def register(subparsers) -> None:  # noqa: ANN001 - argparse's private type
    """Add run, ps, stop, ... and the `container` group to the `pydock` parser."""
    wanted = _wanted_command()
    if wanted in _TOP_LEVEL:
        # `pydock run ...`: only that parser is needed (the dispatcher imported only us).
        _register_container_commands(_Only(subparsers, wanted))
        return
    _register_container_commands(_Only(subparsers, None))

    p = subparsers.add_parser("events", help="Get real time events from the server")
    p.add_argument("--since", default=None, help="show events since a timestamp or duration")
    p.add_argument("--until", default=None, help="stream events until this timestamp")
    p.add_argument("-f", "--filter", action="append", default=[], help="filter output")
    p.add_argument("--format", default=None, help="format output using a Go template")
    p.set_defaults(func=cmd_events)

    p = subparsers.add_parser("info", help="Display system-wide information")
    p.add_argument("-f", "--format", default=None)
    p.set_defaults(func=cmd_info)
    p = subparsers.add_parser("version", help="Show the pydock version information")
    p.add_argument("-f", "--format", default=None)
    p.set_defaults(func=cmd_version)

    group = subparsers.add_parser("container", help="Manage containers")
    gsub = group.add_subparsers(
        dest="container_command", metavar="COMMAND", parser_class=type(group)
    )
    _register_container_commands(gsub, prefix="container")
    p = gsub.add_parser("prune", help="Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true")
    p.set_defaults(func=cmd_container_prune)


def cmd_container_prune(args: argparse.Namespace) -> int:
    from executor.lifecycle import remove_container

    root = store_root(args)
    removed = []
    for c in _cstore(args).list():
        if not c.state.running:
            remove_container(root, c)
            removed.append(c.id)
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
        print()
    print("Total reclaimed space: 0B")
    return 0
