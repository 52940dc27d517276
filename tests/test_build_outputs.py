"""--output (docker/oci archives, a rootfs tar, a local folder), a tar context on stdin and a
Dockerfile on stdin, JSON progress."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello"


def _pybuild(root, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", "--root", str(root), *args],
        input=stdin,
        capture_output=True,
    )


def test_outputs(busybox_store, tmp_path):
    ctx = tmp_path / "hello"
    shutil.copytree(EXAMPLE, ctx)
    out = tmp_path / "out"
    p = _pybuild(
        busybox_store.root,
        "-q",
        "-t",
        "hello",
        "--output",
        f"type=oci,dest={out}/oci.tar",
        "--output",
        f"type=docker,dest={out}/docker.tar",
        "--output",
        f"type=tar,dest={out}/rootfs.tar",
        "--output",
        f"type=local,dest={out}/rootfs",
        str(ctx),
    )
    assert p.returncode == 0, p.stderr
    with tarfile.open(out / "oci.tar") as tf:
        names = tf.getnames()
        assert "oci-layout" in names and "index.json" in names
    with tarfile.open(out / "docker.tar") as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["hello:latest"]
    with tarfile.open(out / "rootfs.tar") as tf:
        names = tf.getnames()
        assert "app/hello.sh" in names and "bin/busybox" in names
    assert (out / "rootfs" / "app" / "built.txt").read_text() == "built on Linux\n"


def test_tar_context_on_stdin(busybox_store, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(EXAMPLE, arcname=".")
    p = _pybuild(busybox_store.root, "-q", "-t", "fromtar", "-", stdin=buf.getvalue())
    assert p.returncode == 0, p.stderr
    assert busybox_store.get_image("fromtar")


def test_dockerfile_on_stdin(busybox_store, tmp_path):
    df = b"FROM busybox\nRUN echo hi > /hi\n"
    p = _pybuild(busybox_store.root, "-q", "-", stdin=df)
    assert p.returncode == 0, p.stderr
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("f\n")
    p = _pybuild(busybox_store.root, "-q", "-f", "-", str(ctx), stdin=b"FROM busybox\nCOPY f /f\n")
    assert p.returncode == 0, p.stderr
    p = _pybuild(busybox_store.root, "-q", "-", stdin=b"FROM busybox\nCOPY f /f\n")
    assert p.returncode == 1 and b"no build context" in p.stderr
    p = _pybuild(busybox_store.root, "-q", "-f", "-", stdin=b"FROM busybox\nRUN true\n")
    assert p.returncode == 0, p.stderr  # `-f -` alone: no context at all


def test_json_progress(busybox_store, tmp_path):
    ctx = tmp_path / "hello"
    shutil.copytree(EXAMPLE, ctx)
    p = _pybuild(busybox_store.root, "--progress", "json", str(ctx))
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stderr.decode().splitlines() if line.startswith("{")]
    kinds = {e["type"] for e in events}
    assert {"cached", "started", "finished"} <= kinds
    runs = [e for e in events if e["type"] == "started" and "RUN" in e.get("name", "")]
    assert runs and runs[0]["name"].startswith("[5/7] RUN chmod")
