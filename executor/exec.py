"""`pydock exec`: run another process inside a running container's namespaces.

A forked child of pydock turns non-dumpable (CVE-2019-5736: the container must not reach the
host interpreter through /proc), joins the container's cgroups, then its ipc, uts, net, cgroup,
pid and mount namespaces with setns(2) on fds opened from /proc/<init pid>/ns before joining
anything. Joining the mount namespace also moves the root to the container's root (after its
pivot_root), so every path from then on is the container's. The pid namespace applies to
children only, so the child forks once more; the grandchild resolves the user in the
container's own /etc/passwd, enters the working directory, drops to Docker's capability set,
and execs. With a tty, the pty comes from the container's own /dev/ptmx and its master is sent
back to pydock over a socket, as the runtime does for `run -t`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
from pathlib import Path

from cache.errors import PydockError
from executor import caps, seccomp, syscalls, users
from executor import pty as ptys
from executor.cgroups import CgroupSet
from executor.containers import Container, process_alive
from executor.init import reset_signals

NAMESPACES = ("ipc", "uts", "net", "cgroup", "pid", "mnt")  # mnt last: it changes the root


def exec_in_container(
    root: Path | str,
    c: Container,
    argv: list[str],
    *,
    env: list[str] | None = None,
    user: str | None = None,
    workdir: str | None = None,
    interactive: bool = False,
    tty: bool = False,
    detach: bool = False,
    privileged: bool = False,
) -> int:
    """Run `argv` in the running container `c`; its exit code (0 at once with `detach`)."""
    from executor.lifecycle import merge_env, runtime_env, security_options

    st = c.state
    if not st.running or not process_alive(st.pid, st.pid_start):
        raise PydockError(f"Container {c.id} is not running")
    ns_fds = []
    try:
        for ns in NAMESPACES:
            try:
                ns_fds.append((ns, os.open(f"/proc/{st.pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)))
            except FileNotFoundError:
                continue
        # The pid may have been reused between the check and the opens: check again.
        if not process_alive(st.pid, st.pid_start):
            raise PydockError(f"Container {c.id} is not running")
        full_env = merge_env(runtime_env(c), list(env or []))
        if tty:
            full_env = merge_env(full_env, ["TERM=xterm"])
        cwd = workdir or c.config.get("WorkingDir") or "/"
        who = user if user is not None else (c.config.get("User") or "")
        hc = c.host_config
        spec = {
            "argv": argv,
            "env": full_env,
            "cwd": cwd,
            "user": who,
            "privileged": privileged or bool(hc.get("Privileged")),
            "cap_add": list(hc.get("CapAdd") or []),
            "cap_drop": list(hc.get("CapDrop") or []),
            # the same process profile as the container's own command (executor/pid1.py)
            "seccomp": True,
            "no_new_privs": False,
            **security_options(hc),
        }
        return _run(c, ns_fds, spec, interactive=interactive, tty=tty, detach=detach)
    finally:
        for _, fd in ns_fds:
            os.close(fd)


def _run(c: Container, ns_fds, spec: dict, *, interactive: bool, tty: bool, detach: bool) -> int:  # noqa: ANN001
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    sock_parent = sock_child = None
    if tty:
        sock_parent, sock_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    tty_size = None
    if tty:
        tty_size = syscalls.get_winsize(0) or (24, 80)
    pid = os.fork()
    if pid == 0:
        _child(c, ns_fds, spec, status_w, sock_child, interactive, tty, detach, tty_size)
    os.close(status_w)
    if sock_child is not None:
        sock_child.close()
    master = None
    if sock_parent is not None:
        with contextlib.suppress(OSError):
            master = ptys.recv_fd(sock_parent)
        sock_parent.close()
    # The status pipe closes at exec (or carries the failure).
    msg = b""
    while True:
        chunk = os.read(status_r, 4096)
        if not chunk:
            break
        msg += chunk
    os.close(status_r)
    if msg:
        text = msg.decode(errors="replace").strip()
        code, _, line = text.partition(" ")
        if master is not None:
            os.close(master)
        _wait(pid)
        raise PydockError(line or text, exit_code=int(code) if code.isdigit() else 126)
    if detach:
        _wait(pid)  # the child exits once the command runs; the command lives on
        return 0
    if master is not None:
        _relay(pid, master, interactive)
    old = {}

    def forward(signum, _frame):  # noqa: ANN001, ANN202
        with contextlib.suppress(OSError):
            os.kill(pid, signum)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        old[s] = signal.signal(s, forward)
    try:
        return _wait(pid)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _relay(pid: int, master: int, interactive: bool) -> None:
    try:
        ptys.relay(master, 0 if interactive else None, 1)
    finally:
        with contextlib.suppress(OSError):
            os.close(master)


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if os.WIFEXITED(status):
            return os.WEXITSTATUS(status)
        if os.WIFSIGNALED(status):
            return 128 + os.WTERMSIG(status)


def _send(fd: int, code: int, msg: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, f"{code} {msg}".encode(errors="replace"))


def _child(c, ns_fds, spec, status_w, sock, interactive, tty, detach, tty_size) -> None:  # noqa: ANN001
    """Join the container and fork the command. Never returns.

    Nothing may be imported from here on: after the setns the host's files are out of reach
    (and must stay so: CVE-2019-14271 loaded a library from the container).
    """
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        syscalls.set_dumpable(False)
        if not interactive or detach:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        if detach:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
        if c.state.cgroups:
            with contextlib.suppress(OSError):
                CgroupSet.from_paths(c.state.cgroups).join()
        for _ns, fd in ns_fds:
            syscalls.setns(fd, 0)
        for _ns, fd in ns_fds:
            os.close(fd)
        os.chdir("/")
        pid = os.fork()
        if pid == 0:
            _grandchild(spec, status_w, sock, tty, detach, tty_size)
        if sock is not None:
            sock.close()
        os.close(status_w)
        if detach:
            os._exit(0)
        os._exit(_wait(pid))
    except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
        _send(status_w, 126, f"cannot join the container: {e}")
        os._exit(126)


def _grandchild(spec: dict, status_w: int, sock, tty: bool, detach: bool, tty_size) -> None:  # noqa: ANN001
    try:
        user = users.resolve_user(spec["user"])
        env = {}
        for item in spec["env"]:
            k, sep, v = item.partition("=")
            if k and sep:
                env[k] = v
        env.setdefault("HOME", user.home or "/")
        slave = None
        if tty:
            master, slave = ptys.open_pty("/dev/ptmx", tty_size)
            ptys.send_fd(sock, master)
            os.close(master)
        if sock is not None:
            sock.close()
        if slave is not None:
            os.setsid()  # a session leader may take a controlling tty
            ptys.make_controlling(slave)
        elif detach:
            os.setsid()
        last = caps.last_cap()
        keep = caps.effective_mask(spec["privileged"], spec["cap_add"], spec["cap_drop"], last)
        reset_signals()
        os.umask(0o022)
        caps.drop_bounding(keep, last)
        if spec["seccomp"] and not spec["privileged"]:
            seccomp.install()  # while CAP_SYS_ADMIN is still ours: no no_new_privs needed
        os.setgroups(user.groups)
        os.setgid(user.gid)
        os.setuid(user.uid)
        caps.apply_process_caps(keep, user.uid)
        if spec["no_new_privs"]:
            syscalls.set_no_new_privs()
        syscalls.close_fds_except({status_w})
        try:
            os.chdir(spec["cwd"])
        except OSError as e:
            _send(
                status_w,
                126,
                f'chdir to cwd ("{spec["cwd"]}") set in config.json failed: {e.strerror.lower()}',
            )
            os._exit(126)
    except BaseException as e:  # noqa: BLE001
        _send(status_w, 126, f"exec setup failed: {e}")
        os._exit(126)
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        if e.errno == errno.ENOENT:
            where = (
                "executable file not found in $PATH"
                if "/" not in argv[0]
                else "no such file or directory"
            )
            _send(status_w, 127, f'exec: "{argv[0]}": {where}')
            os._exit(127)
        _send(status_w, 126, f'exec: "{argv[0]}": {e.strerror.lower()}')
        os._exit(126)
    except BaseException as e:  # noqa: BLE001
        _send(status_w, 126, f"exec {argv[0]}: {e}")
        os._exit(126)
