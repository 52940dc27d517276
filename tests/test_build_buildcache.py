"""cache/buildcache.py: keys of named parts, atomic entries, closest entry, explanations, prune."""

from __future__ import annotations

from cache.buildcache import BuildCache, CacheEntry, explain_miss, step_key


def test_key_depends_on_every_part_and_its_name():
    base = [("parent", "p"), ("instruction", "RUN x")]
    assert step_key(base) == step_key(list(base))
    assert step_key(base) != step_key([("parent", "p"), ("instruction", "RUN y")])
    assert step_key([("a", "bc")]) != step_key([("ab", "c")])
    assert len(step_key(base)) == 32  # xxh3-128 hex


def test_lookup_write_closest_and_explain(tmp_path):
    (tmp_path / "tmp").mkdir()
    bc = BuildCache(tmp_path)
    parts = [("parent", "p"), ("instruction", "COPY app/ /app/"), ("src:app", "k1")]
    key = step_key(parts)
    assert bc.lookup(key) is None
    bc.write(CacheEntry(key, parts, {"diff_id": None}, detail={"src:app": {"app/a": "1"}}))
    assert bc.lookup(key).parts == parts
    new = [("parent", "p"), ("instruction", "COPY app/ /app/"), ("src:app", "k2")]
    closest = bc.closest(new)
    assert closest is not None and closest.key == key
    assert explain_miss(new, closest) == "src:app changed"
    detail = {"src:app": {"app/a": "2", "app/b": "3"}}
    assert explain_miss(new, closest, detail) == "src:app/a changed, src:app/b added"
    other_parent = [("parent", "q"), *new[1:]]
    assert explain_miss(other_parent, bc.closest(other_parent)) == "parent changed"
    assert explain_miss(new, None) == "not built before"
    assert [e.key for e in bc.list()] == [key]
    assert list((tmp_path / "tmp").iterdir()) == []  # staged files were renamed away


def test_prune(tmp_path):
    (tmp_path / "tmp").mkdir()
    bc = BuildCache(tmp_path)
    for i, diff in enumerate(["sha256:" + "a" * 64, "sha256:" + "b" * 64, None]):
        parts = [("parent", str(i)), ("instruction", "X")]
        bc.write(CacheEntry(step_key(parts), parts, {"diff_id": diff}))
    removed, _ = bc.prune(lambda d: d.endswith("a"))
    assert removed == 1 and len(bc.list()) == 2
    removed, _ = bc.prune()
    assert removed == 2 and bc.list() == []
