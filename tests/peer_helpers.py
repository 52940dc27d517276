"""Differential testing against the real peers: `buildah bud` and `docker build` (BuildKit).

The same Dockerfile and context (a folder under tests/differential/) are built by pybuild and
by a peer; both images are exported as archives (`pydock save`, `buildah push oci-archive:`,
`docker save`) and read by the same code here, so that what is compared is only what each
builder put in its image:

- the flattened root file system (layers applied in order, whiteouts honoured): per path the
  type, permission bits, owner, symlink target and content digest (mtimes are not compared);
- the config fields a Dockerfile sets (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts,
  Volumes, Labels, StopSignal), with "absent", null and empty treated alike;
- the number of layers each image adds to the base.

A peer that is missing or cannot run here makes the tests skip with the reason; nothing here
ever starts a daemon. Buildah keeps its storage under the test's tmp_path (`--root`,
`--runroot`, the vfs driver, so it mounts nothing); Docker gets uniquely named tags, removed
afterwards.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CASES_DIR = HERE / "differential"
PYBUILD = str(PROJECT / ".venv" / "bin" / "pybuild")
PYDOCK = str(PROJECT / ".venv" / "bin" / "pydock")

# Paths a container runtime may leave behind as mount points of a RUN step (runc creates the
# target of each bind mount it needs when the image lacks it). They are runtime artefacts, not
# build semantics, so they are left out of every comparison.
RUNTIME_ARTEFACTS = frozenset({"etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"})

# The tag of a case's parent image (Case.parent) in every builder.
PARENT_TAG = "diffparent"

# Labels a peer adds on its own (not from the Dockerfile).
PEER_LABELS = frozenset({"io.buildah.version"})

CONFIG_FIELDS = (
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
)
# Top-level fields of the image config.
IMAGE_FIELDS = ("architecture", "os", "author")


# --- reading image archives ---------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One path of a flattened root file system, as far as a build decides it."""

    kind: str  # "file", "dir", "symlink", "char", "block", "fifo"
    mode: int  # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    target: str = ""  # symlink target
    digest: str = ""  # sha256 of a regular file's content
    size: int = 0
    device: tuple[int, int] = (0, 0)  # major, minor of a char or block device

    def describe(self) -> str:
        text = f"{self.kind} {self.mode:04o} {self.uid}:{self.gid}"
        if self.kind == "symlink":
            text += f" -> {self.target}"
        if self.kind == "file":
            text += f" {self.size}B {self.digest[:12]}"
        if self.kind in ("char", "block"):
            text += f" {self.device[0]},{self.device[1]}"
        return text


@dataclass
class ImageDump:
    """What an archive holds for one image: its config and its layers' tar bytes."""

    config: dict
    layers: list[bytes]
    history: list[dict] = field(default_factory=list)

    def rootfs(self) -> dict[str, Entry]:
        return flatten(self.layers)

    def non_empty_history(self) -> int:
        return sum(1 for h in self.history if not h.get("empty_layer"))


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    return data


def read_archive(path: Path) -> ImageDump:
    """Read a docker-save or OCI archive holding one image."""
    with tarfile.open(path) as tf:
        members = {_norm(m.name): m for m in tf.getmembers()}

        def read(name: str) -> bytes:
            m = members[_norm(name)]
            if m.issym():  # docker save links a layer that two images share
                m = members[
                    _norm(os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname)))
                ]
            f = tf.extractfile(m)
            assert f is not None
            return f.read()

        if "manifest.json" in members:
            manifest = json.loads(read("manifest.json"))[0]
            config = json.loads(read(manifest["Config"]))
            layers = [_decompress(read(name)) for name in manifest["Layers"]]
        else:
            index = json.loads(read("index.json"))
            desc = index["manifests"][0]

            def blob(d: dict) -> bytes:
                algo, hexd = d["digest"].split(":", 1)
                return read(f"blobs/{algo}/{hexd}")

            manifest = json.loads(blob(desc))
            if "manifests" in manifest:  # an index inside the index
                manifest = json.loads(blob(manifest["manifests"][0]))
            config = json.loads(blob(manifest["config"]))
            layers = [_decompress(blob(d)) for d in manifest["layers"]]
    return ImageDump(config=config, layers=layers, history=config.get("history", []))


def _norm(name: str) -> str:
    name = name.strip("/")
    while name.startswith("./"):
        name = name[2:]
    return "" if name == "." else name


