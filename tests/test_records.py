"""cache.records.record: the light dataclass of cache/ and executor/ behaves as @dataclass for
what those records use (defaults, factories, compare=False, frozen, repr, eq, hash, asdict)."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from cache.records import FrozenRecordError, asdict, field, fields, record, replace


@record
class Inner:
    n: int = 0


@record
class Plain:
    name: str
    size: int = 3
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    where: Path = Path("/x")


@record(frozen=True)
class Key:
    a: str
    b: tuple[int, ...] = ()
    note: str = field(default="", compare=False)


@dataclasses.dataclass
class PlainDC:
    name: str
    size: int = 3
    tags: list[str] = dataclasses.field(default_factory=list)
    inner: Inner = dataclasses.field(default_factory=Inner)
    where: Path = Path("/x")


def test_init_defaults_and_factories_as_dataclass():
    p = Plain("a")
    assert (p.name, p.size, p.tags, p.inner, p.where) == ("a", 3, [], Inner(0), Path("/x"))
    assert Plain("a").tags is not Plain("a").tags  # a fresh list each time
    q = Plain("b", 5, tags=["t"])
    assert (q.size, q.tags) == (5, ["t"])
    assert Plain.size == 3  # the default is a class attribute, as with dataclasses
    for bad in (lambda: Plain(), lambda: Plain("a", name="b"), lambda: Plain("a", nope=1)):
        with pytest.raises(TypeError):
            bad()
    with pytest.raises(TypeError):
        Plain("a", 1, [], Inner(), Path("/"), "one too many")


def test_repr_eq_match_args_like_dataclass():
    p = Plain("a", tags=["t"])
    d = PlainDC("a", tags=["t"])
    assert repr(p).replace("Plain(", "") == repr(d).replace("PlainDC(", "")
    assert p == Plain("a", tags=["t"]) and p != Plain("a", tags=["u"])
    assert p != d  # another class never compares equal
    assert Plain.__match_args__ == ("name", "size", "tags", "inner", "where")
    with pytest.raises(TypeError):
        hash(p)  # mutable and comparable: unhashable, as a dataclass
    match p:
        case Plain(name, size):
            assert (name, size) == ("a", 3)


def test_frozen_hash_and_compare_false():
    k = Key("x", (1, 2), note="n1")
    assert k == Key("x", (1, 2), note="other")  # note is not compared
    assert hash(k) == hash(Key("x", (1, 2)))
    assert len({k, Key("x", (1, 2)), Key("y")}) == 2
    with pytest.raises(FrozenRecordError):
        k.a = "y"
    with pytest.raises(AttributeError):
        del k.a
    assert pickle.loads(pickle.dumps(k)) == k


def test_an_explicit_hash_is_kept():
    @record(frozen=True)
    class WithDict:
        key: str
        data: dict = field(default_factory=dict)

        def __hash__(self) -> int:
            return hash(self.key)

    assert hash(WithDict("k", {"a": 1})) == hash("k")
    with pytest.raises(TypeError):
        hash(Key("x", ([],)))  # the generated hash hashes the compared fields


def test_asdict_and_fields():
    p = Plain("a", tags=["t"], inner=Inner(7))
    assert asdict(p) == {
        "name": "a",
        "size": 3,
        "tags": ["t"],
        "inner": {"n": 7},
        "where": Path("/x"),
    }
    assert asdict(p)["tags"] is not p.tags
    assert [f.name for f in fields(Plain)] == ["name", "size", "tags", "inner", "where"]
    assert [f.name for f in fields(p)] == [f.name for f in dataclasses.fields(PlainDC)]
    with pytest.raises(TypeError):
        asdict(Plain)


def test_replace_like_dataclasses():
    p = Plain("a", tags=["t"])
    q = replace(p, size=9)
    assert (q.name, q.size, q.tags) == ("a", 9, ["t"]) and p.size == 3
    assert replace(Key("x", note="n"), a="y") == Key("y")
    with pytest.raises(TypeError):
        replace(p, nope=1)


def test_refuses_what_it_does_not_support():
    with pytest.raises(TypeError, match="follows a default"):

        @record
        class Bad:
            a: int = 1
            b: int

    with pytest.raises(TypeError, match="inherit"):

        @record
        class Child(Inner):
            m: int = 0

    with pytest.raises(TypeError, match="__post_init__"):

        @record
        class Post:
            a: int = 0

            def __post_init__(self) -> None:
                pass


def test_pydock_run_path_imports_no_dataclasses(busybox_store):
    """The point of records: `pydock run` never imports dataclasses (nor inspect)."""
    import subprocess
    import sys

    from container_helpers import REPO

    probe = (
        "import sys\n"
        "sys.argv = ['pydock', '--root', sys.argv[1], 'run', '--rm', 'busybox', 'true']\n"
        "from frontend.pydock import main\n"
        "code = main()\n"
        "bad = [m for m in ('dataclasses', 'inspect') if m in sys.modules]\n"
        "print(code, bad)\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe, str(busybox_store.root)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "0 []"


def test_a_cached_build_imports_no_dataclasses(busybox_store, tmp_path):
    """pybuild's rebuild path (solver, steps, context, progress) is made of records too."""
    import subprocess
    import sys

    from container_helpers import REPO

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("x\n")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY f.txt /f.txt\nRUN cat /f.txt\n")
    probe = (
        "import sys\n"
        "sys.argv = ['pybuild', '--root', sys.argv[1], '-q', '-t', 'probe', sys.argv[2]]\n"
        "from frontend.pybuild import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print([m for m in ('dataclasses', 'inspect') if m in sys.modules])\n"
    )
    argv = [sys.executable, "-c", probe, str(busybox_store.root), str(ctx)]
    first = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)  # all cached
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == "[]"
