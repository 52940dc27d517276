"""skopeo and umoci read what pydock writes, and pydock loads what skopeo writes.

Skipped when the tools are missing (the Makefile installs them: apt skopeo umoci).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cache.applier import apply_layer
from cache.archive import load_archive, save_images
from cache.store import Store

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
PYDOCK = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "pydock")


def run(*argv: str) -> str:
    p = subprocess.run(argv, capture_output=True, text=True)
    assert p.returncode == 0, (argv, p.stderr)
    return p.stdout


def skopeo(*argv: str) -> str:
    # --insecure-policy: no /etc/containers/policy.json is needed for local transports
    return run("skopeo", "--insecure-policy", *argv)


def oci_dir_layers(path: Path) -> list[str]:
    index = json.loads((path / "index.json").read_text())
    mdigest = index["manifests"][0]["digest"]
    manifest = json.loads((path / "blobs" / "sha256" / mdigest.split(":")[1]).read_text())
    return [ld["digest"] for ld in manifest["layers"]]


@needs_skopeo
def test_skopeo_inspects_the_store(busybox_store):
    image = busybox_store.get_image("busybox")
    info = json.loads(skopeo("inspect", f"oci:{busybox_store.root}:busybox:latest"))
    assert info["Digest"] == image.manifest_digest
    assert info["Layers"] == list(image.diff_ids)


@needs_skopeo
def test_docker_archive_written_by_skopeo_loads(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    out = tmp_path / "skopeo.tar"
    skopeo(
        "copy", f"oci:{busybox_store.root}:busybox:latest", f"docker-archive:{out}:busybox:latest"
    )
    fresh = tmp_path / "fresh"
    p = subprocess.run(
        [PYDOCK, "--root", str(fresh), "load", "-i", str(out)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == "Loaded image: busybox:latest\n"
    loaded = Store.open(fresh).get_image("busybox:latest")
    assert loaded.image_id == image.image_id and loaded.diff_ids == image.diff_ids


@needs_skopeo
def test_oci_archive_written_by_skopeo_loads(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    out = tmp_path / "skopeo-oci.tar"
    skopeo("copy", f"oci:{busybox_store.root}:busybox:latest", f"oci-archive:{out}:sk/box:2")
    [loaded] = load_archive(Store.open(tmp_path / "fresh"), out)
    assert loaded.image_id == image.image_id and loaded.tags == ("sk/box:2",)


@needs_skopeo
def test_skopeo_copies_our_archives_with_the_same_layer_digests(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    docker_tar, oci_tar = tmp_path / "d.tar", tmp_path / "o.tar"
    with open(docker_tar, "wb") as f:
        save_images(busybox_store, [(image, ["busybox:latest"])], f, fmt="docker")
    with open(oci_tar, "wb") as f:
        save_images(busybox_store, [(image, ["busybox:latest"])], f, fmt="oci")

    # skopeo compresses layers for an oci: destination; uncompressed, they are our diff ids
    skopeo("copy", f"docker-archive:{docker_tar}", f"oci:{tmp_path / 'oci'}:bb")
    blobs = tmp_path / "oci" / "blobs" / "sha256"
    for digest in oci_dir_layers(tmp_path / "oci"):
        plain = gzip.decompress((blobs / digest.split(":")[1]).read_bytes())
        assert "sha256:" + hashlib.sha256(plain).hexdigest() == image.diff_ids[0]
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_text())
    config = json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_text())
    assert config["rootfs"]["diff_ids"] == list(image.diff_ids)

    skopeo("copy", f"oci-archive:{oci_tar}", f"dir:{tmp_path / 'dir'}")
    manifest = json.loads((tmp_path / "dir" / "manifest.json").read_text())
    assert [ld["digest"] for ld in manifest["layers"]] == list(image.diff_ids)
    assert manifest["config"]["digest"] == image.image_id
    # the copied layer is byte-identical (uncompressed, digest == diff id)
    blob = (tmp_path / "dir" / image.diff_ids[0].hex).read_bytes()
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == image.diff_ids[0]


def tree(root: Path) -> dict[str, tuple]:
    """Path -> (type, mode, uid, gid, content hash or link target) for a whole tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            else:
                extra = ""
            out[rel] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                extra,
            )
    return out


@needs_umoci
def test_umoci_unpack_matches_our_applier(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{busybox_store.root}:busybox:latest", str(bundle))
    ours = tmp_path / "ours"
    ours.mkdir()
    for d in image.diff_ids:
        with busybox_store.layer_tar(d) as f:
            apply_layer(f, ours, whiteouts="apply")
    theirs = tree(bundle / "rootfs")
    mine = tree(ours)
    assert theirs.keys() == mine.keys()
    assert theirs == mine
    assert "bin/busybox" in mine
    # and the store's own unpacked lower dir (what pydock run mounts) is the same tree
    [lower] = busybox_store.unpacked_lowers(image.diff_ids)
    assert tree(Path(os.path.realpath(lower))) == theirs


@needs_skopeo
def test_oci_layout_directory_from_skopeo_loads(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    layout = tmp_path / "layout"
    skopeo("copy", f"oci:{busybox_store.root}:busybox:latest", f"oci:{layout}:dir/box:3")
    p = subprocess.run(
        [PYDOCK, "--root", str(tmp_path / "fresh"), "load", "-i", str(layout)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and p.stdout == "Loaded image: dir/box:3\n", p.stderr
    assert Store.open(tmp_path / "fresh").get_image("dir/box:3").image_id == image.image_id
