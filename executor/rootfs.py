"""Building the container's root inside its private mount namespace, then switching to it.

Runs in the container's PID 1 before the exec (so: no imports, no NSS, host paths only for
what the host provides). Order, following runc: `/` made rprivate; overlay on `merged`
(nodev); /proc, /dev (fresh nodev tmpfs with bind-mounted host nodes, devpts, shm, mqueue),
/sys (read-only) and the container's own cgroups at /sys/fs/cgroup; the etc files; the
caller's mounts, parents first (binds made nodev: a node made in a host dir must not reach
a host device); masked and read-only paths; optional read-only root; pivot_root and detach
of the old root.

Every mount target inside the image is resolved in-root with openat2(RESOLVE_IN_ROOT) and
mounted through /proc/self/fd/N, so a symlink planted in the image (`/proc -> /`,
`/etc/hosts -> /proc/...`) can neither redirect a mount to the host nor outside the root.
Targets that do not exist are created and reported as stubs, which the runtime removes from
the upper dir after the run, so mount points never become part of a layer.
"""

from __future__ import annotations

import errno
import glob
import os
import stat

from cache.records import field, record
from executor import syscalls as sc
from executor.spec import ExecutorError, Mount

MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
MASKED_GLOBS = ("/sys/devices/system/cpu/cpu*/thermal_throttle",)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
ETC_FILES = ("hosts", "hostname", "resolv.conf")

_RESOLVE = sc.RESOLVE_IN_ROOT | sc.RESOLVE_NO_MAGICLINKS
_NOSUID_NODEV_NOEXEC = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC


@record
class RootPlan:
    """What to build in `merged` (already an overlay mount). `etc_dir` holds the hosts,
    hostname and resolv.conf files to bind in."""

    merged: str
    etc_dir: str
    mounts: list[Mount] = field(default_factory=list)
    privileged: bool = False
    readonly_root: bool = False
    host_network: bool = False
    # The container's own cgroups (controller -> host dir, "unified" for v2), shown
    # read-only at /sys/fs/cgroup as Docker does, so programs can read their limits.
    cgroup_paths: dict[str, str] = field(default_factory=dict)


