"""Holding a running container: start it, pump its output, record how it ended.

The holder of a container is either the foreground `pydock run`/`start -a` process itself, or,
for `-d`, a supervisor: a grandchild of `pydock run -d` in its own session (double fork +
setsid, so it outlives the command and owns no terminal). Either way the holder

1. starts the executor with pipes (or a pty) for the container's output,
2. records the state "running" with the init's pid and start time and its own,
3. copies every output chunk into the json log (and, attached, to its own stdout/stderr),
4. waits, records exit code, OOM kill and finish time, and logs the "die" event,
5. removes the container (and its anonymous volumes) for `--rm`.

Stop and kill requests need no channel to the holder: they signal the container's init
directly (pid checked together with its start time); the holder sees the exit and records it.
No threads: one `select` loop moves the bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import sys
import time
from pathlib import Path

from cache.errors import PydockError
from executor.containers import Container, ContainerStore, LogWriter, process_start_time
from executor.events import log_event
from executor.lifecycle import RunError, remove_container, spec_for

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False once the reader is gone (the container keeps running)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        except OSError:
            return False
        view = view[n:]
    return True


def _record_start(cstore: ContainerStore, c: Container, pid: int, cgroups: dict) -> None:
    me = os.getpid()

    def change(s):  # noqa: ANN001, ANN202
        s.status = "running"
        s.pid = pid
        s.pid_start = process_start_time(pid) or 0
        s.monitor_pid = me
        s.monitor_start = process_start_time(me) or 0
        s.exit_code = 0
        s.oom_killed = False
        s.error = ""
        s.started_at = time.time()
        s.finished_at = 0.0
        s.cgroups = dict(cgroups)

    cstore.update_state(c, change)


def _record_exit(
    cstore: ContainerStore, c: Container, code: int, oom: bool, error: str, *, ran: bool = True
) -> None:
    """Save how the container ended (nothing to save if `rm -f` already removed it).

    `ran=False`: its command never ran (the root could not be set up, the user or the
    command does not exist). Docker then leaves the container "Created" with the exit code
    and the error in its state and no start or finish time; so do we."""
    from executor.containers import NoSuchContainer

    try:
        _save_exit(cstore, c, code, oom, error, ran)
    except (NoSuchContainer, FileNotFoundError):
        pass


def _save_exit(
    cstore: ContainerStore, c: Container, code: int, oom: bool, error: str, ran: bool
) -> None:
    def change(s):  # noqa: ANN001, ANN202
        s.status = "exited" if ran else "created"
        s.pid = 0
        s.exit_code = code
        s.oom_killed = oom
        s.error = error
        if not ran:
            s.started_at = s.finished_at = 0.0
            return
        s.finished_at = time.time()
        if not s.started_at:
            s.started_at = s.finished_at

    cstore.update_state(c, change)


def hold(
    root: Path | str,
    c: Container,
    *,
    attach: bool = True,
    stdin: bool = False,
    ready_fd: int | None = None,
    sig_proxy: bool = True,
    streams: tuple[str, ...] = ("stdout", "stderr"),
) -> int:
    """Run container `c` to its end from this process; returns its exit code (Docker's).

    `attach`: copy output to this process's stdout/stderr too (only `streams` of them, as
    `run -a stdout`; the log always gets both). `stdin`: the container reads
    this process's stdin (through the pty with a tty). `ready_fd`: written "ok" (and closed)
    once the container runs, or the error line if it could not start.
    """
    from executor import runtime
    from executor.spec import ExecutorError

    root = Path(root)
    cstore = ContainerStore(root)
    tty = bool(c.config.get("Tty"))
    try:
        spec = spec_for(c)
    except PydockError as e:
        _tell(ready_fd, e)
        if c.host_config.get("AutoRemove"):
            _auto_remove(root, cstore, c)
        raise
    out_r = err_r = in_r = in_w = -1
    serve = not attach  # a detached supervisor: `pydock attach` clients connect to it
    if not tty:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        spec.stdout, spec.stderr = out_w, err_w
        spec.stdin = 0 if stdin else None
        if serve and c.config.get("OpenStdin"):
            # `run -d -i`: the container's stdin stays open for attached clients.
            in_r, in_w = os.pipe()
            spec.stdin = in_r
    elif not (attach and os.isatty(1)):
        spec.tty_size = spec.tty_size or (24, 80)
    try:
        handle = runtime.start(spec)
    except ExecutorError as e:
        if not tty:
            for fd in (out_r, out_w, err_r, err_w, in_r, in_w):
                if fd >= 0:
                    os.close(fd)
        # Docker's state code for a container that could not start is 128 (the CLI's 125).
        _record_exit(
            cstore, c, 128 if e.exit_code == 125 else e.exit_code, False, e.message, ran=False
        )
        log_event(
            root, "die", c.id, {"name": c.name, "image": c.image_name, "exitCode": str(e.exit_code)}
        )
        _tell(ready_fd, e)
        if c.host_config.get("AutoRemove"):
            _auto_remove(root, cstore, c)
        raise
    if not tty:
        os.close(out_w)
        os.close(err_w)
        if in_r >= 0:
            os.close(in_r)
    listener = _listen(c) if serve else None
    cg = getattr(handle, "cgroups", None)
    _record_start(cstore, c, handle.pid, dict(getattr(cg, "paths", None) or {}))
    log_event(root, "start", c.id, {"name": c.name, "image": c.image_name})
    _tell(ready_fd, None)

    old_handlers = {}
    if sig_proxy and attach:

        def forward(signum, _frame):  # noqa: ANN001, ANN202
            with contextlib.suppress(Exception):
                handle.kill(signum)

        for s in FORWARDED_SIGNALS:
            old_handlers[s] = signal.signal(s, forward)

    log = LogWriter(c.log_path)
    try:
        if listener is not None:
            if tty:
                _serve(handle, {handle.pty_master: 1}, log, listener, handle.pty_master)
            else:
                _serve(handle, {out_r: 1, err_r: 2}, log, listener, in_w)
        elif tty:
            _pump_tty(handle, log, attach=attach, stdin=stdin)
        else:
            _pump_pipes(out_r, err_r, log, attach=attach, streams=streams)
        result = handle.wait()
    finally:
        log.close()
        if in_w >= 0:
            with contextlib.suppress(OSError):
                os.close(in_w)
        for s, h in old_handlers.items():
            signal.signal(s, h)
    code = result.exit_code
    # result.error: the command could not be exec'ed (126/127), so it never ran
    _record_exit(cstore, c, code, bool(result.oom_killed), result.error or "", ran=not result.error)
    attrs = {"name": c.name, "image": c.image_name, "exitCode": str(code)}
    if result.oom_killed:
        log_event(root, "oom", c.id, {"name": c.name, "image": c.image_name})
    log_event(root, "die", c.id, attrs)
    if result.error and attach:
        sys.stderr.write(f"pydock: {result.error}\n")
    if c.host_config.get("AutoRemove"):
        _auto_remove(root, cstore, c)
    return code


def _auto_remove(root: Path, cstore: ContainerStore, c: Container) -> None:
    fresh = cstore.find(c.id)
    if fresh is not None:
        with contextlib.suppress(PydockError):
            remove_container(root, fresh, force=True, volumes=True)


def _tell(ready_fd: int | None, error: PydockError | None) -> None:
    if ready_fd is None:
        return
    msg = b"ok" if error is None else f"{error.exit_code} {error.message}".encode()
    with contextlib.suppress(OSError):
        os.write(ready_fd, msg)
    with contextlib.suppress(OSError):
        os.close(ready_fd)


def _pump_pipes(
    out_r: int, err_r: int, log: LogWriter, *, attach: bool, streams: tuple[str, ...]
) -> None:
    sinks_ok = {1: attach and "stdout" in streams, 2: attach and "stderr" in streams}
    sources = {out_r: ("stdout", 1), err_r: ("stderr", 2)}
    open_fds = [out_r, err_r]
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [])
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                open_fds.remove(fd)
                os.close(fd)
                continue
            name, sink = sources[fd]
            log.write(name, data)
            if sinks_ok[sink] and not _write_all(sink, data):
                # Our reader went away (`pydock run ... | head`): close the container's end
                # too, so its writer gets SIGPIPE as in a plain pipeline instead of filling
                # the log forever.
                sinks_ok[sink] = False
                open_fds.remove(fd)
                os.close(fd)


def _pump_tty(handle, log: LogWriter, *, attach: bool, stdin: bool) -> None:  # noqa: ANN001
    import termios
    import tty as ttymod

    master = handle.pty_master
    restore = None
    in_fd = 0 if (stdin and attach) else -1
    if in_fd == 0 and os.isatty(0):
        restore = termios.tcgetattr(0)
        ttymod.setraw(0)
    old_winch = None
    if attach and os.isatty(1):

        def winch(_s, _f):  # noqa: ANN001, ANN202
            import fcntl

            with contextlib.suppress(OSError):
                size = fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(master, termios.TIOCSWINSZ, size)

        old_winch = signal.signal(signal.SIGWINCH, winch)
    out_ok = attach
    try:
        while True:
            fds = [master] + ([in_fd] if in_fd >= 0 else [])
            ready, _, _ = select.select(fds, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    data = b""  # EIO: every slave end is closed
                if not data:
                    break
                log.write("stdout", data)
                if out_ok:
                    out_ok = _write_all(1, data)
            if in_fd >= 0 and in_fd in ready:
                try:
                    data = os.read(in_fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    in_fd = -1
                    with contextlib.suppress(OSError):
                        os.write(master, b"\x04")  # EOF for the line discipline
                    continue
                if not _write_all(master, data):
                    in_fd = -1
    finally:
        if restore is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, restore)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)


def start_detached(root: Path | str, c: Container) -> None:
    """Start `c` under a supervisor that outlives this process; returns once it runs.

    Raises the start error (e.g. command not found, 127) if the container could not start.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: new session, then fork again so the supervisor is no session leader
        code = 0
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            _become_daemon(keep=w)
            with contextlib.suppress(BaseException):
                hold(root, c, attach=False, stdin=False, ready_fd=w, sig_proxy=False)
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while True:
        data = os.read(r, 4096)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    msg = b"".join(chunks).decode(errors="replace")
    if msg == "ok":
        return
    if not msg:
        raise RunError(f"the supervisor of container {c.short_id} died before it started")
    code, _, text = msg.partition(" ")
    raise PydockError(text, exit_code=int(code) if code.isdigit() else 125)


