"""A small seccomp filter for container processes (no libseccomp: a hand-built BPF program).

Not moby's full allow-list profile: a deny-list of the system calls that need no capability
yet widen the kernel's attack surface a lot, which is what Docker's profile mostly buys a
container that already runs with the 14 default capabilities (calls like mount, pivot_root
or module loading are refused by the missing capabilities anyway):

- new user namespaces (`unshare`/`clone` with CLONE_NEWUSER): they hand out a full set of
  capabilities over fresh namespaces; `clone3` answers ENOSYS so libc falls back to `clone`,
  whose flags the filter can see (Docker does the same);
- keyrings (`keyctl`, `add_key`, `request_key`), `userfaultfd`, `io_uring_*`, `bpf`,
  `perf_event_open`, kexec, kernel modules, `open_by_handle_at` (the "shocker" escape),
  `acct`, `swapon`/`swapoff`, `reboot`, `quotactl`, `lookup_dcookie`, `fanotify_init`;
- every call of another ABI (i386 `int 0x80`, x32 numbers on x86_64).

Refused calls fail with EPERM. The filter is installed just before the exec, while the
process still has CAP_SYS_ADMIN (so no_new_privs is not needed; Docker does not set it).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from executor import syscalls

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_CLONE_NEWUSER = 0x10000000
_X32_BIT = 0x40000000

_DENIED = {
    "x86_64": {
        "keyctl": 250, "add_key": 248, "request_key": 249, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "perf_event_open": 298, "bpf": 321, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176,
        "open_by_handle_at": 304, "acct": 163, "swapon": 167, "swapoff": 168,
        "reboot": 169, "quotactl": 179, "lookup_dcookie": 212, "fanotify_init": 300,
        "uselib": 134, "ustat": 136, "sysfs": 139, "_sysctl": 156, "iopl": 172, "ioperm": 173,
    },
    "aarch64": {
        "keyctl": 219, "add_key": 217, "request_key": 218, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "perf_event_open": 241, "bpf": 280, "kexec_load": 104, "kexec_file_load": 294,
        "init_module": 105, "finit_module": 273, "delete_module": 106,
        "open_by_handle_at": 265, "acct": 89, "swapon": 224, "swapoff": 225, "reboot": 142,
        "quotactl": 60, "lookup_dcookie": 18, "fanotify_init": 262,
    },
}  # fmt: skip
_NS_CALLS = {"x86_64": {"unshare": 272, "clone": 56}, "aarch64": {"unshare": 97, "clone": 220}}
_CLONE3 = 435

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16  # struct seccomp_data (little-endian arg low word)

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def _stmt(code: int, k: int) -> tuple[int, int, int, int]:
    return (code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def build_filter(machine: str | None = None) -> list[tuple[int, int, int, int]]:
    """The BPF program as (code, jt, jf, k) instructions for this machine's ABI."""
    machine = machine or os.uname().machine
    if machine not in AUDIT_ARCH:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine}")
    eperm = _RET_ERRNO | errno.EPERM
    enosys = _RET_ERRNO | errno.ENOSYS
    prog = [
        _stmt(_LD_W_ABS, _OFF_ARCH),
        _jump(_JEQ_K, AUDIT_ARCH[machine], 1, 0),
        _stmt(_RET_K, eperm),  # another ABI
        _stmt(_LD_W_ABS, _OFF_NR),
    ]
    if machine == "x86_64":
        prog += [_jump(_JGE_K, _X32_BIT, 0, 1), _stmt(_RET_K, eperm)]
    for nr in sorted(_DENIED[machine].values()):
        prog += [_jump(_JEQ_K, nr, 0, 1), _stmt(_RET_K, eperm)]
    prog += [_jump(_JEQ_K, _CLONE3, 0, 1), _stmt(_RET_K, enosys)]
    # unshare/clone: refuse CLONE_NEWUSER in the flags (first argument of both)
    ns = _NS_CALLS[machine]
    prog += [
        _jump(_JEQ_K, ns["unshare"], 1, 0),
        _jump(_JEQ_K, ns["clone"], 0, 3),
        _stmt(_LD_W_ABS, _OFF_ARG0),
        _jump(_JSET_K, _CLONE_NEWUSER, 0, 1),
        _stmt(_RET_K, eperm),
        _stmt(_RET_K, _RET_ALLOW),
    ]
    return prog


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(machine: str | None = None) -> None:
    """Install the filter on the calling thread (inherited by children and across exec)."""
    prog = build_filter(machine)
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), ctypes.addressof(buf))
    syscalls.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