class RootBuilder:
    """Builds the root; `stubs` lists the container paths it had to create (parents first)."""

    def __init__(self, plan: RootPlan, upper: str | None = None) -> None:
        self.plan = plan
        self.stubs: list[str] = []
        # Directories overlay copies up only because a stub is created in them.
        self.copied_up: list[str] = []
        self.root_fd = os.open(plan.merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.upper_fd = (
            None if upper is None else os.open(upper, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        )

    # --- in-root resolution -----------------------------------------------------------------

    def _open_dir(self, path: str, create: bool, no_symlinks: bool = False) -> int:
        """An O_PATH fd of the directory `path` in the root, created (mkdir -p) if asked."""
        return self._resolve(path, True, create, no_symlinks)

    def _open_file(self, path: str) -> int:
        """An O_PATH fd of the non-directory `path` in the root, created empty if missing."""
        return self._resolve(path, False, True, False)

    def _resolve(self, path: str, want_dir: bool, create: bool, no_symlinks: bool) -> int:
        """Resolve `path` inside the root (symlinks followed as if the root were /, never
        out of it; with `no_symlinks` a symlink anywhere is an error), creating what is
        missing, including the target of a dangling symlink, as Docker's
        FollowSymlinkInScope does. Created entries are recorded as stubs."""
        resolve = _RESOLVE | (sc.RESOLVE_NO_SYMLINKS if no_symlinks else 0)
        kind = os.O_DIRECTORY if want_dir else 0
        asked = path
        for _ in range(40):
            rel = path.strip("/") or "."
            try:
                return sc.openat2(self.root_fd, rel, os.O_PATH | kind, resolve=resolve)
            except OSError as e:
                if e.errno != errno.ENOENT or not create:
                    raise self._error(asked, e) from e
            parent_path, name = os.path.split("/" + rel)
            if name in ("", ".", ".."):
                raise self._error(asked, OSError(errno.ENOENT, "No such file or directory"))
            parent = self._resolve(parent_path, True, True, no_symlinks)
            try:
                try:
                    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and stat.S_ISLNK(st.st_mode) and not no_symlinks:
                    # a dangling symlink: go on with its target, inside the root
                    target = os.readlink(name, dir_fd=parent)
                    base = self._container_path(parent) or "/"
                    path = target if target.startswith("/") else base.rstrip("/") + "/" + target
                    continue
                self._note_copy_up(parent)
                if want_dir:
                    os.mkdir(name, 0o755, dir_fd=parent)
                else:
                    flags = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC
                    os.close(os.open(name, flags, 0o644, dir_fd=parent))
                fd = sc.openat2(parent, name, os.O_PATH | os.O_NOFOLLOW | kind, resolve=resolve)
                self._record_stub(fd)
                return fd
            except OSError as e:
                raise self._error(asked, e) from e
            finally:
                os.close(parent)
        raise self._error(asked, OSError(errno.ELOOP, "Too many levels of symbolic links"))

    def _check_not_special(self, fd: int, path: str) -> None:
        """Refuse a target that resolved into /proc, /sys or /dev (the CVE-2025-31133 class:
        an image symlink turning our bind mount into one over a procfs file)."""
        where = self._container_path(fd) or ""
        for special in ("/proc", "/sys", "/dev"):
            if where == special or where.startswith(special + "/"):
                os.close(fd)
                raise ExecutorError(
                    f"mount point {path} in the container resolves into {special}: refused"
                )

    def _container_path(self, fd: int) -> str | None:
        real = os.readlink(sc.fd_path(fd))
        merged = self.plan.merged.rstrip("/")
        if real == merged:
            return "/"
        return real[len(merged) :] if real.startswith(merged + "/") else None

    def _note_copy_up(self, parent: int) -> None:
        """Before creating an entry in `parent`: remember which of its directories are not in
        the upper dir yet (overlay copies them up now, for our stub's sake only)."""
        if self.upper_fd is None:
            return
        path = self._container_path(parent)
        if not path or path == "/":
            return
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            try:
                os.close(
                    sc.openat2(
                        self.upper_fd,
                        rel,
                        os.O_PATH,
                        resolve=sc.RESOLVE_NO_SYMLINKS | sc.RESOLVE_BENEATH,
                    )
                )
            except OSError:
                if "/" + rel not in self.copied_up:
                    self.copied_up.append("/" + rel)

    def _record_stub(self, fd: int) -> None:
        # The real place, not the path asked for: a symlink in the image may have led there.
        path = self._container_path(fd)
        if path and path != "/":
            self.stubs.append(path)

    @staticmethod
    def _error(path: str, e: OSError) -> ExecutorError:
        return ExecutorError(f"cannot prepare mount point {path} in the container: {e.strerror}")

    def _mount_at(self, fd: int, source, fstype, flags, data=None) -> None:
        try:
            sc.mount(source, sc.fd_path(fd), fstype, flags, data)
        finally:
            os.close(fd)

    # --- the steps ----------------------------------------------------------------------------

    def build(self) -> None:
        p = self.plan
        self.mount_proc()
        self.mount_dev()
        self.mount_sys()
        if p.cgroup_paths:
            self.mount_cgroups()
        self.mount_etc_files()
        # parents before children, whatever the order given (as Docker sorts them)
        for m in sorted(p.mounts, key=lambda m: len(_components(m.target))):
            self.mount_user(m)
        if not p.privileged:
            self.mask_paths()
        if p.readonly_root:
            sc.mount(None, p.merged, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NODEV)

    def mount_proc(self) -> None:
        fd = self._open_dir("/proc", True, no_symlinks=True)
        self._mount_at(fd, "proc", "proc", _NOSUID_NODEV_NOEXEC)

    def mount_dev(self) -> None:
        fd = self._open_dir("/dev", True, no_symlinks=True)
        # nodev: a node made with mknod inside is inert; the bind-mounted host nodes keep
        # their own (dev-allowing) mount flags, so they work.
        self._mount_at(
            fd, "tmpfs", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_STRICTATIME,
            "mode=755,size=65536k",
        )  # fmt: skip
        dev = os.path.join(self.plan.merged, "dev")
        for name in DEFAULT_DEVICES:
            target = os.path.join(dev, name)
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o666))
            sc.mount(f"/dev/{name}", target, None, sc.MS_BIND)
        for name, dest in DEV_LINKS:
            os.symlink(dest, os.path.join(dev, name))
        os.mkdir(os.path.join(dev, "pts"), 0o755)
        sc.mount(
            "devpts", os.path.join(dev, "pts"), "devpts", sc.MS_NOSUID | sc.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        )  # fmt: skip
        shm = os.path.join(dev, "shm")
        os.mkdir(shm, 0o1777)
        sc.mount("shm", shm, "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
        mqueue = os.path.join(dev, "mqueue")
        os.mkdir(mqueue, 0o755)
        try:
            sc.mount("mqueue", mqueue, "mqueue", _NOSUID_NODEV_NOEXEC)
        except OSError:
            os.rmdir(mqueue)  # a kernel without POSIX message queues

    def mount_sys(self) -> None:
        fd = self._open_dir("/sys", True, no_symlinks=True)
        flags = _NOSUID_NODEV_NOEXEC | (0 if self.plan.privileged else sc.MS_RDONLY)
        try:
            self._mount_at(fd, "sysfs", "sysfs", flags)
        except OSError:
            # sysfs cannot be mounted when sharing the host's network namespace without
            # owning it: fall back to a read-only recursive bind of the host's /sys.
            fd = self._open_dir("/sys", False, no_symlinks=True)
            sys_path = sc.fd_path(fd)
            try:
                sc.mount("/sys", sys_path, None, sc.MS_BIND | sc.MS_REC)
                if not self.plan.privileged:
                    sc.mount(
                        None,
                        sys_path,
                        None,
                        sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _NOSUID_NODEV_NOEXEC,
                    )
            finally:
                os.close(fd)

    def mount_cgroups(self) -> None:
        """/sys/fs/cgroup: v2, the container's cgroup dir bound read-only; v1, a tmpfs with
        each controller's container dir bound read-only under the controller's name."""
        target = os.path.join(self.plan.merged, "sys/fs/cgroup")
        if not os.path.isdir(target):
            return
        ro_bind = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | _NOSUID_NODEV_NOEXEC
        unified = self.plan.cgroup_paths.get("unified")
        if unified:
            sc.mount(unified, target, None, sc.MS_BIND)
            sc.mount(None, target, None, ro_bind)
            return
        sc.mount("tmpfs", target, "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=755,size=64k")
        for ctrl, path in sorted(self.plan.cgroup_paths.items()):
            sub = os.path.join(target, ctrl)
            os.mkdir(sub, 0o755)
            sc.mount(path, sub, None, sc.MS_BIND)
            sc.mount(None, sub, None, ro_bind)
        sc.mount(None, target, None, sc.MS_REMOUNT | sc.MS_RDONLY | _NOSUID_NODEV_NOEXEC)

    def mount_etc_files(self) -> None:
        for name in ETC_FILES:
            source = os.path.join(self.plan.etc_dir, name)
            fd = self._open_file(f"/etc/{name}")
            self._check_not_special(fd, f"/etc/{name}")
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise ExecutorError(f"/etc/{name} in the image is not a regular file")
            self._mount_at(fd, source, None, sc.MS_BIND)

    def mount_user(self, m: Mount) -> None:
        target = "/" + m.target.strip("/")
        if target == "/":
            raise ExecutorError("a mount cannot replace the container's root")
        if m.type == "tmpfs":
            flags, data = _tmpfs_options(m.options)
            if m.readonly:
                flags |= sc.MS_RDONLY
            fd = self._open_dir(target, True)
            self._check_user_target(fd, target)
            self._mount_at(fd, "tmpfs", "tmpfs", flags, data)
            return
        if m.source is None:
            raise ExecutorError(f"bind mount on {target} has no source")
        source = os.fspath(m.source)
        try:
            is_dir = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as e:
            raise ExecutorError(f"bind mount source {source}: {e.strerror}") from e
        fd = self._open_dir(target, True) if is_dir else self._open_file(target)
        self._check_user_target(fd, target)
        path = sc.fd_path(fd)
        try:
            sc.mount(source, path, None, sc.MS_BIND | sc.MS_REC)
            # The remount must see the new mount, not the one the fd was opened on.
            os.close(fd)
            fd = self._open_dir(target, False) if is_dir else self._open_file(target)
            path = sc.fd_path(fd)
            # nodev (unless privileged): a host dir (a volume, a build cache) is on a
            # filesystem that honours device nodes, and with CAP_MKNOD a container could
            # make /vol/sda and read the host's disk; runc leans on the devices cgroup for
            # this, which a RUN step without limits does not have. The source's own
            # nosuid/noexec/ro flags are kept.
            flags = _kept_flags(os.statvfs(path).f_flag)
            if not self.plan.privileged:
                flags |= sc.MS_NODEV
            if m.readonly:
                flags |= sc.MS_RDONLY
            sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | flags)
        finally:
            os.close(fd)

    def _check_user_target(self, fd: int, path: str) -> None:
        where = self._container_path(fd) or ""
        for special in ("/proc", "/sys"):
            if where == special or where.startswith(special + "/"):
                os.close(fd)
                raise ExecutorError(f"cannot mount over {where} (asked for {path})")

    def mask_paths(self) -> None:
        merged = self.plan.merged
        devnull = os.path.join(merged, "dev/null")
        masked = list(MASKED_PATHS)
        for pattern in MASKED_GLOBS:
            masked += [p[len(merged) :] for p in glob.glob(merged + pattern)]
        for path in masked:
            full = merged + path
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                sc.mount("tmpfs", full, "tmpfs", sc.MS_RDONLY | _NOSUID_NODEV_NOEXEC, "size=0")
            else:
                sc.mount(devnull, full, None, sc.MS_BIND)
        for path in READONLY_PATHS:
            full = merged + path
            if not os.path.lexists(full):
                continue
            sc.mount(full, full, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(
                None,
                full,
                None,
                sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC | _NOSUID_NODEV_NOEXEC,
            )

    def close(self) -> None:
        os.close(self.root_fd)
        if self.upper_fd is not None:
            os.close(self.upper_fd)


def _kept_flags(st_flags: int) -> int:
    """mount(2) flags that a bind remount must repeat to keep them (statvfs ST_* -> MS_*)."""
    flags = 0
    for st_flag, ms_flag in (
        (os.ST_RDONLY, sc.MS_RDONLY),
        (os.ST_NOSUID, sc.MS_NOSUID),
        (os.ST_NODEV, sc.MS_NODEV),
        (os.ST_NOEXEC, sc.MS_NOEXEC),
    ):
        if st_flags & st_flag:
            flags |= ms_flag
    return flags


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c and c != "."]