def _become_daemon(keep: int) -> None:
    """Point stdio at /dev/null and close every other descriptor but `keep`."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd != keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    # No SIG_IGN here: ignored signals would survive exec into the container's process.
    os.chdir("/")


# --- attach: a detached container's supervisor serves its terminal to `pydock attach` ---------
#
# The supervisor listens on an abstract unix socket named after the container (abstract: no
# path length limit, gone with the process). Only a peer with the supervisor's uid (root) is
# served. To a client it sends frames `[stream 1|2][length, 4 bytes big-endian][data]`; what a
# client sends is the container's stdin (the pty with a tty, else the stdin pipe of `-i`).


def attach_address(cid: str) -> str:
    return f"\0pydock-attach/{cid}"


def _listen(c: Container):  # noqa: ANN202 - socket.socket | None
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(attach_address(c.id))
        sock.listen(8)
    except OSError:
        sock.close()
        return None  # attach falls back to following the log
    return sock


def _peer_allowed(conn) -> bool:  # noqa: ANN001
    import socket
    import struct

    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


def _serve(handle, sources: dict[int, int], log: LogWriter, listener, stdin_fd: int) -> None:  # noqa: ANN001
    """Move output to the log and to attached clients, clients' input to `stdin_fd`."""
    clients: dict[int, object] = {}  # fd -> connection, all get the output
    talking: set[int] = set()  # clients whose input is still open
    open_src = list(sources)
    lfd = listener.fileno()
    try:
        while open_src:
            ready, _, _ = select.select([*open_src, lfd, *talking], [], [])
            for fd in ready:
                if fd == lfd:
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        continue
                    if _peer_allowed(conn):
                        conn.settimeout(2.0)  # a stuck client must not stall the container
                        clients[conn.fileno()] = conn
                        talking.add(conn.fileno())
                    else:
                        conn.close()
                elif fd in talking:
                    conn = clients[fd]
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        # Its input ended (or it left): it still gets output until a send fails.
                        talking.discard(fd)
                    elif stdin_fd >= 0 and not _write_all(stdin_fd, data):
                        stdin_fd = -1
                else:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""  # EIO from a pty master: every slave end is closed
                    if not data:
                        open_src.remove(fd)
                        if fd != stdin_fd:
                            os.close(fd)
                        continue
                    stream = sources[fd]
                    log.write("stdout" if stream == 1 else "stderr", data)
                    frame = bytes([stream]) + len(data).to_bytes(4, "big") + data
                    for cfd, conn in list(clients.items()):
                        try:
                            conn.sendall(frame)
                        except OSError:
                            clients.pop(cfd)
                            talking.discard(cfd)
                            conn.close()
    finally:
        for conn in clients.values():
            conn.close()
        listener.close()


