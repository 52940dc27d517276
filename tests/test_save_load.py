"""`pydock save` / `pydock load`: Docker >= 25 and OCI archives, round trips, legacy archives."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from cache.archive import load_archive, save_images
from cache.store import Store

PYDOCK = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "pydock")


def pydock(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYDOCK, "--root", str(root), *args], input=stdin, capture_output=True)


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}


def test_save_load_round_trip_in_fresh_root(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    busybox_store.tag_image(image, "me/bb:v1")
    out = tmp_path / "bb.tar"
    p = pydock(busybox_store.root, "save", "-o", str(out), "busybox:latest", "me/bb:v1")
    assert p.returncode == 0, p.stderr
    files = members(out)
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(files)
    # Every blob is named by its digest.
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    manifest = json.loads(files["manifest.json"])
    assert len(manifest) == 1 and sorted(manifest[0]["RepoTags"]) == ["busybox:latest", "me/bb:v1"]
    assert manifest[0]["Config"] == f"blobs/sha256/{image.image_id.hex}"
    assert manifest[0]["Layers"] == [f"blobs/sha256/{d.hex}" for d in image.diff_ids]
    index = json.loads(files["index.json"])
    names = {d["annotations"]["io.containerd.image.name"] for d in index["manifests"]}
    assert names == {"docker.io/library/busybox:latest", "docker.io/me/bb:v1"}
    assert {d["digest"] for d in index["manifests"]} == {image.manifest_digest}
    assert json.loads(files["repositories"])["busybox"]["latest"] == image.diff_ids[-1].hex

    fresh = tmp_path / "fresh"
    p = pydock(fresh, "load", "-i", str(out))
    assert p.returncode == 0, p.stderr
    assert sorted(p.stdout.decode().splitlines()) == [
        "Loaded image: busybox:latest",
        "Loaded image: me/bb:v1",
    ]
    loaded = Store.open(fresh).get_image("busybox:latest")
    assert loaded.image_id == image.image_id
    assert loaded.manifest_digest == image.manifest_digest
    assert sorted(loaded.tags) == ["busybox:latest", "me/bb:v1"]


def test_save_is_deterministic_and_streams_through_stdout(busybox_store, tmp_path):
    a = pydock(busybox_store.root, "save", "busybox")
    b = pydock(busybox_store.root, "save", "busybox")
    assert a.returncode == 0 and a.stdout == b.stdout and a.stdout[:512].count(b"blobs/") == 1
    fresh = tmp_path / "fresh"
    p = pydock(fresh, "load", stdin=a.stdout)
    assert p.returncode == 0 and p.stdout == b"Loaded image: busybox:latest\n", p.stderr


def test_oci_format_has_no_docker_files_and_loads(busybox_store, tmp_path):
    out = tmp_path / "oci.tar"
    p = pydock(busybox_store.root, "save", "--format", "oci", "-o", str(out), "busybox")
    assert p.returncode == 0, p.stderr
    files = members(out)
    assert "manifest.json" not in files and "repositories" not in files
    index = json.loads(files["index.json"])
    assert (
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        == "busybox:latest"
    )
    fresh = Store.open(tmp_path / "fresh")
    [loaded] = load_archive(fresh, out)
    assert loaded.tags == ("busybox:latest",)
    assert loaded.image_id == busybox_store.get_image("busybox").image_id


def test_save_by_id_is_untagged_and_load_says_so(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    out = tmp_path / "id.tar"
    with open(out, "wb") as f:
        save_images(busybox_store, [(image, [])], f)
    assert "RepoTags" not in json.loads(members(out)["manifest.json"])[0]
    p = pydock(tmp_path / "fresh", "load", "-i", str(out))
    assert p.returncode == 0 and p.stdout.decode() == f"Loaded image ID: {image.image_id}\n"
    assert Store.open(tmp_path / "fresh").get_image(image.short_id).tags == ()


def test_load_moves_an_existing_tag(busybox_store, tmp_path):
    """Loading busybox:latest over a store where the tag names another image moves the tag."""
    first = busybox_store.get_image("busybox")
    out = tmp_path / "bb.tar"
    with open(out, "wb") as f:
        save_images(busybox_store, [(first, ["busybox:latest"])], f)
    other = Store.open(tmp_path / "other")
    layer = io.BytesIO(b"\0" * 1024)
    info = other.add_layer(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "history": [{"created_by": "empty"}],
    }
    old = other.write_image(config, [info.diff_id], tags=["busybox:latest"])
    load_archive(other, out)
    assert other.get_image("busybox:latest").image_id == first.image_id
    assert other.get_image(old.short_id).tags == ()


def test_legacy_archive_loads(busybox_store, tmp_path):
    """Docker <= 24 layout: manifest.json + <config>.json + <v1id>/layer.tar."""
    image = busybox_store.get_image("busybox")
    config = busybox_store.read_blob(image.image_id)
    layer = busybox_store.blob_path(image.diff_ids[0]).read_bytes()
    v1 = "ab" * 32
    files = {
        f"{image.image_id.hex}.json": config,
        f"{v1}/VERSION": b"1.0",
        f"{v1}/json": b'{"id":"' + v1.encode() + b'"}',
        f"{v1}/layer.tar": layer,
        "manifest.json": json.dumps(
            [
                {
                    "Config": f"{image.image_id.hex}.json",
                    "RepoTags": ["old:style"],
                    "Layers": [f"{v1}/layer.tar"],
                }
            ]
        ).encode(),
        "repositories": json.dumps({"old": {"style": v1}}).encode(),
    }
    out = tmp_path / "legacy.tar"
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
        d = tarfile.TarInfo(v1)
        d.type = tarfile.DIRTYPE
        tf.addfile(d)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    fresh = Store.open(tmp_path / "fresh")
    [loaded] = load_archive(fresh, out)
    assert loaded.tags == ("old:style",) and loaded.image_id == image.image_id


def test_gzip_compressed_archive_loads(busybox_store, tmp_path):
    import gzip

    raw = pydock(busybox_store.root, "save", "busybox").stdout
    out = tmp_path / "bb.tar.gz"
    out.write_bytes(gzip.compress(raw))
    p = pydock(tmp_path / "fresh", "load", "-q", "-i", str(out))
    assert p.returncode == 0 and p.stdout == b"Loaded image: busybox:latest\n", p.stderr


def test_saving_many_images_writes_shared_blobs_once(busybox_store, tmp_path):
    image = busybox_store.get_image("busybox")
    layer = busybox_store.blob_path(image.diff_ids[0]).read_bytes()
    cfg = dict(image.config)
    cfg["config"] = {"Cmd": ["echo", "two"]}
    cfg.pop("rootfs")
    second = busybox_store.write_image(cfg, image.diff_ids, tags=["two:1"])
    out = tmp_path / "two.tar"
    p = pydock(busybox_store.root, "save", "-o", str(out), "busybox", "two:1")
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as tf:
        names = [m.name for m in tf]
    assert names.count(f"blobs/sha256/{image.diff_ids[0].hex}") == 1
    assert len(json.loads(members(out)["manifest.json"])) == 2
    fresh = Store.open(tmp_path / "fresh")
    loaded = load_archive(fresh, out)
    assert {i.image_id for i in loaded} == {image.image_id, second.image_id}
    assert fresh.blob_path(image.diff_ids[0]).read_bytes() == layer


def test_loaded_layers_arrive_unpacked(busybox_store, tmp_path):
    """The trees the loader checked become the unpacked lower dirs (equal to a fresh unpack)."""
    import os

    from cache.applier import apply_layer

    image = busybox_store.get_image("busybox")
    out = tmp_path / "bb.tar"
    with open(out, "wb") as f:
        save_images(busybox_store, [(image, ["busybox:latest"])], f)
    fresh = Store.open(tmp_path / "fresh")
    load_archive(fresh, out)
    [layer] = fresh.all_unpacked()
    assert layer.diff_id == image.diff_ids[0]
    assert list((fresh.root / "tmp").iterdir()) == []
    again = tmp_path / "again"
    again.mkdir()
    with fresh.layer_tar(image.diff_ids[0]) as f:
        apply_layer(f, again, whiteouts="overlay")

    def tree(root):
        return sorted(
            (os.path.relpath(os.path.join(d, n), root), os.lstat(os.path.join(d, n)).st_mode)
            for d, dirs, files in os.walk(root)
            for n in dirs + files
        )

    assert tree(layer.path) == tree(again)
    assert fresh.blob_path(image.diff_ids[0]).stat().st_mode & 0o777 == 0o444


def test_save_selection_follows_docker(busybox_store):
    from cache.archive import select_for_save

    image = busybox_store.get_image("busybox")
    busybox_store.tag_image(image, "busybox:v2")
    busybox_store.tag_image(image, "other:1")
    [(img, tags)] = select_for_save(busybox_store, ["busybox"])  # a bare name: all its tags
    assert img.image_id == image.image_id and sorted(tags) == ["busybox:latest", "busybox:v2"]
    [(_, tags)] = select_for_save(busybox_store, ["other:1", "busybox:v2"])
    assert tags == ["other:1", "busybox:v2"]
    [(_, tags)] = select_for_save(busybox_store, [image.short_id])  # an id: untagged
    assert tags == []


def test_multi_platform_index_loads_this_machines_image(tmp_path):
    """An OCI archive whose index points at a multi-platform index: the host's manifest wins."""
    import platform

    def sha(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def layer(name: str) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"x\n"))
        return buf.getvalue()

    host = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    other = "s390x" if host != "s390x" else "amd64"
    blobs: dict[str, bytes] = {}
    manifests = []
    for arch in (other, host):
        lay = layer(f"only-on-{arch}")
        cfg = json.dumps(
            {
                "architecture": arch,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [sha(lay)]},
            }
        ).encode()
        man = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha(cfg),
                    "size": len(cfg),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha(lay),
                        "size": len(lay),
                    }
                ],
            }
        ).encode()
        for b in (lay, cfg, man):
            blobs[sha(b)] = b
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(man),
                "size": len(man),
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    inner = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
    ).encode()
    blobs[sha(inner)] = inner
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": sha(inner),
                "size": len(inner),
                "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"},
            }
        ],
    }
    out = tmp_path / "multi.tar"
    with tarfile.open(out, "w") as tf:
        files = {f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()}
        files["index.json"] = json.dumps(top).encode()
        files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    store = Store.open(tmp_path / "root")
    [loaded] = load_archive(store, out)
    assert loaded.tags == ("multi:1",)
    image = store.get_image("multi:1")
    assert image.config["architecture"] == host
