"""Ctrl-C during a RUN stops the container and cleans up: no mount, no staging dir, no image."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from build_helpers import write_files


def test_sigint_during_run_cleans_up(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nRUN echo started && sleep 37\n"})
    index = (busybox_store.root / "index.json").read_bytes()
    p = subprocess.Popen(
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
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 20
    seen = ""
    os.set_blocking(p.stderr.fileno(), False)
    while time.time() < deadline and "started" not in seen:
        try:
            seen += os.read(p.stderr.fileno(), 65536).decode()
        except BlockingIOError:
            pass
        time.sleep(0.05)
    assert "started" in seen
    p.send_signal(signal.SIGINT)
    p.wait(timeout=20)
    assert p.returncode == 130
    assert (busybox_store.root / "index.json").read_bytes() == index
    assert list((busybox_store.root / "tmp").iterdir()) == []
    with open("/proc/self/mounts") as f:
        assert str(busybox_store.root) not in f.read()
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 37" not in out
