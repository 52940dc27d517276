"""Differential testing against the real peers: `buildah bud` and `docker build` (BuildKit).

The same Dockerfile and context (a folder under tests/differential/, the cases listed in
tests/differential/cases.py) are built by pybuild and by a peer (tests/differential/
builders.py); both images are exported as archives (`pydock save`, `buildah push
docker-archive:`, `docker save`) and read by the same code here, so that what is compared is
only what each builder put in its image:

- the flattened root file system (layers applied in order, whiteouts honoured): per path the
  type, permission bits, owner, symlink target, device numbers and content digest (mtimes
  are not compared);
- the config fields a Dockerfile sets (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts,
  Volumes, Labels, StopSignal, Healthcheck, OnBuild, Shell; os, architecture, author), with
  "absent", null and empty treated alike;
- the number of layers each image adds to the base and which history entries carry one.

Where a peer is the odd one out (a `Quirk`), the paths and fields concerned are left out and
the case's `documented` check judges pybuild's image on its own. A peer that is missing or
cannot run here makes the tests skip with the reason; nothing here ever starts a daemon.

By hand: `.venv/bin/python tests/peer_helpers.py --peer docker|buildah [CASE...]` prints
every difference, the quirks included (see bench/peers.md).
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


# --- running builders ------------------------------------------------------------------------


class PeerUnavailable(Exception):
    """The peer is not installed or cannot run here (the tests skip with this reason)."""


def run_tool(argv: list[str], *, env: dict | None = None, timeout: int = 300, cwd=None):  # noqa: ANN001
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


class BuildFailed(AssertionError):
    pass


def check_ok(p: subprocess.CompletedProcess, what: str) -> None:
    if p.returncode != 0:
        raise BuildFailed(f"{what} failed ({p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-3000:]}")


def build_both(case: Case, ours, peer, work: Path) -> tuple[ImageDump, ImageDump]:  # noqa: ANN001
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


def params(cases: list[Case], differs: dict[str, str], cannot: dict[str, str]) -> list:
    """pytest params for every case: xfail(strict) where pybuild is known to differ, skip
    where the peer cannot build the case at all (and there is no documented check)."""
    import pytest

    out = []
    for case in cases:
        marks = []
        if case.name in differs:
            reason = f"pybuild differs: {differs[case.name]}"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        if case.name in cannot and case.documented is None:
            marks.append(pytest.mark.skip(reason=cannot[case.name]))
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


def error_params(cases: list, differs: dict[str, str]) -> list:
    """pytest params for the error cases (a name or a Case each): xfail(strict) where
    pybuild is known to differ."""
    import pytest

    out = []
    for case in cases:
        name = case if isinstance(case, str) else case.name
        marks = []
        if name in differs:
            reason = f"pybuild differs: {differs[name]}"
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        out.append(pytest.param(case, id=name, marks=marks))
    return out


def check_case(
    case: Case,
    ours,  # noqa: ANN001
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


def check_both_fail(
    case: Case | str,
    ours,  # noqa: ANN001
    peer,  # noqa: ANN001
    work: Path,
    peer_accepts: dict[str, str] | None = None,
) -> None:
    """The case (or the folder `case` under tests/differential/) is an error for the peer; pybuild must refuse it too, as a user error (a message, not an internal error).
    Where the peer accepts what Docker's docs forbid (`peer_accepts`: name -> why), only
    pybuild's refusal is checked."""
    if isinstance(case, str):
        case = Case(case)
    name = case.name
    tag = f"diff-{name.replace('_', '-')}"
    if name not in (peer_accepts or {}):
        try:
            peer.build(case.materialise(work / "ctx-peer"), tag, [], work / "b.tar")
        except BuildFailed:
            pass
        else:
            raise AssertionError(f"{peer.name} built {name}: the case expects an error")
    ctx = case.materialise(work / "ctx-pybuild")
    argv = [PYBUILD, "--root", str(ours.root), "--progress", "plain", "-t", tag, str(ctx)]
    p = run_tool(argv)
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
    from differential.builders import Buildah, Docker, Pybuild
    from differential.cases import CASES

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
    # Through the module's import name, so that its exceptions are the ones the builders
    # (which import peer_helpers) raise.
    import peer_helpers

    raise SystemExit(peer_helpers.main())
