"""The build solver: Dockerfile stages → steps → cache lookups → layers → an image in the store.

For each stage the target needs (in dependency order), each instruction becomes one step
whose key is `step_key` over named parts: ("parent", previous step key or base image id),
("instruction", the instruction with its expanded arguments), what the step can see (the
"env" and "args" of a RUN) and, for ADD/COPY, ("src:<path>", content key) per source. A hit
reuses the recorded result (layer DiffID or none, plus the history entry) and runs nothing; a
miss says why (the parts that differ from the closest earlier entry) and executes the step.

Independent stages run in parallel threads. The executor forks from them; that is safe here
because its forked child uses only os-level calls (no Python lock another thread might hold:
no printing, logging or imports) and closes every inherited fd but its own pipes. Store calls
that unpack or add layers are serialized (`SerialStore`); a failing stage sets `cancel`, the
others stop before their next step; on Ctrl-C the running containers are killed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.history import (
    BuildState,
    nop,
    now,
    rfc3339,
    scratch_state,
    state_from_image,
)
from builder.steps import BuildError, Executor, RuntimeExecutor, StepFailed
from builder.steps_meta import MetadataSteps
from builder.steps_run import RunSteps
from cache.buildcache import BuildCache, CacheEntry, explain_miss, step_key
from cache.errors import PydockError
from cache.records import field, record

if TYPE_CHECKING:
    from builder.parsecache import PlannedStage as Stage


class _Cancelled(PydockError):
    """This stage stopped because another one failed (never shown when that error is)."""


class SerialStore:
    """The store as the solver's threads share it: calls that unpack or add layers, or write
    the index, run one at a time (the store's flock is re-entrant per process, not per
    thread). Everything else is passed through."""

    _SERIAL = ("unpacked_lowers", "add_layer", "adopt_unpacked", "write_image", "tag_image")

    def __init__(self, store) -> None:  # noqa: ANN001
        self._store = store
        self._lock = threading.RLock()

    def __getattr__(self, name: str):  # noqa: ANN204
        attr = getattr(self._store, name)
        if name in self._SERIAL:

            def serial(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                with self._lock:
                    return attr(*args, **kwargs)

            return serial
        return attr


def _has_parallelism(stages: list[Stage]) -> bool:
    """True when two of the stages do not depend on each other (directly or not)."""
    ancestors: dict[int, set[int]] = {}
    for st in stages:
        anc: set[int] = set()
        for d in st.deps:
            anc |= {d} | ancestors.get(d, set())
        ancestors[st.index] = anc
    idx = [st.index for st in stages]
    for i, a in enumerate(idx):
        for b in idx[i + 1 :]:
            if a not in ancestors[b] and b not in ancestors[a]:
                return True
    return False


class BaseImageNotFound(BuildError):
    pass


@record
class BuildOptions:
    """Everything a build needs, as given on the command line."""

    dockerfile_text: str | None
    dockerfile_name: str = "Dockerfile"
    dockerfile_path: Path | None = None
    context_dir: Path | None = None
    context_tar: bytes | None = None
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "none"
    source_date_epoch: int | None = None
    dry_run: bool = False


@record
class StepRecord:
    """What happened to one step: its vertex number, name, hit or miss and why."""

    number: int
    name: str
    cached: bool
    why: str = ""
    key: str = ""
    diff_id: str | None = None


@record
class BuildResult:
    image_id: str = ""
    tags: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    plan_lines: list[str] = field(default_factory=list)
    containers_run: int = 0
    image: Any = None  # cache.images.Image
    state: BuildState | None = None


class NullProgress:
    """A progress sink that shows nothing (tests, library use)."""

    def started(self, step: int, name: str) -> None: ...
    def cached(self, step: int, name: str) -> None: ...
    def miss(self, step: int, why: str) -> None: ...
    def log(self, step: int, data: bytes | str) -> None: ...
    def finished(self, step: int) -> None: ...
    def failed(self, step: int, message: str) -> None: ...
    def info(self, text: str) -> None: ...


@record
class StageCtx:
    stage: Stage
    state: BuildState
    args: dict[str, str]  # build args declared in the stage (name -> value)
    position: int = 0  # steps done, for "[i/n]"
    total: int = 0
    cmd_set: bool = False

    def label(self, text: str, multi: bool) -> str:
        prefix = f"{self.stage.display} " if multi else ""
        return f"[{prefix}{self.position}/{self.total}] {text}"


def build(
    root: str | os.PathLike[str],
    opts: BuildOptions,
    progress: Any = None,
    executor: Executor | None = None,
) -> BuildResult:
    """Build `opts` into the store at `root`; returns the image id, tags and step records."""
    from cache.store import Store

    store = Store.open(root)
    solver = Solver(store, opts, progress or NullProgress(), executor or RuntimeExecutor())
    return solver.run()


class Solver(MetadataSteps, RunSteps):
    def __init__(self, store, opts: BuildOptions, progress, executor: Executor) -> None:  # noqa: ANN001
        self.store = SerialStore(store)
        self.opts = opts
        self.cancel = threading.Event()
        self._vertex_lock = threading.Lock()
        self.progress = progress
        self.executor = executor
        self.cache = BuildCache(store.root)
        self.result = BuildResult()
        self.vertex = 0
        self.states: dict[int, BuildState] = {}
        self.stage_args: dict[int, dict[str, str]] = {}
        self.sde = opts.source_date_epoch
        self.context = None
        self._views: dict[tuple[str, ...], Any] = {}
        self._tmp_ctx = None
        self.escape = "\\"

    # ---- the whole build ------------------------------------------------------------------
    def run(self) -> BuildResult:
        try:
            # What the build adds, unpacks or reuses stays a GC root until its image is
            # written: a concurrent `pydock system prune` leaves it alone (cache/leases.py).
            with self.store.lease():
                return self._run()
        finally:
            self._close_context()

    def _run(self) -> BuildResult:

        if self.opts.dockerfile_text is None:
            self._open_context()  # a tar context: the Dockerfile is inside it
            root = self.context.root if self.context is not None else None
            name = self.opts.dockerfile_name or "Dockerfile"
            try:
                if root is None:
                    raise FileNotFoundError
                self.opts.dockerfile_text = (root / name).read_text(
                    encoding="utf-8", errors="replace"
                )
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                self._close_context()
                raise BuildError(f"the build context has no {name}") from None
        stages = self._plan()
        self.multi = len(stages) > 1
        self.stage_index = {}
        self.stage_names = {}
        for st in stages:
            self.stage_names[st.index] = st.display
            if st.name:
                self.stage_index[st.name.lower()] = st.index
        try:
            if self.context is None:
                self._open_context()
            self._solve_all(stages)
            final = self.states[stages[-1].index]
            if self.context is not None and not self.opts.dry_run:
                self.context.save_stat_cache()
        finally:
            self._close_context()
        if self.opts.dry_run:
            return self.result
        self.result.state = final
        self._write_image(final)
        return self.result

    def _solve_all(self, stages: list[Stage]) -> None:
        """Solve the stages: in file order when they form a chain (or for --dry-run), else
        independent stages in parallel threads, each waiting for the stages it reads."""
        if self.opts.dry_run or not _has_parallelism(stages):
            for stage in stages:
                self.states[stage.index] = self._solve_stage(stage)
            return
        import concurrent.futures as cf

        futures: dict[int, cf.Future] = {}

        def task(stage: Stage) -> None:
            try:
                for dep in sorted(stage.deps):
                    futures[dep].result()
                self.states[stage.index] = self._solve_stage(stage)
            except BaseException:
                self.cancel.set()  # a failure stops the other stages at their next step
                raise

        pool = cf.ThreadPoolExecutor(max_workers=min(4, len(stages)), thread_name_prefix="stage")
        try:
            for stage in stages:
                futures[stage.index] = pool.submit(task, stage)
            cf.wait(futures.values())
        except BaseException:
            self.cancel.set()
            kill = getattr(self.executor, "kill_all", None)
            if kill is not None:
                kill()
            cf.wait(futures.values())
            raise
        finally:
            pool.shutdown(wait=True)
        for stage in stages:  # the first real error in file order
            exc = futures[stage.index].exception()
            if exc is not None and not isinstance(exc, _Cancelled):
                raise exc
        for stage in stages:
            exc = futures[stage.index].exception()
            if exc is not None:
                raise exc

    def _plan(self) -> list[Stage]:
        """The stages to build, dependencies first, each with its nodes: `builder.dag.plan`
        over one parse of the Dockerfile, or that plan remembered by `builder.parsecache`
        (a cached rebuild then imports neither the parser nor the planner)."""
        from builder import parsecache

        text, fname = self.opts.dockerfile_text or "", self.opts.dockerfile_name
        parsed = parsecache.load(self.store.root, text, fname)
        lines = None
        if parsed is None:
            from builder.parser import parse_nodes

            tree = parse_nodes(text, fname)
            lines = tree.lines
            parsed = parsecache.ParsedFile(tree.nodes, tree.escape, tree.directives, tree.warnings)
        pkey = parsecache.plan_key(self.opts.build_args, self.opts.target)
        record = parsed.plans.get(pkey)
        if record is None:
            from builder.dag import plan
            from builder.instructions import from_nodes
            from builder.parser import Dockerfile

            df = Dockerfile(
                instructions=[],
                escape=parsed.escape,
                directives=dict(parsed.directives),
                warnings=list(parsed.warnings),
                filename=fname,
                lines=lines if lines is not None else text.splitlines(),
            )
            df.instructions = from_nodes(parsed.nodes, df)
            graph = plan(df, self.opts.build_args, self.opts.target)
            record = parsecache.plan_record(graph)
            parsed.plans[pkey] = record
            if not self.opts.dry_run:
                parsecache.save(
                    self.store.root,
                    text,
                    fname,
                    parsed.nodes,
                    parsed.escape,
                    parsed.directives,
                    parsed.warnings,
                    parsed.plans,
                )
        for warning in record["warnings"]:
            self.progress.info(f"WARNING: {warning}")
        self.escape = parsed.escape
        self.meta_args = dict(record["meta_args"])
        self.file_stages = [tuple(x) for x in record["stages"]]
        return parsecache.stages_of(record, parsed.nodes)

    def _close_context(self) -> None:
        if self._tmp_ctx is not None:
            self._tmp_ctx.__exit__(None, None, None)
            self._tmp_ctx = None

    def _open_context(self) -> None:
        from builder.context import BuildContext, stat_cache_path, unpack_tar_context
        from builder.dockerignore import load_ignore

        o = self.opts
        if o.context_tar is not None:
            import io

            self._tmp_ctx = self.store.tmp_dir("context")
            d = self._tmp_ctx.__enter__()
            unpack_tar_context(io.BytesIO(o.context_tar), d)
            self.context = BuildContext(d, load_ignore(d, None))
        elif o.context_dir is not None:
            self.context = BuildContext(
                o.context_dir,
                load_ignore(Path(o.context_dir), o.dockerfile_path),
                stat_cache_path(Path(self.store.root), Path(o.context_dir)),
            )
        else:
            from builder.context import BuildContext as _BC

            self.context = _BC(None)

    def _write_image(self, state: BuildState) -> None:
        config = dict(state.config)
        if self.opts.labels:
            labels = dict(config.get("Labels") or {})
            labels.update(self.opts.labels)
            config["Labels"] = labels
        final = state.with_config(config)
        if self.sde is not None:
            created = rfc3339(self.sde)
        elif state.history:
            created = state.history[-1].get("created") or now(None)
        else:
            created = state.image.get("created") or now(None)
        image_config = final.image_config(created)
        with self.store.lock():
            image = self.store.write_image(image_config, final.diff_ids, tags=self.opts.tags)
        self.result.image = image
        self.result.image_id = str(image.image_id)
        from cache.refs import parse_reference

        self.result.tags = [str(parse_reference(t)) for t in self.opts.tags]

    # ---- stages ---------------------------------------------------------------------------
    def _base_state(self, stage: Stage) -> BuildState:
        if stage.base_stage is not None:
            return self.states[stage.base_stage].with_config(
                dict(self.states[stage.base_stage].config)
            )
        if stage.base.lower() == "scratch":
            return scratch_state()
        from cache.errors import BadReference, ImageNotFound

        try:
            image = self.store.get_image(stage.base)
        except (ImageNotFound, BadReference):
            raise BaseImageNotFound(
                f"{self.opts.dockerfile_name}:{stage.from_line}: FROM {stage.base}: the image is not "
                "in the local store (pybuild does not pull); make it with `pydock bootstrap "
                "busybox` or load it with `pydock load -i IMAGE.tar`"
            ) from None
        # The base's layers become the image's first layers: leased, so that a prune that
        # removes the base image meanwhile cannot take them.
        self.store.lease_existing(list(image.diff_ids))
        name = image.tags[0] if image.tags else stage.base
        return state_from_image(image.config, name, str(image.image_id))

    def _solve_stage(self, stage: Stage) -> BuildState:
        state = self._base_state(stage)
        triggers = list(state.config.get("OnBuild") or [])
        trigger_nodes = self._trigger_nodes(triggers) if triggers else []
        if triggers:
            cfg = dict(state.config)
            cfg.pop("OnBuild", None)
            state = state.with_config(cfg)
        # A stage built FROM another stage inherits that stage's ARGs (BuildKit, and the
        # reference since moby/buildkit#5381).
        inherited = (
            dict(self.stage_args.get(stage.base_stage, {})) if stage.base_stage is not None else {}
        )
        ctx = StageCtx(stage, state, inherited, total=1 + len(trigger_nodes) + len(stage.nodes))
        ctx.position = 1
        num = self._next_vertex()
        base_name = "scratch" if stage.base.lower() == "scratch" else stage.base
        if stage.base_stage is not None:
            base_name = self._stage_name(stage.base_stage)
        name = ctx.label(f"FROM {base_name}", self.multi)
        self.progress.cached(num, name)
        self.result.steps.append(StepRecord(num, name, True, key=state.key))
        self.result.plan_lines.append(f"CACHED  {name}")
        if not state.key:
            state.key = step_key([("base", "scratch")])
        for node in trigger_nodes:
            self._dispatch(ctx, node, trigger=True)
        for node in stage.nodes:
            self._dispatch(ctx, node)
        self.stage_args[stage.index] = dict(ctx.args)
        return ctx.state

    def _next_vertex(self) -> int:
        with self._vertex_lock:
            self.vertex += 1
            return self.vertex

    def _stage_name(self, index: int) -> str:
        return (
            self.stage_names.get(index, str(index)) if hasattr(self, "stage_names") else str(index)
        )

    def _trigger_nodes(self, triggers: list[str]) -> list:
        from builder.parser import parse_nodes

        out = []
        for text in triggers:
            parsed = parse_nodes("FROM scratch\n" + text + "\n", "ONBUILD trigger")
            out.extend(parsed.nodes[1:])
        return out

    # ---- expansion ------------------------------------------------------------------------
    def _env(self, ctx: StageCtx) -> dict[str, str]:
        """What ${VAR} sees: the stage's build args, then ENV (ENV wins, as Docker)."""
        return {**ctx.args, **ctx.state.env}

    def _expand(self, ctx: StageCtx, word: str) -> str:
        from builder.expand import expand_word

        return expand_word(word, self._env(ctx), self.escape)

    def _flags(self, ctx: StageCtx, node, expand: tuple[str, ...] = ()) -> dict[str, list[str]]:  # noqa: ANN001
        out: dict[str, list[str]] = {}
        for f in node.flags:
            name, eq, value = f[2:].partition("=")
            if not eq:
                value = "true"
            if name in expand:
                value = self._expand(ctx, value)
            out.setdefault(name, []).append(value)
        return out

    # ---- steps ----------------------------------------------------------------------------
    def _dispatch(self, ctx: StageCtx, node, trigger: bool = False) -> None:  # noqa: ANN001
        if self.cancel.is_set():
            raise _Cancelled("build stopped: another stage failed")
        ctx.position += 1
        kind = node.cmd.upper()
        handler = getattr(self, f"_i_{kind.lower()}", None)
        if handler is None:
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: unknown instruction {node.cmd}"
            )
        handler(ctx, node)

    def _step(
        self,
        ctx: StageCtx,
        node,  # noqa: ANN001
        text: str,
        parts: list[tuple[str, str]],
        execute=None,  # noqa: ANN001 - () -> str | None (diff_id); None: a metadata step
        created_by: str = "",
        config: dict | None = None,
        detail: dict[str, dict[str, str]] | None = None,
        record: bool = True,
    ) -> None:
        """Look the step up in the cache; on a miss execute it; record the outcome."""
        num = self._next_vertex()
        name = ctx.label(text, self.multi)
        if self.sde is not None:
            parts = [*parts, ("source_date_epoch", str(self.sde))]
        key = step_key(parts)
        entry = None if self.opts.no_cache else self.cache.lookup(key)
        why = ""
        if entry is not None and entry.diff_id and not self.store.lease_existing([entry.diff_id]):
            entry, why = None, "its layer is no longer in the store"
        state = ctx.state if config is None else ctx.state.with_config(config)
        if entry is not None:
            self.progress.cached(num, name)
            self.result.steps.append(StepRecord(num, name, True, key=key, diff_id=entry.diff_id))
            self.result.plan_lines.append(f"CACHED  {name}")
            hist = (entry.result.get("history") or {}) if record else None
            ctx.state = state.add_step(key, entry.diff_id, hist)
            return
        if not why:
            why = (
                "--no-cache"
                if self.opts.no_cache
                else explain_miss(parts, self.cache.closest(parts), detail)
            )
        self.result.plan_lines.append(f"MISS    {name}  ({why})")
        history = {"created": now(self.sde), "created_by": created_by}
        if self.opts.dry_run:
            self.result.steps.append(StepRecord(num, name, False, why, key))
            ctx.state = state.add_step(key, None, history if record else None)
            return
        self.progress.started(num, name)
        self.progress.miss(num, why)
        diff_id = None
        try:
            if execute is not None:
                diff_id = execute(num, name)
        except StepFailed as exc:
            self.progress.failed(num, exc.message.splitlines()[0])
            raise
        except PydockError as exc:
            self.progress.failed(num, exc.message.splitlines()[0])
            raise BuildError(f"{name}: {exc.message}") from None
        except OSError as exc:
            # e.g. a COPY whose destination runs through a file of the image
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            self.progress.failed(num, what)
            raise BuildError(f"{name}: {what}") from None
        history = {"created": now(self.sde), "created_by": created_by}
        result = {"diff_id": diff_id, "history": history}
        self.cache.write(CacheEntry(key, list(parts), result, detail=detail or {}))
        self.progress.finished(num)
        self.result.steps.append(StepRecord(num, name, False, why, key, diff_id))
        ctx.state = state.add_step(key, diff_id, history if record else None)

    def _meta(
        self,
        ctx: StageCtx,
        node,  # noqa: ANN001
        text: str,
        config: dict,
        comment: str,
        record: bool = True,
    ) -> None:
        parts = [("parent", ctx.state.key), ("instruction", text)]
        created_by = nop(ctx.state.shell, comment)
        self._step(ctx, node, text, parts, None, created_by, config, record=record)

    # ---- ADD / COPY -----------------------------------------------------------------------
    def _i_copy(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        from builder.copysteps import copy_step

        copy_step(self, ctx, node, "COPY")

    def _i_add(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        from builder.copysteps import copy_step

        copy_step(self, ctx, node, "ADD")

    def _i_from(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        raise BuildError(f"{self.opts.dockerfile_name}:{node.start_line}: unexpected FROM")

    # ---- helpers for the step modules -----------------------------------------------------
    def view_of(self, diff_ids: list[str]):  # noqa: ANN201
        """The merged root of an image (cached per layer stack)."""
        from builder.rootview import RootView

        key = tuple(diff_ids)
        if key not in self._views:
            self._views[key] = RootView(self.store.unpacked_lowers(diff_ids) if diff_ids else [])
        return self._views[key]

    def stage_state(self, ref: str, node) -> tuple[BuildState, str]:  # noqa: ANN001
        """`--from=` value → the state it names (a stage by name or index, else an image)
        and the part value for the key (the stage's last key or the image id)."""
        idx = self.stage_index.get(ref.lower())
        if idx is None and ref.isdigit():
            idx = int(ref)
        if idx is not None and idx in self.states:
            st = self.states[idx]
            return st, st.key
        where = f"{self.opts.dockerfile_name}:{node.start_line}: --from={ref}"
        for index, name, line in getattr(self, "file_stages", []):
            if ref.lower() == (name or "") or ref == str(index):
                # The plan builds the stages a --from names before the stage that reads
                # them; it could not see this one (the value came from the base image's
                # ENV or from an ONBUILD trigger).
                raise BuildError(
                    f"{where}: stage {name or index} (line {line}) is not built before this "
                    "step: the build plan could not tell this --from names it (give the stage "
                    "by name, or through an ARG of this stage)"
                )
        from cache.errors import BadReference, ImageNotFound

        try:
            image = self.store.get_image(ref)
        except (ImageNotFound, BadReference):
            names = ", ".join(n for _, n, _ in getattr(self, "file_stages", []) if n) or "none"
            raise BaseImageNotFound(
                f"{where}: not a stage of this Dockerfile (stages: {names}) and the image is "
                "not in the local store (`pydock bootstrap busybox` or "
                "`pydock load -i IMAGE.tar`)"
            ) from None
        return state_from_image(image.config, ref, str(image.image_id)), str(image.image_id)
