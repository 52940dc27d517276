"""The solver plans with `builder.dag.plan` only: the same stages on a fresh parse and on a
cached rebuild, a plan per set of build args and target, the planner's errors and warnings."""

from __future__ import annotations

import pytest
from build_helpers import Recorder, build_ctx, image_view, write_files

from builder.errors import DockerfileError
from builder.steps import BuildError

MULTI = """\
ARG BASE=busybox
FROM ${BASE} AS one
RUN echo one > /one
FROM busybox AS two
RUN echo two > /two
FROM one
COPY --from=two /two /two
"""


def test_cached_rebuild_plans_like_a_fresh_one(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": MULTI})
    first = build_ctx(busybox_store, ctx)
    again = build_ctx(busybox_store, ctx)
    assert again.image_id == first.image_id
    assert sorted(s.name for s in again.steps) == sorted(s.name for s in first.steps)
    assert all(s.cached for s in again.steps)
    view = image_view(busybox_store, again.image_id)
    assert view.read_text("/one") == "one\n"
    assert view.read_text("/two") == "two\n"


def test_a_plan_per_target_and_build_args(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": MULTI})
    build_ctx(busybox_store, ctx)  # caches the parse and the plan for no args, no target
    two = build_ctx(busybox_store, ctx, target="two")
    assert image_view(busybox_store, two.image_id).read_text("/one") is None
    with pytest.raises(DockerfileError, match='target stage "nope" could not be found'):
        build_ctx(busybox_store, ctx, target="nope")
    with pytest.raises(Exception, match="nothere"):
        build_ctx(busybox_store, ctx, build_args={"BASE": "nothere"})


def test_unused_build_arg_warned_on_every_build(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nRUN true\n"})
    for _ in range(2):
        progress = Recorder()
        build_ctx(busybox_store, ctx, progress=progress, build_args={"NOPE": "1"})
        assert any("NOPE" in t for t in progress.kinds("info"))


def test_copy_from_a_stage_named_by_an_arg(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    text = (
        "FROM busybox AS src\n"
        "RUN echo from-src > /f\n"
        "FROM busybox\n"
        "ARG STAGE=src\n"
        "COPY --from=${STAGE} /f /f\n"
    )
    write_files(ctx, {"Dockerfile": text})
    res = build_ctx(busybox_store, ctx)
    assert image_view(busybox_store, res.image_id).read_text("/f") == "from-src\n"


def test_from_a_stage_the_plan_could_not_see_is_named_as_such(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    write_files(ctx, {"Dockerfile": "FROM busybox\nENV S=src\n"})
    build_ctx(busybox_store, ctx, tags=["withenv"])
    text = (
        "FROM busybox AS src\n"
        "RUN echo x > /f\n"
        "FROM withenv\n"
        "COPY --from=$S /f /f\n"  # $S comes from the base image's ENV: unknown to the plan
    )
    with pytest.raises(BuildError, match=r"--from=src: stage src \(line 1\) is not built"):
        build_ctx(busybox_store, ctx, text)


def test_from_naming_neither_stage_nor_image_lists_the_stages(busybox_store, tmp_path):
    ctx = tmp_path / "ctx"
    text = "FROM busybox AS src\nFROM busybox\nCOPY --from=nothere /f /f\n"
    with pytest.raises(BuildError, match=r"--from=nothere: not a stage of this Dockerfile"):
        build_ctx(busybox_store, ctx, text)
