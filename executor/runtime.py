"""Running a `RunSpec`: `run(spec)` blocks; `start(spec)` returns a `Container` handle.

Process tree: the caller forks once, with its thread's pid namespace for children switched
to a new one just for that fork, so the child is PID 1 there (`Container.pid` is its host
pid). PID 1 turns non-dumpable, unshares mnt/uts/ipc/net, makes `/` private, mounts the
overlay and the rest of the root (executor.rootfs), pivots, sets hostname and `lo`, resolves
the user and creates the cwd; meanwhile the caller puts it in the container's cgroups and
then lets it go on (a byte on a pipe); PID 1 unshares its cgroup namespace and then
    init=True:  forks the command and stays as a reaping, signal-forwarding init
    init=False: becomes the command itself (exec).

Every mount lives only in the container's private mount namespace, which the kernel tears
down when PID 1 (and with it every process of the pid namespace) is gone: no mount can be
left on the host, whatever happens to the caller. PID 1 gets SIGKILL when the calling
thread dies (PR_SET_PDEATHSIG). Cgroups, the temporary state dir and mount-point stubs are
removed by `Container.wait()`.

PID 1 reports to the caller over a close-on-exec pipe, one line per message: `S<path>` a
created mount-point stub, `U<path>` a directory that overlay copied up only because a stub
was created in it, `E<msg>` a setup error, `X<code> <msg>` an exec failure. EOF on the pipe
means the command was exec'ed. A second pipe carries the command's wait status from the init
(`I<status>`), since the init itself can only exit with 128+N for a signal.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import secrets
import select
import shutil
import signal
import socket
import stat
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from executor import caps, overlay, rootfs, seccomp, syscalls, users
from executor import pty as ptys
from executor.cgroups import CgroupSet
from executor.init import SignalForwarder, exit_code_of, reap_until, reset_signals
from executor.spec import ExecutorError, RunResult, RunSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_RLIMITS = {
    name.removeprefix("RLIMIT_").lower(): getattr(resource, name)
    for name in dir(resource)
    if name.startswith("RLIMIT_")
}


class Container:
    """A started container. `pid` is its PID 1 as seen from the host; `pty_master` is the
    master side of its terminal when `spec.tty` (the caller relays it; `run()` does).
    `wait()` must be called exactly once: it reaps, removes cgroups and mount-point stubs
    and returns the result."""

    def __init__(self, spec: RunSpec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.pid = 0
        self.pty_master: int | None = None
        self.cgroups: CgroupSet | None = None
        self.started_at = time.time()
        self.stubs: list[str] = []
        self.copied_up: list[str] = []
        self.exec_error = ""
        self.exec_code = 0
        self._pidfd: int | None = None
        self._result_r = -1
        self._state_dir: str | None = None
        self._own_state_dir = False
        self._result: RunResult | None = None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the container's PID 1 (SIGKILL ends the whole container). A no-op
        once the container has been waited for."""
        if self._result is not None or not self.pid:
            return
        with contextlib.suppress(ProcessLookupError, OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    def exited(self, timeout: float | None = 0) -> bool:
        """Whether PID 1 has ended, waiting up to `timeout` seconds (None: forever) without
        reaping it (`wait()` still does that and the cleanup). For `stop -t N`."""
        if self._result is not None:
            return True
        if self._pidfd is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    done = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    return True
                if done is not None:
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))

    def pause(self) -> None:
        if self.cgroups is None:
            raise ExecutorError("the container has no cgroups to freeze")
        self.cgroups.freeze()

    def unpause(self) -> None:
        if self.cgroups is None:
            raise ExecutorError("the container has no cgroups to freeze")
        self.cgroups.thaw()

    def wait(self) -> RunResult:
        """Block until the container has ended, clean up, return how it ended."""
        if self._result is not None:
            return self._result
        try:
            status = _waitpid(self.pid)
        except BaseException:
            # Interrupted (SIGINT in the caller): end the container, then still clean up.
            self.kill(signal.SIGKILL)
            _waitpid(self.pid)
            self._cleanup()
            raise
        finished = time.time()
        lines = _read_all(self._result_r).decode(errors="replace").splitlines()
        raw = None
        for line in lines:
            if line.startswith("I") and raw is None:
                raw = int(line[1:])
        if raw is None:
            raw = status
        code = exit_code_of(raw)
        sig = os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else None
        oom = bool(self.cgroups and self.cgroups.oom_killed())
        error = ""
        if self.exec_error:
            code, sig, error = self.exec_code, None, self.exec_error
        self._result = RunResult(code, sig, oom, self.started_at, finished, error)
        self._cleanup()
        return self._result

    def _cleanup(self) -> None:
        if self._result is None:
            self._result = RunResult(137, signal.SIGKILL, False, self.started_at, time.time())
        for fd in (self._result_r, self._pidfd, self.pty_master):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._result_r, self._pidfd, self.pty_master = -1, None, None
        try:
            remove_stubs(self.spec.upper, self.stubs, self.copied_up)
            if self._own_state_dir and self._state_dir:
                shutil.rmtree(self._state_dir, ignore_errors=True)
        finally:
            if self.cgroups is not None:
                self.cgroups.remove()  # raises only if a process outlived the pid namespace


