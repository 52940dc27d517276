"""Mounting an overlayfs root from lower dirs (oldest first), an upper and a work dir.

Deep images: the legacy mount(2) option string is limited to one page, so a 200-layer
`lowerdir=` does not fit even with the store's short `l/<id>` names. On Linux 6.8+ the new
mount API takes the lower dirs one `lowerdir+` call at a time (overlay's own limit is 500);
on older kernels the option uses names relative to the lowers' common parent (mounting with
that parent as cwd, as Docker's overlay2 does), and fails clearly if even that is too long.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from executor import syscalls
from executor.spec import ExecutorError

PAGE_SIZE = os.sysconf("SC_PAGESIZE")
# Overlay features whose on-disk form a layer diff cannot express (renamed directories,
# metadata-only copy-ups, the inode index): keep them off so the upper dir stays plain.
_PLAIN_OPTIONS = ("redirect_dir=off", "metacopy=off", "index=off")


def mount_overlay(
    lowers: list[Path],
    upper: Path | None,
    work: Path | None,
    target: str | os.PathLike,
    *,
    nodev: bool = True,
    readonly: bool = False,
    new_api: bool | None = None,
) -> None:
    """Mount overlayfs on `target`. `lowers` oldest first (overlay wants the topmost first:
    reversed here). With no `upper`, the mount is read-only (needs two lowers or more on
    older kernels). `new_api` None: use the new mount API when the kernel has `lowerdir+`."""
    if not lowers:
        raise ExecutorError("an overlay root needs at least one lower dir")
    if new_api is not False:
        try:
            _mount_new_api(lowers, upper, work, target, nodev=nodev, readonly=readonly)
            return
        except _NoNewApi:
            if new_api:
                raise ExecutorError(
                    "this kernel's overlayfs has no lowerdir+ (Linux 6.8+)"
                ) from None
    _mount_legacy(lowers, upper, work, target, nodev=nodev, readonly=readonly)


class _NoNewApi(Exception):
    pass


_new_api_ok: bool | None = None


def _mount_new_api(lowers, upper, work, target, *, nodev: bool, readonly: bool) -> None:
    global _new_api_ok
    if _new_api_ok is False:
        raise _NoNewApi
    try:
        fs = syscalls.fsopen("overlay")
    except OSError as e:
        _new_api_ok = False
        raise _NoNewApi from e
    try:
        try:
            syscalls.fsconfig(fs, syscalls.FSCONFIG_SET_STRING, "lowerdir+", str(lowers[-1]))
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOPARAM if hasattr(errno, "ENOPARAM") else 519):
                _new_api_ok = False
                raise _NoNewApi from e
            raise ExecutorError(f"overlay lower dir {lowers[-1]}: {e.strerror}") from e
        _new_api_ok = True
        for lower in reversed(lowers[:-1]):
            _fsconfig(fs, "lowerdir+", str(lower))
        if upper is not None:
            _fsconfig(fs, "upperdir", str(upper))
            _fsconfig(fs, "workdir", str(work))
        for opt in _PLAIN_OPTIONS:
            key, _, value = opt.partition("=")
            try:
                syscalls.fsconfig(fs, syscalls.FSCONFIG_SET_STRING, key, value)
            except OSError:
                pass  # a kernel without the feature: it is off anyway
        try:
            syscalls.fsconfig(fs, syscalls.FSCONFIG_CMD_CREATE)
        except OSError as e:
            log = syscalls.fs_context_log(fs)
            raise ExecutorError(f"overlay mount failed: {e.strerror} {log}".strip()) from e
        attrs = syscalls.MOUNT_ATTR_NODEV if nodev else 0
        if readonly:
            attrs |= syscalls.MOUNT_ATTR_RDONLY
        mnt = syscalls.fsmount(fs, attrs)
        try:
            syscalls.move_mount_fd(mnt, target)
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def _fsconfig(fs: int, key: str, value: str) -> None:
    try:
        syscalls.fsconfig(fs, syscalls.FSCONFIG_SET_STRING, key, value)
    except OSError as e:
        log = syscalls.fs_context_log(fs)
        raise ExecutorError(f"overlay {key} {value}: {e.strerror} {log}".strip()) from e


def legacy_options(lowers: list[Path], upper: Path | None, work: Path | None) -> tuple[str, str]:
    """(cwd, option string) for mount(2): absolute names if they fit in a page, else names
    relative to the lowers' common parent (the mount is done with that cwd)."""
    top_first = [str(p) for p in reversed(lowers)]
    tail = "" if upper is None else f",upperdir={upper},workdir={work}"
    tail += "," + ",".join(_PLAIN_OPTIONS)
    opts = "lowerdir=" + ":".join(top_first) + tail
    if len(opts) < PAGE_SIZE:
        return "/", opts
    parent = os.path.commonpath(top_first)
    rel = [os.path.relpath(p, parent) for p in top_first]
    opts = "lowerdir=" + ":".join(rel) + tail
    if len(opts) >= PAGE_SIZE:
        raise ExecutorError(
            f"too many layers ({len(lowers)}) for an overlay mount on this kernel "
            f"(the option string needs {len(opts)} bytes, the limit is {PAGE_SIZE - 1})"
        )
    return parent, opts


def _mount_legacy(lowers, upper, work, target, *, nodev: bool, readonly: bool) -> None:
    cwd, opts = legacy_options(lowers, upper, work)
    flags = (syscalls.MS_NODEV if nodev else 0) | (syscalls.MS_RDONLY if readonly else 0)
    saved = os.open(".", os.O_PATH | os.O_CLOEXEC)
    target = os.path.abspath(target)
    try:
        os.chdir(cwd)
        for attempt in (opts, _strip_plain(opts)):
            try:
                syscalls.mount("overlay", target, "overlay", flags, attempt)
                return
            except OSError as e:
                error = e
        raise ExecutorError(f"overlay mount on {target} failed: {error.strerror}")
    finally:
        os.fchdir(saved)
        os.close(saved)


def _strip_plain(opts: str) -> str:
    for opt in _PLAIN_OPTIONS:
        opts = opts.replace("," + opt, "")
    return opts
