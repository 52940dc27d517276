"""One Dockerfile using every instruction, checked by reading the image and running it; ONBUILD
triggers firing in a child build; RUN --mount cache/bind/tmpfs; ADD of tar archives."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest
from build_helpers import build_ctx, image_view, run_image, write_files

DOCKERFILE = """\
FROM busybox
MAINTAINER someone <a@b.c>
ARG VERSION=1.0
ARG UNUSED
LABEL version=$VERSION "with space"="a b"
ENV APP=/opt/app PATH=/opt/app/bin:$PATH
WORKDIR $APP
COPY --chown=nobody:nobody --chmod=750 tool.sh bin/tool
ADD archive.tar.gz /opt/unpacked/
ADD plain.txt /opt/
COPY <<EOF /etc/motd
hello $VERSION
EOF
RUN echo "v=$VERSION" > version
RUN ["/bin/sh", "-c", "echo exec form > /opt/app/exec"]
RUN <<EOF
echo heredoc > /opt/app/heredoc
EOF
SHELL ["/bin/sh", "-ec"]
RUN echo shell > /opt/app/shell
USER nobody
RUN id -u > /tmp/uid
EXPOSE 80 8000-8001/udp
VOLUME ["/data"]
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --retries=3 CMD true
ONBUILD RUN echo triggered > /tmp/onbuild
ENTRYPOINT ["/opt/app/bin/tool"]
CMD ["arg"]
"""


def _targz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.uid = 12
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def built(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": DOCKERFILE,
            "tool.sh": '#!/bin/sh\necho "tool $*"; cat /opt/app/version\n',
            "archive.tar.gz": _targz({"inner/a.txt": b"from tar\n"}),
            "plain.txt": "plain\n",
        },
    )
    return build_ctx(busybox_store, ctx, tags=["every"])


def test_config_of_every_instruction(busybox_store, built):
    cfg = busybox_store.get_image(built.image_id).config
    c = cfg["config"]
    assert cfg["author"] == "someone <a@b.c>"
    assert c["Labels"] == {"version": "1.0", "with space": "a b"}
    assert "APP=/opt/app" in c["Env"]
    assert any(e.startswith("PATH=/opt/app/bin:/usr/local/sbin") for e in c["Env"])
    assert c["WorkingDir"] == "/opt/app"
    assert c["User"] == "nobody"
    assert c["ExposedPorts"] == {"80/tcp": {}, "8000/udp": {}, "8001/udp": {}}
    assert c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGTERM"
    assert c["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"],
        "Interval": 5_000_000_000,
        "Retries": 3,
    }
    assert c["OnBuild"] == ["RUN echo triggered > /tmp/onbuild"]
    assert c["Shell"] == ["/bin/sh", "-ec"]
    assert c["Entrypoint"] == ["/opt/app/bin/tool"]
    assert c["Cmd"] == ["arg"]
    history = cfg["history"]
    non_empty = [h for h in history if not h.get("empty_layer")]
    assert len(non_empty) == len(cfg["rootfs"]["diff_ids"])
    created_by = [h["created_by"] for h in history]
    assert '|1 VERSION=1.0 /bin/sh -c echo "v=$VERSION" > version' in created_by
    assert '/bin/sh -ec #(nop)  CMD ["arg"]' in created_by


def test_filesystem_of_every_instruction(busybox_store, built):
    view = image_view(busybox_store, built.image_id)
    tool = view.lstat("opt/app/bin/tool")
    assert (tool.st_uid, tool.st_gid, tool.st_mode & 0o7777) == (65534, 65534, 0o750)
    assert view.read_text("/opt/unpacked/inner/a.txt") == "from tar\n"
    assert view.lstat("opt/unpacked/inner/a.txt").st_uid == 12  # archives keep their owners
    assert view.read_text("/opt/plain.txt") == "plain\n"
    assert view.lstat("opt/plain.txt").st_uid == 0
    assert view.read_text("/etc/motd") == "hello 1.0\n"
    assert view.read_text("/opt/app/version") == "v=1.0\n"
    assert view.read_text("/opt/app/exec") == "exec form\n"
    assert view.read_text("/opt/app/heredoc") == "heredoc\n"
    assert view.read_text("/opt/app/shell") == "shell\n"
    assert view.read_text("/tmp/uid") == "65534\n"


def test_image_runs_with_entrypoint_and_cmd(busybox_store, built):
    code, out = run_image(busybox_store, built.image_id)
    assert code == 0
    assert out == "tool arg\nv=1.0\n"


def test_onbuild_triggers_fire_in_child(busybox_store, built, tmp_path):
    child = tmp_path / "child"
    write_files(child, {"Dockerfile": "FROM every\nRUN cat /tmp/onbuild\n"})
    res = build_ctx(busybox_store, child)
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/tmp/onbuild") == "triggered\n"
    cfg = busybox_store.get_image(res.image_id).config["config"]
    assert "OnBuild" not in cfg  # triggers fire once, they are not inherited


def test_run_mounts(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": (
                "FROM busybox\n"
                "RUN --mount=type=cache,target=/cache echo run >> /cache/log && cat /cache/log > /count\n"
                "RUN --mount=type=bind,source=data,target=/mnt cp /mnt/d.txt /d.txt\n"
                "RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test ! -e /x\n"
            ),
            "data/d.txt": "bound\n",
        },
    )
    build_ctx(busybox_store, ctx)
    res = build_ctx(busybox_store, ctx, no_cache=True)
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/count") == "run\nrun\n"  # the cache mount outlives a build
    assert view.read_text("/d.txt") == "bound\n"
    assert view.lstat("cache") is None or view.listdir("cache") == {}
    assert view.lstat("scratch") is None or view.listdir("scratch") == {}


def test_add_compressed_archives(busybox_store, tmp_path):
    import bz2
    import lzma

    ctx = tmp_path / "ctx"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tf:
        info = tarfile.TarInfo("x.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"x\n"))
    plain = raw.getvalue()
    files = {
        "Dockerfile": "FROM busybox\n",
        "p.tar": plain,
        "b.tar.bz2": bz2.compress(plain),
        "x.tar.xz": lzma.compress(plain),
    }
    lines = ["ADD p.tar /p/", "ADD b.tar.bz2 /b/", "ADD x.tar.xz /x/"]
    zst = subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True)
    if zst.returncode == 0:
        files["z.tar.zst"] = zst.stdout
        lines.append("ADD z.tar.zst /z/")
    files["Dockerfile"] += "\n".join(lines) + "\n"
    write_files(ctx, files)
    res = build_ctx(busybox_store, ctx)
    view = image_view(busybox_store, res.image_id)
    for d in ("p", "b", "x") + (("z",) if "z.tar.zst" in files else ()):
        assert view.read_text(f"/{d}/x.txt") == "x\n", d


def test_bind_mount_from_stage_and_its_key(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": (
                "FROM busybox AS tools\n"
                "RUN mkdir -p /t && echo tool > /t/a\n"
                "FROM busybox\n"
                "RUN --mount=type=bind,from=tools,source=/t,target=/mnt cat /mnt/a > /a\n"
                "RUN --mount=type=bind,source=in.txt,target=/in.txt cat /in.txt > /in\n"
            ),
            "in.txt": "one\n",
        },
    )
    res = build_ctx(busybox_store, ctx)
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/a") == "tool\n"
    assert view.read_text("/in") == "one\n"
    (ctx / "in.txt").write_text("two\n")
    again = build_ctx(busybox_store, ctx)
    assert again.steps[-1].why == "mount:in.txt changed"
    assert image_view(busybox_store, again.image_id).read_text("/in") == "two\n"


def test_run_heredocs_shebang_and_several(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": (
                "FROM busybox\n"
                "RUN <<EOT\n"
                "#!/bin/sh -e\n"
                'echo "from $0" > /shebang\n'
                "EOT\n"
                "RUN cat <<A <<B > /two\n"
                "first\n"
                "A\n"
                "second\n"
                "B\n"
            )
        },
    )
    res = build_ctx(busybox_store, ctx)
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/shebang") == "from /.pybuild-heredoc-script\n"
    assert view.lstat(".pybuild-heredoc-script") is None  # the script is not left behind
    assert view.read_text("/two") == "second\n"  # the shell reads the last heredoc for stdin


def test_proxy_args_and_stage_arg_inheritance(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": (
                "FROM busybox AS one\n"
                "ARG A=1\n"
                'RUN echo "[$HTTP_PROXY]" > /proxy\n'
                "FROM one\n"
                'RUN echo "[$A]" > /inherited\n'
            )
        },
    )
    res = build_ctx(busybox_store, ctx, build_args={"HTTP_PROXY": "http://p:3128"})
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/proxy") == "[http://p:3128]\n"
    assert view.read_text("/inherited") == "[1]\n"
    history = busybox_store.get_image(res.image_id).config["history"]
    assert not any("HTTP_PROXY=" in h.get("created_by", "") for h in history)
