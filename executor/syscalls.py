"""The executor's Linux system calls, through ctypes, in one place.

Python 3.11 has no `os.unshare`/`os.setns`/`mount`/`pivot_root`/`capset`; these wrappers raise
`OSError` with the errno and the call's arguments in the message. Everything is resolved when
this module is imported, so a forked child (which must not import) only calls into it.
"""

from __future__ import annotations

import _socket  # the C module: `socket` costs ~2 ms of imports on every run
import ctypes
import errno
import fcntl
import os
import struct

_libc = ctypes.CDLL(None, use_errno=True)

# syscall numbers, x86_64 and aarch64 (the generic table)
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capget": 125, "capset": 126, "openat2": 437, "setns": 308},
    "aarch64": {"pivot_root": 41, "capget": 90, "capset": 91, "openat2": 437, "setns": 268},
}
_NR = _SYSCALLS.get(os.uname().machine, _SYSCALLS["x86_64"])

# namespaces (clone flags)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# openat2(2) resolve flags
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# ioctls
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_CAP_VERSION_3 = 0x20080522


def _check(ret: int, what: str) -> int:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(path: str | bytes | os.PathLike | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_libc.syscall.restype = ctypes.c_long


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (CLONE_NEW* flags)."""
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace that `fd` (an open /proc/PID/ns/* file) refers to."""
    _check(_libc.syscall(_NR["setns"], ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str | os.PathLike | None,
    target: str | os.PathLike,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2); `target` may be a /proc/self/fd/N magic link to an O_PATH fd."""
    ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(ret, f"mount {fstype or ''} {source} on {target} (flags {flags:#x}, {data or ''})")


def umount2(target: str | os.PathLike, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root: str | os.PathLike, put_old: str | os.PathLike) -> None:
    ret = _libc.syscall(_NR["pivot_root"], _b(new_root), _b(put_old))
    _check(ret, f"pivot_root {new_root} {put_old}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), f"sethostname {name!r}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def set_dumpable(on: bool) -> None:
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def set_pdeathsig(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def capbset_drop(cap: int) -> None:
    prctl(PR_CAPBSET_DROP, cap)


def capbset_read(cap: int) -> bool:
    return prctl(PR_CAPBSET_READ, cap) == 1


def clear_ambient_caps() -> None:
    try:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as e:  # kernels before 4.3 have no ambient set
        if e.errno != errno.EINVAL:
            raise


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) capability masks of `pid` (0: the caller)."""
    hdr = _CapHeader(_CAP_VERSION_3, pid)
    data = (_CapData * 2)()
    _check(_libc.syscall(_NR["capget"], ctypes.byref(hdr), data), "capget")
    join = lambda lo, hi: lo | (hi << 32)  # noqa: E731
    return (
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets (64-bit masks)."""
    hdr = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i, shift in ((0, 0), (1, 32)):
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(_NR["capset"], ctypes.byref(hdr), data), "capset")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2): open `path` relative to `dirfd` with RESOLVE_* restrictions; returns an fd
    (O_CLOEXEC is always added)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    raw = os.fsencode(path)
    ret = _libc.syscall(
        _NR["openat2"],
        ctypes.c_int(dirfd),
        ctypes.c_char_p(raw),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    return _check(ret, f"openat2 {os.fsdecode(raw)!r}")


# The new mount API (Linux 5.2+; overlay's "lowerdir+" appends one layer per call since 6.8,
# which lifts the page-size limit on the legacy option string).
_NR_NEWMOUNT = {"move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432}
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def fsopen(fstype: str) -> int:
    ret = _libc.syscall(_NR_NEWMOUNT["fsopen"], ctypes.c_char_p(fstype.encode()), FSOPEN_CLOEXEC)
    return _check(ret, f"fsopen {fstype}")


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    ret = _libc.syscall(
        _NR_NEWMOUNT["fsconfig"],
        ctypes.c_int(fd),
        ctypes.c_uint(cmd),
        ctypes.c_char_p(_b(key)),
        ctypes.c_char_p(_b(value)),
        ctypes.c_int(0),
    )
    _check(ret, f"fsconfig {key}={value}")


def fsmount(fd: int, attr_flags: int = 0) -> int:
    ret = _libc.syscall(
        _NR_NEWMOUNT["fsmount"], ctypes.c_int(fd), FSMOUNT_CLOEXEC, ctypes.c_uint(attr_flags)
    )
    return _check(ret, "fsmount")


def move_mount_fd(mount_fd: int, target: str | os.PathLike) -> None:
    """Attach a detached mount (from fsmount) at `target`."""
    ret = _libc.syscall(
        _NR_NEWMOUNT["move_mount"],
        ctypes.c_int(mount_fd),
        ctypes.c_char_p(b""),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(_b(target)),
        ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
    )
    _check(ret, f"move_mount to {target}")


def fs_context_log(fd: int) -> str:
    """The kernel's messages about a failed fsconfig (read from the fs context fd)."""
    lines = []
    while True:
        try:
            lines.append(os.read(fd, 1024).decode(errors="replace").strip())
        except OSError:
            return "; ".join(line for line in lines if line)


def fd_path(fd: int) -> str:
    """The magic-link name through which mount(2) and friends act on exactly this fd's file."""
    return f"/proc/self/fd/{fd}"


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_winsize(fd: int) -> tuple[int, int] | None:
    """(rows, cols) of the terminal on `fd`, or None when it is not a terminal."""
    try:
        raw = fcntl.ioctl(fd, TIOCGWINSZ, bytes(8))
    except OSError:
        return None
    rows, cols, _, _ = struct.unpack("HHHH", raw)
    return (rows, cols) if rows and cols else None


def set_controlling_tty(fd: int) -> None:
    fcntl.ioctl(fd, TIOCSCTTY, 0)


def unlock_pty(master: int) -> None:
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))


def pty_number(master: int) -> int:
    return struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, bytes(4)))[0]


def open_pty_peer(master: int, flags: int = os.O_RDWR | os.O_NOCTTY) -> int:
    """Open the slave side of `master` without a path lookup (TIOCGPTPEER, Linux 4.13+)."""
    return fcntl.ioctl(master, TIOCGPTPEER, flags)  # type: ignore[return-value]


def interface_up(name: str = "lo") -> None:
    """Bring a network interface up in the current network namespace (no `ip` binary)."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        ifreq = struct.pack("16sH22x", name.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | IFF_UP))
    finally:
        s.close()


PR_SET_NAME = 15


def set_process_title(title: str) -> None:
    """Make /proc/self/cmdline and comm read `title`. For a forked copy of the caller that
    lives on in a container as its init: the caller's command line (build args and all)
    must not be readable from inside. The argv area is overwritten through /proc/self/mem
    (Python has its own copies of argv; the C strings are not used after startup)."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    arg_start, arg_end = int(fields[45]), int(fields[46])  # stat fields 48 and 49
    size = arg_end - arg_start
    if size > 1:
        raw = title.encode()[: size - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_start)
            mem.write(raw + bytes(size - len(raw)))
    name = ctypes.create_string_buffer(title.encode()[:15])
    prctl(PR_SET_NAME, ctypes.addressof(name))


def close_fds_except(keep: set[int]) -> None:
    """Close every fd above 2 that is not in `keep` (close_range under the hood)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
