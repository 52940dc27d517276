"""Bad input: a failing RUN stops the build with step, command, exit code and output and leaves
no image, tag or mount; syntax errors have file:line:col; unknown base images say how to get one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from build_helpers import build_ctx, write_files

from builder.steps import RunFailed


def _mounts_under(path) -> list[str]:
    with open("/proc/self/mounts") as f:
        return [line for line in f if str(path) in line]


def test_failing_run_leaves_store_unchanged(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {"Dockerfile": 'FROM busybox\nENV A=1\nRUN echo out; echo err >&2; exit 7\nCMD ["sh"]\n'},
    )
    index = (busybox_store.root / "index.json").read_bytes()
    blobs = sorted((busybox_store.root / "blobs" / "sha256").iterdir())
    with pytest.raises(RunFailed) as info:
        build_ctx(busybox_store, ctx, tags=["broken"])
    msg = info.value.message
    assert "[3/4] RUN echo out; echo err >&2; exit 7" in msg
    assert "exit code: 7" in msg
    assert "out" in info.value.tail and "err" in info.value.tail
    assert (busybox_store.root / "index.json").read_bytes() == index
    assert sorted((busybox_store.root / "blobs" / "sha256").iterdir()) == blobs
    assert list((busybox_store.root / "tmp").iterdir()) == []
    assert _mounts_under(busybox_store.root) == []


def test_failing_run_cli_exit_code_and_message(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nRUN echo boom && false\n"})
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "frontend.pybuild",
            "--root",
            str(busybox_store.root),
            "--progress",
            "plain",
            "-t",
            "x",
            str(ctx),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1
    assert "did not complete successfully: exit code: 1" in p.stderr
    assert "boom" in p.stderr
    assert "Traceback" not in p.stderr


def test_syntax_error_has_file_line_column(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nCOPPY a b\n"})
    p = subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", "--root", str(busybox_store.root), str(ctx)],
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0
    assert 'Dockerfile:2:1: unknown instruction "COPPY"' in p.stderr


def test_unknown_base_image_says_how_to_get_it(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM alpine:3.19\nRUN true\n"})
    p = subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", "--root", str(busybox_store.root), str(ctx)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1
    assert "not in the local store" in p.stderr
    assert "pydock bootstrap busybox" in p.stderr and "pydock load" in p.stderr


def test_from_scratch_works(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": 'FROM scratch\nCOPY f /f\nCMD ["/f"]\n', "f": "x"})
    res = build_ctx(busybox_store, ctx)
    img = busybox_store.get_image(res.image_id)
    assert len(img.diff_ids) == 1
    assert img.config["config"]["Cmd"] == ["/f"]


def test_full_run_log_is_kept_unclipped(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nRUN seq 1 5000; exit 2\n"})
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "frontend.pybuild",
            "--root",
            str(busybox_store.root),
            "-q",
            str(ctx),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1
    assert "full output: " in p.stderr
    logs = list((busybox_store.root / "buildcache" / "logs").glob("*/2.log"))
    assert len(logs) == 1
    lines = logs[0].read_text().splitlines()
    assert lines == [str(i) for i in range(1, 5001)]
    assert "  5000" in p.stderr  # the error shows the last lines


def test_network_none_by_default_host_on_request(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": (
                "FROM busybox\n"
                "RUN tail -n +3 /proc/net/dev | wc -l > /none\n"
                "RUN --network=host tail -n +3 /proc/net/dev | wc -l > /host\n"
            )
        },
    )
    res = build_ctx(busybox_store, ctx)
    from build_helpers import image_view

    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/none").strip() == "1"  # only lo
    with open("/proc/net/dev") as f:
        host_count = len(f.read().splitlines()) - 2
    assert view.read_text("/host").strip() == str(host_count)
