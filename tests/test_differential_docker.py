"""Differential tests: pybuild against `docker build` with BuildKit on the same inputs.

Skipped when no docker client is installed or no daemon answers (these tests never start a
daemon). The base image is loaded under a unique name, the Dockerfile's `FROM busybox` points
at it, and every tag made is removed afterwards (BuildKit's build cache is left to Docker).
See tests/peer_helpers.py for what is compared, bench/peers.md for setting a daemon up.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from differential.builders import Docker, Pybuild
from differential.cases import CASES, ERROR_CASES
from peer_helpers import (
    PeerUnavailable,
    Quirk,
    check_both_fail,
    check_case,
    error_params,
    params,
)

# Where pybuild is wrong (per Docker's documented behaviour): xfail(strict) until fixed.
PYBUILD_DIFFERS: dict[str, str] = {
    "add_tar_dotdot": "ADD of a local tar with a '../evil.txt' member fails ('leads out of"
    " the root'); Docker extracts it inside DEST (/t/evil.txt), as `tar -x` strips a leading"
    " '../' (the reference: ADD unpacks 'with the same behavior as tar -x'). Refusing is"
    " the safer choice; the owner decides",
    "add_tar_symlink_escape": "ADD of a local tar with 'link -> /etc' then 'link/pwned'"
    " writes /t/etc/pwned (the symlink resolved inside DEST); Docker fails the build"
    " (open /link/pwned: no such file). Nothing escapes either way",
}
# Where this Docker cannot build the case at all (its built-in Dockerfile frontend is
# older); pybuild's image is then checked alone against the documented behaviour.
PEER_CANNOT: dict[str, str] = {
    "heredoc": "Docker 20.10's built-in Dockerfile frontend has no heredocs (dockerfile:1.4,"
    " which would be pulled from a registry)",
}
# Error cases BuildKit (Docker 20.10) accepts although Docker's docs forbid them: only pybuild's refusal
# is checked.
PEER_ACCEPTS: dict[str, str] = {
    "err_multi_source_no_slash": "BuildKit (Docker 20.10) copies several sources into a DEST without a"
    " trailing slash; the reference says 'If multiple <src> resources are specified, ..."
    " <dest> must be a directory, and it must end with a slash /' (the classic builder"
    " refused it, as pybuild does)",
    "err_chown_unknown_user": "BuildKit (Docker 20.10) gives a file 0:0 for COPY --chown=ghost"
    " when /etc/passwd has no such user; buildah and pybuild refuse, as the reference's"
    " --chown section has names looked up in the image's /etc/passwd and /etc/group",
}
# Where Docker is the odd one out: left out of the comparison, and pybuild's image is
# checked against Docker's documented behaviour instead (the case's `documented`).
PEER_QUIRKS: dict[str, Quirk] = {
    "arg_after_env": Quirk(
        "BuildKit lets an ARG declared after an ENV of the same name win in RUN and in"
        " later expansion; the reference says ENV always overrides an ARG of the same name",
        paths=("x.txt",),
        fields=("Env",),
    ),
    "scratch_stage": Quirk(
        "BuildKit writes WorkingDir '/' into an image built FROM scratch; pybuild leaves it"
        " empty, which means '/' too",
        fields=("WorkingDir",),
    ),
    "workdir_symlink": Quirk(
        "BuildKit commits an empty layer (a history entry without empty_layer) for a WORKDIR"
        " whose folder exists already (here through a symlink); pybuild records an empty"
        " history entry, as for any metadata step",
        fields=("layers",),
    ),
    "arg_vs_base_env": Quirk(
        "BuildKit lets an ARG declared in the stage (its default or --build-arg) win over an"
        " ENV of the same name from the base image, in RUN and in expansion; the reference"
        " says ENV always overrides an ARG of the same name (buildah agrees with pybuild)",
        paths=("x", "other"),
        fields=("Env",),
    ),
    "run_mount": Quirk(
        "BuildKit leaves the RUN --mount targets (/mnt, /scratch, /cache) in the image as"
        " empty folders; the docs say nothing, pybuild leaves none",
        paths=("mnt", "scratch", "cache"),
    ),
}


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory):
    if not os.path.isfile("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    try:
        Docker().precheck()
    except PeerUnavailable as e:
        pytest.skip(str(e))
    from cache.bootstrap import make_busybox
    from cache.store import Store

    work = tmp_path_factory.mktemp("diff-docker")
    make_busybox(Store.open(work / "root"), "/bin/busybox")
    ours = Pybuild(work / "root")
    docker = Docker()
    try:
        docker.prepare(ours.base_archive(work / "base.tar", "docker", docker.base_name))
    except PeerUnavailable as e:
        docker.cleanup()
        pytest.skip(str(e))
    yield ours, docker
    docker.cleanup()


@pytest.mark.parametrize("case", params(CASES, PYBUILD_DIFFERS, PEER_CANNOT))
def test_same_image_as_docker(peers, case, tmp_path: Path) -> None:
    ours, peer = peers
    check_case(case, ours, peer, tmp_path, PEER_QUIRKS, PEER_CANNOT)


@pytest.mark.parametrize("case", error_params(ERROR_CASES, PYBUILD_DIFFERS))
def test_both_refuse(peers, case, tmp_path: Path) -> None:
    ours, peer = peers
    check_both_fail(case, ours, peer, tmp_path, PEER_ACCEPTS)
