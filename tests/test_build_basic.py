"""pybuild end to end on busybox: examples/hello builds, runs, and rebuilds fully cached."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from build_helpers import Recorder, build_ctx, image_view, run_image

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello"


def test_hello_builds_runs_and_rebuilds_cached(busybox_store, tmp_path):
    ctx = tmp_path / "hello"
    shutil.copytree(EXAMPLE, ctx)
    first = build_ctx(busybox_store, ctx, tags=["hello"])
    assert first.containers_run == 1
    image = busybox_store.get_image("hello")
    assert str(image.image_id) == first.image_id
    cfg = image.config
    assert cfg["config"]["Cmd"] == ["/app/hello.sh"]
    assert cfg["config"]["WorkingDir"] == "/app"
    assert "GREETING=Hello from pydock" in cfg["config"]["Env"]
    assert cfg["config"]["Labels"] == {"org.opencontainers.image.title": "hello"}
    # Docker's invariant: one non-empty history entry per layer.
    non_empty = [h for h in cfg["history"] if not h.get("empty_layer")]
    assert len(non_empty) == len(cfg["rootfs"]["diff_ids"])
    assert any(
        h["created_by"] == '/bin/sh -c #(nop)  CMD ["/app/hello.sh"]' for h in cfg["history"]
    )
    view = image_view(busybox_store, first.image_id)
    assert view.read_text("/app/built.txt") == "built on Linux\n"
    code, out = run_image(busybox_store, first.image_id)
    assert code == 0
    assert "Hello from pydock" in out and "built on Linux" in out

    rec = Recorder()
    again = build_ctx(busybox_store, ctx, progress=rec, tags=["hello"])
    assert again.containers_run == 0
    assert again.image_id == first.image_id
    assert all(s.cached for s in again.steps)
    assert len(rec.kinds("cached")) == len(again.steps) == 7
    assert rec.kinds("started") == []


def test_no_cache_rebuilds_every_step(busybox_store, tmp_path):
    ctx = tmp_path / "hello"
    shutil.copytree(EXAMPLE, ctx)
    build_ctx(busybox_store, ctx)
    res = build_ctx(busybox_store, ctx, no_cache=True)
    assert res.containers_run == 1
    assert [s.cached for s in res.steps] == [True] + [False] * 6  # FROM is never "run"
    assert all(s.why == "--no-cache" for s in res.steps[1:])


def test_cli_builds_tags_and_prints_id(busybox_store, tmp_path):
    ctx = tmp_path / "hello"
    shutil.copytree(EXAMPLE, ctx)
    iid = tmp_path / "iid"
    cmd = [sys.executable, "-m", "frontend.pybuild", "--root", str(busybox_store.root)]
    p = subprocess.run(
        [
            *cmd,
            "-t",
            "hello",
            "-t",
            "hello:v1",
            "--progress",
            "plain",
            "--iidfile",
            str(iid),
            str(ctx),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    image_id = p.stdout.strip()
    assert image_id.startswith("sha256:") and iid.read_text() == image_id
    assert "#5 [5/7] RUN chmod +x /app/hello.sh" in p.stderr
    img = busybox_store.get_image("hello:v1")
    assert str(img.image_id) == image_id
    q = subprocess.run([*cmd, "-q", "-t", "hello", str(ctx)], capture_output=True, text=True)
    assert q.returncode == 0 and q.stdout == image_id + "\n" and q.stderr == ""
    h = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    for flag in (
        "--build-arg",
        "--target",
        "--no-cache",
        "--label",
        "--progress",
        "--iidfile",
        "--network",
        "--output",
        "--dry-run",
        "-q",
    ):
        assert flag in h.stdout


def test_cli_label_target_and_bad_tag(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS one\nLABEL stage=one\nFROM busybox AS two\nLABEL stage=two\n"
    )
    cmd = [sys.executable, "-m", "frontend.pybuild", "--root", str(busybox_store.root), "-q"]
    p = subprocess.run(
        [*cmd, "--target", "one", "--label", "extra=yes", str(ctx)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    labels = busybox_store.get_image(p.stdout.strip()).config["config"]["Labels"]
    assert labels == {"stage": "one", "extra": "yes"}
    bad = subprocess.run([*cmd, "-t", "Bad:Name:x", str(ctx)], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_run_and_copy_that_change_nothing_still_make_a_layer(busybox_store, tmp_path):
    """Docker's rule (BuildKit's and the classic builder's): every RUN, COPY and ADD is a
    layer, an empty one when it changed nothing; metadata steps are empty-layer entries."""
    from cache.digest import EMPTY_TAR_DIFF_ID

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN true\nCOPY *.nomatch /x/\nENV A=1\nRUN echo a > /a\n"
    )
    img = busybox_store.get_image(build_ctx(busybox_store, ctx).image_id)
    base = len(img.diff_ids) - 3
    assert list(img.diff_ids[base : base + 2]) == [EMPTY_TAR_DIFF_ID, EMPTY_TAR_DIFF_ID]
    assert img.diff_ids[-1] != EMPTY_TAR_DIFF_ID
    marks = ["." if h.get("empty_layer") else "L" for h in img.config["history"]][-4:]
    assert marks == ["L", "L", ".", "L"]
    code, out = run_image(busybox_store, img.image_id, ["cat", "/a"])
    assert (code, out) == (0, "a\n")