def run(spec: RunSpec) -> RunResult:
    """Run the container to its end and return how it ended; everything it mounted or made
    (cgroups, stubs, processes) is gone when this returns or raises, SIGINT included."""
    container = start(spec)
    try:
        if container.pty_master is not None:
            in_fd = spec.stdin if spec.stdin is not None else None
            out_fd = spec.stdout if spec.stdout is not None else 1
            ptys.relay(container.pty_master, in_fd, out_fd)
    except BaseException:
        container.kill(signal.SIGKILL)
        container.wait()
        raise
    return container.wait()


def start(spec: RunSpec) -> Container:
    """Start the container and return once its command has been exec'ed (or failed to be:
    then `wait()` reports 126/127 and the message). Setup failures raise ExecutorError."""
    _check_spec(spec)
    name = spec.name or secrets.token_hex(6)
    c = Container(spec, name)
    if spec.state_dir is not None:
        c._state_dir = str(spec.state_dir)
    else:
        c._state_dir = tempfile.mkdtemp(prefix="pydock-run-")
        c._own_state_dir = True
    status_r = status_w = result_w = go_r = go_w = -1
    sock_parent = sock_child = None
    try:
        for d in (spec.upper, spec.work, spec.merged):
            os.makedirs(d, exist_ok=True)
        rootfs.write_etc_files(
            c._state_dir, spec.hostname, spec.extra_hosts, spec.dns, spec.network == "host"
        )
        want_cgroups = spec.limits.any() if spec.use_cgroups is None else spec.use_cgroups
        if want_cgroups:
            try:
                c.cgroups = CgroupSet.create(name, spec.limits, spec.cgroup_parent)
            except OSError as e:
                raise ExecutorError(f"cannot create cgroups for the container: {e}") from e
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        c._result_r, result_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        if spec.tty:
            sock_parent, sock_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        tty_size = spec.tty_size or syscalls.get_winsize(0) or (24, 80)
        pid = _fork_in_new_pid_namespace()
        if pid == 0:
            _pid1(spec, c, status_w, result_w, go_r, sock_child, tty_size)  # never returns
        c.pid = pid
        c.started_at = time.time()
        with contextlib.suppress(OSError, AttributeError):
            c._pidfd = os.pidfd_open(pid)
        for fd in (status_w, result_w, go_r):
            os.close(fd)
        status_w = result_w = go_r = -1
        if sock_child is not None:
            sock_child.close()
            sock_child = None
        # Joining a cgroup costs an RCU grace period (~10 ms) on the first attach: done here
        # while PID 1 builds the root; it waits for the go byte before running anything.
        try:
            if c.cgroups is not None:
                c.cgroups.join(pid)
            os.write(go_w, b"g")
        except OSError as e:
            # PID 1 died in its setup (its error is on the status pipe) or the join failed
            c.kill(signal.SIGKILL)
            _read_status(c, status_r)
            raise ExecutorError(f"cannot put the container in its cgroups: {e}") from e
        os.close(go_w)
        go_w = -1
        _read_status(c, status_r)
        if sock_parent is not None:
            c.pty_master = ptys.recv_fd(sock_parent)
    except BaseException:
        if c.pid:
            c.kill(signal.SIGKILL)
            _waitpid(c.pid)
        c._cleanup()
        raise
    finally:
        for fd in (status_r, status_w, result_w, go_r, go_w):
            if fd >= 0:
                os.close(fd)
        for s in (sock_parent, sock_child):
            if s is not None:
                s.close()
    return c