def flatten(layers: Iterable[bytes]) -> dict[str, Entry]:
    """Apply the layers in order (OCI whiteouts, hard links read as regular files)."""
    fs: dict[str, Entry] = {}
    for data in layers:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            members = tf.getmembers()
            # Whiteouts hide what lower layers hold, whatever their position in this layer.
            for m in members:
                name = _norm(m.name)
                base = name.rsplit("/", 1)[-1]
                parent = name.rsplit("/", 1)[0] if "/" in name else ""
                if base == ".wh..wh..opq":
                    prefix = parent + "/" if parent else ""
                    for p in [p for p in fs if p.startswith(prefix) and p != parent]:
                        del fs[p]
                elif base.startswith(".wh."):
                    gone = (parent + "/" if parent else "") + base[4:]
                    for p in [p for p in fs if p == gone or p.startswith(gone + "/")]:
                        del fs[p]
            for m in members:
                name = _norm(m.name)
                if not name or name.rsplit("/", 1)[-1].startswith(".wh."):
                    continue
                if m.islnk():
                    src = fs.get(_norm(m.linkname))
                    if src is None:
                        raise AssertionError(f"hard link {name} to unknown {m.linkname}")
                    fs[name] = Entry(
                        "file", m.mode & 0o7777, m.uid, m.gid, digest=src.digest, size=src.size
                    )
                    continue
                if m.isdir():
                    kind = "dir"
                elif m.issym():
                    kind = "symlink"
                elif m.isfile():
                    kind = "file"
                elif m.ischr():
                    kind = "char"
                elif m.isblk():
                    kind = "block"
                elif m.isfifo():
                    kind = "fifo"
                else:
                    raise AssertionError(f"{name}: unknown tar member type {m.type!r}")
                if kind != "dir":  # a non-folder replaces a folder and what was under it
                    for p in [p for p in fs if p.startswith(name + "/")]:
                        del fs[p]
                digest, size = "", 0
                if kind == "file":
                    f = tf.extractfile(m)
                    content = f.read() if f else b""
                    digest, size = hashlib.sha256(content).hexdigest(), len(content)
                fs[name] = Entry(
                    kind,
                    m.mode & 0o7777,
                    m.uid,
                    m.gid,
                    target=m.linkname if kind == "symlink" else "",
                    digest=digest,
                    size=size,
                    device=(m.devmajor, m.devminor) if kind in ("char", "block") else (0, 0),
                )
    return fs


def rootfs_diff(
    ours: dict[str, Entry], theirs: dict[str, Entry], ignore: Iterable[str] = ()
) -> list[str]:
    """Human-readable differences between two flattened roots (empty when they match)."""
    skip = RUNTIME_ARTEFACTS | set(ignore)
    out = []
    for path in sorted(set(ours) | set(theirs)):
        if path in skip:
            continue
        a, b = ours.get(path), theirs.get(path)
        if a == b:
            continue
        out.append(
            f"/{path}: pybuild {a.describe() if a else 'absent'}"
            f" | peer {b.describe() if b else 'absent'}"
        )
    return out


def _empty(v: object) -> bool:
    return v is None or v == "" or v == [] or v == {}


def config_fields(config: dict, env_order: bool = True) -> dict[str, object]:
    """The Dockerfile-controlled config fields, normalised (empty == absent)."""
    c = config.get("config") or {}
    out: dict[str, object] = {}
    for name in CONFIG_FIELDS:
        v = c.get(name)
        if name == "Labels" and isinstance(v, dict):
            v = {k: x for k, x in v.items() if k not in PEER_LABELS}
        if name == "Env" and isinstance(v, list) and not env_order:
            v = sorted(v)
        if not _empty(v):
            out[name] = v
    return out


def config_diff(
    ours: dict, theirs: dict, ignore: Iterable[str] = (), env_order: bool = True
) -> list[str]:
    a, b = config_fields(ours, env_order), config_fields(theirs, env_order)
    for k in IMAGE_FIELDS:
        if not _empty(ours.get(k)):
            a[k] = ours[k]
        if not _empty(theirs.get(k)):
            b[k] = theirs[k]
    return [
        f"{k}: pybuild {a.get(k)!r} | peer {b.get(k)!r}"
        for k in (*CONFIG_FIELDS, *IMAGE_FIELDS)
        if a.get(k) != b.get(k) and k not in ignore
    ]


# --- cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    """One Dockerfile + context under tests/differential/<name>/."""

    name: str
    build_args: dict[str, str] = field(default_factory=dict)
    # Adjust the copied context (modes, generated archives): git keeps neither owners nor
    # most mode bits, and binary fixtures are easier to read as code.
    setup: Callable[[Path], None] | None = None
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # A case under tests/differential/ that each builder builds first as PARENT_TAG, for
    # this one to build FROM (ONBUILD triggers, inherited config).
    parent: str | None = None
    # Compare how many layers each image adds (where both builders follow the classic
    # one-layer-per-RUN/COPY/ADD rule).
    compare_layers: bool = True
    # Checks of pybuild's image against Docker's documented behaviour, for where a peer is
    # the odd one out: returns the problems found.
    documented: Callable[[ImageDump], list[str]] | None = None

    def cli_flags(self) -> list[str]:
        """The build flags, in the syntax all three builders share."""
        out = [x for k, v in self.build_args.items() for x in ("--build-arg", f"{k}={v}")]
        out += [x for k, v in self.labels.items() for x in ("--label", f"{k}={v}")]
        return out + (["--target", self.target] if self.target else [])

    @property
    def uses_workdir(self) -> bool:
        return bool(re.search(r"(?im)^\s*WORKDIR\s", (self.source / "Dockerfile").read_text()))

    @property
    def source(self) -> Path:
        return CASES_DIR / self.name

    def materialise(self, dest: Path) -> Path:
        """Copy the case's context to `dest` (run `setup`); return the folder."""
        shutil.copytree(self.source, dest, symlinks=True)
        if self.setup is not None:
            self.setup(dest)
        return dest