def attach_client(c: Container, *, stdin: bool, detach_keys: bytes = b"\x10\x11") -> bool | None:
    """Attach this terminal to detached container `c`: True when it ended, False when the
    user detached (ctrl-p ctrl-q with a tty), None when its supervisor serves no attach."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(attach_address(c.id))
    except OSError:
        sock.close()
        return None
    tty = bool(c.config.get("Tty"))
    restore = None
    in_fd = 0 if stdin else -1
    if in_fd == 0 and tty and os.isatty(0):
        import termios
        import tty as ttymod

        restore = termios.tcgetattr(0)
        ttymod.setraw(0)
    buf = b""
    pending_key = b""
    ended = True
    try:
        while True:
            fds = [sock.fileno()] + ([in_fd] if in_fd >= 0 else [])
            ready, _, _ = select.select(fds, [], [])
            if sock.fileno() in ready:
                data = sock.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 5:
                    size = int.from_bytes(buf[1:5], "big")
                    if len(buf) < 5 + size:
                        break
                    _write_all(buf[0] if buf[0] in (1, 2) else 1, buf[5 : 5 + size])
                    buf = buf[5 + size :]
            if in_fd >= 0 and in_fd in ready:
                data = os.read(in_fd, 65536)
                if not data:
                    in_fd = -1
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                    continue
                if tty and detach_keys:
                    data = pending_key + data
                    pending_key = b""
                    if detach_keys in data:
                        before = data[: data.index(detach_keys)]
                        if before:
                            sock.sendall(before)
                        ended = False
                        break
                    if data.endswith(detach_keys[:1]):
                        data, pending_key = data[:-1], data[-1:]
                if data:
                    sock.sendall(data)
    finally:
        sock.close()
        if restore is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, restore)
    return ended
