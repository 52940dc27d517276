"""The build context: content keys (path, mode, owner, content; never mtime), the stat cache
persisted in the store, symlinks, and a walk limited to what a COPY reads."""

from __future__ import annotations

import json
import os

from builder.context import BuildContext, stat_cache_path
from builder.dockerignore import IgnoreRules


def _ctx(tmp_path, root=None):
    ctx = tmp_path / "ctx"
    store = tmp_path / "store"
    return ctx, BuildContext(ctx, IgnoreRules(), stat_cache_path(store, ctx))


def test_content_keys(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d" / "f").write_text("one")

    def key() -> str:
        c = BuildContext(ctx)
        return c.content_key(c.resolve("d")[0])

    k1 = key()
    os.utime(ctx / "d" / "f", (5, 5))
    assert key() == k1  # mtime is not in the key
    os.chmod(ctx / "d" / "f", 0o600)
    k2 = key()
    assert k2 != k1  # mode is
    os.chown(ctx / "d" / "f", 12, 34)
    k3 = key()
    assert k3 != k2  # owner is
    (ctx / "d" / "f").write_text("two")
    assert key() != k3  # content is
    os.rename(ctx / "d" / "f", ctx / "d" / "g")
    assert key() != k3  # the name is


def test_stat_cache_persists_and_catches_same_size_edits(tmp_path):
    ctx, c = _ctx(tmp_path)
    ctx.mkdir()
    (ctx / "a").write_text("aaaa")
    k1 = c.content_key(c.resolve("a")[0])
    c.save_stat_cache()
    path = stat_cache_path(tmp_path / "store", ctx)
    cached = json.loads(path.read_text())
    assert list(cached) == ["a"] and len(cached["a"]) == 5
    # Same size, mtime put back: ctime still changes, so the edit is seen.
    st = os.stat(ctx / "a")
    (ctx / "a").write_text("bbbb")
    os.utime(ctx / "a", ns=(st.st_atime_ns, st.st_mtime_ns))
    c2 = BuildContext(ctx, IgnoreRules(), path)
    assert c2.content_key(c2.resolve("a")[0]) != k1


def test_walk_reads_only_the_folder_copied(tmp_path):
    ctx, c = _ctx(tmp_path)
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "x").write_text("x")
    (ctx / "other").mkdir()
    (ctx / "other" / "y").write_text("y")
    c.content_key(c.resolve("app")[0])
    assert c._walk is None and list(c._walks) == ["app"]
    assert list(c.files("app")) == ["app/x"]


def test_symlink_inside_context_is_followed(tmp_path):
    ctx, c = _ctx(tmp_path)
    (ctx / "real").mkdir(parents=True)
    (ctx / "real" / "f").write_text("f")
    (ctx / "link").symlink_to("real")
    src = c.resolve("link")[0]
    assert src.rel == "real" and src.is_dir
