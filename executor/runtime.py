"""Running a `RunSpec`: `run(spec)` blocks; `start(spec)` returns a `Container` handle.

Process tree: the caller forks once, with its thread's pid namespace for children switched
to a new one just for that fork, so the child is PID 1 there (`Container.pid` is its host
pid) and runs `executor.pid1.run_pid1`: it builds the root, joins the container's cgroups
(on cgroup v2 the caller puts it there meanwhile) and pivots into the root, then, on the
caller's go byte, it becomes the command (init=False) or spawns it and stays as the reaping,
signal-forwarding init (init=True).

Every mount lives only in the container's private mount namespace, which the kernel tears
down when PID 1 (and with it every process of the pid namespace) is gone: no mount can be
left on the host, whatever happens to the caller. PID 1 gets SIGKILL when the calling
thread dies (PR_SET_PDEATHSIG). Cgroups, the temporary state dir and mount-point stubs
(executor.mountstubs) are removed by `Container.wait()`.

PID 1 reports over a close-on-exec pipe (stubs, setup and exec errors; EOF means the
command was exec'ed) and the init over a second one (the command's wait status): see
executor.pid1.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Callable

from executor import caps, rootfs, syscalls
from executor import pty as ptys
from executor.cgroups import CgroupSet
from executor.init import exit_code_of
from executor.mountstubs import remove_stubs
from executor.pid1 import RLIMITS, run_pid1
from executor.spec import ExecutorError, RunResult, RunSpec


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
                import shutil

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
    name = spec.name or os.urandom(6).hex()
    c = Container(spec, name)
    if spec.state_dir is not None:
        c._state_dir = str(spec.state_dir)
    else:
        import tempfile

        c._state_dir = tempfile.mkdtemp(prefix="pydock-run-")
        c._own_state_dir = True
    status_r = status_w = result_w = go_r = go_w = -1
    sock_parent = sock_child = None
    try:
        for d in (spec.upper, spec.work, spec.merged):
            os.makedirs(d, exist_ok=True)
        rootfs.write_etc_files(
            c._state_dir,
            spec.hostname,
            spec.extra_hosts,
            spec.dns,
            spec.network == "host",
            spec.dns_search,
            spec.dns_options,
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
            import socket

            sock_parent, sock_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        tty_size = spec.tty_size or syscalls.get_winsize(0) or (24, 80)
        cg_paths = dict(c.cgroups.paths) if c.cgroups is not None else {}
        pid = _fork_in_new_pid_namespace()
        if pid == 0:  # PID 1 of the new container: never returns
            run_pid1(spec, c._state_dir, cg_paths, status_w, result_w, go_r, sock_child, tty_size)
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
        # PID 1 joins its cgroups itself on v1, where a one-thread process moving itself is
        # cheap (CgroupSet.join_self). On v2 moving a process costs an RCU grace period
        # (10-20 ms): done here while PID 1 builds the root. Either way PID 1 waits for the
        # go byte before running anything.
        try:
            if c.cgroups is not None and not c.cgroups.self_join_is_cheap:
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
        if key not in RLIMITS:
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
