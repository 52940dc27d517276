"""The differential cases: one per folder of tests/differential/ (Dockerfile and context),
with what git cannot keep (modes, empty folders, generated archives) made by a `setup`, and
for cases where a peer is the odd one out a `documented` check of pybuild's image against
what Docker documents (or, where the docs are silent, what docker build does).

A check returns the problems it found (an empty list when the image is right).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from peer_helpers import Case, Entry, ImageDump, file_text


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


def _setup_add_tar_chown(ctx: Path) -> None:
    (ctx / "archive.tar.gz").write_bytes(_tar(TAR_ENTRIES, compress=True))


def _setup_add_tar_dotdot(ctx: Path) -> None:
    entries = [
        ("ok.txt", "file", 0o644, 0, 0, "ok\n"),
        ("../evil.txt", "file", 0o644, 0, 0, "evil\n"),
    ]
    (ctx / "dotdot.tar").write_bytes(_tar(entries, compress=False))


def _setup_add_tar_symlink_escape(ctx: Path) -> None:
    entries = [
        ("link", "symlink", 0o777, 0, 0, "/etc"),
        ("link/pwned", "file", 0o644, 0, 0, "pwned\n"),
    ]
    (ctx / "symlink.tar").write_bytes(_tar(entries, compress=False))


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


def _documented_wildcard_no_match(image: ImageDump) -> list[str]:
    # BuildKit (docker build's default builder) lets a wildcard source match nothing: the
    # COPY copies nothing and the build goes on (moby/moby#26332; buildah#5742 asks buildah
    # to do the same). The classic builder refused it.
    fs = image.rootfs()
    problems = _expect_files(image, {"after": "after\n"})
    return problems + (["/x created"] if "x" in fs else [])


def _documented_stage_names(image: ImageDump) -> list[str]:
    # Stage names are case-insensitive; the automatic platform ARGs (TARGETARCH, ...) are
    # set for this machine (Dockerfile reference, "Automatic platform ARGs").
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    problems = _expect_files(
        image,
        {
            "platform": f"{arch} linux/{arch} linux\n",
            "second": "second\n",
            "by-index": "second\n",
        },
    )
    env = (image.config.get("config") or {}).get("Env") or []
    return problems + ([] if "OS_SEEN=linux" in env else [f"Env {env!r} lacks OS_SEEN=linux"])


def _documented_arg_scoping(image: ImageDump) -> list[str]:
    # "An ARG variable declared inside a build stage is automatically inherited by other
    # stages based on that stage" (Dockerfile reference, "Scope", since BuildKit's docs fix
    # moby/buildkit#5381; what docker build with BuildKit does). A global ARG is seen in a
    # stage only once redeclared there.
    return _expect_files(
        image,
        {
            "not-redeclared": "[]\n",
            "redeclared": "[global]\n",
            "chain": "7 72 723\n",
            "child-stage": "[global] [7]\n",
        },
    )


def _documented_arg_vs_base_env(image: ImageDump) -> list[str]:
    # ENV always overrides an ARG of the same name, also an ENV the base image set.
    problems = _expect_files(image, {"x": "base\n", "other": "o\n"})
    env = (image.config.get("config") or {}).get("Env") or []
    return problems + ([] if "Y=base" in env else [f"Env {env!r} lacks Y=base"])


CASES = [
    Case("copy_basic", setup=_setup_copy_basic),
    Case("copy_dir_mode", setup=_setup_copy_dir_mode),
    Case("copy_chown_chmod"),
    Case("copy_chown_parents"),
    Case("add_tar", setup=_setup_add_tar),
    Case("env_workdir"),
    Case("args", build_args={"Y": "from-cli", "Z": "zcli"}),
    Case(
        "proxy_args",
        build_args={
            "UNDECL": "x",
            "HTTP_PROXY": "http://p:1",
            "https_proxy": "http://q:2",
            "NO_PROXY": "local",
        },
    ),
    Case("arg_after_env", documented=_documented_arg_after_env),
    Case(
        "arg_vs_base_env",
        parent="env_parent",
        build_args={"OTHER": "cli"},
        documented=_documented_arg_vs_base_env,
    ),
    Case("arg_scoping", build_args={"A": "7"}, documented=_documented_arg_scoping),
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
    Case("metadata_edge"),
    Case("stage_names", documented=_documented_stage_names),
    Case("add_tar_dotdot", setup=_setup_add_tar_dotdot),
    Case("wildcard_optional"),
    Case("wildcard_no_match", documented=_documented_wildcard_no_match),
    Case(
        "hardlinks",
        documented=lambda image: _expect_files(
            image, {"h1": "one\ntwo\n", "h2": "one\n", "hd/h3": "one\n"}
        ),
    ),
    Case("onbuild_child", parent="onbuild_parent", documented=_documented_onbuild),
    Case("target_stage", target="mid", labels={"cli.label": "v", "stage": "from-cli"}),
]

# Folders under tests/differential/ that both builders must refuse; pybuild with a message
# (a user error, exit code 1), never an internal error.
ERROR_CASES = [
    "copy_symlink_loop",
    "copy_symlink_outside",
    "err_missing_source",
    "err_multi_source_no_slash",
    "err_outside_context",
    "err_run_fails",
    "err_workdir_on_file",
    "err_unknown_instruction",
    "err_copy_into_file",
    "err_copy_ignored",
    "err_required_var",
    "err_chown_unknown_user",
    "err_run_unknown_user",
    "err_env_no_value",
    "err_unknown_stage_index",
    Case("add_tar_symlink_escape", setup=_setup_add_tar_symlink_escape),
]
