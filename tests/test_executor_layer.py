"""A RUN-like container run turns into exactly one correct layer (upper dir -> OCI tar)."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import executor_rootfs as er
import pytest
from executor_rootfs import make_busybox_rootfs, sh

from executor.layerdiff import upper_is_empty, upper_to_layer
from executor.spec import Mount

rootfs = er.rootfs
no_leftovers = er.no_leftovers
pytestmark = pytest.mark.usefixtures("no_leftovers")

CHANGES = """
set -e
echo new > /data/new.txt
echo changed > /data/change.txt
rm /data/del.txt
rm -rf /data/dir
rm -rf /data/opq && mkdir /data/opq && echo z > /data/opq/z
echo h > /data/h1 && ln /data/h1 /data/h2
"""


def _data_layer(tmp: Path) -> Path:
    d = tmp / "datalayer"
    (d / "data/dir").mkdir(parents=True)
    (d / "data/opq").mkdir()
    for name in ("keep.txt", "change.txt", "del.txt", "dir/a", "opq/x", "opq/y"):
        (d / "data" / name).write_text(name)
    return d


def _layer(upper: Path, **kw) -> tuple[list[tarfile.TarInfo], bytes, str]:
    buf = io.BytesIO()
    stats = upper_to_layer(upper, buf, **kw)
    data = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getmembers(), data, stats.diff_id


def test_run_produces_one_correct_layer(tmp_path, rootfs):
    lowers = [rootfs, _data_layer(tmp_path)]
    res, _, err = sh(tmp_path, rootfs, CHANGES, lowers=lowers)
    assert res.exit_code == 0, err
    members, _, diff_id = _layer(tmp_path / "upper")
    names = [m.name for m in members]
    assert names == [
        "data",
        "data/.wh.del.txt",
        "data/.wh.dir",
        "data/change.txt",
        "data/h1",
        "data/h2",
        "data/new.txt",
        "data/opq",
        "data/opq/.wh..wh..opq",
        "data/opq/z",
    ]
    by = {m.name: m for m in members}
    assert by["data/h2"].islnk() and by["data/h2"].linkname == "data/h1"
    assert by["data/.wh.dir"].isreg() and by["data/.wh.dir"].size == 0
    assert all(not m.pax_headers.get("SCHILY.xattr.trusted.overlay.opaque") for m in members)
    assert diff_id.startswith("sha256:")


def test_same_changes_give_the_same_diff_id(tmp_path, rootfs):
    data = _data_layer(tmp_path)
    ids = []
    for i in range(2):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        res, _, _ = sh(run_dir, rootfs, CHANGES, lowers=[rootfs, data])
        assert res.exit_code == 0
        ids.append(_layer(run_dir / "upper", source_date_epoch=0)[2])
    assert ids[0] == ids[1]


def test_mount_points_never_reach_the_layer(tmp_path, rootfs):
    """An image without /etc/hosts, /proc, /dev, /sys and a volume on a missing path: the
    stubs made for the mounts are gone from the upper dir after the run."""
    bare = make_busybox_rootfs(tmp_path / "bare")
    for name in ("hosts", "hostname", "resolv.conf"):
        (bare / "etc" / name).unlink()
    for d in ("proc", "dev", "sys"):
        (bare / d).rmdir()
    vol = tmp_path / "vol"
    vol.mkdir()
    res, _, err = sh(
        tmp_path,
        bare,
        "echo x > /vol/data/file; echo 1.2.3.4 x >> /etc/hosts; touch /etc/mine; cat /etc/hostname",
        lowers=[bare],
        mounts=[Mount("/vol/data", source=vol), Mount("/tmpfs/t", type="tmpfs")],
    )
    assert res.exit_code == 0, err
    members, _, _ = _layer(tmp_path / "upper")
    assert [m.name for m in members] == ["etc", "etc/mine"]
    assert (vol / "file").read_text() == "x\n"


def test_mount_stubs_leave_an_untouched_upper_empty(tmp_path, rootfs):
    bare = make_busybox_rootfs(tmp_path / "bare")
    (bare / "etc/hosts").unlink()
    res, _, _ = sh(tmp_path, bare, "true", lowers=[bare])
    assert res.exit_code == 0
    assert upper_is_empty(tmp_path / "upper")


def test_file_capabilities_and_modes_are_kept(tmp_path, rootfs):
    res, _, err = sh(
        tmp_path,
        rootfs,
        "cp /bin/busybox /ping && chown 1000:50 /ping && chmod 4755 /ping && mkdir -m 1777 /shared",
    )
    assert res.exit_code == 0, err
    os.setxattr(tmp_path / "upper/ping", "security.capability", _CAP_NET_RAW)
    members, _, _ = _layer(tmp_path / "upper")
    by = {m.name: m for m in members}
    assert by["ping"].mode == 0o4755 and (by["ping"].uid, by["ping"].gid) == (1000, 50)
    assert by["shared"].mode == 0o1777
    assert "SCHILY.xattr.security.capability" in by["ping"].pax_headers


# vfs_cap_data v2: magic+flags, permitted cap_net_raw (13), inheritable 0
_CAP_NET_RAW = bytes.fromhex("01000002") + (1 << 13).to_bytes(4, "little") + bytes(12)


def test_many_layers_with_deletions_across_them(tmp_path, rootfs):
    lower2 = tmp_path / "l2"
    shutil.copytree(_data_layer(tmp_path), lower2)
    res, _, _ = sh(tmp_path, rootfs, "rm -r /data && mkdir /data", lowers=[rootfs, lower2])
    assert res.exit_code == 0
    members, _, _ = _layer(tmp_path / "upper")
    assert [m.name for m in members] == ["data", "data/.wh..wh..opq"]


def test_renamed_lower_directory_and_metadata_change(tmp_path, rootfs):
    """redirect_dir and metacopy are off: a renamed lower dir is a whiteout plus a full
    copy, a chmod of a lower file carries the file's content."""
    data = _data_layer(tmp_path)
    res, _, err = sh(
        tmp_path,
        rootfs,
        "mv /data/dir /data/moved && chmod 600 /data/keep.txt && ln /data/keep.txt /data/k2",
        lowers=[rootfs, data],
    )
    assert res.exit_code == 0, err
    members, blob, _ = _layer(tmp_path / "upper")
    by = {m.name: m for m in members}
    assert sorted(by) == [
        "data",
        "data/.wh.dir",
        "data/k2",
        "data/keep.txt",
        "data/moved",
        "data/moved/a",
    ]
    # the first name in layer order carries the content, the other links to it
    assert by["data/k2"].size == len("keep.txt") and by["data/k2"].mode == 0o600
    assert by["data/keep.txt"].islnk() and by["data/keep.txt"].linkname == "data/k2"
    assert by["data/moved/a"].size == len("dir/a")
