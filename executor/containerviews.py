"""Read-only views of a container: its filesystem changes (`diff`), processes (`top`), usage.

`container_changes` walks the container's upper dir against the image's lower dirs: an overlay
whiteout (character device 0/0) is a deletion, a path the image also has is a change, any
other path an addition (children of an added directory are additions too), sorted by path as
Docker prints them. `container_processes` reads the container's cgroup for its pids and shows
them as the host's `ps -ef` does. `container_stats` samples the cgroup counters once.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

from executor.containers import Container

# Mount targets the executor makes (stubs that are no change of the user's).
_MOUNT_STUBS = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/proc", "/sys", "/dev"}


def _lowers(c: Container) -> list[Path]:
    if not c.diff_ids:
        return []
    from cache.store import Store

    return Store(c.dir.parent.parent).unpacked_lowers(c.diff_ids)


def _in_lowers(lowers: list[Path], rel: str) -> bool:
    for lower in reversed(lowers):
        try:
            st = os.lstat(lower / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
    return False


def container_changes(c: Container) -> list[tuple[str, str]]:
    """("A"|"C"|"D", "/path") for every change in the container's root, sorted by path."""
    lowers = _lowers(c)
    skip = set(_MOUNT_STUBS) | {m["Destination"] for m in c.mounts}
    out: list[tuple[str, str]] = []

    def walk(rel: str, added: bool) -> None:
        try:
            entries = sorted(
                os.scandir(c.upper / rel) if rel else os.scandir(c.upper), key=lambda e: e.name
            )
        except (FileNotFoundError, NotADirectoryError):
            return
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            path = "/" + r
            st = e.stat(follow_symlinks=False)
            if path in skip or path.startswith("/dev/"):
                # A mount stub that the image does not have is no change of the user's.
                if path in skip and not _in_lowers(lowers, r):
                    if not (stat.S_ISDIR(st.st_mode) and any(os.scandir(e.path))):
                        continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(("D", path))
                continue
            is_new = added or not _in_lowers(lowers, r)
            out.append(("A" if is_new else "C", path))
            if stat.S_ISDIR(st.st_mode):
                walk(r, is_new)

    walk("", False)
    out.sort(key=lambda x: x[1])
    # A directory the image has is only reported when something below it changed (it may
    # hold nothing but the runtime's mount stubs, which are skipped above).
    paths = [p for _, p in out]
    kept = []
    for i, (kind, path) in enumerate(out):
        if kind == "C" and os.path.isdir(c.upper / path.lstrip("/")):
            below = path + "/"
            if not any(p.startswith(below) for p in paths[i + 1 :]):
                continue
        kept.append((kind, path))
    return kept


def _cgroup_pids(c: Container) -> list[int]:
    from executor.cgroups import CgroupSet

    pids: list[int] = []
    if c.state.cgroups:
        pids = CgroupSet.from_paths(c.state.cgroups).pids()
    if not pids and c.state.pid:
        pids = [c.state.pid]
    # The runtime's holder process shares the cgroups but not the pid namespace: not shown.
    try:
        ns = os.readlink(f"/proc/{c.state.pid}/ns/pid")
    except OSError:
        return pids
    out = []
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == ns:
                out.append(pid)
        except OSError:
            continue
    return out


def container_processes(
    c: Container, ps_args: list[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of the host's `ps` output for the container's processes."""
    pids = set(_cgroup_pids(c))
    args = list(ps_args or []) or ["-ef"]
    try:
        text = subprocess.run(["ps", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        from cache.errors import PydockError

        raise PydockError(f"ps {' '.join(args)} failed: {e}") from None
    lines = text.splitlines()
    if not lines:
        return [], []
    headers = lines[0].split()
    try:
        pid_col = headers.index("PID")
    except ValueError:
        from cache.errors import PydockError

        raise PydockError(
            f"couldn't find PID field in ps output of `ps {' '.join(args)}`"
        ) from None
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(headers) - 1)
        if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
            rows.append(fields)
    return headers, rows


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _cpu_usage_ns(paths: dict[str, str]) -> int | None:
    if "unified" in paths:
        try:
            with open(os.path.join(paths["unified"], "cpu.stat")) as f:
                for line in f:
                    if line.startswith("usage_usec"):
                        return int(line.split()[1]) * 1000
        except OSError:
            return None
        return None
    if "cpuacct" in paths:
        return _read_int(os.path.join(paths["cpuacct"], "cpuacct.usage"))
    return None


def _bsize(n: float) -> str:
    """Docker's binary sizes in stats: 1.5MiB, 512KiB, 0B."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}" if i else f"{int(n)}B"


def container_stats(c: Container, sample: float = 0.1) -> list[str]:
    """One `stats --no-stream` row: id, name, CPU %, memory usage / limit, memory %, I/O, pids."""
    paths = c.state.cgroups if c.state.running else {}
    cpu_pct = 0.0
    if paths:
        a = _cpu_usage_ns(paths)
        t0 = time.monotonic()
        time.sleep(sample)
        b = _cpu_usage_ns(paths)
        if a is not None and b is not None:
            cpu_pct = (b - a) / ((time.monotonic() - t0) * 1e9) * 100
    usage = limit = None
    if "unified" in paths:
        usage = _read_int(os.path.join(paths["unified"], "memory.current"))
        limit = _read_int(os.path.join(paths["unified"], "memory.max"))
    elif "memory" in paths:
        usage = _read_int(os.path.join(paths["memory"], "memory.usage_in_bytes"))
        limit = _read_int(os.path.join(paths["memory"], "memory.limit_in_bytes"))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if limit is None or limit > total:
        limit = total
    usage = usage or 0
    npids = len(_cgroup_pids(c)) if paths else 0
    return [
        c.short_id,
        c.name,
        f"{cpu_pct:.2f}%",
        f"{_bsize(usage)} / {_bsize(limit)}",
        f"{usage / limit * 100 if limit else 0:.2f}%",
        "0B / 0B",
        "0B / 0B",
        str(npids),
    ]
