"""Helpers for the pybuild tests: build a Dockerfile from a dict of files, read and run images."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from builder.rootview import RootView
from builder.solver import BuildOptions, BuildResult, build
from cache.store import Store


class Recorder:
    """A progress sink that keeps every event (kind, step, text) for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()

    def _add(self, kind: str, step: int, text: str = "") -> None:
        with self.lock:
            self.events.append((kind, step, text))

    def started(self, step: int, name: str) -> None:
        self._add("started", step, name)

    def cached(self, step: int, name: str) -> None:
        self._add("cached", step, name)

    def miss(self, step: int, why: str) -> None:
        self._add("miss", step, why)

    def log(self, step: int, data) -> None:  # noqa: ANN001
        self._add("log", step, data.decode() if isinstance(data, bytes) else data)

    def finished(self, step: int) -> None:
        self._add("finished", step)

    def failed(self, step: int, message: str) -> None:
        self._add("failed", step, message)

    def info(self, text: str) -> None:
        self._add("info", 0, text)

    def kinds(self, kind: str) -> list[str]:
        return [t for k, _, t in self.events if k == kind]


def write_files(ctx: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        p = ctx / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)


def build_ctx(
    store: Store,
    ctx: Path,
    dockerfile: str | None = None,
    progress=None,
    **opts,  # noqa: ANN001
) -> BuildResult:
    """Build the context folder `ctx` (Dockerfile from `dockerfile` text or ctx/Dockerfile)."""
    text = dockerfile if dockerfile is not None else (ctx / "Dockerfile").read_text()
    options = BuildOptions(
        dockerfile_text=text,
        dockerfile_path=ctx / "Dockerfile",
        context_dir=ctx,
        **opts,
    )
    return build(store.root, options, progress)


def image_view(store: Store, image_id: str) -> RootView:
    image = store.get_image(image_id)
    return RootView(store.unpacked_lowers(list(image.diff_ids)))


def run_image(store: Store, image_id: str, argv: list[str] | None = None) -> tuple[int, str]:
    """Run an image's command (or `argv`) with its config; returns (exit code, output)."""
    from executor.runtime import run
    from executor.spec import RunSpec

    image = store.get_image(image_id)
    cfg = image.config.get("config") or {}
    cmd = argv if argv is not None else (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
    with tempfile.TemporaryDirectory(dir=store.root / "tmp") as d:
        dd = Path(d)
        for sub in ("upper", "work", "merged"):
            (dd / sub).mkdir()
        out_path = dd / "out"
        with open(out_path, "w+b") as out:
            spec = RunSpec(
                lowers=store.unpacked_lowers(list(image.diff_ids)),
                upper=dd / "upper",
                work=dd / "work",
                merged=dd / "merged",
                argv=cmd,
                env=list(cfg.get("Env") or []),
                cwd=cfg.get("WorkingDir") or "/",
                user=cfg.get("User") or "",
                stdout=out.fileno(),
                stderr=out.fileno(),
            )
            result = run(spec)
            out.seek(0)
            return result.exit_code, out.read().decode()


def store_snapshot(store: Store) -> tuple:
    """What a failed build must leave unchanged: index.json bytes and the set of images."""
    return (
        (store.root / "index.json").read_bytes(),
        sorted(os.listdir(store.root / "blobs" / "sha256")),
    )
