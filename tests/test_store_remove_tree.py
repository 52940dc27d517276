"""cache.staging.remove_tree: removes whole trees (read-only folders, devices, deep nests)
without ever following a symlink out of the tree."""

from __future__ import annotations

import os
import stat

from cache.staging import remove_tree


def test_removes_a_tree_and_never_follows_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    tree = tmp_path / "tree"
    deep = tree / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"x" * 10)
    (tree / "link-to-outside").symlink_to(outside)  # a symlink to a folder: removed, not walked
    (tree / "a" / "dangling").symlink_to("/nonexistent")
    os.mknod(tree / "a" / "whiteout", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    os.mkfifo(tree / "a" / "fifo")
    locked = tree / "locked"
    locked.mkdir()
    (locked / "inner").write_text("y")
    os.chmod(locked, 0o500)
    os.chmod(tree / "a", 0o555)

    remove_tree(tree)

    assert not os.path.lexists(tree)
    assert (outside / "keep.txt").read_text() == "precious"


def test_missing_path_and_plain_file(tmp_path):
    remove_tree(tmp_path / "missing")  # no error
    f = tmp_path / "file"
    f.write_text("z")
    remove_tree(f)
    assert not f.exists()
    link = tmp_path / "link"
    link.symlink_to(tmp_path)  # a symlink given as the tree itself: only the link goes
    remove_tree(link)
    assert not os.path.lexists(link) and tmp_path.is_dir()


def test_works_for_a_non_root_user_on_read_only_folders():
    """The removal also works without root's bypass of permissions (run as nobody)."""
    import shutil
    import tempfile
    from pathlib import Path

    tmp_path = Path(tempfile.mkdtemp(prefix="pydock-rmtree-"))  # pytest's tmp is root-only
    os.chmod(tmp_path, 0o755)
    try:
        _remove_as_nobody(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _remove_as_nobody(tmp_path) -> None:  # noqa: ANN001
    tree = tmp_path / "t"
    (tree / "ro" / "sub").mkdir(parents=True)
    (tree / "ro" / "sub" / "f").write_text("x")
    for p in (tmp_path, tree, tree / "ro", tree / "ro" / "sub", tree / "ro" / "sub" / "f"):
        os.chown(p, 65534, 65534)
    os.chmod(tree / "ro" / "sub", 0o500)
    os.chmod(tree / "ro", 0o500)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            remove_tree(tree)
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(2, f"{type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not os.path.lexists(tree)
