"""The stage graph: stages, edges, ARG scoping as Docker documents it, --target pruning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from builder.dag import PROXY_ARGS, ArgScope, expansion_env, plan
from builder.instructions import ArgInstruction, CopyInstruction, expand_instruction
from builder.parser import parse

ROOT = Path(__file__).parent.parent

MULTI = """\
ARG GO=1.22
ARG BASE=alpine
FROM golang:${GO} AS build
RUN --mount=type=cache,target=/c,from=assets true
FROM $BASE AS assets
RUN true
FROM build AS test
COPY --from=assets /a /b
FROM scratch
COPY --from=0 /x /y
COPY --from=busybox:latest /bin/sh /sh
"""


def test_stages_edges_and_order() -> None:
    g = plan(parse(MULTI), {}, None)
    assert [(s.index, s.name, s.base) for s in g.stages] == [
        (0, "build", "golang:1.22"),
        (1, "assets", "alpine"),
        (2, "test", "build"),
        (3, None, "scratch"),
    ]
    assert g.stages[2].base_stage == 0 and g.stages[0].base_stage is None
    assert g.stages[0].deps == [1]  # RUN --mount=from=assets
    assert g.stages[2].deps == [0, 1]  # FROM build, COPY --from=assets
    assert g.stages[3].deps == [0]  # COPY --from=0; an image reference is not a stage
    assert g.target == 3 and g.order == [1, 0, 3]
    assert len(g.stages[3].instructions) == 2


def test_target_keeps_only_what_it_needs() -> None:
    g = plan(parse(MULTI), {}, "assets")
    assert g.order == [1]
    g = plan(parse(MULTI), {}, "TEST")  # stage names are case-insensitive
    assert g.order == [1, 0, 2]


def test_resolve_from() -> None:
    g = plan(parse(MULTI), {}, None)
    last = g.stages[3]
    assert g.resolve_from(last, "build").index == 0
    assert g.resolve_from(last, "1").index == 1
    assert g.resolve_from(last, "busybox:latest") == "busybox:latest"
    assert g.stage("Assets").index == 1 and g.stage(0).name == "build"


def test_build_args_override_global_defaults_in_from() -> None:
    g = plan(parse(MULTI), {"GO": "1.23", "BASE": "debian"}, None)
    assert g.stages[0].base == "golang:1.23" and g.stages[1].base == "debian"
    assert g.meta_args == {"GO": "1.23", "BASE": "debian"}


def test_global_args_need_redeclaring_inside_a_stage() -> None:
    text = "ARG V=1\nARG W=2\nFROM a\nARG V\nARG W=3\nARG Z\n"
    g = plan(parse(text), {}, None)
    stage = g.stages[0]
    scope = g.arg_scope(stage)
    env: dict[str, str] = {}
    for instr in stage.instructions:
        assert isinstance(instr, ArgInstruction)
        scope.declare(instr, expansion_env(env, scope.values))
    # V takes the global value; W's in-stage default wins over the global; Z has no value
    assert scope.values == {"V": "1", "W": "3"}
    assert scope.declared == ["V", "W", "Z"]


def test_build_arg_beats_in_stage_default() -> None:
    text = "FROM a\nARG W=3\n"
    g = plan(parse(text), {"W": "cli"}, None)
    scope = g.arg_scope(g.stages[0])
    instr = g.stages[0].instructions[0]
    assert isinstance(instr, ArgInstruction)
    assert scope.declare(instr, {}) == {"W": "cli"}


def test_arg_defaults_expand_earlier_args() -> None:
    text = "FROM a\nARG A=x\nARG B=${A}-y\n"
    g = plan(parse(text), {}, None)
    scope = g.arg_scope(g.stages[0])
    for instr in g.stages[0].instructions:
        scope.declare(instr, expansion_env({}, scope.values))
    assert scope.values == {"A": "x", "B": "x-y"}


def test_env_wins_over_arg_in_expansion() -> None:
    df = parse("FROM a\nARG V=arg\nENV V=env\nWORKDIR /$V\n")
    workdir = df.instructions[-1]
    env = expansion_env({"V": "env"}, {"V": "arg"})
    assert expand_instruction(workdir, env).path == "/env"


def test_proxy_args_reach_run_without_declaration() -> None:
    scope = ArgScope({"HTTP_PROXY": "http://p:3128", "OTHER": "x"}, {})
    assert scope.run_env() == {"HTTP_PROXY": "http://p:3128"}
    assert "no_proxy" in PROXY_ARGS


def test_unused_build_args_are_reported() -> None:
    g = plan(parse(MULTI), {"GO": "1", "NOPE": "x", "HTTPS_PROXY": "p"}, None)
    assert g.unused_build_args == ["NOPE"]
    assert any("NOPE" in w for w in g.warnings)


def test_automatic_platform_args() -> None:
    text = "FROM --platform=$BUILDPLATFORM img:$TARGETARCH AS b\nARG TARGETARCH\n"
    g = plan(parse(text), {}, None, platform="linux/arm64")
    assert g.stages[0].base == "img:arm64"
    assert g.stages[0].platform == g.platform_args["BUILDPLATFORM"]
    scope = g.arg_scope(g.stages[0])
    scope.declare(g.stages[0].instructions[0], {})
    assert scope.values == {"TARGETARCH": "arm64"}


def test_copy_from_expands_stage_args() -> None:
    text = "FROM a AS src\nFROM b\nARG FROM_STAGE=src\nCOPY --from=$FROM_STAGE /x /y\n"
    g = plan(parse(text), {}, None)
    assert g.stages[1].deps == [0]
    copy = g.stages[1].instructions[-1]
    assert isinstance(copy, CopyInstruction) and copy.from_stage == "$FROM_STAGE"


def test_debug_dag_command(tmp_path: Path) -> None:
    f = tmp_path / "Dockerfile"
    f.write_text(MULTI)
    p = subprocess.run(
        [sys.executable, "-m", "frontend.pybuild", "debug", "dag", str(f), "--target", "test"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    assert "target: 2 (test)" in p.stdout
    assert "order: 1 0 2" in p.stdout
    assert "needs stage 1 (assets) for copy at line 8" in p.stdout


def test_from_only_sees_earlier_stages() -> None:
    g = plan(parse("FROM golang AS golang\nFROM later\nFROM alpine AS later\n"), {}, None)
    assert [s.base_stage for s in g.stages] == [None, None, None]
    assert g.order == [2]
