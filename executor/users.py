"""User and group resolution from the image's own /etc/passwd and /etc/group.

Never NSS or the host's `pwd`/`grp` (CVE-2019-14271): the files are read as text, resolved
inside the container's root before /proc, /sys and /dev are mounted there, and treated as
hostile: only regular files, bounded in size, and malformed lines are skipped.
"""

from __future__ import annotations

import os
import stat

from cache.records import field, record
from executor import syscalls
from executor.spec import ExecutorError

_MAX_FILE = 8 << 20


@record
class ExecUser:
    """Who the container process runs as."""

    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)  # supplementary gids
    home: str = "/"
    name: str = ""


def read_table(path: str, root_fd: int | None = None) -> list[list[str]]:
    """Colon-separated lines of a passwd/group-style file; [] when absent or not a regular
    file. With `root_fd`, `path` is resolved inside that root (openat2 RESOLVE_IN_ROOT), so
    a symlink in the image cannot lead to a host file or to a blocking one like /proc/kmsg."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        if root_fd is None:
            fd = os.open(path, flags)
        else:
            resolve = syscalls.RESOLVE_IN_ROOT | syscalls.RESOLVE_NO_MAGICLINKS
            fd = syscalls.openat2(root_fd, path.lstrip("/"), flags, resolve=resolve)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE:
            return []
        data = os.read(fd, _MAX_FILE)
    except OSError:
        return []
    finally:
        os.close(fd)
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _int(text: str) -> int | None:
    if text.isdigit() and len(text) < 11:
        value = int(text)
        return value if value < 2**32 - 1 else None
    return None


def resolve_user(spec: str, etc: str = "/etc", root_fd: int | None = None) -> ExecUser:
    """Resolve Docker's `--user` forms ("", "name", "uid", "name:group", "uid:gid") against
    `etc`/passwd and `etc`/group, as runc does: a numeric uid need not exist (gid 0, home /),
    a name must; supplementary groups are the groups listing the user by name, plus none when
    an explicit group is given."""
    user_part, _, group_part = (spec or "0").partition(":")
    user_part = user_part or "0"
    passwd = read_table(f"{etc}/passwd", root_fd)
    groups = read_table(f"{etc}/group", root_fd)

    result = ExecUser()
    entry = None
    uid = _int(user_part)
    for row in passwd:
        if len(row) < 7:
            continue
        if (uid is None and row[0] == user_part) or (uid is not None and _int(row[2]) == uid):
            entry = row
            break
    if entry is not None:
        result.uid = _int(entry[2]) or 0
        result.gid = _int(entry[3]) or 0
        result.home = entry[5] or "/"
        result.name = entry[0]
    elif uid is not None:
        result.uid = uid
    else:
        raise ExecutorError(f"unable to find user {user_part}: no matching entries in passwd file")

    if group_part:
        gid = _int(group_part)
        found = None
        for row in groups:
            if len(row) < 3:
                continue
            if (gid is None and row[0] == group_part) or (gid is not None and _int(row[2]) == gid):
                found = row
                break
        if found is not None:
            result.gid = _int(found[2]) or 0
        elif gid is not None:
            result.gid = gid
        else:
            raise ExecutorError(
                f"unable to find group {group_part}: no matching entries in group file"
            )
    elif result.name:
        for row in groups:
            if len(row) < 4:
                continue
            members = [m.strip() for m in row[3].split(",")]
            gid = _int(row[2])
            if result.name in members and gid is not None and gid not in result.groups:
                result.groups.append(gid)
    return result
