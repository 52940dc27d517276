"""The image commands end to end: bootstrap, images, tag, rmi, inspect, history, image *, system
df/prune, each run as `.venv/bin/pydock --root <tmp> ...`."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from cache.prune import disk_usage, prune
from cache.store import Store

PYDOCK = str(Path(__file__).resolve().parent.parent / ".venv" / "bin" / "pydock")


def pydock(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYDOCK, "--root", str(root), *args], input=stdin, capture_output=True, text=True
    )


def ok(root: Path, *args: str) -> str:
    p = pydock(root, *args)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout


def fake_container(store: Store, image, status: str = "exited") -> str:
    """A container record as the executor writes it (config.json + state.json)."""
    cid = secrets.token_hex(32)
    d = store.root / "containers" / cid
    d.mkdir(parents=True)
    config = {
        "Id": cid,
        "Name": f"c{cid[:6]}",
        "Created": 1700000000.0,
        "Image": str(image.image_id),
        "ImageName": image.tags[0] if image.tags else "",
        "Path": "sh",
        "Args": [],
        "Config": {"Cmd": ["sh"]},
        "HostConfig": {},
        "Mounts": [],
        "DiffIDs": [str(d) for d in image.diff_ids],
    }
    (d / "config.json").write_text(json.dumps(config))
    (d / "state.json").write_text(json.dumps({"status": status, "exit_code": 0}))
    (d / "upper").mkdir()
    return cid


@pytest.mark.skipif(not os.path.isfile("/bin/busybox"), reason="busybox-static is not installed")
def test_bootstrap_then_images(tmp_path):
    root = tmp_path / "root"
    out = ok(root, "bootstrap", "busybox")
    image_id = out.split()[-1]
    assert out.startswith("busybox:latest sha256:")
    lines = ok(root, "images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert len(lines) == 2
    assert re.fullmatch(
        r"busybox\s+latest\s+[0-9a-f]{12}\s+\d+ years ago\s+\d[\d.]*[kM]B", lines[1]
    ), lines[1]
    assert lines[1].split()[2] == image_id[7:19]
    # the bootstrap is reproducible: a second root gets the same image id
    assert ok(tmp_path / "again", "bootstrap", "busybox").split()[-1] == image_id


def test_images_flags(busybox_store):
    root = busybox_store.root
    image = busybox_store.get_image("busybox")
    assert ok(root, "images", "-q") == f"{image.short_id}\n"
    assert ok(root, "images", "-q", "--no-trunc") == f"{image.image_id}\n"
    digests = ok(root, "images", "--digests").splitlines()
    assert digests[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"]
    assert digests[1].split()[2] == image.manifest_digest
    [line] = ok(root, "images", "--format", "json").splitlines()
    obj = json.loads(line)
    assert obj["Repository"] == "busybox" and obj["Tag"] == "latest"
    assert obj["ID"] == image.short_id and obj["Digest"] == image.manifest_digest
    assert obj["CreatedAt"] == "1970-01-01 00:00:00 +0000 UTC" and obj["Size"].endswith("MB")
    assert (
        ok(root, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
        == f"busybox:latest {image.short_id}\n"
    )
    table = ok(root, "images", "--format", "table {{.Repository}}\t{{.Tag}}").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG"] and table[1].split() == ["busybox", "latest"]
    assert ok(root, "image", "ls", "-q") == f"{image.short_id}\n"
    assert ok(root, "images", "nosuchrepo").split() == [
        "REPOSITORY",
        "TAG",
        "IMAGE",
        "ID",
        "CREATED",
        "SIZE",
    ]
    assert ok(root, "images", "-q", "busybox:latest") == f"{image.short_id}\n"
    # filters
    cfg = {k: v for k, v in image.config.items() if k != "rootfs"}
    cfg["config"] = {"Labels": {"tier": "web"}}
    cfg["created"] = "2024-05-05T00:00:00Z"
    newer = busybox_store.write_image(cfg, image.diff_ids, tags=["web:1"])
    assert ok(root, "images", "-q", "-f", "label=tier=web") == f"{newer.short_id}\n"
    assert ok(root, "images", "-q", "--filter", "label=tier") == f"{newer.short_id}\n"
    assert ok(root, "images", "-q", "-f", "since=busybox") == f"{newer.short_id}\n"
    assert ok(root, "images", "-q", "-f", "before=web:1") == f"{image.short_id}\n"
    assert ok(root, "images", "-q", "-f", "dangling=true") == ""
    assert ok(root, "images", "-q", "-f", "reference=bus*") == f"{image.short_id}\n"
    p = pydock(root, "images", "-f", "colour=blue")
    assert p.returncode == 1 and "invalid filter" in p.stderr


def test_tag_and_rmi_untag_versus_delete(busybox_store):
    root = busybox_store.root
    image = busybox_store.get_image("busybox")
    assert ok(root, "tag", "busybox", "me/box:1") == ""
    assert ok(root, "tag", image.short_id, "localhost:5000/box") == ""
    rows = ok(root, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert sorted(rows) == ["busybox:latest", "localhost:5000/box:latest", "me/box:1"]
    # one of several tags: only untag
    assert ok(root, "rmi", "me/box:1") == "Untagged: me/box:1\n"
    # by id with two tags left: refused unless -f (Docker's rule)
    p = pydock(root, "rmi", image.short_id)
    assert p.returncode == 1 and "referenced in multiple repositories" in p.stderr
    assert ok(root, "rmi", "localhost:5000/box") == "Untagged: localhost:5000/box:latest\n"
    # last tag: untag and delete
    out = ok(root, "image", "rm", "busybox")
    assert out == f"Untagged: busybox:latest\nDeleted: {image.image_id}\n"
    assert ok(root, "images", "-q") == ""


def test_rmi_refuses_an_image_a_container_uses(busybox_store):
    root = busybox_store.root
    image = busybox_store.get_image("busybox")
    cid = fake_container(busybox_store, image)
    p = pydock(root, "rmi", "busybox")
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert f"container {cid[:12]} is using its referenced image {image.short_id}" in p.stderr
    running = fake_container(busybox_store, image, status="running")
    p = pydock(root, "rmi", "-f", "busybox")
    assert p.returncode == 1 and "being used by running container" in p.stderr
    import shutil

    shutil.rmtree(root / "containers" / running)
    assert ok(root, "rmi", "-f", "busybox").endswith(f"Deleted: {image.image_id}\n")
    # the container's layers survive a prune: it still needs them
    prune(busybox_store, all_images=True)
    assert busybox_store.has_blob(image.diff_ids[0])
    assert busybox_store.unpacked_lowers(image.diff_ids)


def test_inspect_image_shape_and_format(busybox_store):
    root = busybox_store.root
    image = busybox_store.get_image("busybox")
    [obj] = json.loads(ok(root, "inspect", "busybox"))
    for key in (
        "Id",
        "RepoTags",
        "RepoDigests",
        "Parent",
        "Comment",
        "Created",
        "Author",
        "Config",
        "Architecture",
        "Os",
        "Size",
        "RootFS",
        "History",
        "Metadata",
    ):
        assert key in obj, key
    assert obj["Id"] == image.image_id and obj["RepoTags"] == ["busybox:latest"]
    assert obj["RepoDigests"] == [f"busybox@{image.manifest_digest}"]
    assert obj["RootFS"] == {"Type": "layers", "Layers": list(image.diff_ids)}
    assert obj["Config"]["Cmd"] == ["sh"] and obj["Config"]["Entrypoint"] is None
    for key in (
        "Hostname",
        "Domainname",
        "User",
        "Env",
        "WorkingDir",
        "Volumes",
        "Labels",
        "OnBuild",
    ):
        assert key in obj["Config"], key
    assert obj["Size"] == busybox_store.blob_size(image.diff_ids[0])
    assert ok(root, "inspect", "-f", "{{.Id}}", "busybox") == f"{image.image_id}\n"
    assert (
        ok(root, "inspect", "--format", "{{json .Config.Cmd}} {{.Os}}/{{.Architecture}}", "busybox")
        == '["sh"] linux/amd64\n'
    )
    assert (
        ok(root, "image", "inspect", "-f", "{{index .RepoTags 0}}", image.short_id)
        == "busybox:latest\n"
    )
    p = pydock(root, "inspect", "--type", "container", "busybox")
    assert p.returncode == 1 and "No such container: busybox" in p.stderr
    p = pydock(root, "inspect", "busybox", "nosuch")
    assert (
        p.returncode == 1
        and len(json.loads(p.stdout)) == 1
        and "No such object: nosuch" in p.stderr
    )


def test_inspect_container(busybox_store):
    image = busybox_store.get_image("busybox")
    cid = fake_container(busybox_store, image)
    [obj] = json.loads(ok(busybox_store.root, "inspect", cid[:12]))
    assert obj["Id"] == cid and obj["Image"] == image.image_id
    assert (
        ok(busybox_store.root, "inspect", "--type", "container", "-f", "{{.Id}}", cid) == cid + "\n"
    )


def test_history(busybox_store):
    root = busybox_store.root
    image = busybox_store.get_image("busybox")
    lines = ok(root, "history", "busybox").splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert len(lines) == 2 and lines[1].startswith(image.short_id)
    assert "pydock bootstrap busybox" in lines[1] and "…" in lines[1]
    assert "…" not in ok(root, "history", "--no-trunc", "busybox")
    assert ok(root, "history", "-q", "busybox") == f"{image.short_id}\n"
    assert ok(root, "image", "history", "-q", "--no-trunc", "busybox") == f"{image.image_id}\n"
    obj = json.loads(ok(root, "history", "--format", "json", "busybox"))
    assert obj["ID"] == image.short_id and obj["Size"].endswith("MB")


def test_history_of_a_multi_step_image_marks_missing_and_empty(busybox_store):
    image = busybox_store.get_image("busybox")
    cfg = {k: v for k, v in image.config.items() if k != "rootfs"}
    cfg["history"] = list(cfg["history"]) + [
        {
            "created": "2024-01-01T00:00:00Z",
            "created_by": "/bin/sh -c #(nop)  ENV A=1",
            "empty_layer": True,
        }
    ]
    busybox_store.write_image(cfg, image.diff_ids, tags=["child:1"])
    lines = ok(busybox_store.root, "history", "child:1").splitlines()
    assert len(lines) == 3
    assert lines[1].split()[-1] == "0B" and "ENV A=1" in lines[1]
    assert lines[2].startswith("<missing>") and lines[2].split()[-1].endswith("MB")


def test_system_df_and_prune(busybox_store):
    root = busybox_store.root
    image = busybox_store.get_image("busybox")
    out = ok(root, "system", "df").splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in out[1:]] == ["Images", "Containers", "Local", "Build"]
    assert out[1].split()[1:3] == ["1", "0"]
    # a dangling image, a stray blob, a stale build-cache entry and an unpacked layer of nothing
    cfg = {k: v for k, v in image.config.items() if k != "rootfs"}
    cfg["config"] = {"Cmd": ["true"]}
    dangling = busybox_store.write_image(cfg, image.diff_ids)
    stray = busybox_store.put_blob(b"stray blob")
    (root / "buildcache" / ("0" * 32 + ".json")).write_text(
        json.dumps(
            {
                "key": "0" * 32,
                "parts": [],
                "result": {"diff_id": "sha256:" + "1" * 64},
                "created": 0,
            }
        )
    )
    (root / "buildcache" / ("2" * 32 + ".json")).write_text(
        json.dumps(
            {"key": "2" * 32, "parts": [], "result": {"diff_id": image.diff_ids[0]}, "created": 0}
        )
    )
    # what this (live) process added is leased, a GC root for other processes: let it go
    busybox_store.release_lease()
    verbose = ok(root, "system", "df", "-v")
    assert "Images space usage:" in verbose and "Build cache usage:" in verbose
    line = [ln for ln in verbose.splitlines() if ln.startswith("busybox")][0]
    assert line.split()[-1] == "0"  # no container uses it
    rows = {r.kind: r for r in disk_usage(busybox_store)}
    assert rows["Images"].total == 2 and rows["Build Cache"].total == 2
    p = pydock(root, "system", "prune", stdin="n\n")
    assert p.returncode == 0 and "Are you sure" in p.stdout
    assert busybox_store.has_blob(stray)
    out = ok(root, "system", "prune", "-f")
    assert f"deleted: {dangling.image_id}" in out and "Total reclaimed space:" in out
    assert not busybox_store.has_blob(stray)
    assert not (root / "buildcache" / ("0" * 32 + ".json")).exists()
    assert (root / "buildcache" / ("2" * 32 + ".json")).exists()
    assert busybox_store.get_image("busybox").image_id == image.image_id
    assert busybox_store.has_blob(image.diff_ids[0]) and busybox_store.has_blob(
        image.manifest_digest
    )
    # -a removes every image no container uses, then everything they held
    busybox_store.unpacked_lowers(image.diff_ids)
    busybox_store.release_lease()
    out = ok(root, "system", "prune", "-a", "-f")
    assert "untagged: busybox:latest" in out
    assert ok(root, "images", "-q") == ""
    assert list((root / "blobs" / "sha256").iterdir()) == []
    assert list((root / "layers").iterdir()) == [] and list((root / "l").iterdir()) == []
    assert not list((root / "buildcache").glob("*.json"))
    assert json.loads((root / "index.json").read_text())["manifests"] == []


@pytest.mark.parametrize("empty_dirs", [True, False])
def test_prune_is_robust_to_missing_dirs(store, empty_dirs):
    import shutil

    if not empty_dirs:
        shutil.rmtree(store.root / "containers")
        shutil.rmtree(store.root / "buildcache")
    report = prune(store)
    assert report.deleted_images == [] and report.reclaimed == 0
    assert [r.total for r in disk_usage(store)] == [0, 0, 0, 0]


TEMPLATE_DATA = {
    "Id": "sha256:abc",
    "RepoTags": ["a:1", "b:2"],
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"x": "1", "y": "2"}, "Cmd": None},
    "Size": 12,
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{.Id}}", "sha256:abc"),
        ("{{range .RepoTags}}{{.}} {{end}}", "a:1 b:2 "),
        ("{{range $i, $t := .RepoTags}}{{$i}}={{$t}};{{end}}", "0=a:1;1=b:2;"),
        ("{{range $k, $v := .Config.Labels}}{{$k}}:{{$v}},{{end}}", "x:1,y:2,"),
        ("{{if .Config.Cmd}}yes{{else}}no{{end}}", "no"),
        ("{{if eq .Size 13}}a{{else if eq .Size 12}}b{{else}}c{{end}}", "b"),
        ('{{with .Config}}{{join .Env ","}}{{end}}', "A=1,B=2"),
        ("{{.Id | upper}}", "SHA256:ABC"),
        ("{{json .Config.Labels}}", '{"x":"1","y":"2"}'),
        ('{{index .Config.Labels "x"}} {{index .Config.Labels "z"}}', "1 <no value>"),
        ('{{printf "%s-%d" .Id .Size}}', "sha256:abc-12"),
        ("{{len .RepoTags}} {{.Config.Env}} {{.Config.Labels}}", "2 [A=1 B=2] map[x:1 y:2]"),
        ("{{range .Nope}}x{{else}}empty{{end}}", "empty"),
        ('a\\tb {{- " c" -}} d', "a\tb cd"),
        ("{{(index .RepoTags 1) | upper}}", "B:2"),
    ],
)
def test_format_templates(template, expected):
    from frontend.gotemplate import render_template

    assert render_template(template, TEMPLATE_DATA) == expected


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{if .Id}}x", "missing {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{nosuch .Id}}", 'function "nosuch" not defined'),
        ("{{.Id.Foo}}", "can't evaluate field Foo"),
    ],
)
def test_bad_templates_are_one_line_errors(template, message, busybox_store):
    from frontend.gotemplate import TemplateError, render_template

    with pytest.raises(TemplateError, match=re.escape(message)):
        render_template(template, TEMPLATE_DATA)
    p = pydock(busybox_store.root, "inspect", "-f", template, "busybox")
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and message in p.stderr


def test_system_prune_removes_stopped_containers_image_prune_does_not(busybox_store):
    root = busybox_store.root
    p = pydock(root, "create", "--name", "idle", "busybox", "true")
    if p.returncode != 0:
        pytest.skip(f"pydock create is not available: {p.stderr.strip()}")
    cid = p.stdout.strip()
    out = ok(root, "image", "prune", "-a", "-f")
    assert "busybox" not in out  # a container uses it
    assert (root / "containers" / cid).exists()
    out = ok(root, "system", "prune", "-f")
    assert out.startswith(f"Deleted Containers:\n{cid}\n")
    assert not (root / "containers" / cid).exists()
    out = ok(root, "image", "prune", "-a", "-f")
    assert "untagged: busybox:latest" in out


def test_image_group_aliases(busybox_store, tmp_path):
    root = busybox_store.root
    image = busybox_store.get_image("busybox")
    assert ok(root, "image", "tag", "busybox", "grp:1") == ""
    out = tmp_path / "g.tar"
    assert ok(root, "image", "save", "-o", str(out), "grp:1") == ""
    fresh = tmp_path / "fresh"
    assert ok(fresh, "image", "load", "-i", str(out)) == "Loaded image: grp:1\n"
    assert ok(fresh, "image", "list", "-q") == f"{image.short_id}\n"
    rootfs = tmp_path / "rootfs.tar"
    subprocess.run(
        ["tar", "-C", str(busybox_store.root / "l"), "-cf", str(rootfs), "--files-from=/dev/null"],
        check=True,
    )
    new_id = ok(fresh, "image", "import", str(rootfs), "empty:1").strip()
    assert ok(fresh, "images", "-q", "--no-trunc", "empty") == f"{new_id}\n"
    assert ok(fresh, "image", "remove", "empty:1").endswith(f"Deleted: {new_id}\n")
    p = pydock(root, "image")
    assert p.returncode == 1 and "COMMAND" in p.stdout
