"""Stages of a parsed Dockerfile as the solver walks them: base, instructions, dependencies.

Global ARGs (before the first FROM) are resolved here (`--build-arg` overrides defaults) and
expand the FROM lines; a stage depends on the stage it is built FROM and on the stages named
by `COPY --from` / `ADD --from` / `RUN --mount=from=`. `--target` keeps only the target and
what it needs; the rest is skipped. Stages come back in file order, which is a dependency
order because a stage can only name stages defined before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cache.errors import PydockError


class StageError(PydockError):
    pass


@dataclass
class Stage:
    index: int
    name: str | None
    base: str
    base_stage: int | None
    nodes: list = field(default_factory=list)
    from_line: int = 0
    deps: set[int] = field(default_factory=set)

    @property
    def display(self) -> str:
        return self.name or f"stage-{self.index}"


def _from_refs(node) -> list[str]:  # noqa: ANN001
    refs = []
    for f in node.flags:
        if f.startswith("--from="):
            refs.append(f[len("--from=") :])
        elif f.startswith("--mount="):
            for field_ in f[len("--mount=") :].split(","):
                k, _, v = field_.partition("=")
                if k.strip() == "from":
                    refs.append(v.strip())
    return refs


_PLATFORM_WORDS = ("PLATFORM", "ARCH", "TARGETOS", "BUILDOS", "VARIANT")


def _mentions_platform(nodes) -> bool:  # noqa: ANN001
    for node in nodes:
        if node.cmd.upper() in ("ARG", "FROM") and any(
            w in a for a in node.args for w in _PLATFORM_WORDS
        ):
            return True
    return False


def plan_stages(
    parsed,  # noqa: ANN001 - builder.parser.ParseResult
    build_args: dict[str, str],
    target: str | None,
    filename: str = "Dockerfile",
) -> tuple[list[Stage], dict[str, str]]:
    """(the stages to build in order, the global ARG values)."""
    from builder.expand import expand_word

    escape = parsed.escape
    meta: dict[str, str] = {}
    if _mentions_platform(parsed.nodes):
        # BuildKit's automatic TARGETPLATFORM, BUILDARCH, ... (the front end's list); only
        # imported when a Dockerfile names one, which keeps a cached rebuild's start-up short.
        from builder.dag import automatic_platform_args

        meta.update(automatic_platform_args())
    stages: list[Stage] = []
    by_name: dict[str, int] = {}
    for node in parsed.nodes:
        kind = node.cmd.upper()
        if kind == "FROM":
            args = list(node.args)
            if not args:
                raise StageError(f"{filename}:{node.start_line}: FROM requires an image name")
            name = None
            if len(args) == 3 and args[1].lower() == "as":
                name = args[2].lower()
            elif len(args) != 1:
                raise StageError(
                    f"{filename}:{node.start_line}: FROM requires either one or three arguments"
                )
            base = expand_word(args[0], meta, escape)
            if not base:
                raise StageError(f"{filename}:{node.start_line}: FROM {args[0]}: empty image name")
            if name is not None and name in by_name:
                raise StageError(f"{filename}:{node.start_line}: duplicate stage name {name!r}")
            base_stage = by_name.get(base.lower())
            st = Stage(len(stages), name, base, base_stage, [], node.start_line)
            if base_stage is not None:
                st.deps.add(base_stage)
            stages.append(st)
            if name is not None:
                by_name[name] = st.index
            continue
        if not stages:
            if kind != "ARG":
                raise StageError(
                    f"{filename}:{node.start_line}: {node.cmd} before the first FROM "
                    "(only ARG may come first)"
                )
            for word in node.args:
                k, eq, default = word.partition("=")
                if k in build_args:
                    meta[k] = build_args[k]
                elif eq:
                    meta[k] = expand_word(default, meta, escape)
            continue
        st = stages[-1]
        st.nodes.append(node)
        for ref in _from_refs(node):
            idx = by_name.get(ref.lower())
            if idx is None and ref.isdigit():
                idx = int(ref)
                if idx >= st.index:
                    raise StageError(
                        f"{filename}:{node.start_line}: --from={ref}: stage {idx} is not defined "
                        "before this one"
                    )
            if idx is not None:
                st.deps.add(idx)
    if not stages:
        raise StageError(f"{filename}: the Dockerfile has no FROM instruction")
    if target:
        want = by_name.get(target.lower())
        if want is None:
            known = ", ".join(s.name for s in stages if s.name) or "none"
            raise StageError(f"target stage {target!r} could not be found (stages: {known})")
    else:
        want = stages[-1].index
    needed: set[int] = set()
    todo = [want]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        todo.extend(stages[i].deps)
    return [s for s in stages if s.index in needed], meta
