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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cache.digest import EMPTY_TAR_DIFF_ID
from cache.errors import PydockError
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


@dataclass
class RunRequest:
    """What a RUN step executes (container-side values, already expanded)."""

    argv: list[str]
    env: list[str]
    cwd: str
    user: str
    network: str = "none"
    mounts: list[Mount] = field(default_factory=list)
    hostname: str = "buildkitsandbox"


def commit_dir(store, src: Path, *, overlay_upper: bool, sde: int | None) -> str | None:  # noqa: ANN001
    """Write `src` as a layer into the store; None when it holds no change (empty tar)."""
    from cache.tarwriter import write_layer

    with store.tmp_dir("layer") as tmp:
        tar = tmp / "layer.tar"
        with open(tar, "w+b") as f:
            stats = write_layer(src, f, overlay_upper=overlay_upper, source_date_epoch=sde)
            if stats.diff_id == EMPTY_TAR_DIFF_ID:
                return None
            f.seek(0)
            info = store.add_layer(f)
    return str(info.diff_id)


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
        return commit_dir(store, upper, overlay_upper=True, sde=sde)
