"""pybuild's command line refuses what it cannot do before building: one line, Docker's codes.

Each row would have been an internal error, a silently created folder, or a usage error
blaming the wrong word, before these checks existed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import snapshot

REPO = Path(__file__).resolve().parent.parent


def pybuild(root: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", "--root", str(root), *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    c.mkdir()
    (c / "Dockerfile").write_text("FROM busybox\nRUN echo hi > /hi\n")
    return c


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--iidfile", "{tmp}/no/such/dir/iid"],
            "--iidfile {tmp}/no/such/dir/iid: no such directory",
        ),
        (["--iidfile", "{tmp}"], "is a directory"),
        (["-o", "type=docker,dest={tmp}"], "is a directory"),
        (["--platform", "linux/s390x"], "only the host platform"),
        (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    ],
)
def test_refused_before_building(busybox_store, ctx, tmp_path, argv, message):
    root = Path(busybox_store.root)
    before = snapshot(root)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    p = pybuild(root, *argv, str(ctx))
    assert p.returncode == 125, p.stderr
    assert p.stderr.count("\n") == 1, p.stderr
    assert message.replace("{tmp}", str(tmp_path)) in p.stderr
    assert "internal error" not in p.stderr
    assert snapshot(root) == before  # nothing was built
    assert not (tmp_path / "no").exists()


def test_host_platform_builds(busybox_store, ctx, tmp_path):
    from frontend.pybuild_build import host_platform

    iid = tmp_path / "iid"
    p = pybuild(
        Path(busybox_store.root), "--platform", host_platform(), "--iidfile", str(iid), str(ctx)
    )
    assert p.returncode == 0, p.stderr
    assert iid.read_text().startswith("sha256:")