def _tmpfs_options(options: str) -> tuple[int, str]:
    """mount flags and tmpfs data from "size=64m,mode=1777,noexec,ro" (Docker's --tmpfs)."""
    flags = sc.MS_NOSUID | sc.MS_NODEV
    data = []
    for opt in filter(None, (o.strip() for o in options.split(","))):
        if opt == "ro":
            flags |= sc.MS_RDONLY
        elif opt == "rw":
            flags &= ~sc.MS_RDONLY
        elif opt == "noexec":
            flags |= sc.MS_NOEXEC
        elif opt == "exec":
            flags &= ~sc.MS_NOEXEC
        elif opt == "suid":
            flags &= ~sc.MS_NOSUID
        elif opt in ("nosuid", "nodev", "dev"):
            pass  # device nodes stay inert in every container tmpfs
        else:
            data.append(opt)
    return flags, ",".join(data)


def make_private() -> None:
    """First thing in the new mount namespace: nothing done here propagates to the host."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)


def pivot_into(root: str) -> None:
    """pivot_root into `root` and detach the old root: afterwards the container's root is the
    root mount of its namespace, so `..`, chroot tricks and old-root fds lead nowhere."""
    os.chdir(root)
    sc.pivot_root(".", ".")
    # The old root is now stacked on "."; make sure its unmount cannot propagate, then drop it.
    sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")


def write_etc_files(
    etc_dir: str,
    hostname: str,
    extra_hosts: list[str],
    dns: list[str],
    host_network: bool,
    dns_search: list[str] | None = None,
    dns_options: list[str] | None = None,
) -> None:
    """The container's /etc/hosts, /etc/hostname and /etc/resolv.conf, as Docker writes them
    (`--dns`, `--dns-search`, `--dns-option`: see `_resolv_conf`)."""
    resolv = _resolv_conf(dns, dns_search or [], dns_options or [])
    os.makedirs(etc_dir, exist_ok=True)
    if host_network:
        # the host's own names, as Docker gives a --network host container
        try:
            with open("/etc/hosts") as f:
                lines = f.read().splitlines()
        except OSError:
            lines = ["127.0.0.1\tlocalhost"]
        for entry in extra_hosts:
            name, sep, ip = entry.partition(":")
            if not sep or not name or not ip:
                raise ExecutorError(f"invalid extra host {entry!r} (want host:ip)")
            lines.append(f"{ip}\t{name}")
        _write(os.path.join(etc_dir, "hosts"), "\n".join(lines) + "\n")
        _write(os.path.join(etc_dir, "hostname"), hostname + "\n")
        _write(os.path.join(etc_dir, "resolv.conf"), resolv)
        return
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    for entry in extra_hosts:
        name, sep, ip = entry.partition(":")
        if not sep or not name or not ip:
            raise ExecutorError(f"invalid extra host {entry!r} (want host:ip)")
        lines.append(f"{ip}\t{name}")
    lines.append(f"127.0.1.1\t{hostname}")
    _write(os.path.join(etc_dir, "hosts"), "\n".join(lines) + "\n")
    _write(os.path.join(etc_dir, "hostname"), hostname + "\n")
    _write(os.path.join(etc_dir, "resolv.conf"), resolv)


def _resolv_conf(nameservers: list[str], search: list[str], options: list[str]) -> str:
    """The host's resolv.conf as it is; with any of nameservers, search domains or options
    given, Docker's rebuilt file instead: `search`, `nameserver` lines and `options`, each
    given part replacing the host's (`--dns-search .` drops the search line)."""
    try:
        with open("/etc/resolv.conf") as f:
            host = f.read()
    except OSError:
        host = ""
    if not (nameservers or search or options):
        return host
    host_servers: list[str] = []
    host_search: list[str] = []
    host_options: list[str] = []
    for line in host.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        if words[0] == "nameserver":
            host_servers.append(words[1])
        elif words[0] in ("search", "domain"):
            host_search = words[1:]
        elif words[0] == "options":
            host_options += words[1:]
    search = [] if search == ["."] else (search or host_search)
    options = options or host_options
    out = [f"search {' '.join(search)}"] if search else []
    out += [f"nameserver {ns}" for ns in nameservers or host_servers]
    out += [f"options {' '.join(options)}"] if options else []
    return "\n".join(out) + "\n"


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
