"""`pydock load` of broken or hostile archives: one line naming the problem, exit 1, and the store
byte-for-byte as before. Archives are built here from real tars (Docker >= 25 layout), then
damaged one way each."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

PYDOCK = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "pydock")


# --- building archives --------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def reg(name: str, data: bytes = b"hi\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def dirent(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def link(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def ok_layer() -> bytes:
    return layer_tar([dirent("etc"), reg("etc/hello", b"hello\n"), link("etc/h2", "hello")])


def image_files(
    layers: list[bytes],
    *,
    tag: str = "sample:1",
    compress: str | None = None,
    diff_ids: list[str] | None = None,
) -> dict[str, bytes]:
    """The files of a Docker >= 25 archive holding one image with these (plain) layers."""
    files: dict[str, bytes] = {}
    blobs = []
    for plain in layers:
        blob = plain
        if compress == "gzip":
            blob = gzip.compress(plain, mtime=0)
        elif compress == "zstd":
            blob = subprocess.run(
                ["zstd", "-q", "-c"], input=plain, capture_output=True, check=True
            ).stdout
        blobs.append(blob)
        files[f"blobs/sha256/{sha(blob)[7:]}"] = blob
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(x) for x in layers]},
        "history": [
            {"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
            for i in range(len(layers))
        ],
    }
    cbytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    files[f"blobs/sha256/{sha(cbytes)[7:]}"] = cbytes
    ltype = {
        None: "application/vnd.oci.image.layer.v1.tar",
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    }[compress]
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(cbytes),
            "size": len(cbytes),
        },
        "layers": [{"mediaType": ltype, "digest": sha(b), "size": len(b)} for b in blobs],
    }
    mbytes = json.dumps(manifest).encode()
    files[f"blobs/sha256/{sha(mbytes)[7:]}"] = mbytes
    name, _, t = tag.rpartition(":")
    files["index.json"] = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha(mbytes),
                    "size": len(mbytes),
                    "annotations": {
                        "io.containerd.image.name": f"docker.io/library/{tag}",
                        "org.opencontainers.image.ref.name": t,
                    },
                }
            ],
        }
    ).encode()
    files["manifest.json"] = json.dumps(
        [
            {
                "Config": f"blobs/sha256/{sha(cbytes)[7:]}",
                "RepoTags": [tag],
                "Layers": [f"blobs/sha256/{sha(b)[7:]}" for b in blobs],
            }
        ]
    ).encode()
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    return files


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def layer_blob_name(files: dict[str, bytes]) -> str:
    manifest = json.loads(files["manifest.json"])
    return manifest[0]["Layers"][0]


def snapshot(root: Path) -> list[tuple]:
    """Every path under root with its type, mode, size and content hash (or link target)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out.append((rel, "l", os.readlink(p)))
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out.append((rel, "f", st.st_mode, hashlib.sha256(f.read()).hexdigest()))
            else:
                out.append((rel, "d", st.st_mode))
    return out


def pydock(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYDOCK, "--root", str(root), *args], input=stdin, capture_output=True)


# --- the damaged archives -----------------------------------------------------------------------


