"""The build cache: a changed file re-runs exactly the steps from the COPY that reads it, the
miss says which part changed, and --dry-run prints the plan without running anything."""

from __future__ import annotations

import os
import subprocess
import sys

from build_helpers import Recorder, build_ctx, write_files

DOCKERFILE = """\
FROM busybox
ENV A=1
COPY base.txt /base.txt
RUN cat /base.txt > /copy1
COPY app/ /app/
RUN cat /app/main.py > /copy2
CMD ["cat", "/copy2"]
"""


def _ctx(tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {"Dockerfile": DOCKERFILE, "base.txt": "base\n", "app/main.py": "v1\n", "app/x.txt": "x\n"},
    )
    return ctx


def test_one_changed_file_reruns_from_its_copy(busybox_store, tmp_path):
    ctx = _ctx(tmp_path)
    build_ctx(busybox_store, ctx)
    (ctx / "app" / "main.py").write_text("v2\n")
    rec = Recorder()
    res = build_ctx(busybox_store, ctx, progress=rec)
    assert [s.cached for s in res.steps] == [True, True, True, True, False, False, False]
    assert res.containers_run == 1
    assert res.steps[4].why == "src:app/main.py changed"
    assert res.steps[5].why == "parent changed"
    assert "src:app/main.py changed" in rec.kinds("miss")


def test_entries_torn_by_a_power_cut_read_as_misses(busybox_store, tmp_path):
    """Entries are renamed into place without fsync: after a power cut one may be empty or
    cut short. Such an entry (or family file) is a miss that the next build repairs."""
    ctx = _ctx(tmp_path)
    build_ctx(busybox_store, ctx)
    bc = busybox_store.root / "buildcache"
    entries = sorted(bc.glob("*.json"))
    assert entries
    for i, path in enumerate(entries):
        data = path.read_bytes()
        path.write_bytes(b"" if i % 2 else data[: len(data) // 2])
    for fam in (bc / "family").iterdir():
        fam.write_bytes(b"")
    again = build_ctx(busybox_store, ctx)
    assert not any(s.cached for s in again.steps[1:])
    assert again.containers_run == 2  # both RUN steps ran again
    third = build_ctx(busybox_store, ctx)  # repaired: every step is a hit again
    assert all(s.cached for s in third.steps) and third.containers_run == 0


def test_mtime_alone_does_not_bust_the_cache(busybox_store, tmp_path):
    ctx = _ctx(tmp_path)
    build_ctx(busybox_store, ctx)
    os.utime(ctx / "base.txt", (1, 1))
    res = build_ctx(busybox_store, ctx)
    assert all(s.cached for s in res.steps)
    assert res.containers_run == 0


def test_mode_change_busts_the_cache(busybox_store, tmp_path):
    ctx = _ctx(tmp_path)
    build_ctx(busybox_store, ctx)
    os.chmod(ctx / "base.txt", 0o600)
    res = build_ctx(busybox_store, ctx)
    assert [s.cached for s in res.steps][:3] == [True, True, False]
    assert res.steps[2].why == "src:base.txt changed"


def test_changed_env_is_explained(busybox_store, tmp_path):
    ctx = _ctx(tmp_path)
    build_ctx(busybox_store, ctx)
    res = build_ctx(busybox_store, ctx, dockerfile=DOCKERFILE.replace("A=1", "A=2"))
    assert not res.steps[1].cached
    assert res.steps[1].why == "not built before"  # another instruction text: a new family
    assert res.steps[2].why == "parent changed"


def test_dry_run_plans_without_running(busybox_store, tmp_path):
    ctx = _ctx(tmp_path)
    build_ctx(busybox_store, ctx)
    (ctx / "base.txt").write_text("changed\n")
    before = sorted(os.listdir(busybox_store.root / "buildcache"))
    index = (busybox_store.root / "index.json").read_bytes()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "frontend.pybuild",
            "--root",
            str(busybox_store.root),
            "--dry-run",
            "-q",
            str(ctx),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[1].startswith("CACHED  [2/7] ENV A=1")
    assert lines[2].startswith("MISS    [3/7] COPY base.txt /base.txt  (src:base.txt changed)")
    assert lines[3].endswith("(parent changed)")
    assert sorted(os.listdir(busybox_store.root / "buildcache")) == before
    assert (busybox_store.root / "index.json").read_bytes() == index


def test_plain_progress_names_the_changed_part(busybox_store, tmp_path):
    ctx = _ctx(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "frontend.pybuild",
        "--root",
        str(busybox_store.root),
        "--progress",
        "plain",
        str(ctx),
    ]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    (ctx / "app" / "main.py").write_text("v3\n")
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "#5 [5/7] COPY app/ /app/\n#5 cache miss: src:app/main.py changed" in p.stderr
    assert "#4 CACHED" in p.stderr
