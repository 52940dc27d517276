"""The base image: reproducible busybox:latest, its content, and skopeo/umoci reading the store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from store_helpers import snapshot

from cache.bootstrap import BootstrapError, busybox_applets, make_busybox
from cache.store import Store

BUSYBOX = "/bin/busybox"


def test_same_image_id_on_every_run(busybox_root: Path, tmp_path: Path):
    first = Store(busybox_root).get_image("busybox:latest")
    again = make_busybox(Store.open(tmp_path / "other"), BUSYBOX)
    assert again.image_id == first.image_id
    assert again.manifest_digest == first.manifest_digest
    assert again.diff_ids == first.diff_ids
    # A second run into the same store changes nothing.
    store = Store(tmp_path / "other")
    before = snapshot(store.root)
    make_busybox(store, BUSYBOX)
    assert snapshot(store.root) == before


def test_config(busybox_image):
    cfg = busybox_image.config
    assert cfg["config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") and "/bin" in e for e in cfg["config"]["Env"])
    assert cfg["created"] == "1970-01-01T00:00:00Z"
    assert cfg["os"] == "linux" and cfg["architecture"]
    assert len(cfg["history"]) == 1 and "BusyBox" in cfg["history"][0]["created_by"]
    assert busybox_image.tags == ("busybox:latest",)
    assert len(busybox_image.diff_ids) == 1


def test_layer_content(busybox_store: Store, busybox_image):
    with (
        busybox_store.layer_tar(busybox_image.diff_ids[0]) as r,
        tarfile.open(fileobj=r, mode="r|") as tf,
    ):
        members = {m.name: m for m in tf}
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    assert members["bin/busybox"].isreg() and members["bin/busybox"].mode == 0o755
    assert members["bin/busybox"].size == os.path.getsize(BUSYBOX)
    for applet in busybox_applets(BUSYBOX):
        if applet != "bin/busybox":
            assert members[applet].issym() and members[applet].linkname == "/bin/busybox", applet
    assert members["bin/sh"].linkname == "/bin/busybox"
    assert members["usr/bin/env"].issym()
    modes = {name: members[name].mode for name in ("tmp", "root", "proc", "sys", "dev", "etc")}
    assert modes == {
        "tmp": 0o1777,
        "root": 0o700,
        "proc": 0o555,
        "sys": 0o555,
        "dev": 0o755,
        "etc": 0o755,
    }
    assert all(members[n].isdir() for n in modes)


def test_passwd_and_group(busybox_store: Store, busybox_image):
    with (
        busybox_store.layer_tar(busybox_image.diff_ids[0]) as r,
        tarfile.open(fileobj=r, mode="r|") as tf,
    ):
        files = {
            m.name: tf.extractfile(m).read().decode()
            for m in tf
            if m.name in ("etc/passwd", "etc/group")
        }
    passwd = [line.split(":") for line in files["etc/passwd"].splitlines()]
    assert [p[0] for p in passwd] == ["root", "nobody"]
    assert passwd[0][2:4] == ["0", "0"] and passwd[1][2:4] == ["65534", "65534"]
    assert [g.split(":")[0] for g in files["etc/group"].splitlines()] == ["root", "nobody"]


def test_refuses_missing_or_dynamic_busybox(store: Store, tmp_path: Path):
    before = snapshot(store.root)
    with pytest.raises(BootstrapError, match="not found"):
        make_busybox(store, tmp_path / "nope")
    with pytest.raises(BootstrapError, match="dynamically linked"):
        make_busybox(store, "/bin/ls")
    text = tmp_path / "script"
    text.write_text("#!/bin/sh\n")
    with pytest.raises(BootstrapError, match="not an ELF"):
        make_busybox(store, text)
    assert snapshot(store.root) == before


# ---- other tools read the store as an OCI layout ----------------------------------------------


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
@pytest.mark.parametrize("name", ["busybox:latest", "busybox"])
def test_skopeo_inspects_the_store(busybox_store: Store, busybox_image, name: str):
    before = snapshot(busybox_store.root)
    p = subprocess.run(
        ["skopeo", "inspect", f"oci:{busybox_store.root}:{name}"], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["Digest"] == busybox_image.manifest_digest
    assert out["Layers"] == list(busybox_image.diff_ids)
    p = subprocess.run(
        ["skopeo", "inspect", "--raw", "--config", f"oci:{busybox_store.root}:{name}"],
        capture_output=True,
    )
    assert p.returncode == 0
    assert hashlib.sha256(p.stdout).hexdigest() == busybox_image.image_id.hex
    assert snapshot(busybox_store.root) == before


def _tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            else:
                what = ""
            out[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                what,
            )
    return out


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
def test_umoci_unpack_matches_our_layer(busybox_store: Store, busybox_image, tmp_path: Path):
    bundle = tmp_path / "bundle"
    p = subprocess.run(
        ["umoci", "unpack", "--image", f"{busybox_store.root}:busybox:latest", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    ours = busybox_store.unpacked_lowers(busybox_image.diff_ids)[0].resolve()
    theirs = _tree(bundle / "rootfs")
    mine = _tree(ours)
    assert mine == theirs
    assert len(mine) > 250


def test_pydock_bootstrap_command(tmp_path: Path):
    helptext = subprocess.run(
        [sys.executable, "-m", "frontend.pydock", "--help"], capture_output=True, text=True
    ).stdout
    if "bootstrap" not in helptext:
        pytest.skip("pydock bootstrap is not wired up yet")
    root = tmp_path / "root"
    p = subprocess.run(
        [sys.executable, "-m", "frontend.pydock", "--root", str(root), "bootstrap", "busybox"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    img = Store(root).get_image("busybox")
    assert img.tags == ("busybox:latest",)