def _fork_in_new_pid_namespace() -> int:
    """fork() with the child as PID 1 of a new pid namespace. Only the calling thread's
    pid_namespace_for_children is switched, and switched back right after the fork."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    pid = -1
    try:
        syscalls.unshare(syscalls.CLONE_NEWPID)
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                syscalls.setns(own, syscalls.CLONE_NEWPID)
        return pid
    finally:
        if pid != 0:
            os.close(own)


def _check_spec(spec: RunSpec) -> None:
    if not spec.argv:
        raise ExecutorError("no command given to run in the container")
    if spec.network not in ("none", "host"):
        raise ExecutorError(f"unsupported network mode {spec.network!r} (none or host)")
    if not spec.lowers:
        raise ExecutorError("a container root needs at least one layer")
    for key in spec.ulimits:
        if key not in _RLIMITS:
            raise ExecutorError(f"unknown ulimit {key!r}")
    caps.effective_mask(spec.privileged, spec.cap_add, spec.cap_drop)  # validates the names
    lim = spec.limits
    if lim.memory is not None and lim.memory < 6 << 20:
        raise ExecutorError("Minimum memory limit allowed is 6MB")
    if lim.memory_swap not in (None, -1) and (lim.memory is None or lim.memory_swap < lim.memory):
        raise ExecutorError(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
            if lim.memory is not None
            else "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    if lim.cpus is not None and lim.cpus <= 0:
        raise ExecutorError("Range of CPUs is from 0.01 to the number of CPUs available")


def _read_status(c: Container, fd: int) -> None:
    """Parse the children's messages up to EOF (= exec done). Raises on a setup error."""
    data = _read_all(fd).decode(errors="replace")
    setup_error = ""
    for line in data.splitlines():
        kind, rest = line[:1], line[1:]
        if kind == "S":
            c.stubs.append(rest)
        elif kind == "U":
            c.copied_up.append(rest)
        elif kind == "E":
            setup_error = setup_error or rest.replace("\\n", "\n")
        elif kind == "X":
            code, _, msg = rest.partition(" ")
            c.exec_code, c.exec_error = int(code), msg
    if setup_error:
        raise ExecutorError(setup_error)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _waitpid(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0


# --- the children ---------------------------------------------------------------------------


def _send(fd: int, msg: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (msg.replace("\n", "\\n") + "\n").encode(errors="replace"))


def _fail(fd: int, e: BaseException) -> None:
    if isinstance(e, ExecutorError):
        _send(fd, "E" + e.message)
    elif isinstance(e, OSError):
        _send(fd, f"E{e.strerror or e}" if not e.filename else f"E{e.filename}: {e.strerror}")
    else:
        _send(fd, "Einternal error in container setup: " + "".join(traceback.format_exception(e)))


def _setup_stdio(spec: RunSpec) -> None:
    if spec.stdin is not None:
        os.dup2(spec.stdin, 0)
    else:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    if spec.stdout is not None:
        os.dup2(spec.stdout, 1)
    if spec.stderr is not None:
        os.dup2(spec.stderr, 2)
    for fd in (0, 1, 2):
        os.set_inheritable(fd, True)


def _pid1(spec, c, status_w, result_w, go_r, sock, tty_size) -> None:
    """PID 1 of the new pid namespace: builds the root and runs the command. Never returns."""
    try:
        # Non-dumpable before anything of the container exists: its processes cannot ptrace
        # us or open our /proc/PID/exe or mem (CVE-2019-5736); lasts until the exec.
        syscalls.set_dumpable(False)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.setsid()  # out of the caller's session and process group: its ^C is its own
        if spec.kill_on_parent_death:
            # (A caller killed before this line is noticed at the go byte: EOF, exit.)
            syscalls.set_pdeathsig(signal.SIGKILL)
        _setup_stdio(spec)
        keep = {status_w, result_w, go_r} | ({sock.fileno()} if sock is not None else set())
        syscalls.close_fds_except(keep)
        flags = (
            syscalls.CLONE_NEWNS
            | syscalls.CLONE_NEWUTS
            | syscalls.CLONE_NEWIPC
            | (syscalls.CLONE_NEWNET if spec.network == "none" else 0)
        )
        syscalls.unshare(flags)
        with contextlib.suppress(OSError, ValueError, IndexError):
            syscalls.set_process_title("pydock-init")
        rootfs.make_private()
        merged = os.fspath(spec.merged)
        overlay.mount_overlay(list(spec.lowers), spec.upper, spec.work, merged)
        # The user is resolved before /proc, /sys and /dev exist in the root, so the image's
        # /etc/passwd cannot be a symlink to a kernel file (/proc/kmsg would block us).
        root_fd = os.open(merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            user = users.resolve_user(spec.user, root_fd=root_fd)
        finally:
            os.close(root_fd)
        builder = rootfs.RootBuilder(
            rootfs.RootPlan(
                merged=merged,
                etc_dir=c._state_dir,
                mounts=list(spec.mounts),
                privileged=spec.privileged,
                readonly_root=spec.readonly_root,
                host_network=spec.network == "host",
            ),
            upper=os.fspath(spec.upper),
        )
        try:
            builder.build()
        finally:
            for stub in builder.stubs:
                _send(status_w, "S" + stub)
            for path in builder.copied_up:
                _send(status_w, "U" + path)
        builder.close()
        last_cap = caps.last_cap()
        keep_caps = caps.effective_mask(spec.privileged, spec.cap_add, spec.cap_drop, last_cap)
        keep_caps &= syscalls.capget()[1]  # never more than we have (a sandboxed caller)
        rootfs.pivot_into(merged)
        syscalls.sethostname(spec.hostname)
        if spec.network == "none":
            syscalls.interface_up("lo")
        env = _environment(spec.env, user)
        _make_cwd(spec.cwd)
        for key, (soft, hard) in spec.ulimits.items():
            resource.setrlimit(_RLIMITS[key], (soft, hard))
        master = slave = None
        if spec.tty:
            master, slave = ptys.open_pty("/dev/ptmx", tty_size)
            os.fchown(slave, user.uid, -1)  # the command's own terminal, as runc does
            ptys.bind_console(master)
            ptys.send_fd(sock, master)
            os.close(master)
        if sock is not None:
            sock.close()
        # Wait until the caller has put us in the container's cgroups, then make them our
        # cgroup namespace's root.
        if os.read(go_r, 1) != b"g":
            raise ExecutorError("the caller went away during container setup")
        os.close(go_r)
        with contextlib.suppress(OSError):  # kernels without cgroup namespaces
            syscalls.unshare(syscalls.CLONE_NEWCGROUP)
        if not spec.init:
            _become_command(spec, user, env, keep_caps, last_cap, slave, status_w)
        # init=True: this process stays as the init; it drops to the command's user and
        # capabilities itself (as docker-init runs as the container's user), then spawns
        # the command with posix_spawn: a vfork-style start that neither copies this
        # interpreter's memory nor tears it down again in the child.
        slave_path = None if slave is None else os.readlink(syscalls.fd_path(slave))
        _drop_privileges(spec, user, keep_caps, last_cap)
        syscalls.close_fds_except({status_w, result_w})
        os.chdir(spec.cwd)
        forwarder = SignalForwarder()
        child = _spawn_command(spec, env, slave_path, status_w)
        forwarder.set_child(child)
        os.close(status_w)
        code = reap_until(child, lambda raw: _send(result_w, f"I{raw}"))
        os._exit(code)
    except BaseException as e:
        _fail(status_w, e)
        os._exit(125)


def _drop_privileges(spec, user, keep_caps: int, last_cap: int) -> None:
    """Become the command's user with Docker's process profile (what stays after exec)."""
    os.umask(0o022)  # Docker's; the caller's own umask is not the container's business
    caps.drop_bounding(keep_caps, last_cap)
    if spec.seccomp and not spec.privileged:
        seccomp.install()  # while CAP_SYS_ADMIN is still ours: no no_new_privs needed
    os.setgroups(user.groups)
    os.setgid(user.gid)
    os.setuid(user.uid)
    caps.apply_process_caps(keep_caps, user.uid)
    if spec.no_new_privs:
        syscalls.set_no_new_privs()


def _become_command(spec, user, env, keep_caps, last_cap, slave, status_w) -> None:
    """Drop privileges and exec the command (this process becomes it). Never returns."""
    try:
        reset_signals()
        if os.getsid(0) != os.getpid():  # (PID 1 without init already leads a session)
            os.setsid()
        if slave is not None:
            ptys.make_controlling(slave)
        _drop_privileges(spec, user, keep_caps, last_cap)
        syscalls.close_fds_except({status_w})
        os.chdir(spec.cwd)
    except BaseException as e:
        _fail(status_w, e)
        os._exit(125)
    argv = list(spec.argv)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        _exec_failed(status_w, argv[0], e)
    except BaseException as e:
        _send(status_w, f"X126 exec {argv[0]}: {e}")
        os._exit(126)


def _exec_failed(status_w: int, cmd: str, e: OSError) -> None:
    """Report an exec failure the way Docker words it, and exit 127 or 126."""
    if e.errno == errno.ENOENT and "/" not in cmd:
        code, msg = 127, f'exec: "{cmd}": executable file not found in $PATH'
    elif e.errno == errno.ENOENT:
        code, msg = 127, f'exec: "{cmd}": stat {cmd}: no such file or directory'
    else:
        code, msg = 126, f'exec: "{cmd}": {(e.strerror or str(e)).lower()}'
    _send(status_w, f"X{code} {msg}")
    os._exit(code)


def _find_executable(cmd: str, path: str) -> str:
    """`cmd` looked up in `path` as execvp does (the first executable regular file; EACCES
    if only non-executable ones exist)."""
    if "/" in cmd:
        return cmd
    denied = False
    for d in path.split(":"):
        candidate = os.path.join(d or ".", cmd)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
        denied = True
    if denied:
        raise PermissionError(errno.EACCES, "Permission denied")
    raise FileNotFoundError(errno.ENOENT, "No such file or directory")


def _spawn_command(spec, env: dict[str, str], slave_path: str | None, status_w: int) -> int:
    """posix_spawn the command as a new session with default signals; with a tty, the pty's
    slave is opened after setsid, which makes it the controlling terminal."""
    argv = list(spec.argv)
    actions = []
    if slave_path is not None:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, slave_path, os.O_RDWR, 0),
            (os.POSIX_SPAWN_DUP2, 0, 1),
            (os.POSIX_SPAWN_DUP2, 0, 2),
        ]
    try:
        path = _find_executable(argv[0], env.get("PATH", ""))
        return os.posix_spawn(
            path,
            argv,
            env,
            file_actions=actions,
            setsid=True,
            setsigdef=[s for s in signal.valid_signals() if s not in _UNCATCHABLE],
            setsigmask=[],
        )
    except OSError as e:
        _exec_failed(status_w, argv[0], e)
        raise  # not reached


