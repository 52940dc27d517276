""".dockerignore: Docker's pattern rules, exceptions, Dockerfile.dockerignore, and the error for
a COPY of an excluded path."""

from __future__ import annotations

import pytest
from build_helpers import build_ctx, image_view, write_files

from builder.context import ContextError
from builder.dockerignore import parse_ignore

RULES = """
# comment
*.md
!README.md
/build
**/*.tmp
./docs/../secret
node_modules
"""


@pytest.mark.parametrize(
    "path,excluded",
    [
        ("a.md", True),
        ("README.md", False),
        ("sub/a.md", False),  # `*` stays in one path element, anchored at the root
        ("build", True),
        ("build/out/x", True),  # a matched folder excludes everything under it
        ("src/build", False),
        ("a/b/c.tmp", True),
        ("c.tmp", True),
        ("secret", True),
        ("docs/secret", False),
        ("node_modules/pkg/index.js", True),
        ("main.py", False),
    ],
)
def test_patterns(path, excluded):
    assert parse_ignore(RULES).excluded(path) is excluded


def test_exception_inside_excluded_folder():
    rules = parse_ignore("logs\n!logs/keep.txt\n")
    assert rules.excluded("logs/a.txt")
    assert not rules.excluded("logs/keep.txt")


DOCKERFILE = "FROM busybox\nCOPY . /ctx/\n"


def test_build_leaves_out_ignored_files(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": DOCKERFILE,
            ".dockerignore": "*.log\nsecret/\n!secret/public.txt\n",
            "app.py": "x\n",
            "debug.log": "no\n",
            "secret/key": "no\n",
            "secret/public.txt": "yes\n",
        },
    )
    res = build_ctx(busybox_store, ctx)
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/ctx/app.py") == "x\n"
    assert view.read_text("/ctx/debug.log") is None
    assert view.read_text("/ctx/secret/key") is None
    assert view.read_text("/ctx/secret/public.txt") == "yes\n"
    # An ignored file changing does not bust the cache.
    (ctx / "debug.log").write_text("changed\n")
    again = build_ctx(busybox_store, ctx)
    assert all(s.cached for s in again.steps)


def test_dockerfile_dockerignore_wins(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": DOCKERFILE,
            "Dockerfile.dockerignore": "b.txt\n",
            ".dockerignore": "a.txt\n",
            "a.txt": "a\n",
            "b.txt": "b\n",
        },
    )
    res = build_ctx(busybox_store, ctx)
    view = image_view(busybox_store, res.image_id)
    assert view.read_text("/ctx/a.txt") == "a\n"
    assert view.read_text("/ctx/b.txt") is None


def test_copy_of_ignored_path_says_so(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(
        ctx,
        {
            "Dockerfile": "FROM busybox\nCOPY debug.log /\n",
            ".dockerignore": "*.log\n",
            "debug.log": "x",
        },
    )
    with pytest.raises(ContextError, match="debug.log exists but is excluded by .dockerignore"):
        build_ctx(busybox_store, ctx)


def test_copy_of_missing_path_names_it(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nCOPY nothere.txt /\n"})
    with pytest.raises(ContextError, match="nothere.txt not found in the build context"):
        build_ctx(busybox_store, ctx)


def test_sources_leaving_the_context_are_refused(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    (tmp_path / "outside.txt").write_text("secret")
    write_files(ctx, {"Dockerfile": "FROM busybox\nCOPY ../outside.txt /\n"})
    with pytest.raises(ContextError, match="outside the build context"):
        build_ctx(busybox_store, ctx)
    (ctx / "link").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(ContextError, match="leads outside the build context"):
        build_ctx(busybox_store, ctx, dockerfile="FROM busybox\nCOPY link /\n")


def test_excluded_folder_is_walked_only_for_a_literal_exception():
    rules = parse_ignore("**/node_modules\n!**/node_modules/keep\nlogs\n!logs/keep.log\n")
    assert not rules.may_include_below("x/node_modules")  # Docker skips it
    assert rules.may_include_below("logs")
