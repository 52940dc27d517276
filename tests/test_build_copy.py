"""ADD/COPY semantics: files, folder contents, wildcards, several sources, --chown/--chmod,
--link, symlinked destinations, ADD of a URL with --checksum."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest
from build_helpers import build_ctx, image_view, write_files

from builder.copy import CopyError
from builder.solver import BuildError

FILES = {
    "a.txt": "a\n",
    "b.txt": "b\n",
    "c.md": "c\n",
    "dir/x": "x\n",
    "dir/sub/y": "y\n",
}


def _build(store, tmp_path, dockerfile, files=FILES):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": dockerfile, **files})
    res = build_ctx(store, ctx)
    return res, image_view(store, res.image_id)


def test_files_dirs_wildcards(busybox_store, tmp_path):
    _, view = _build(
        busybox_store,
        tmp_path,
        "FROM busybox\n"
        "COPY a.txt /one/\n"  # into a folder (trailing /)
        "COPY a.txt /renamed\n"  # to a file name
        "COPY dir /d\n"  # a folder's contents, not the folder
        "COPY *.txt /many/\n"
        "COPY a.txt b.txt /two/\n"
        "WORKDIR /w\n"
        "COPY a.txt rel/\n"  # relative to WORKDIR
        "COPY a.txt /etc\n",  # an existing folder: into it
    )
    assert view.read_text("/one/a.txt") == "a\n"
    assert view.read_text("/renamed") == "a\n"
    assert view.read_text("/d/x") == "x\n" and view.read_text("/d/sub/y") == "y\n"
    assert view.lstat("d/dir") is None
    assert sorted(view.listdir("many")) == ["a.txt", "b.txt"]
    assert sorted(view.listdir("two")) == ["a.txt", "b.txt"]
    assert view.read_text("/w/rel/a.txt") == "a\n"
    assert view.read_text("/etc/a.txt") == "a\n"
    assert view.read_text("/etc/passwd").startswith("root:")  # the folder kept its content


def test_several_sources_need_a_folder(busybox_store, tmp_path):
    with pytest.raises((CopyError, BuildError), match="must be a directory and end with a /"):
        _build(busybox_store, tmp_path, "FROM busybox\nCOPY a.txt b.txt /two\n")


def test_chown_chmod(busybox_store, tmp_path):
    _, view = _build(
        busybox_store,
        tmp_path,
        "FROM busybox\nCOPY --chown=1000 a.txt /n/\nCOPY --chown=nobody:root --chmod=700 dir /o/\n",
    )
    st = view.lstat("n/a.txt")
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    st = view.lstat("o/sub/y")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 0, 0o700)
    assert view.lstat("o/sub").st_mode & 0o777 == 0o700


def test_unknown_chown_user(busybox_store, tmp_path):
    with pytest.raises(BuildError, match="unable to find user ghost"):
        _build(busybox_store, tmp_path, "FROM busybox\nCOPY --chown=ghost a.txt /\n")


def test_copy_through_symlinked_parent(busybox_store, tmp_path):
    _, view = _build(
        busybox_store,
        tmp_path,
        "FROM busybox\nRUN mkdir /real && ln -s /real /link\nCOPY a.txt /link/\n",
    )
    assert view.read_text("/real/a.txt") == "a\n"
    assert view.lstat("link").st_mode & 0o170000 == 0o120000  # still a symlink


def test_link_layer_does_not_depend_on_parent(busybox_store, tmp_path):
    res1, _ = _build(busybox_store, tmp_path, "FROM busybox\nCOPY --link a.txt /l/\n")
    res2, view = _build(busybox_store, tmp_path, "FROM busybox\nENV X=1\nCOPY --link a.txt /l/\n")
    assert view.read_text("/l/a.txt") == "a\n"
    # The key of a --link COPY leaves the parent out: the layer is reused on another parent.
    assert res2.steps[-1].cached
    assert res1.steps[-1].diff_id == res2.steps[-1].diff_id


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.txt").write_text("downloaded\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_add_url_with_checksum(busybox_store, tmp_path, http_server):
    good = "sha256:" + hashlib.sha256(b"downloaded\n").hexdigest()
    _, view = _build(
        busybox_store,
        tmp_path,
        f"FROM busybox\nADD --checksum={good} {http_server}/file.txt /dl/\n"
        f"ADD {http_server}/file.txt /named\n",
    )
    assert view.read_text("/dl/file.txt") == "downloaded\n"
    assert view.lstat("dl/file.txt").st_mode & 0o777 == 0o600
    assert view.read_text("/named") == "downloaded\n"
    bad = "sha256:" + "0" * 64
    with pytest.raises(BuildError, match="checksum mismatch"):
        _build(
            busybox_store,
            tmp_path,
            f"FROM busybox\nADD --checksum={bad} {http_server}/file.txt /x\n",
        )


def test_add_url_unfetchable(busybox_store, tmp_path, http_server):
    with pytest.raises(CopyError, match="cannot fetch it"):
        _build(busybox_store, tmp_path, f"FROM busybox\nADD {http_server}/missing.txt /x\n")


def test_exclude_and_parents(busybox_store, tmp_path):
    _, view = _build(
        busybox_store,
        tmp_path,
        "FROM busybox\n"
        "COPY --exclude=sub dir /ex/\n"
        "COPY --exclude=*.md . /all/\n"
        "COPY --parents dir/sub/y a.txt /p/\n",
    )
    assert view.read_text("/ex/x") == "x\n" and view.lstat("ex/sub") is None
    assert view.read_text("/all/a.txt") == "a\n" and view.lstat("all/c.md") is None
    assert view.read_text("/p/dir/sub/y") == "y\n"
    assert view.read_text("/p/a.txt") == "a\n"


def test_copy_from_an_image(busybox_store, tmp_path):
    res, view = _build(
        busybox_store,
        tmp_path,
        "FROM scratch\nCOPY --from=busybox:latest /etc/passwd /etc/group /etc/\n",
    )
    assert view.read_text("/etc/passwd").startswith("root:")
    assert view.read_text("/etc/group").startswith("root:")
    with pytest.raises(BuildError, match="not in the local store"):
        _build(busybox_store, tmp_path, "FROM scratch\nCOPY --from=nosuch:1 /x /x\n")


def test_destination_through_a_file_is_refused(busybox_store, tmp_path):
    with pytest.raises(BuildError, match="/etc/passwd is not a directory in the image"):
        _build(busybox_store, tmp_path, "FROM busybox\nCOPY a.txt /etc/passwd/x\n")


def test_wildcard_matching_nothing_copies_nothing(busybox_store, tmp_path):
    _, view = _build(
        busybox_store, tmp_path, "FROM busybox\nCOPY a.txt maybe*.lock /y/\nCOPY *.nomatch /x/\n"
    )
    assert sorted(view.listdir("y")) == ["a.txt"]
    assert view.lstat("x") is None
