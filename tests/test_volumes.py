"""Volumes: named and anonymous, image VOLUMEs seeded from the image, --volumes-from, and
their lifetime (they outlive containers until `rm -v`, `volume rm` or `volume prune`)."""

from __future__ import annotations

import json

import pytest
from container_helpers import Pydock, leftovers_check

from executor.volumes import BadVolumeSpec, parse_volume_spec


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    """Every test: no container left running, no mount or cgroup left behind."""
    yield
    leftovers_check(tmp_path / "root", tmp_path)


@pytest.fixture
def pyd(busybox_store):
    return Pydock(busybox_store.root)


def test_volume_spec_grammar():
    assert parse_volume_spec("/data").type == "volume" and parse_volume_spec("/data").source == ""
    v = parse_volume_spec("cache:/var/cache:ro")
    assert (v.type, v.source, v.destination, v.rw) == ("volume", "cache", "/var/cache", False)
    b = parse_volume_spec("/host/dir:/ctr")
    assert (b.type, b.source, b.destination, b.rw) == ("bind", "/host/dir", "/ctr", True)
    for bad in ("relative", "a:b:c:d", "/h:/c:bogus", "./rel:/c", "name:/"):
        with pytest.raises(BadVolumeSpec):
            parse_volume_spec(bad)


def test_volume_commands(pyd):
    assert pyd.ok("volume", "create", "data") == "data\n"
    assert pyd.ok("volume", "create", "data") == "data\n"  # idempotent, as Docker
    assert pyd.ok("volume", "ls", "-q") == "data\n"
    assert pyd.ok("volume", "ls").splitlines()[0].split() == ["DRIVER", "VOLUME", "NAME"]
    info = json.loads(pyd.ok("volume", "inspect", "data"))[0]
    assert info["Name"] == "data" and info["Driver"] == "local"
    assert info["Mountpoint"].endswith("/volumes/data/_data")
    p = pyd("volume", "inspect", "nope")
    assert p.returncode == 1 and "no such volume" in p.stderr
    p = pyd("volume", "create", "bad/name")
    assert p.returncode != 0 and "invalid characters" in p.stderr
    assert pyd.ok("volume", "rm", "data") == "data\n"
    assert pyd.ok("volume", "ls", "-q") == ""


def test_named_volume_shared_and_in_use(pyd):
    pyd.ok(
        "run", "--name", "writer", "-v", "shared:/srv", "busybox", "sh", "-c", "echo kept > /srv/f"
    )
    assert pyd.ok("run", "--rm", "-v", "shared:/mnt:ro", "busybox", "cat", "/mnt/f") == "kept\n"
    p = pyd("volume", "rm", "shared")
    assert p.returncode == 1 and "volume is in use" in p.stderr
    pyd.ok("rm", "-v", "writer")  # -v removes anonymous volumes only
    assert pyd.ok("volume", "ls", "-q") == "shared\n"
    assert pyd.ok("volume", "prune").startswith("Total reclaimed space")
    assert pyd.ok("volume", "ls", "-q") == "shared\n"  # prune keeps named volumes without -a
    pyd.ok("volume", "prune", "-a")
    assert pyd.ok("volume", "ls", "-q") == ""


def test_anonymous_volumes_outlive_their_container_until_rm_v(pyd):
    pyd.ok("run", "--name", "a1", "-v", "/data", "busybox", "sh", "-c", "echo x > /data/x")
    pyd.ok("run", "--name", "a2", "-v", "/data", "busybox", "true")
    vols = pyd.ok("volume", "ls", "-q").split()
    assert len(vols) == 2 and all(len(v) == 64 for v in vols)
    pyd.ok("rm", "a1")
    assert len(pyd.ok("volume", "ls", "-q").split()) == 2
    pyd.ok("rm", "-v", "a2")
    assert len(pyd.ok("volume", "ls", "-q").split()) == 1
    out = pyd.ok("volume", "prune")
    assert out.startswith("Deleted Volumes:")
    assert pyd.ok("volume", "ls", "-q") == ""
    pyd.ok("run", "--rm", "-v", "/tmpvol", "busybox", "true")
    assert pyd.ok("volume", "ls", "-q") == ""  # --rm takes its anonymous volumes along


def test_image_volume_is_seeded_from_the_image(pyd):
    pyd.ok(
        "run", "--name", "base", "busybox", "sh", "-c", "mkdir /conf; echo default > /conf/app.ini"
    )
    pyd.ok("commit", "-c", "VOLUME /conf", "base", "withvol")
    pyd.ok("rm", "base")
    out = pyd.ok(
        "run",
        "--name",
        "user",
        "withvol",
        "sh",
        "-c",
        "cat /conf/app.ini; echo changed > /conf/app.ini",
    )
    assert out == "default\n"
    info = json.loads(pyd.ok("inspect", "user"))[0]
    (mount,) = info["Mounts"]
    assert mount["Type"] == "volume" and mount["Destination"] == "/conf"
    # The change went to the volume, not to the container's layer.
    assert "app.ini" not in pyd.ok("diff", "user")
    assert (
        pyd.ok("run", "--rm", "--volumes-from", "user", "busybox", "cat", "/conf/app.ini")
        == "changed\n"
    )
    pyd.ok("rm", "-v", "user")
    assert pyd.ok("volume", "ls", "-q") == ""


def test_volumes_from_read_only(pyd):
    pyd.ok("create", "--name", "store", "-v", "/vol", "busybox", "true")
    p = pyd("run", "--rm", "--volumes-from", "store:ro", "busybox", "touch", "/vol/x")
    assert p.returncode != 0 and "Read-only" in p.stderr
    pyd.ok("run", "--rm", "--volumes-from", "store:rw", "busybox", "touch", "/vol/x")
    p = pyd("run", "--rm", "--volumes-from", "nobody-here", "busybox", "true")
    assert p.returncode == 125 and "No such container: nobody-here" in p.stderr
    pyd.ok("rm", "-v", "store")


def test_cp_reaches_the_volumes_of_a_stopped_container(pyd, tmp_path):
    pyd.ok(
        "run", "--name", "holder", "-v", "/data", "busybox", "sh", "-c", "echo in-volume > /data/f"
    )
    pyd.ok("cp", "holder:/data/f", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "in-volume\n"
    (tmp_path / "g").write_text("put\n")
    pyd.ok("cp", str(tmp_path / "g"), "holder:/data/")
    out = pyd.ok("run", "--rm", "--volumes-from", "holder", "busybox", "cat", "/data/g")
    assert out == "put\n"
    assert "/data" not in pyd.ok("diff", "holder")  # went to the volume, not the layer
    p = pyd("cp", "holder:/data/../../../x", str(tmp_path / "x"))
    assert p.returncode == 1 and "leaves the container" in p.stderr
    pyd.ok("rm", "-v", "holder")
