"""Linux capabilities: names, Docker's default set, and dropping to a set before exec."""

from __future__ import annotations

from executor import syscalls
from executor.spec import ExecutorError

CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN",
    "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
    "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
    "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]  # fmt: skip
CAP_NUMBERS = {name: i for i, name in enumerate(CAP_NAMES)}

# Docker's default capabilities (moby daemon/pkg/oci/caps/defaults.go): CapBnd 00000000a80425fb.
DEFAULT_CAPS = [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
]  # fmt: skip


def last_cap() -> int:
    """The highest capability number this kernel knows (read before the pivot)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAP_NAMES) - 1


def cap_number(name: str) -> int:
    key = name.upper().removeprefix("CAP_")
    if key not in CAP_NUMBERS:
        raise ExecutorError(f"unknown capability: {name!r}")
    return CAP_NUMBERS[key]


def mask_of(names: list[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << cap_number(name)
    return mask


DEFAULT_MASK = mask_of(DEFAULT_CAPS)
assert DEFAULT_MASK == 0xA80425FB


def effective_mask(
    privileged: bool, cap_add: list[str], cap_drop: list[str], last: int | None = None
) -> int:
    """The capability set a container keeps, as Docker computes it: privileged keeps all;
    otherwise the defaults, minus `cap_drop` ("ALL" empties it), plus `cap_add` ("ALL")."""
    top = last_cap() if last is None else last
    everything = (1 << (top + 1)) - 1
    if privileged:
        return everything
    mask = DEFAULT_MASK
    if any(n.upper() == "ALL" for n in cap_drop):
        mask = 0
    else:
        mask &= ~mask_of(cap_drop)
    if any(n.upper() == "ALL" for n in cap_add):
        mask = everything
    else:
        mask |= mask_of(cap_add)
    return mask & everything


def drop_bounding(keep: int, last: int) -> None:
    """Remove every capability outside `keep` from the bounding set (needs CAP_SETPCAP), so
    no exec of a setuid or file-capability binary can regain it."""
    for cap in range(last + 1):
        if not keep & (1 << cap):
            syscalls.capbset_drop(cap)


def apply_process_caps(keep: int, uid: int) -> None:
    """Set effective/permitted for the process about to exec; inheritable and ambient are
    cleared (Docker since 20.10). Called after setuid: a non-root uid has already lost its
    permitted set there, which is what Docker gives a non-root user too."""
    syscalls.clear_ambient_caps()
    if uid == 0:
        syscalls.capset(keep, keep, 0)
    else:
        eff, perm, _ = syscalls.capget()
        syscalls.capset(eff & keep, perm & keep, 0)