_UNCATCHABLE = (signal.SIGKILL, signal.SIGSTOP)


def _environment(env: list[str], user: users.ExecUser) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in env:
        key, sep, value = item.partition("=")
        if key and sep:
            result[key] = value
    result.setdefault("PATH", DEFAULT_PATH)
    result.setdefault("HOME", user.home or "/")
    return result


def _make_cwd(cwd: str) -> None:
    """Create the working directory if missing (as Docker does), root-owned 0755."""
    if not cwd.startswith("/"):
        raise ExecutorError(f"the working directory {cwd!r} is not absolute")
    try:
        st = os.stat(cwd)
    except FileNotFoundError:
        os.makedirs(cwd, 0o755, exist_ok=True)
        return
    if not stat.S_ISDIR(st.st_mode):
        raise ExecutorError(f"the working directory {cwd} is not a directory")


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# --- mount-point stubs -----------------------------------------------------------------------


def remove_stubs(upper: Path, stubs: list[str], copied_up: list[str]) -> None:
    """Take the mount points the executor created out of the upper dir (deepest first), and
    then the directories overlay copied up only to hold them, when nothing else changed in
    them: a layer made from `upper` then shows no trace of the mounts. Never follows a
    symlink and only removes empty files and empty directories."""
    if not stubs:
        return
    try:
        root = os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for path in sorted(set(stubs) | set(copied_up), key=lambda p: -p.count("/")):
            _remove_if_empty(root, path.strip("/"))
    finally:
        os.close(root)


