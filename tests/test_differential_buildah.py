"""Differential tests: pybuild against Debian's `buildah bud --layers` on the same inputs.

Skipped when buildah is not installed or cannot run a RUN step here. Buildah's storage lives
under the module's tmp dir (vfs driver: nothing is mounted) and is removed afterwards.
See tests/peer_helpers.py for what is compared, bench/peers.md for setting buildah up.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from differential.builders import Buildah, Pybuild
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
    " the root'); Docker and buildah extract it inside DEST (/t/evil.txt), as `tar -x` strips a leading"
    " '../' (the reference: ADD unpacks 'with the same behavior as tar -x'). Refusing is"
    " the safer choice; the owner decides",
    "add_tar_symlink_escape": "ADD of a local tar with 'link -> /etc' then 'link/pwned'"
    " writes /t/etc/pwned (the symlink resolved inside DEST); Docker and buildah fail the build"
    " (open /link/pwned: no such file). Nothing escapes either way",
}
# Where buildah 1.28 cannot build the case at all (pybuild's image is then checked alone
# against the documented behaviour when the case has such a check).
PEER_CANNOT: dict[str, str] = {
    "heredoc": "buildah 1.28 has no heredoc support (added in 1.33): it reads the body as"
    " instructions",
    "run_mknod": "buildah's RUN has no CAP_MKNOD here (mknod: Operation not permitted)",
    "stage_names": "buildah 1.28 matches stage names case-sensitively (COPY --from=build of"
    " 'AS Build': no stage found) and leaves the automatic platform ARGs unset",
    "wildcard_no_match": "buildah 1.28 refuses a wildcard matching nothing (buildah#5742),"
    " as the classic builder did; BuildKit accepts it",
}
# Error cases buildah 1.28 accepts although Docker's docs forbid them: only pybuild's refusal
# is checked.
PEER_ACCEPTS: dict[str, str] = {
    "err_multi_source_no_slash": "buildah 1.28 copies several sources into a DEST without a"
    " trailing slash; the reference says 'If multiple <src> resources are specified, ..."
    " <dest> must be a directory, and it must end with a slash /' (the classic builder"
    " refused it, as pybuild does)",
}
# Where buildah is the odd one out: left out of the comparison, and pybuild's image is
# checked against Docker's documented behaviour instead (the case's `documented`).
PEER_QUIRKS: dict[str, Quirk] = {
    "entrypoint_cmd": Quirk(
        "buildah records ONBUILD in the history; BuildKit (Docker 20.10) adds no entry for it,"
        " and pybuild follows Docker",
        fields=("layers",),
    ),
    "onbuild_child": Quirk(
        "the parent's WORKDIR makes no layer in buildah, and buildah records ONBUILD in the"
        " history; the files and config match",
        fields=("layers",),
    ),
    "run_env": Quirk(
        "buildah's RUN sets the user's supplementary groups (id prints groups=0(root));"
        " Docker's RUN has none",
        paths=("root-id", "tmp/4242-id", "tmp/nobody-id"),
    ),
    "arg_scoping": Quirk(
        "buildah 1.28 does not pass a stage's ARGs on to a stage built FROM it (fixed in"
        " imagebuilder#304, 2025); the reference and BuildKit do",
        paths=("child-stage",),
    ),
    "hardlinks": Quirk(
        "buildah on the vfs driver (chosen here so that nothing is mounted) keeps hard links"
        " shared across steps, so appending to /h1 changes /h2 too; overlay-based builders"
        " (Docker's overlay2, pybuild) break the link on copy-up",
        paths=("h2", "hd/h3"),
    ),
    "metadata": Quirk(
        "buildah keeps an EXPOSE range as one key '8000-8002/tcp'; Docker expands it",
        fields=("ExposedPorts",),
    ),
    "parser_forms": Quirk(
        "buildah keeps EXPOSE 8080/TCP upper-case; Docker lower-cases the protocol",
        fields=("ExposedPorts",),
    ),
    "shell_run": Quirk(
        "buildah ignores SHELL for the shell form of CMD and ENTRYPOINT (uses /bin/sh -c)",
        fields=("Cmd", "Entrypoint"),
    ),
    "workdir_user": Quirk(
        "buildah creates no WORKDIR folder that no later step uses; Docker's docs say it is"
        " created even if not used",
        paths=("as-user", "as-user/nested", "as-nobody"),
    ),
    "arg_in_flags": Quirk(
        "buildah creates no WORKDIR folder that no later step uses",
        paths=("dest/w",),
    ),
    "workdir_paths": Quirk(
        "buildah creates no WORKDIR folder that no later step uses",
        paths=("a", "a/c", "a/c/d", "a/c/d/e", "a/c/d/e/f"),
    ),
    "stage_base": Quirk(
        "buildah creates WORKDIR /srv only when a later COPY --chown=nobody writes there,"
        " so it is owned by nobody",
        paths=("srv",),
    ),
    "volume_changes": Quirk(
        "buildah discards changes made under a VOLUME after it is declared (the legacy"
        " builder's rule); BuildKit keeps them",
        paths=("vol/after", "vol/before"),
    ),
    "run_mount": Quirk(
        "buildah leaves the bind mount's parent folder /mnt in the image",
        paths=("mnt",),
    ),
    "copy_symlinks": Quirk(
        "buildah replaces a destination symlink to a file by the file; Docker writes"
        " through it (resolving the destination in the image's root)",
        paths=("file", "filelink"),
    ),
    "copy_dangling": Quirk(
        "buildah makes a folder at the target of a dangling destination symlink and copies"
        " into it; Docker writes the file at the target",
        paths=("missing-target", "missing-target/f.txt", "nowhere/file", "nowhere/file/f.txt"),
    ),
    "copy_setuid": Quirk(
        "buildah drops setuid from files of the build context (not from other stages)",
        paths=("script.sh",),
    ),
}


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory):
    if not os.path.isfile("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    try:
        Buildah.precheck()
    except PeerUnavailable as e:
        pytest.skip(str(e))
    from cache.bootstrap import make_busybox
    from cache.store import Store

    work = tmp_path_factory.mktemp("diff-buildah")
    make_busybox(Store.open(work / "root"), "/bin/busybox")
    ours = Pybuild(work / "root")
    buildah = Buildah(work / "buildah")
    try:
        buildah.prepare(ours.base_archive(work / "base-oci.tar", "oci"))
    except PeerUnavailable as e:
        buildah.cleanup()
        pytest.skip(str(e))
    yield ours, buildah
    buildah.cleanup()


@pytest.mark.parametrize("case", params(CASES, PYBUILD_DIFFERS, PEER_CANNOT))
def test_same_image_as_buildah(peers, case, tmp_path: Path) -> None:
    ours, peer = peers
    check_case(case, ours, peer, tmp_path, PEER_QUIRKS, PEER_CANNOT)


@pytest.mark.parametrize("case", error_params(ERROR_CASES, PYBUILD_DIFFERS))
def test_both_refuse(peers, case, tmp_path: Path) -> None:
    ours, peer = peers
    check_both_fail(case, ours, peer, tmp_path, PEER_ACCEPTS)
