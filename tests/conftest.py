"""Shared fixtures: fresh stores in tmp_path, and a base image made once per session.

- `store_root`: a path for a store root under tmp_path (not created).
- `store`: a fresh `Store.open(store_root)`.
- `busybox_root` (session): a store root holding busybox:latest made by the bootstrap from
  /bin/busybox (the test is skipped when busybox-static is not installed). Treat it as
  read-only: copy it with `busybox_store`.
- `busybox_store`: a fresh per-test store that already holds busybox:latest (blobs, index.json
  and any unpacked layers copied with `cp -a --reflink=auto`: a few milliseconds).
- `busybox_image`: the `Image` of busybox:latest in `busybox_store`.

Other areas may append small fixtures here (additive edits only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cache.store import Store

BUSYBOX = "/bin/busybox"


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def store(store_root: Path) -> Store:
    return Store.open(store_root)


@pytest.fixture(scope="session")
def busybox_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not os.path.isfile(BUSYBOX):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    from cache.bootstrap import make_busybox

    root = tmp_path_factory.mktemp("busybox") / "root"
    make_busybox(Store.open(root), BUSYBOX)
    return root


def copy_store(src: Path, dst: Path) -> Store:
    """A new store at `dst` with the content of the store at `src`."""
    store = Store.open(dst)
    # Copies, not hard links: a test that damages a blob on purpose must not damage the
    # session's. (busybox is ~2 MB; `--reflink=auto` makes it free where the fs can.)
    for sub in ("blobs/sha256", "layers", "l"):
        if any((src / sub).iterdir()):
            subprocess.run(
                ["cp", "-a", "--reflink=auto", f"{src / sub}/.", str(dst / sub)], check=True
            )
    shutil.copyfile(src / "index.json", dst / "index.json")
    return store


@pytest.fixture
def busybox_store(busybox_root: Path, tmp_path: Path) -> Store:
    return copy_store(busybox_root, tmp_path / "root")


@pytest.fixture
def busybox_image(busybox_store: Store):
    return busybox_store.get_image("busybox:latest")
