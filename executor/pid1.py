"""What runs inside a new container: its PID 1, from the fork to the exec of the command.

`run_pid1` is called in the child of `executor.runtime.start`, already PID 1 of a new pid
namespace; it never returns. Steps: non-dumpable, own session, stdio, every other fd closed,
new mnt/uts/ipc(/net) namespaces, `/` private, overlay, the user resolved in-root, the root
built (executor.rootfs), pivot, hostname, `lo`, cwd, tty; then it waits for the caller's go
byte (sent once the caller has put it in the container's cgroups), unshares its cgroup
namespace and either becomes the command (init=False) or drops to the command's user and
spawns it, staying as the reaping, signal-forwarding init (init=True).

Nothing here may import or use NSS once the root is the container's (CVE-2019-14271): all
modules are imported by the caller before the fork.

Messages to the caller go over the status pipe, one line each: `S<path>` a created
mount-point stub, `U<path>` a directory copied up only for a stub, `E<msg>` a setup error,
`X<code> <msg>` an exec failure; the init writes the command's wait status to the result
pipe (`I<status>`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import stat

from executor import caps, overlay, rootfs, seccomp, syscalls, users
from executor import pty as ptys
from executor.cgroups import CgroupSet
from executor.init import SignalForwarder, reap_until, reset_signals
from executor.spec import ExecutorError, RunSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RLIMITS = {
    name.removeprefix("RLIMIT_").lower(): getattr(resource, name)
    for name in dir(resource)
    if name.startswith("RLIMIT_")
}


def _send(fd: int, msg: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (msg.replace("\n", "\\n") + "\n").encode(errors="replace"))


def _fail(fd: int, e: BaseException) -> None:
    if isinstance(e, ExecutorError):
        _send(fd, "E" + e.message)
    elif isinstance(e, OSError):
        _send(fd, f"E{e.strerror or e}" if not e.filename else f"E{e.filename}: {e.strerror}")
    else:
        # File:line only, walked by hand: no source lines (linecache would read files, by
        # now possibly the container's) and no import of `traceback` on every run's path.
        frames = []
        tb = e.__traceback__
        while tb is not None:
            frames.append(f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}")
            tb = tb.tb_next
        where = ", ".join(frames)
        _send(fd, f"Einternal error in container setup: {type(e).__name__}: {e} (at {where})")


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


def run_pid1(spec, state_dir, cgroup_paths, status_w, result_w, go_r, sock, tty_size) -> None:
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
                etc_dir=state_dir,
                mounts=list(spec.mounts),
                privileged=spec.privileged,
                readonly_root=spec.readonly_root,
                host_network=spec.network == "host",
                cgroup_paths=cgroup_paths,
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
        cgroups = CgroupSet.from_paths(cgroup_paths)
        if cgroup_paths and cgroups.self_join_is_cheap:
            # PID 1 joins its cgroups itself, cheaply, and before the pivot, while the host's
            # /sys/fs/cgroup is still reachable; from here on the devices cgroup applies.
            # (Otherwise the caller has joined it by the go byte, see runtime.start.)
            cgroups.join_self()
        rootfs.pivot_into(merged)
        syscalls.sethostname(spec.hostname)
        if spec.network == "none":
            syscalls.interface_up("lo")
        env = _environment(spec.env, user)
        _make_cwd(spec.cwd)
        for key, (soft, hard) in spec.ulimits.items():
            resource.setrlimit(RLIMITS[key], (soft, hard))
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