def _setup_copy_basic(ctx: Path) -> None:
    (ctx / "script.sh").chmod(0o755)
    (ctx / "secret.txt").chmod(0o600)
    (ctx / "dir" / "sub").chmod(0o750)
    (ctx / "dir" / "empty").mkdir()  # git keeps no empty folders
    (ctx / "dir" / "abs-link").symlink_to("/etc/passwd")


def _setup_copy_setuid(ctx: Path) -> None:
    (ctx / "script.sh").chmod(0o4755)


def _setup_copy_dir_mode(ctx: Path) -> None:
    (ctx / "dir").chmod(0o700)
    (ctx / "dir" / "sub").chmod(0o750)


def _tar(entries: list[tuple[str, str, int, int, int, bytes | str]], compress: bool) -> bytes:
    """A tar of (name, kind, mode, uid, gid, content-or-link-target) with fixed mtimes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, mode, uid, gid, data in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, 1_600_000_000
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tf.addfile(info)
            else:
                raw = data if isinstance(data, bytes) else data.encode()
                info.size = len(raw)
                tf.addfile(info, io.BytesIO(raw))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if compress else raw


TAR_ENTRIES = [
    ("pkg/", "dir", 0o750, 1234, 5678, ""),
    ("pkg/bin/", "dir", 0o755, 0, 0, ""),
    ("pkg/bin/tool", "file", 0o755, 1234, 5678, "#!/bin/sh\necho tool\n"),
    ("pkg/link", "symlink", 0o777, 0, 0, "bin/tool"),
    ("pkg/secret", "file", 0o600, 99, 99, "s3cret\n"),
    ("top.txt", "file", 0o644, 0, 0, "top\n"),
]


def _setup_add_tar(ctx: Path) -> None:
    import bz2
    import lzma

    raw = _tar(TAR_ENTRIES, compress=False)
    (ctx / "archive.tar.gz").write_bytes(gzip.compress(raw, mtime=0))
    (ctx / "archive.tar.bz2").write_bytes(bz2.compress(raw))
    (ctx / "archive.tar.xz").write_bytes(lzma.compress(raw))
    # A gzip of something that is not a tar: ADD copies it as it is.
    (ctx / "single.gz").write_bytes(gzip.compress(b"not a tar\n", mtime=0))
    (ctx / "plain.tar").write_bytes(
        _tar([("a/", "dir", 0o755, 0, 0, ""), ("a/b.txt", "file", 0o640, 3, 4, "b\n")], False)
    )


def file_text(image: ImageDump, path: str) -> str | None:
    """The content of a regular file in the image (None when absent), from the newest layer
    that holds it; a hard link is read through the member it links to."""
    for data in reversed(image.layers):
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            members = {_norm(m.name): m for m in tf.getmembers()}
            m = members.get(path)
            if m is not None and m.islnk():
                m = members.get(_norm(m.linkname))
            if m is not None and m.isfile():
                f = tf.extractfile(m)
                return f.read().decode() if f else ""
    return None


def _setup_add_tar_chown(ctx: Path) -> None:
    (ctx / "archive.tar.gz").write_bytes(_tar(TAR_ENTRIES, compress=True))


def _documented_arg_after_env(image: ImageDump) -> list[str]:
    # "Environment variables defined using the ENV instruction always override an ARG
    # instruction of the same name." (Dockerfile reference, "Using ARG variables")
    problems = []
    if (got := file_text(image, "x.txt")) != "env-wins\n":
        problems.append(f"/x.txt: {got!r}, the docs say ENV wins: 'env-wins\\n'")
    env = (image.config.get("config") or {}).get("Env") or []
    if "Y=env-wins" not in env:
        problems.append(f"Env {env!r} lacks Y=env-wins")
    return problems


def _documented_workdir_user(image: ImageDump) -> list[str]:
    # "If the WORKDIR doesn't exist, it will be created even if it's not used in any
    # subsequent Dockerfile instruction." (Dockerfile reference, WORKDIR)
    fs = image.rootfs()
    return [f"/{p} not created" for p in ("as-user/nested", "as-nobody") if p not in fs]


def _documented_exposed(image: ImageDump) -> list[str]:
    # Docker expands an EXPOSE range into one ExposedPorts key per port.
    ports = (image.config.get("config") or {}).get("ExposedPorts") or {}
    want = {"80/tcp", "443/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"}
    return [] if set(ports) == want else [f"ExposedPorts {sorted(ports)} != {sorted(want)}"]


def _documented_parser_forms(image: ImageDump) -> list[str]:
    # EXPOSE's protocol is tcp or udp; Docker stores it lower-case.
    ports = (image.config.get("config") or {}).get("ExposedPorts") or {}
    return [] if set(ports) == {"8080/tcp"} else [f"ExposedPorts {sorted(ports)}"]


def _documented_shell(image: ImageDump) -> list[str]:
    # "The SHELL instruction allows the default shell used for the shell form of commands
    # to be overridden." (RUN, CMD and ENTRYPOINT shell forms).
    c = image.config.get("config") or {}
    problems = []
    if c.get("Cmd") != ["/bin/ash", "-c", "echo hi"]:
        problems.append(f"Cmd {c.get('Cmd')!r}")
    if c.get("Entrypoint") != ["/bin/ash", "-c", "echo ep"]:
        problems.append(f"Entrypoint {c.get('Entrypoint')!r}")
    if (got := file_text(image, "zero")) != "/bin/ash\n":
        problems.append(f"/zero {got!r}: RUN did not use SHELL")
    return problems


def _expect_files(image: ImageDump, want: dict[str, str]) -> list[str]:
    return [
        f"/{path}: {got!r}, want {text!r}"
        for path, text in want.items()
        if (got := file_text(image, path)) != text
    ]


def _documented_heredoc(image: ImageDump) -> list[str]:
    # Heredocs (Dockerfile reference, "Here-Documents"): a RUN heredoc is the script, a COPY
    # heredoc is the file; a quoted delimiter turns expansion off.
    return _expect_files(
        image,
        {
            "h1": "first\nsecond\n",
            "h2.txt": "hello world\n",
            "h3.txt": "literal $NAME\n",
            "h4": "tabs stripped world\n",
        },
    )


def _documented_volume_changes(image: ImageDump) -> list[str]:
    # "If any build steps change the data within the volume after it has been declared,
    # those changes will be discarded when using the legacy builder. When using Buildkit,
    # the changes will instead be kept." (Dockerfile reference, VOLUME)
    return _expect_files(image, {"vol/after": "after\n", "vol/before": "changed\n"})


def _documented_run_mount(image: ImageDump) -> list[str]:
    return _expect_files(
        image, {"from-bind": "mounted\n", "tmpfs-list": "y\n", "from-cache": "c\n"}
    )


def _documented_workdir_paths(image: ImageDump) -> list[str]:
    # WORKDIR resolves relative paths against the previous one and creates the folder.
    fs = image.rootfs()
    problems = [] if "a/c/d/e/f" in fs else ["/a/c/d/e/f not created"]
    wd = (image.config.get("config") or {}).get("WorkingDir")
    if wd != "/a/c/d/e/f":
        problems.append(f"WorkingDir {wd!r}")
    return problems


def _documented_stage_base(image: ImageDump) -> list[str]:
    # WORKDIR /srv ran (creating it as root) before USER nobody.
    srv = image.rootfs().get("srv")
    return [] if srv and (srv.uid, srv.gid) == (0, 0) else [f"/srv {srv}"]


def _documented_copy_symlinks(image: ImageDump) -> list[str]:
    # Docker resolves the destination inside the image's root, following its symlinks.
    fs = image.rootfs()
    problems = _expect_files(image, {"target/f.txt": "f\n", "file": "f\n"})
    if fs.get("filelink", Entry("absent", 0, 0, 0)).kind != "symlink":
        problems.append("/filelink is no longer a symlink")
    return problems


def _documented_copy_dangling(image: ImageDump) -> list[str]:
    return _expect_files(image, {"missing-target": "f\n", "nowhere/file": "f\n"})


def _documented_copy_setuid(image: ImageDump) -> list[str]:
    # COPY keeps a file's mode, setuid and setgid included (what docker build does).
    fs = image.rootfs()
    want = {"script.sh": 0o4755, "fromstage/s": 0o4755, "fromstage/g": 0o2755}
    return [
        f"/{p}: mode {fs[p].mode:04o}, want {m:04o}" if p in fs else f"/{p} absent"
        for p, m in want.items()
        if p not in fs or fs[p].mode != m
    ]


def _documented_run_mknod(image: ImageDump) -> list[str]:
    fs = image.rootfs()
    want = {"null-copy": ("char", (1, 3)), "blk": ("block", (7, 200))}
    return [
        f"/{p}: {fs[p].describe() if p in fs else 'absent'}"
        for p, (kind, dev) in want.items()
        if p not in fs or (fs[p].kind, fs[p].device) != (kind, dev)
    ]


def _documented_onbuild(image: ImageDump) -> list[str]:
    # ONBUILD triggers run in the child build, right after its FROM, and are not inherited.
    c = image.config.get("config") or {}
    problems = _expect_files(
        image, {"app/child.txt": "child\n", "app/trigger.txt": "triggered 1\n"}
    )
    if "TRIGGERED=yes" not in (c.get("Env") or []):
        problems.append(f"Env {c.get('Env')!r} lacks TRIGGERED=yes")
    if c.get("OnBuild"):
        problems.append(f"OnBuild inherited: {c['OnBuild']!r}")
    return problems


def _documented_run_env(image: ImageDump) -> list[str]:
    # What docker build's RUN gives (BuildKit): HOME from /etc/passwd, umask 0022, the
    # primary group only.
    return _expect_files(
        image,
        {
            "root-env": "HOME=/root USER= TERM= LOGNAME=\n",
            "umask": "0022\n",
            "root-id": "uid=0(root) gid=0(root)\n",
            "tmp/nobody-env": "HOME=/home\n",
            "tmp/4242-id": "uid=4242 gid=0(root)\n",
        },
    )


CASES = [
    Case("copy_basic", setup=_setup_copy_basic),
    Case("copy_dir_mode", setup=_setup_copy_dir_mode),
    Case("copy_chown_chmod"),
    Case("copy_chown_parents"),
    Case("add_tar", setup=_setup_add_tar),
    Case("env_workdir"),
    Case("args", build_args={"Y": "from-cli", "Z": "zcli"}),
    Case("arg_after_env", documented=_documented_arg_after_env),
    Case("multistage"),
    Case("dockerignore"),
    Case("metadata", documented=_documented_exposed),
    Case("entrypoint_cmd"),
    Case("shell_run", documented=_documented_shell),
    Case("heredoc", documented=_documented_heredoc),
    Case("whiteout"),
    Case("user_workdir"),
    Case("workdir_user", documented=_documented_workdir_user),
    Case("add_tar_chown", setup=_setup_add_tar_chown),
    Case("volume_changes", documented=_documented_volume_changes),
    Case("stage_base", documented=_documented_stage_base),
    Case("cmd_forms"),
    Case("run_mount", documented=_documented_run_mount),
    Case("copy_symlinks", documented=_documented_copy_symlinks),
    Case("workdir_paths", documented=_documented_workdir_paths),
    Case("dockerignore_self"),
    Case("run_user"),
    Case("copy_setuid", setup=_setup_copy_setuid, documented=_documented_copy_setuid),
    Case("copy_dangling", documented=_documented_copy_dangling),
    Case("parser_forms", documented=_documented_parser_forms),
    Case("copy_from_wildcard"),
    Case("scratch_stage", documented=lambda image: []),
    Case("env_forms"),
    Case("copy_names"),
    Case("dockerignore_edge"),
    Case("workdir_symlink", documented=lambda image: []),
    Case("replace_kinds"),
    Case("copy_symlink_src"),
    Case(
        "arg_in_flags",
        build_args={"OWNER": "33", "SIG": "SIGUSR1"},
        documented=lambda image: [] if "dest/w" in image.rootfs() else ["/dest/w not created"],
    ),
    Case("dockerignore_prune"),
    Case("run_mknod", documented=_documented_run_mknod),
    Case("run_env", documented=_documented_run_env),
    Case(
        "hardlinks",
        documented=lambda image: _expect_files(
            image, {"h1": "one\ntwo\n", "h2": "one\n", "hd/h3": "one\n"}
        ),
    ),
    Case("onbuild_child", parent="onbuild_parent", documented=_documented_onbuild),
    Case("target_stage", target="mid", labels={"cli.label": "v", "stage": "from-cli"}),
]


def compare(
    case: Case,
    ours: ImageDump,
    theirs: ImageDump,
    peer,  # noqa: ANN001
    ignore_paths: Iterable[str] = (),
    ignore_fields: Iterable[str] = (),
) -> list[str]:
    """Every difference between pybuild's image and the peer's for `case` (less the peer's
    own artefacts and the known quirks named in `ignore_*`)."""
    skip = set(peer.artefacts) | set(ignore_paths)
    diffs = rootfs_diff(ours.rootfs(), theirs.rootfs(), skip)
    diffs += config_diff(ours.config, theirs.config, ignore_fields, peer.env_order)
    layers = case.compare_layers and not (case.uses_workdir and not peer.workdir_layers)
    layers = layers and "layers" not in ignore_fields
    if layers and len(ours.layers) != len(theirs.layers):
        diffs.append(f"layers: pybuild {len(ours.layers)} | peer {len(theirs.layers)}")
    if layers and peer.history_shape:
        # Which history entries are empty (metadata) and which carry a layer, in order.
        shape_a = "".join("." if h.get("empty_layer") else "L" for h in ours.history)
        shape_b = "".join("." if h.get("empty_layer") else "L" for h in theirs.history)
        if shape_a != shape_b:
            diffs.append(f"history (L layer, . empty): pybuild {shape_a} | peer {shape_b}")
    return diffs


# --- builders -------------------------------------------------------------------------------


class PeerUnavailable(Exception):
    """The peer is not installed or cannot run here (the tests skip with this reason)."""


def _run(argv: list[str], *, env: dict | None = None, timeout: int = 300, cwd=None):  # noqa: ANN001
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


class BuildFailed(AssertionError):
    pass


def _check(p: subprocess.CompletedProcess, what: str) -> None:
    if p.returncode != 0:
        raise BuildFailed(f"{what} failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-3000:]}")


class Pybuild:
    """pybuild and pydock as subprocesses over one store root."""

    name = "pybuild"

    def __init__(self, root: Path) -> None:
        self.root = root

    def build(self, ctx: Path, tag: str, flags: list[str], out: Path) -> ImageDump:
        argv = [PYBUILD, "--root", str(self.root), "--progress", "plain", "-t", tag]
        p = _run([*argv, *flags, str(ctx)])
        _check(p, "pybuild")
        p = _run([PYDOCK, "--root", str(self.root), "save", "-o", str(out), tag])
        _check(p, "pydock save")
        return read_archive(out)

    def base_archive(self, out: Path, fmt: str, name: str = "busybox:latest") -> Path:
        """Save our busybox (under `name`) for a peer to load: the same base for both."""
        from cache.archive import save_images
        from cache.store import Store

        store = Store.open(self.root)
        with open(out, "wb") as f:
            save_images(store, [(store.get_image("busybox:latest"), [name])], f, fmt=fmt)
        return out


class Buildah:
    """Debian's buildah with private storage under `work` (vfs: no mounts; runc: crun
    refuses this machine's hybrid cgroups)."""

    name = "buildah"
    # runc creates /run in the image for its mounts when the base lacks it.
    artefacts = frozenset({"run"})
    # buildah moves a redefined variable to the end of Env (Docker keeps its place).
    env_order = False
    # buildah makes no layer for WORKDIR (BuildKit commits the folder it creates).
    workdir_layers = False
    history_shape = True

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = {**os.environ, "TMPDIR": str(work / "tmp")}
        self.base = [
            "buildah",
            "--root",
            str(work / "storage"),
            "--runroot",
            str(work / "run"),
            "--storage-driver",
            "vfs",
        ]

    def _buildah(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return _run([*self.base, *args], env=self.env, timeout=timeout)

    @staticmethod
    def precheck() -> None:
        """Cheap: is there a buildah at all (before any base image is made)?"""
        if shutil.which("buildah") is None:
            raise PeerUnavailable("buildah is not installed")

    def prepare(self, base_oci_archive: Path) -> None:
        self.precheck()
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        try:
            p = self._buildah("pull", "-q", f"oci-archive:{base_oci_archive}", timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PeerUnavailable(f"buildah cannot run: {e}") from None
        if p.returncode != 0:
            raise PeerUnavailable(f"buildah cannot load the base image: {p.stderr.strip()[-300:]}")
        # Smoke: a RUN step needs a working runtime here.
        smoke = self.work / "smoke"
        smoke.mkdir(exist_ok=True)
        (smoke / "Dockerfile").write_text("FROM busybox\nRUN true\n")
        p = self._bud(smoke, "pydock-difftest-smoke", [])
        if p.returncode != 0:
            raise PeerUnavailable(f"buildah cannot run a RUN step here: {p.stderr.strip()[-300:]}")

    def _bud(self, ctx: Path, tag: str, flags: list[str]) -> subprocess.CompletedProcess:
        runtime = ["--runtime", "runc"] if shutil.which("runc") else []
        return self._buildah(
            "bud",
            "--pull=never",
            "--layers",
            # Docker's image format: with OCI's, buildah drops SHELL, HEALTHCHECK, ONBUILD.
            "--format",
            "docker",
            "--network",
            "none",
            *runtime,
            "-t",
            tag,
            *flags,
            str(ctx),
        )

    def build(self, ctx: Path, tag: str, flags: list[str], out: Path) -> ImageDump:
        _check(self._bud(ctx, tag, flags), "buildah bud")
        _check(self._buildah("push", "-q", tag, f"docker-archive:{out}"), "buildah push")
        return read_archive(out)

    def cleanup(self) -> None:
        if shutil.which("buildah") is None or not (self.work / "storage").exists():
            return
        self._buildah("rm", "--all", timeout=60)
        self._buildah("rmi", "--all", "--force", timeout=60)
        # vfs mounts nothing; this is a guard in case a runtime left a mount behind anyway.
        for target in mounts_under(self.work):
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return sorted(found, key=len, reverse=True)


class Docker:
    """Debian's docker client with BuildKit, against a daemon that is already running.

    The base is loaded under a unique name (never touching the user's `busybox` tag) and
    the Dockerfile's `FROM busybox` is rewritten to it; every tag made is removed at the end.
    """

    name = "docker"
    artefacts: frozenset[str] = frozenset()
    env_order = True
    workdir_layers = True
    history_shape = True

    def __init__(self) -> None:
        self.bin = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
        self.env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        self.repo = f"pydock-difftest-{uuid.uuid4().hex[:8]}"
        self.base_name = f"{self.repo}/busybox:latest"
        self.tags: list[str] = []

    def _docker(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return _run([self.bin, *args], env=self.env, timeout=timeout)

    def precheck(self) -> None:
        """Cheap: a docker client and a daemon that answers (before any base is made)."""
        if shutil.which(self.bin) is None:
            raise PeerUnavailable("docker is not installed")
        try:
            p = self._docker("version", "--format", "{{.Server.Version}}", timeout=15)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PeerUnavailable(f"no docker daemon answers: {e}") from None
        if p.returncode != 0:
            raise PeerUnavailable(f"no docker daemon answers: {p.stderr.strip()[-200:]}")

    def prepare(self, base_archive: Path) -> None:
        self.precheck()
        p = self._docker("load", "-q", "-i", str(base_archive), timeout=60)
        if p.returncode != 0:
            raise PeerUnavailable(f"docker cannot load the base image: {p.stderr.strip()}")
        self.tags.append(self.base_name)
        smoke = base_archive.parent / "docker-smoke"
        smoke.mkdir(exist_ok=True)
        (smoke / "Dockerfile").write_text(f"FROM {self.base_name}\nRUN true\n")
        tag = f"{self.repo}/smoke:latest"
        p = self._docker("build", "--network=none", "-q", "-t", tag, str(smoke))
        if p.returncode != 0:
            raise PeerUnavailable(f"docker build (BuildKit) cannot run here: {p.stderr[-300:]}")
        self.tags.append(tag)

    def rewrite(self, ctx: Path) -> Path:
        """A copy of the Dockerfile, outside the context (which must stay as pybuild saw
        it), with `FROM busybox` / `--from=busybox` pointing at the uniquely named base."""
        text = (ctx / "Dockerfile").read_text()
        df = ctx.parent / f"{ctx.name}.Dockerfile"
        text = re.sub(
            r"(?im)^(\s*FROM\s+(?:--platform=\S+\s+)?)busybox(:latest)?(?=\s|$)",
            lambda m: m.group(1) + self.base_name,
            text,
        )
        text = re.sub(
            rf"(?im)^(\s*FROM\s+){PARENT_TAG}(?=\s|$)",
            lambda m: m.group(1) + f"{self.repo}/{PARENT_TAG}:latest",
            text,
        )
        text = re.sub(r"--from=busybox(:latest)?(?=\s)", f"--from={self.base_name}", text)
        df.write_text(text)
        return df

    def build(self, ctx: Path, tag: str, flags: list[str], out: Path) -> ImageDump:
        df = self.rewrite(ctx)
        name = f"{self.repo}/{tag}:latest"
        own = ["--network=none", "-q", "-f", str(df), "-t", name]
        p = self._docker("build", *own, *flags, str(ctx))
        _check(p, "docker build")
        self.tags.append(name)
        _check(self._docker("save", "-o", str(out), name), "docker save")
        return read_archive(out)

    def cleanup(self) -> None:
        if self.tags:
            self._docker("rmi", "--force", *reversed(self.tags), timeout=120)
            self.tags.clear()


def build_both(case: Case, ours: Pybuild, peer, work: Path) -> tuple[ImageDump, ImageDump]:  # noqa: ANN001
    """Build `case` with pybuild and with `peer` (each from its own copy of the context)."""
    work.mkdir(parents=True, exist_ok=True)
    if case.parent:  # the base image the case builds FROM, made by each builder itself
        parent = Case(case.parent)
        flags = parent.cli_flags()
        ours.build(parent.materialise(work / "parent-pybuild"), PARENT_TAG, flags, work / "pa.tar")
        peer.build(parent.materialise(work / "parent-peer"), PARENT_TAG, flags, work / "pb.tar")
    tag = f"diff-{case.name.replace('_', '-')}"
    a = ours.build(case.materialise(work / "ctx-pybuild"), tag, case.cli_flags(), work / "a.tar")
    b = peer.build(case.materialise(work / "ctx-peer"), tag, case.cli_flags(), work / "b.tar")
    return a, b


@dataclass(frozen=True)
class Quirk:
    """Where a peer is the odd one out (per Docker's docs): what to leave out of the
    comparison ("layers" in `fields`: the layer count and history shape); the case's
    `documented` check then judges pybuild's image on its own."""

    reason: str
    paths: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()


def params(differs: dict[str, str], cannot: dict[str, str]) -> list:
    """pytest params for every case: xfail(strict) where pybuild is known to differ, skip
    where the peer cannot build the case at all."""
    import pytest

    out = []
    for case in CASES:
        marks = []
        if case.name in differs:
            reason = f"pybuild differs: {differs[case.name]}"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        if case.name in cannot and case.documented is None:
            marks.append(pytest.mark.skip(reason=cannot[case.name]))
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def check_case(
    case: Case,
    ours: Pybuild,
    peer,  # noqa: ANN001
    work: Path,
    quirks: dict[str, Quirk],
    cannot: dict[str, str],
) -> None:
    """Build `case` with both and fail with every difference not explained by a quirk.
    Where the peer cannot build the case, pybuild's image alone is checked against the
    documented behaviour."""
    if case.name in cannot:
        assert case.documented is not None
        work.mkdir(parents=True, exist_ok=True)
        tag = f"diff-{case.name.replace('_', '-')}"
        a = ours.build(case.materialise(work / "ctx"), tag, case.cli_flags(), work / "a.tar")
        problems = case.documented(a)
        why = f"{case.name} (pybuild alone; {peer.name} cannot: {cannot[case.name]}):\n"
        assert not problems, why + "\n".join(problems)
        return
    a, b = build_both(case, ours, peer, work)
    quirk = quirks.get(case.name)
    diffs = compare(case, a, b, peer, quirk.paths if quirk else (), quirk.fields if quirk else ())
    if quirk and case.documented is not None:
        diffs += [f"against Docker's docs: {p}" for p in case.documented(a)]
    assert not diffs, f"{case.name}: pybuild and {peer.name} differ:\n" + "\n".join(diffs)


def check_both_fail(name: str, ours: Pybuild, peer, work: Path) -> None:  # noqa: ANN001
    """The case `name` (a folder under tests/differential/, not in CASES) is an error for the
    peer; pybuild must refuse it too, as a user error (a message, not an internal error)."""
    case = Case(name)
    tag = f"diff-{name.replace('_', '-')}"
    try:
        peer.build(case.materialise(work / "ctx-peer"), tag, [], work / "b.tar")
    except BuildFailed:
        pass
    else:
        raise AssertionError(f"{peer.name} built {name}: the case expects an error")
    ctx = case.materialise(work / "ctx-pybuild")
    argv = [PYBUILD, "--root", str(ours.root), "--progress", "plain", "-t", tag, str(ctx)]
    p = _run(argv)
    assert p.returncode != 0, f"pybuild built {name}, {peer.name} refused it"
    assert "internal error" not in p.stderr, f"pybuild crashed:\n{p.stderr[-1500:]}"


def main(argv: list[str] | None = None) -> int:
    """By hand: build cases with pybuild and a peer and print every difference, quirks
    included (`.venv/bin/python tests/peer_helpers.py --peer docker copy_basic ...`)."""
    import argparse
    import sys
    import tempfile

    sys.path.insert(0, str(PROJECT))
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--peer", choices=["buildah", "docker"], default="buildah")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (archives)")
    ap.add_argument("cases", nargs="*", help="case names (default: all)")
    args = ap.parse_args(argv)
    from cache.bootstrap import make_busybox
    from cache.store import Store

    work = Path(tempfile.mkdtemp(prefix="pydock-diff-"))
    make_busybox(Store.open(work / "root"), "/bin/busybox")
    ours = Pybuild(work / "root")
    peer: Buildah | Docker
    if args.peer == "buildah":
        peer = Buildah(work / "buildah")
        base = ours.base_archive(work / "base-oci.tar", "oci")
    else:
        peer = Docker()
        base = ours.base_archive(work / "base.tar", "docker", peer.base_name)
    status = 0
    try:
        peer.prepare(base)
        for case in CASES:
            if args.cases and case.name not in args.cases:
                continue
            try:
                a, b = build_both(case, ours, peer, work / case.name)
            except BuildFailed as e:
                print(f"== {case.name}: build failed\n{e}")
                status = 1
                continue
            diffs = compare(case, a, b, peer)
            print(f"== {case.name}: {'same' if not diffs else 'DIFFERENT'}")
            for d in diffs:
                print(f"   {d}")
            status |= bool(diffs)
    except PeerUnavailable as e:
        print(f"{peer.name} unavailable: {e}")
        status = 2
    finally:
        peer.cleanup()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
