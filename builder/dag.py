"""The build graph of a Dockerfile: stages, their dependencies, ARG scoping, `--target`.

Public API:

* `plan(dockerfile, build_args, target=None) -> BuildGraph` splits the instructions into
  stages, expands FROM lines with the global ARGs, finds the edges (`FROM <stage>`,
  `COPY --from=<stage|index>`, `RUN --mount=from=<stage>`), keeps only the stages the target
  needs (the last stage when `target` is None) and lists the `--build-arg`s nothing uses.
* `BuildGraph.order` is the stages to build, dependencies first; `graph.resolve_from(stage,
  value)` tells whether an (expanded) `--from` value names a stage or an image.
* `ArgScope` is what the solver walks a stage with: it applies ARG instructions in order
  (`--build-arg` over default over the global value) and gives the variables visible to
  expansion and to RUN. `expansion_env(image_env, arg_values)` merges them: ENV wins over ARG.
* `expand_instruction(instr, env)` (from `builder.instructions`) expands what Docker expands.

Errors are `DockerfileError`s located at the instruction: unknown target, duplicate stage
name, a `--from` index that does not exist, a dependency cycle, bad `${...}` in FROM.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from builder.errors import DockerfileError, ExpansionError
from builder.expand import expand_word
from builder.instructions import (
    ArgInstruction,
    CopyInstruction,
    EnvInstruction,
    FromInstruction,
    Instruction,
    RunInstruction,
    expand_instruction,
)
from builder.parser import Dockerfile

__all__ = [
    "ArgScope",
    "BuildGraph",
    "PROXY_ARGS",
    "Stage",
    "automatic_platform_args",
    "expand_instruction",
    "expansion_env",
    "format_graph",
    "plan",
]

# Docker passes these from --build-arg to RUN without an ARG line (and never warns about them).
PROXY_ARGS = frozenset(
    name
    for base in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
    for name in (base, base.lower())
)


def automatic_platform_args(platform: str | None = None) -> dict[str, str]:
    """BuildKit's automatic platform ARGs for building on this machine for `platform`.

    They are set in the global scope (usable in FROM); a stage sees one only after an
    `ARG NAME` line without a value.
    """
    import platform as _pl

    machine = _pl.machine().lower()
    arch, variant = {
        "x86_64": ("amd64", ""),
        "amd64": ("amd64", ""),
        "aarch64": ("arm64", ""),
        "arm64": ("arm64", ""),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", ""),
        "i386": ("386", ""),
        "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""),
        "riscv64": ("riscv64", ""),
    }.get(machine, (machine, ""))
    build = f"linux/{arch}" + (f"/{variant}" if variant else "")
    target = platform or build
    parts = target.split("/")
    t_os = parts[0]
    t_arch = parts[1] if len(parts) > 1 else arch
    t_variant = parts[2] if len(parts) > 2 else ""
    return {
        "BUILDPLATFORM": build,
        "BUILDOS": "linux",
        "BUILDARCH": arch,
        "BUILDVARIANT": variant,
        "TARGETPLATFORM": target,
        "TARGETOS": t_os,
        "TARGETARCH": t_arch,
        "TARGETVARIANT": t_variant,
    }


def expansion_env(image_env: Mapping[str, str], arg_values: Mapping[str, str]) -> dict[str, str]:
    """The variables visible to expansion at a step: ARG values, overridden by ENV."""
    return {**arg_values, **image_env}


@dataclass
class Edge:
    """Stage `stage` needs stage `needs`, because of `instruction` (`kind`: from/copy/mount)."""

    needs: int
    kind: str
    instruction: Instruction


@dataclass
class Stage:
    """One stage: FROM line, then its instructions (unexpanded), in file order.

    `base` is the FROM image text with the global ARGs expanded; when it names another
    stage, `base_stage` is that stage's index and the stage starts from its result.
    `global_args` are the global ARG values (after --build-arg) that an `ARG NAME` line in this
    stage can take over. `edges` are the stages this one needs.
    """

    index: int
    name: str | None
    from_instruction: FromInstruction
    base: str
    base_stage: int | None = None
    platform: str | None = None
    instructions: list[Instruction] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    global_args: dict[str, str] = field(default_factory=dict)

    @property
    def deps(self) -> list[int]:
        """Indexes of the stages this one needs, without repeats, in order of first use."""
        return list(dict.fromkeys(e.needs for e in self.edges))

    @property
    def label(self) -> str:
        return self.name if self.name is not None else str(self.index)


@dataclass
class BuildGraph:
    """The stages of a Dockerfile and what building `target` needs.

    `stages` are all stages in file order; `order` the indexes to build (dependencies first,
    ending with the target); `meta_args` the global ARGs (None = declared without value);
    `unused_build_args` the --build-arg names that no ARG consumed (Docker warns).
    """

    dockerfile: Dockerfile
    stages: list[Stage]
    target: int
    order: list[int]
    build_args: dict[str, str]
    meta_args: dict[str, str | None]
    unused_build_args: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    platform_args: dict[str, str] = field(default_factory=dict)

    @property
    def target_stage(self) -> Stage:
        return self.stages[self.target]

    def stage(self, ref: str | int) -> Stage | None:
        """The stage named `ref` (case-insensitive) or with index `ref`, or None."""
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            i = int(ref)
            return self.stages[i] if 0 <= i < len(self.stages) else None
        low = ref.lower()
        for s in self.stages:
            if s.name == low:
                return s
        return None

    def resolve_from(self, stage: Stage, value: str) -> Stage | str:
        """What an expanded `--from`/`from=` value of `stage` means: a Stage, or an image."""
        found = _find_stage(self.stages, value, stage.index, allow_index=True)
        return found if found is not None else value

    def arg_scope(self, stage: Stage) -> ArgScope:
        """A fresh ARG scope for walking `stage`."""
        return ArgScope(self.build_args, stage.global_args, self.platform_args)


class ArgScope:
    """ARG values in scope while walking one stage, in instruction order.

    Call `declare(instr, env)` at each ARG instruction, with `env` the variables visible
    there (`expansion_env(image_env, scope.values)`): it records and returns the new values.
    `values` are the declared ARGs that have a value; `run_env()` adds the proxy variables
    given as --build-arg, which RUN sees without an ARG line.
    """

    def __init__(
        self,
        build_args: Mapping[str, str],
        global_args: Mapping[str, str],
        platform_args: Mapping[str, str] | None = None,
    ) -> None:
        self.build_args = dict(build_args)
        self.global_args = dict(global_args)
        self.platform_args = dict(platform_args or {})
        self.values: dict[str, str] = {}
        self.declared: list[str] = []

    def declare(self, instr: ArgInstruction, env: Mapping[str, str]) -> dict[str, str]:
        new: dict[str, str] = {}
        env = dict(env)
        for name, default in instr.args:
            self.declared.append(name)
            if name in self.build_args:
                value: str | None = self.build_args[name]
            elif default is not None:
                try:
                    value = expand_word(default, env, instr.escape)
                except ExpansionError as exc:
                    raise DockerfileError(
                        exc.msg,
                        filename=instr.filename,
                        line=instr.start_line,
                        column=instr.column,
                        source_line=instr.original,
                    ) from None
            elif name in self.global_args:
                value = self.global_args[name]
            elif name in self.platform_args:
                value = self.platform_args[name]
            else:
                value = None
            if value is not None:
                self.values[name] = value
                new[name] = value
                env[name] = value
        return new

    def run_env(self) -> dict[str, str]:
        """Variables RUN sees from ARGs: declared values plus proxy --build-args."""
        out = {k: v for k, v in self.build_args.items() if k in PROXY_ARGS}
        out.update(self.values)
        return out


def _find_stage(
    stages: list[Stage], value: str, current: int, *, allow_index: bool
) -> Stage | None:
    if allow_index and value.isdigit():
        i = int(value)
        return stages[i] if i < len(stages) else None
    low = value.lower()
    for s in stages:
        if s.name == low:
            return s
    return None


_PLATFORM_WORDS = ("PLATFORM", "ARCH", "TARGETOS", "BUILDOS", "VARIANT")


def _mentions_platform(instrs: list[Instruction]) -> bool:
    """Whether an ARG or FROM line could read an automatic platform ARG."""
    return any(
        isinstance(i, (ArgInstruction, FromInstruction))
        and any(w in i.original for w in _PLATFORM_WORDS)
        for i in instrs
    )


def _located(df: Dockerfile, instr: Instruction, msg: str) -> DockerfileError:
    return df.error(msg, instr.start_line, instr.column)


def plan(
    dockerfile: Dockerfile,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    *,
    platform: str | None = None,
) -> BuildGraph:
    """The build graph of `dockerfile` for `target` (see the module docstring)."""
    df = dockerfile
    build_args = dict(build_args or {})
    instrs = df.instructions
    # Only a file that names a platform ARG pays for working them out (a cached rebuild's
    # start-up time counts).
    platform_args = (
        automatic_platform_args(platform) if platform or _mentions_platform(instrs) else {}
    )

    # Global ARGs: before the first FROM, usable in FROM lines.
    meta_args: dict[str, str | None] = {}
    meta_env: dict[str, str] = dict(platform_args)
    i = 0
    while i < len(instrs) and isinstance(instrs[i], ArgInstruction):
        instr = instrs[i]
        assert isinstance(instr, ArgInstruction)
        for name, default in instr.args:
            if name in build_args:
                value: str | None = build_args[name]
            elif default is not None:
                value = _expand(df, instr, default, meta_env)
            else:
                value = None
            meta_args[name] = value
            if value is not None:
                meta_env[name] = value
        i += 1
    global_values = {k: v for k, v in meta_args.items() if v is not None}

    # Stages.
    stages: list[Stage] = []
    for instr in instrs[i:]:
        if isinstance(instr, FromInstruction):
            if instr.stage_name is not None:
                for s in stages:
                    if s.name == instr.stage_name:
                        raise _located(
                            df,
                            instr,
                            f'duplicate stage name "{instr.stage_name}" '
                            f"(first used at line {s.from_instruction.start_line})",
                        )
            base = _expand(df, instr, instr.image, meta_env)
            if not base:
                raise _located(df, instr, f"base name ({instr.image}) should not be blank")
            plat = _expand(df, instr, instr.platform, meta_env) if instr.platform else None
            stages.append(
                Stage(
                    index=len(stages),
                    name=instr.stage_name,
                    from_instruction=instr,
                    base=base,
                    platform=plat,
                    global_args=dict(global_values),
                )
            )
        else:
            stages[-1].instructions.append(instr)

    # Edges.
    for stage in stages:
        # FROM sees only the stages above it (`FROM golang AS golang` is the image).
        parent = _find_stage(stages[: stage.index], stage.base, stage.index, allow_index=False)
        if parent is not None:
            stage.base_stage = parent.index
            stage.edges.append(Edge(parent.index, "from", stage.from_instruction))
        scope = ArgScope(build_args, stage.global_args, platform_args)
        env: dict[str, str] = {}
        for instr in stage.instructions:
            if isinstance(instr, ArgInstruction):
                scope.declare(instr, expansion_env(env, scope.values))
                continue
            if isinstance(instr, EnvInstruction):
                for k, v in expand_instruction(instr, expansion_env(env, scope.values)).pairs:
                    env[k] = v
                continue
            refs: list[tuple[str, str]] = []
            if isinstance(instr, CopyInstruction) and instr.from_stage:
                refs.append(("copy", instr.from_stage))
            if isinstance(instr, RunInstruction):
                refs += [("mount", m.from_stage) for m in instr.mounts if m.from_stage]
            for kind, raw in refs:
                value = _expand(df, instr, raw, expansion_env(env, scope.values))
                if value.isdigit():
                    idx = int(value)
                    if idx >= len(stages):
                        raise _located(
                            df,
                            instr,
                            f"invalid stage index {idx} in --from: this Dockerfile has "
                            f"{len(stages)} stage{'s' if len(stages) != 1 else ''} "
                            "(numbered from 0)",
                        )
                found = _find_stage(stages, value, stage.index, allow_index=True)
                if found is not None:
                    stage.edges.append(Edge(found.index, kind, instr))

    if not stages:
        raise df.error("no build stage: the Dockerfile has no FROM instruction", 1)

    # Target.
    if target is None or target == "":
        target_index = len(stages) - 1
    else:
        found = _find_stage(stages, target, -1, allow_index=False)
        if found is None:
            names = ", ".join(s.name for s in stages if s.name) or "none"
            raise DockerfileError(
                f'target stage "{target}" could not be found (stages: {names})',
                filename=df.filename,
            )
        target_index = found.index

    order = _topological(df, stages, target_index)

    # Build args nothing consumes.
    used = set(meta_args)
    for idx in order:
        for instr in stages[idx].instructions:
            if isinstance(instr, ArgInstruction):
                used.update(name for name, _ in instr.args)
    unused = sorted(k for k in build_args if k not in used and k not in PROXY_ARGS)
    warnings = list(df.warnings)
    if unused:
        warnings.append(f"one or more build-args {unused} were not consumed")

    return BuildGraph(
        dockerfile=df,
        stages=stages,
        target=target_index,
        order=order,
        build_args=build_args,
        meta_args=meta_args,
        unused_build_args=unused,
        warnings=warnings,
        platform_args=platform_args,
    )


def _expand(df: Dockerfile, instr: Instruction, word: str, env: Mapping[str, str]) -> str:
    try:
        return expand_word(word, env, df.escape)
    except ExpansionError as exc:
        raise _located(df, instr, exc.msg) from None


def _topological(df: Dockerfile, stages: list[Stage], target: int) -> list[int]:
    """Stages needed by `target`, dependencies first; a cycle is an error."""
    order: list[int] = []
    state: dict[int, int] = {}  # 1 = on the current path, 2 = done

    def visit(idx: int, via: Edge | None) -> None:
        if state.get(idx) == 2:
            return
        if state.get(idx) == 1:
            instr = via.instruction if via else stages[idx].from_instruction
            raise _located(df, instr, f"circular dependency detected on stage: {stages[idx].label}")
        state[idx] = 1
        for edge in stages[idx].edges:
            visit(edge.needs, edge)
        state[idx] = 2
        order.append(idx)

    visit(target, None)
    return order


def format_graph(graph: BuildGraph) -> str:
    """A readable listing of the stages, their bases and edges, and the build order."""
    lines = []
    for s in graph.stages:
        kept = "" if s.index in graph.order else "  (not needed)"
        base = f"stage {s.base_stage}" if s.base_stage is not None else "image"
        plat = f" --platform={s.platform}" if s.platform else ""
        lines.append(
            f"stage {s.index} {s.name or '-'}: FROM{plat} {s.base} ({base}), "
            f"lines {s.from_instruction.start_line}-"
            f"{(s.instructions[-1] if s.instructions else s.from_instruction).end_line}{kept}"
        )
        for e in s.edges:
            if e.kind == "from":
                continue
            lines.append(
                f"  needs stage {e.needs} ({graph.stages[e.needs].label}) for {e.kind} "
                f"at line {e.instruction.start_line}"
            )
    lines.append(f"target: {graph.target} ({graph.target_stage.label})")
    lines.append("order: " + " ".join(str(i) for i in graph.order))
    return "\n".join(lines) + "\n"
