"""Carrying out the steps that change the filesystem: RUN in the executor, COPY/ADD and
WORKDIR written into a fresh layer folder, and committing a folder as a layer.

The executor is reached through one seam, `Executor.run(spec) -> RunResult`, so the solver and
the cache can be exercised with a fake; the real one is `executor.runtime.run`.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cache.digest import EMPTY_TAR_DIFF_ID
from cache.errors import PydockError
from cache.records import field, record
from executor.spec import Mount, RunResult, RunSpec


class Executor(Protocol):
    def run(self, spec: RunSpec) -> RunResult: ...


class RuntimeExecutor:
    """The real executor: `executor.runtime` (imported lazily: cached builds never pay).

    It remembers the containers running so `kill_all` can stop them from another thread (on
    Ctrl-C only the main thread gets KeyboardInterrupt; stages may be running in others).
    """

    def __init__(self) -> None:
        self.live: set = set()
        self.lock = threading.Lock()

    def run(self, spec: RunSpec) -> RunResult:
        import signal

        from executor.runtime import start

        container = start(spec)
        with self.lock:
            self.live.add(container)
        try:
            return container.wait()
        except BaseException:
            container.kill(signal.SIGKILL)
            container.wait()
            raise
        finally:
            with self.lock:
                self.live.discard(container)

    def kill_all(self) -> None:
        import signal

        with self.lock:
            running = list(self.live)
        for c in running:
            try:
                c.kill(signal.SIGKILL)
            except OSError:
                pass


class BuildError(PydockError):
    """A build that cannot go on; the message names the Dockerfile line or the step."""


class StepFailed(PydockError):
    """A step that could not complete; the message names the step and what went wrong."""


class RunFailed(StepFailed):
    """A RUN that exited non-zero: step, command, exit code and the last lines of output."""

    def __init__(self, step: str, command: str, exit_code: int, tail: list[str], note: str = ""):
        lines = [
            f"{step}: process {command!r} did not complete successfully: exit code: {exit_code}"
        ]
        if note:
            lines[0] += f" ({note})"
        if tail:
            lines.append("last lines of output:")
            lines += [f"  {t}" for t in tail]
        super().__init__("\n".join(lines))
        self.exit_code_of_run = exit_code
        self.tail = tail


@record
class RunRequest:
    """What a RUN step executes (container-side values, already expanded)."""

    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    network: str = "none"
    mounts: list[Mount] = field(default_factory=list)
    hostname: str = "buildkitsandbox"


_OVERLAY_PRIVATE = ("origin", "impure", "nlink", "upper", "metacopy", "redirect", "uuid")


def commit_dir(
    store,  # noqa: ANN001 - cache.store.Store
    src: Path,
    *,
    overlay_upper: bool,
    sde: int | None,
    stack: list[str] | None = None,
    keep_empty: bool = False,
) -> str | None:
    """Write `src` as a layer into the store; None when it holds no change (empty tar),
    unless `keep_empty`: RUN, COPY and ADD always make a layer, an empty one when nothing
    changed (Docker's documented rule, which both BuildKit and the classic builder follow:
    `RUN true` is a layer of 0 bytes in `docker history`, not an empty-layer entry).

    The tar is written straight into the store's staging file (no pipe, no second hash). With `stack` (the
    DiffIDs of the image below, oldest first), `src` itself then becomes the layer's unpacked
    dir (`Store.adopt_unpacked`): the next RUN needs no unpack, and the folder is never
    deleted file by file. Before that it is made to look as unpacking the tar would: overlay's
    private xattrs removed and, with SOURCE_DATE_EPOCH, mtimes clamped like the tar's.
    """
    with os.scandir(src) as it:
        empty = next(it, None) is None
    if empty and not keep_empty and not _has_opaque(src):
        return None
    diff_id = _stream_layer(store, src, overlay_upper, sde, keep_empty)
    if diff_id is None or stack is None:
        return diff_id
    _normalize_tree(src, overlay_upper, sde)
    with store.tmp_dir("adopt") as stage:
        os.rename(src, stage / "diff")
        store.adopt_unpacked([*stack, diff_id], stage)
    return diff_id


def _has_opaque(path: Path) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name):
                return True
        except OSError:
            pass
    return False


def _stream_layer(  # noqa: ANN001
    store, src: Path, overlay_upper: bool, sde: int | None, keep_empty: bool = False
) -> str | None:
    """Write `src` as a layer tar straight into the store's staging file (our own writer,
    hashed once on the way: `Store.write_layer_tree`); None for an empty tar unless
    `keep_empty`."""
    info = store.write_layer_tree(src, overlay_upper=overlay_upper, source_date_epoch=sde)
    if info.diff_id == EMPTY_TAR_DIFF_ID and not keep_empty:
        return None
    return str(info.diff_id)


def _normalize_tree(root: Path, overlay_upper: bool, sde: int | None) -> None:
    """Make a layer folder match what unpacking its tar gives (see commit_dir)."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            p = dirpath if name == "." else os.path.join(dirpath, name)
            if name == "." and dirpath != str(root):
                continue
            if overlay_upper:
                try:
                    names = os.listxattr(p, follow_symlinks=False)
                except OSError:
                    names = []
                for x in names:
                    if (
                        x.startswith(("trusted.overlay.", "user.overlay."))
                        and x.rsplit(".", 1)[-1] in _OVERLAY_PRIVATE
                    ):
                        os.removexattr(p, x, follow_symlinks=False)
            if sde is not None:
                st = os.lstat(p)
                secs = min(st.st_mtime_ns // 1_000_000_000, sde)
                if st.st_mtime_ns != secs * 1_000_000_000:
                    os.utime(p, ns=(secs * 1_000_000_000,) * 2, follow_symlinks=False)


def run_in_container(
    store,  # noqa: ANN001 - cache.store.Store
    diff_ids: list[str],
    req: RunRequest,
    executor: Executor,
    log: Callable[[bytes], None],
    *,
    step_name: str,
    command: str,
    sde: int | None,
) -> str | None:
    """Run one RUN over the image `diff_ids`; returns the new layer's diff_id or None.

    Output goes to `log` chunk by chunk (never clipped); the last lines are kept for the error
    of a failing command. The container's folders live in a staging dir that is removed
    whatever happens (also on Ctrl-C, once the executor has stopped the container).
    """
    lowers = store.unpacked_lowers(diff_ids) if diff_ids else []
    with store.tmp_dir("run") as d:
        upper, work, merged = d / "upper", d / "work", d / "merged"
        for p in (upper, work, merged):
            p.mkdir()
        if not lowers:
            # FROM scratch: overlay wants at least one lower dir.
            empty = d / "empty"
            empty.mkdir()
            lowers = [empty]
        tail: deque[str] = deque(maxlen=20)
        r, w = os.pipe()
        partial = [b""]

        def pump() -> None:
            while True:
                try:
                    chunk = os.read(r, 65536)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                log(chunk)
                text = partial[0] + chunk
                *lines, partial[0] = text.split(b"\n")
                for line in lines:
                    tail.append(line.decode("utf-8", "replace"))

        reader = threading.Thread(target=pump, name="run-output", daemon=True)
        reader.start()
        spec = RunSpec(
            lowers=lowers,
            upper=upper,
            work=work,
            merged=merged,
            argv=req.argv,
            env=req.env,
            cwd=req.cwd or "/",
            user=req.user,
            hostname=req.hostname,
            network=req.network,  # type: ignore[arg-type]
            mounts=req.mounts,
            stdin=None,
            stdout=w,
            stderr=w,
            state_dir=d / "state",
        )
        (d / "state").mkdir()
        try:
            result = executor.run(spec)
        finally:
            os.close(w)
            reader.join()
            os.close(r)
        if partial[0]:
            tail.append(partial[0].decode("utf-8", "replace"))
        if result.exit_code != 0:
            note = result.error or ("killed by the OOM killer" if result.oom_killed else "")
            raise RunFailed(step_name, command, result.exit_code, list(tail)[-10:], note)
        return commit_dir(
            store, upper, overlay_upper=True, sde=sde, stack=diff_ids, keep_empty=True
        )