def _blob_mismatch(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    files[layer_blob_name(files)] = layer_tar([reg("other")])
    return write_tar(tmp / "a.tar", files)


def _missing_blob(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    del files[layer_blob_name(files)]
    return write_tar(tmp / "a.tar", files)


def _manifest_nowhere(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    index = json.loads(files["index.json"])
    index["manifests"][0]["digest"] = sha(b"no such manifest")
    files["index.json"] = json.dumps(index).encode()
    return write_tar(tmp / "a.tar", files)


def _config_nowhere(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    items = json.loads(files["manifest.json"])
    items[0]["Config"] = "blobs/sha256/" + "0" * 64
    files["manifest.json"] = json.dumps(items).encode()
    return write_tar(tmp / "a.tar", files)


def _dotdot_member(tmp: Path) -> Path:
    return write_tar(tmp / "a.tar", image_files([ok_layer(), layer_tar([reg("../evil")])]))


def _absolute_member(tmp: Path) -> Path:
    return write_tar(tmp / "a.tar", image_files([layer_tar([reg("/etc/evil")])]))


def _hardlink_out(tmp: Path) -> Path:
    return write_tar(
        tmp / "a.tar", image_files([layer_tar([link("x", "../../../etc/passwd", hard=True)])])
    )


def _hardlink_absolute(tmp: Path) -> Path:
    return write_tar(tmp / "a.tar", image_files([layer_tar([link("x", "/etc/passwd", hard=True)])]))


def _bad_whiteout(tmp: Path) -> Path:
    return write_tar(tmp / "a.tar", image_files([layer_tar([reg(".wh..", b"")])]))


def _truncated_tar(tmp: Path) -> Path:
    path = write_tar(tmp / "a.tar", image_files([ok_layer() + b"\0" * 20000]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_layer_tar(tmp: Path) -> Path:
    layer = ok_layer()
    return write_tar(tmp / "a.tar", image_files([layer[:1024]]))


def _corrupt_gzip_layer(tmp: Path) -> Path:
    plain = layer_tar([reg(f"f{i}", os.urandom(3000)) for i in range(5)])
    files = image_files([plain], compress="gzip")
    name = layer_blob_name(files)
    blob = bytearray(files.pop(name))
    for i in range(200, 260):
        blob[i] ^= 0x5A
    blob = bytes(blob)
    files[f"blobs/sha256/{sha(blob)[7:]}"] = blob
    # point manifest.json at the damaged blob, so only the gzip stream is bad
    files["manifest.json"] = files["manifest.json"].replace(
        name.encode(), f"blobs/sha256/{sha(blob)[7:]}".encode()
    )
    files.pop("index.json")
    return write_tar(tmp / "a.tar", files)


def _truncated_gzip_archive(tmp: Path) -> Path:
    path = write_tar(tmp / "a.tar", image_files([ok_layer()]))
    data = gzip.compress(path.read_bytes())
    path.write_bytes(data[: len(data) - 40])
    return path


def _not_a_tar(tmp: Path) -> Path:
    path = tmp / "a.tar"
    path.write_bytes(b"this is not an archive at all\n" * 100)
    return path


def _diff_id_mismatch(tmp: Path) -> Path:
    return write_tar(tmp / "a.tar", image_files([ok_layer()], diff_ids=[sha(b"something else")]))


def _history_mismatch(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    items = json.loads(files["manifest.json"])
    name = items[0]["Config"]
    config = json.loads(files.pop(name))
    config["history"].append({"created_by": "a second layer that is not there"})
    cbytes = json.dumps(config).encode()
    files[f"blobs/sha256/{sha(cbytes)[7:]}"] = cbytes
    items[0]["Config"] = f"blobs/sha256/{sha(cbytes)[7:]}"
    files["manifest.json"] = json.dumps(items).encode()
    files.pop("index.json")
    return write_tar(tmp / "a.tar", files)


def _outer_dotdot(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    files["../../escape.txt"] = b"x"
    return write_tar(tmp / "a.tar", files)


def _outer_absolute(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    files["/tmp/escape.txt"] = b"x"
    return write_tar(tmp / "a.tar", files)


def _deep_json(tmp: Path) -> Path:
    files = image_files([ok_layer()])
    files["manifest.json"] = b"[" * 200000 + b"]" * 200000
    return write_tar(tmp / "a.tar", files)


def _no_image(tmp: Path) -> Path:
    return write_tar(tmp / "a.tar", {"hello.txt": b"hi"})


def _device_in_archive(tmp: Path) -> Path:
    path = tmp / "a.tar"
    files = image_files([ok_layer()])
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        dev = tarfile.TarInfo("dev")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    return path


CASES = {
    "blob digest mismatch": (_blob_mismatch, "does not match its digest"),
    "missing blob": (_missing_blob, "missing from the archive"),
    "manifest pointing nowhere": (_manifest_nowhere, "missing from the archive"),
    "config pointing nowhere": (_config_nowhere, "missing from the archive"),
    "dotdot member": (_dotdot_member, "leaves the layer root"),
    "absolute member": (_absolute_member, "leaves the layer root"),
    "hard link leading out": (_hardlink_out, "leaves the layer root"),
    "absolute hard link": (_hardlink_absolute, "leaves the layer root"),
    "bad whiteout name": (_bad_whiteout, ".wh.."),
    "truncated archive": (_truncated_tar, "truncated"),
    "truncated layer tar": (_truncated_layer_tar, "unexpected end of data"),
    "corrupt gzip layer": (_corrupt_gzip_layer, "gzip"),
    "truncated gzip archive": (_truncated_gzip_archive, "truncated gzip"),
    "not a tar": (_not_a_tar, "not a tar archive"),
    "diff_id mismatch": (_diff_id_mismatch, "diff_id mismatch"),
    "no image in it": (_no_image, "not an image archive"),
    "absurdly nested JSON": (_deep_json, "manifest.json is not valid JSON"),
    "outer member with ..": (_outer_dotdot, "escape.txt"),
    "outer absolute member": (_outer_absolute, "escape.txt"),
    "history does not match layers": (_history_mismatch, "non-empty entries"),
    "device in outer archive": (_device_in_archive, "archive"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_archive_is_refused_and_store_unchanged(case, busybox_store, tmp_path):
    make, expect = CASES[case]
    archive = make(tmp_path)
    root = busybox_store.root
    before = snapshot(root)
    p = pydock(root, "load", "-i", str(archive))
    err = p.stderr.decode()
    assert p.returncode == 1, (case, p.stdout, err)
    assert err.count("\n") == 1 and err.startswith("pydock: error: "), err
    assert expect in err, err
    assert "Traceback" not in err
    assert snapshot(root) == before


def test_bad_archive_on_stdin_is_refused_too(busybox_store, tmp_path):
    archive = _dotdot_member(tmp_path)
    before = snapshot(busybox_store.root)
    p = pydock(busybox_store.root, "load", stdin=archive.read_bytes())
    assert p.returncode == 1 and b"leaves the layer root" in p.stderr
    assert snapshot(busybox_store.root) == before


def test_symlink_leading_out_stays_inside(busybox_store, tmp_path):
    """A symlink out of the root followed by a write through it: loading is fine (links to
    anywhere are ordinary in layers), and unpacking writes inside the layer dir only."""
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = layer_tar([link("esc", str(outside)), reg("esc/pwned", b"x")])
    archive = write_tar(tmp_path / "a.tar", image_files([layer], tag="esc:1"))
    p = pydock(busybox_store.root, "load", "-i", str(archive))
    assert p.returncode == 0, p.stderr
    image = busybox_store.get_image("esc:1")
    [lower] = busybox_store.unpacked_lowers(image.diff_ids)
    assert not (outside / "pwned").exists()
    assert os.readlink(lower / "esc") == str(outside)
    assert (Path(os.path.realpath(lower)) / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"


def test_compressed_layers_load(busybox_store, tmp_path):
    """containerd-style archives keep gzip/zstd layer blobs: the diff id is of the plain tar."""
    for i, kind in enumerate(["gzip", "zstd"]):
        archive = write_tar(
            tmp_path / f"{kind}.tar", image_files([ok_layer()], tag=f"c{i}:1", compress=kind)
        )
        p = pydock(busybox_store.root, "load", "-i", str(archive))
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode() == f"Loaded image: c{i}:1\n"
        image = busybox_store.get_image(f"c{i}:1")
        assert image.diff_ids == (sha(ok_layer()),)
        assert busybox_store.blob_path(image.diff_ids[0]).read_bytes() == ok_layer()


def test_unknown_names_are_one_line_errors(busybox_store):
    root = busybox_store.root
    before = snapshot(root)
    for args in (
        ["rmi", "nosuch"],
        ["tag", "nosuch", "x:1"],
        ["inspect", "nosuch"],
        ["history", "nosuch"],
        ["save", "-o", "/dev/null", "nosuch"],
    ):
        p = pydock(root, *args)
        err = p.stderr.decode()
        assert p.returncode == 1, (args, err)
        assert err.count("\n") == 1 and "nosuch" in err and "No such" in err, (args, err)
    p = pydock(root, "tag", "busybox", "Bad Name")
    assert p.returncode == 1 and p.stderr.decode().count("\n") == 1
    assert snapshot(root) == before


def test_a_store_refusal_during_commit_is_rolled_back(busybox_store, tmp_path):
    """Two images; the store refuses the second while committing: nothing of the first stays."""
    from cache.archive import ArchiveError, load_archive

    files = image_files([ok_layer()], tag="one:1")
    second = image_files([layer_tar([reg("two")])], tag="two:1")
    first_items = json.loads(files.pop("manifest.json"))
    second_items = json.loads(second.pop("manifest.json"))
    files.pop("index.json")
    second.pop("index.json")
    files.update(second)
    files["manifest.json"] = json.dumps(first_items + second_items).encode()
    archive = write_tar(tmp_path / "two.tar", files)
    store = busybox_store
    before = snapshot(store.root)
    real = store.write_image
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ArchiveError("injected refusal")
        return real(*args, **kwargs)

    store.write_image = failing
    with pytest.raises(ArchiveError, match="injected"):
        load_archive(store, archive)
    assert len(calls) == 2
    assert snapshot(store.root) == before


def test_a_layer_that_decompresses_beyond_the_free_space_is_refused(
    busybox_store, tmp_path, monkeypatch
):
    import cache.archive

    archive = write_tar(tmp_path / "gz.tar", image_files([ok_layer()], compress="gzip"))
    monkeypatch.setattr(cache.archive, "_room", lambda path: 1000)
    before = snapshot(busybox_store.root)
    with pytest.raises(cache.archive.ArchiveError, match="more than the free space"):
        cache.archive.load_archive(busybox_store, archive)
    assert snapshot(busybox_store.root) == before