def _remove_if_empty(root: int, rel: str) -> None:
    parent_rel, name = os.path.split(rel)
    try:
        parent = syscalls.openat2(
            root,
            parent_rel or ".",
            os.O_PATH | os.O_DIRECTORY,
            resolve=syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_BENEATH,
        )
    except OSError:
        return
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_nlink == 1:
            os.unlink(name, dir_fd=parent)
        elif stat.S_ISDIR(st.st_mode):
            fd = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
            )
            try:
                empty = not os.listdir(fd) and not _is_opaque(fd)
            finally:
                os.close(fd)
            if empty:
                os.rmdir(name, dir_fd=parent)
    except OSError:
        pass
    finally:
        os.close(parent)


def _is_opaque(fd: int) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(fd, attr) == b"y":
                return True
        except OSError:
            pass
    return False


# --- detached containers ---------------------------------------------------------------------


def run_detached(
    spec: RunSpec,
    on_start: Callable[[Container], None] | None = None,
    on_exit: Callable[[RunResult], None] | None = None,
) -> int:
    """Run the container under a new supervising process that outlives the caller; returns
    the supervisor's pid at once. In the supervisor (a new session, stdio on /dev/null unless
    the spec gives fds), `on_start(container)` runs once the command is exec'ed and
    `on_exit(result)` when it has ended and been cleaned up (a setup failure gives a result
    with exit_code 125 and `error`). The callbacks run in the supervisor, not the caller."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:  # the caller reaps this one at once; the grandchild is orphaned
                os._exit(0)
            _supervise(spec, w, on_start, on_exit)
        finally:
            os._exit(1)
    os.close(w)
    _waitpid(pid)
    data = _read_all(r)
    os.close(r)
    return int(data or 0)


def _supervise(spec, w, on_start, on_exit) -> None:
    spec = RunSpec.from_json(spec.to_json())
    spec.kill_on_parent_death = True  # the supervisor is the parent: it dies, the container dies
    null = os.open("/dev/null", os.O_RDWR)
    for fd, given in ((0, spec.stdin), (1, spec.stdout), (2, spec.stderr)):
        if given is None:
            os.dup2(null, fd)
        else:
            os.dup2(given, fd)
    spec.stdin, spec.stdout, spec.stderr = 0, 1, 2
    os.close(null)
    syscalls.close_fds_except({w})
    os.write(w, str(os.getpid()).encode())
    os.close(w)
    code = 0
    try:
        try:
            container = start(spec)
        except ExecutorError as e:
            now = time.time()
            if on_exit:
                on_exit(RunResult(e.exit_code, None, False, now, now, e.message))
            return
        if on_start:
            on_start(container)
        if container.pty_master is not None:
            with contextlib.suppress(OSError):
                ptys.relay(container.pty_master, None, 1)
        result = container.wait()
        if on_exit:
            on_exit(result)
    except BaseException:
        code = 1
    finally:
        os._exit(code)
