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

import json
import os
import posixpath
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.buildstages import Stage, plan_stages
from builder.history import (
    BuildState,
    json_list,
    nop,
    now,
    rfc3339,
    scratch_state,
    set_env,
    state_from_image,
)
from builder.steps import Executor, RunRequest, RuntimeExecutor, StepFailed
from cache.buildcache import BuildCache, CacheEntry, explain_miss, step_key
from cache.errors import PydockError

PROXY_ARGS = {
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
}


class _Cancelled(PydockError):
    """This stage stopped because another one failed (never shown when that error is)."""


class SerialStore:
    """The store as the solver's threads share it: calls that unpack or add layers, or write
    the index, run one at a time (the store's flock is re-entrant per process, not per
    thread). Everything else is passed through."""

    _SERIAL = ("unpacked_lowers", "add_layer", "write_image", "tag_image")

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


class BuildError(PydockError):
    """A build that cannot go on; the message names the step."""


class BaseImageNotFound(BuildError):
    pass


@dataclass
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


@dataclass
class StepRecord:
    """What happened to one step: its vertex number, name, hit or miss and why."""

    number: int
    name: str
    cached: bool
    why: str = ""
    key: str = ""
    diff_id: str | None = None


@dataclass
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


@dataclass
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


class Solver:
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
        self.sde = opts.source_date_epoch
        self.context = None
        self._views: dict[tuple[str, ...], Any] = {}
        self._tmp_ctx = None
        self.escape = "\\"

    # ---- the whole build ------------------------------------------------------------------
    def run(self) -> BuildResult:
        try:
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
        from builder import parsecache

        text, fname = self.opts.dockerfile_text, self.opts.dockerfile_name
        parsed = parsecache.load(self.store.root, text, fname)
        if parsed is None:
            from builder.parser import parse_nodes

            parsed = parse_nodes(text, fname)
            self._validate(parsed)
            if not self.opts.dry_run:
                parsecache.save(self.store.root, text, fname, parsed.nodes, parsed.escape)
        self.escape = parsed.escape
        stages, meta_args = plan_stages(
            parsed, self.opts.build_args, self.opts.target, self.opts.dockerfile_name
        )
        self.meta_args = meta_args
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

    def _validate(self, parsed) -> None:  # noqa: ANN001
        """The front end's typed parse and DAG plan: they report what is wrong with the file
        (DockerfileError with line and column) and warn about unused build args."""
        from builder.dag import plan
        from builder.parser import parse

        df = parse(self.opts.dockerfile_text or "", self.opts.dockerfile_name)
        graph = plan(df, self.opts.build_args, self.opts.target)
        for warning in getattr(graph, "warnings", []) or []:
            self.progress.info(f"WARNING: {warning}")

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
        self.result.tags = list(image.tags) if self.opts.tags else []

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
        ctx = StageCtx(stage, state, {}, total=1 + len(trigger_nodes) + len(stage.nodes))
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
    ) -> None:
        """Look the step up in the cache; on a miss execute it; record the outcome."""
        num = self._next_vertex()
        name = ctx.label(text, self.multi)
        if self.sde is not None:
            parts = [*parts, ("source_date_epoch", str(self.sde))]
        key = step_key(parts)
        entry = None if self.opts.no_cache else self.cache.lookup(key)
        why = ""
        if entry is not None and entry.diff_id and not self.store.has_blob(entry.diff_id):
            entry, why = None, "its layer is no longer in the store"
        state = ctx.state if config is None else ctx.state.with_config(config)
        if entry is not None:
            self.progress.cached(num, name)
            self.result.steps.append(StepRecord(num, name, True, key=key, diff_id=entry.diff_id))
            self.result.plan_lines.append(f"CACHED  {name}")
            ctx.state = state.add_step(key, entry.diff_id, entry.result.get("history") or {})
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
            ctx.state = state.add_step(key, None, history)
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
        history = {"created": now(self.sde), "created_by": created_by}
        result = {"diff_id": diff_id, "history": history}
        self.cache.write(CacheEntry(key, list(parts), result, detail=detail or {}))
        self.progress.finished(num)
        self.result.steps.append(StepRecord(num, name, False, why, key, diff_id))
        ctx.state = state.add_step(key, diff_id, history)

    def _meta(self, ctx: StageCtx, node, text: str, config: dict, comment: str) -> None:  # noqa: ANN001
        parts = [("parent", ctx.state.key), ("instruction", text)]
        self._step(ctx, node, text, parts, None, nop(ctx.state.shell, comment), config)

    # ---- metadata instructions ------------------------------------------------------------
    def _i_env(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        pairs = _triples(node.args)
        env = self._env(ctx)
        from builder.expand import expand_word

        values = [
            (expand_word(k, env, self.escape), expand_word(v, env, self.escape)) for k, v in pairs
        ]
        cfg = ctx.state.config
        for k, v in values:
            cfg = set_env(cfg, k, v)
        body = " ".join(f"{k}={v}" for k, v in values)
        self._meta(ctx, node, f"ENV {body}", cfg, f"ENV {body}")

    def _i_label(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        values = [(self._expand(ctx, k), self._expand(ctx, v)) for k, v in _triples(node.args)]
        cfg = dict(ctx.state.config)
        labels = dict(cfg.get("Labels") or {})
        labels.update(values)
        cfg["Labels"] = labels
        body = " ".join(f"{k}={v}" for k, v in values)
        self._meta(ctx, node, f"LABEL {body}", cfg, f"LABEL {body}")

    def _i_arg(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        shown = []
        for word in node.args:
            name, eq, default = word.partition("=")
            if name in self.opts.build_args:
                value: str | None = self.opts.build_args[name]
            elif eq:
                value = self._expand(ctx, default)
            elif name in self.meta_args:
                value = self.meta_args[name]
            else:
                value = None
            if value is not None:
                ctx.args[name] = value
            shown.append(f"{name}={value}" if value is not None else name)
        text = "ARG " + " ".join(shown)
        self._meta(ctx, node, text, dict(ctx.state.config), "ARG " + " ".join(node.args))

    def _cmdline(self, ctx: StageCtx, node) -> list[str]:  # noqa: ANN001
        if node.json:
            return list(node.args)
        return [*ctx.state.shell, node.args[0]] if node.args else []

    def _i_cmd(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        cmd = self._cmdline(ctx, node)
        cfg = dict(ctx.state.config)
        cfg["Cmd"] = cmd
        ctx.cmd_set = True
        self._meta(ctx, node, f"CMD {json_list(cmd)}", cfg, f"CMD {_go_list(cmd)}")

    def _i_entrypoint(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        ep = self._cmdline(ctx, node)
        cfg = dict(ctx.state.config)
        cfg["Entrypoint"] = ep or None
        if not ctx.cmd_set:
            cfg.pop("Cmd", None)  # an ENTRYPOINT resets the CMD inherited from the base
        self._meta(ctx, node, f"ENTRYPOINT {json_list(ep)}", cfg, f"ENTRYPOINT {_go_list(ep)}")

    def _i_expose(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        ports: list[str] = []
        for word in node.args:
            for p in self._expand(ctx, word).split():
                ports.extend(_expand_port(p, node, self.opts.dockerfile_name))
        cfg = dict(ctx.state.config)
        exposed = dict(cfg.get("ExposedPorts") or {})
        for p in ports:
            exposed[p] = {}
        cfg["ExposedPorts"] = exposed
        body = " ".join(ports)
        self._meta(ctx, node, f"EXPOSE {body}", cfg, f"EXPOSE {body}")

    def _i_volume(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        vols = [self._expand(ctx, w) for w in node.args]
        vols = [v for v in vols if v]
        if not vols:
            raise BuildError(f"{self.opts.dockerfile_name}:{node.start_line}: VOLUME needs a path")
        cfg = dict(ctx.state.config)
        volumes = dict(cfg.get("Volumes") or {})
        for v in vols:
            volumes[v] = {}
        cfg["Volumes"] = volumes
        self._meta(ctx, node, f"VOLUME {json_list(vols)}", cfg, f"VOLUME {_go_list(vols)}")

    def _i_user(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        user = self._expand(ctx, node.args[0] if node.args else "")
        cfg = dict(ctx.state.config)
        cfg["User"] = user
        self._meta(ctx, node, f"USER {user}", cfg, f"USER {user}")

    def _i_stopsignal(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        sig = self._expand(ctx, node.args[0] if node.args else "")
        cfg = dict(ctx.state.config)
        cfg["StopSignal"] = sig
        self._meta(ctx, node, f"STOPSIGNAL {sig}", cfg, f"STOPSIGNAL {sig}")

    def _i_shell(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        if not node.json or not node.args:
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: SHELL requires the arguments to be in JSON form"
            )
        cfg = dict(ctx.state.config)
        cfg["Shell"] = list(node.args)
        self._meta(ctx, node, f"SHELL {json_list(node.args)}", cfg, f"SHELL {_go_list(node.args)}")

    def _i_maintainer(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        who = self._expand(ctx, node.args[0] if node.args else "")
        ctx.state.image = {**ctx.state.image, "author": who}
        self._meta(ctx, node, f"MAINTAINER {who}", dict(ctx.state.config), f"MAINTAINER {who}")

    def _i_onbuild(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        if node.sub is None:
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: ONBUILD needs an instruction"
            )
        if node.sub.cmd.upper() in ("ONBUILD", "FROM", "MAINTAINER"):
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: {node.sub.cmd.upper()} isn't allowed as an ONBUILD trigger"
            )
        trigger = node.original.split(None, 1)[1] if " " in node.original else ""
        cfg = dict(ctx.state.config)
        cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), trigger]
        self._meta(ctx, node, f"ONBUILD {trigger}", cfg, f"ONBUILD {trigger}")

    def _i_healthcheck(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        cfg = dict(ctx.state.config)
        if not node.args:
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: HEALTHCHECK needs CMD or NONE"
            )
        kind = node.args[0].upper()
        if kind == "NONE":
            hc: dict[str, Any] = {"Test": ["NONE"]}
        else:
            rest = node.args[1:]
            test = ["CMD", *rest] if node.json else ["CMD-SHELL", rest[0] if rest else ""]
            hc = {"Test": test}
            flags = self._flags(ctx, node)
            for flag, field_name in (
                ("interval", "Interval"),
                ("timeout", "Timeout"),
                ("start-period", "StartPeriod"),
                ("start-interval", "StartInterval"),
            ):
                if flag in flags:
                    hc[field_name] = _duration_ns(flags[flag][-1], flag)
            if "retries" in flags:
                hc["Retries"] = int(flags["retries"][-1])
        cfg["Healthcheck"] = hc
        text = f"HEALTHCHECK {json.dumps(hc, sort_keys=True)}"
        self._meta(ctx, node, text, cfg, f"HEALTHCHECK &{{{_go_list(hc['Test'])} ...}}")

    def _i_workdir(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        raw = self._expand(ctx, node.args[0] if node.args else "")
        path = posixpath.normpath(posixpath.join(ctx.state.workdir, raw))
        cfg = dict(ctx.state.config)
        cfg["WorkingDir"] = path
        diff_ids = list(ctx.state.diff_ids)

        def execute(num: int, name: str) -> str | None:
            from builder.copy import LayerBuilder
            from builder.rootview import RootView
            from builder.steps import commit_dir

            view = RootView(self.store.unpacked_lowers(diff_ids)) if diff_ids else RootView([])
            rel = view.resolve(path)
            if view.is_dir(rel) or not rel:
                return None
            with self.store.tmp_dir("workdir") as d:
                upper = d / "upper"
                upper.mkdir()
                lb = LayerBuilder(upper, view, self.sde)
                lb.ensure_dir(rel, None)
                lb.finish()
                return commit_dir(self.store, upper, overlay_upper=False, sde=self.sde)

        parts = [("parent", ctx.state.key), ("instruction", f"WORKDIR {path}")]
        created_by = nop(ctx.state.shell, f"WORKDIR {path}")
        self._step(ctx, node, f"WORKDIR {path}", parts, execute, created_by, cfg)

    # ---- RUN ------------------------------------------------------------------------------
    def _i_run(self, ctx: StageCtx, node) -> None:  # noqa: ANN001
        from builder.runmounts import parse_mounts

        flags = self._flags(ctx, node)
        shell = ctx.state.shell
        if node.json:
            argv = list(node.args)
            shown = " ".join(argv)
        else:
            script = node.args[0] if node.args else ""
            if node.heredocs:
                script = _with_heredocs(script, node.heredocs)
            argv = [*shell, script]
            shown = " ".join(argv)
        network = (flags.get("network") or [self.opts.network])[-1]
        if network == "default":
            network = self.opts.network
        if network not in ("none", "host"):
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: RUN --network={network}: only none and host are supported"
            )
        mount_specs = flags.get("mount", [])
        visible_args = {k: v for k, v in ctx.args.items() if k not in PROXY_ARGS}
        env_list = list(ctx.state.config.get("Env") or [])
        env_names = {e.partition("=")[0] for e in env_list}
        run_env = env_list + [f"{k}={v}" for k, v in ctx.args.items() if k not in env_names]
        if not any(e.startswith("PATH=") for e in run_env):
            from builder.history import DEFAULT_PATH

            run_env.append(f"PATH={DEFAULT_PATH}")
        created_by = shown
        if visible_args:
            pairs = " ".join(f"{k}={v}" for k, v in sorted(visible_args.items()))
            created_by = f"|{len(visible_args)} {pairs} {shown}"
        flag_text = " ".join(node.flags)
        instr = f"RUN {flag_text + ' ' if flag_text else ''}{json_list(argv)}"
        parts = [
            ("parent", ctx.state.key),
            ("instruction", instr),
            ("env", json.dumps(env_list)),
            ("args", json.dumps(sorted(visible_args.items()))),
            ("user", ctx.state.user),
            ("workdir", ctx.state.workdir),
        ]
        if network != "none":
            parts.append(("network", network))
        from builder.runmounts import mount_key_parts

        parts += mount_key_parts(mount_specs, self, node)
        diff_ids = list(ctx.state.diff_ids)
        state = ctx.state
        display = node.original if len(node.original) < 200 else node.original[:197] + "..."

        def execute(num: int, name: str) -> str | None:
            if any("from=" in m for m in mount_specs):
                with self.store.tmp_dir("mounts") as scratch:
                    return run_with(parse_mounts(mount_specs, self, ctx, node, scratch), num, name)
            return run_with(parse_mounts(mount_specs, self, ctx, node), num, name)

        def run_with(mounts: list, num: int, name: str) -> str | None:
            from builder.steps import run_in_container

            req = RunRequest(
                argv=argv,
                env=run_env,
                cwd=state.workdir,
                user=state.user,
                network=network,
                mounts=mounts,
            )
            self.result.containers_run += 1
            return run_in_container(
                self.store,
                diff_ids,
                req,
                self.executor,
                lambda chunk: self.progress.log(num, chunk),
                step_name=name,
                command=shown,
                sde=self.sde,
            )

        self._step(ctx, node, display, parts, execute, created_by)

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
        from cache.errors import BadReference, ImageNotFound

        try:
            image = self.store.get_image(ref)
        except (ImageNotFound, BadReference):
            raise BaseImageNotFound(
                f"{self.opts.dockerfile_name}:{node.start_line}: --from={ref}: no stage of that name "
                "and the image is not in the local store (`pydock bootstrap busybox` or "
                "`pydock load -i IMAGE.tar`)"
            ) from None
        return state_from_image(image.config, ref, str(image.image_id)), str(image.image_id)


def _triples(args: list[str]) -> list[tuple[str, str]]:
    return [(args[i], args[i + 1]) for i in range(0, len(args) - 1, 3)]


def _go_list(values: list[str]) -> str:
    """Go's %q of a []string: `["a" "b"]` (as Docker's classic history shows CMD)."""
    from builder.dump import go_quote

    return "[" + " ".join(go_quote(v) for v in values) + "]"


_PORT_RE = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)


def _expand_port(text: str, node, filename: str) -> list[str]:  # noqa: ANN001
    m = _PORT_RE.match(text)
    if not m:
        raise BuildError(f"{filename}:{node.start_line}: EXPOSE: invalid port {text!r}")
    lo = int(m.group(1))
    hi = int(m.group(2) or lo)
    proto = (m.group(3) or "tcp").lower()
    if lo > 65535 or hi > 65535 or hi < lo:
        raise BuildError(f"{filename}:{node.start_line}: EXPOSE: invalid port range {text!r}")
    return [f"{p}/{proto}" for p in range(lo, hi + 1)]


_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DUR_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def _duration_ns(text: str, flag: str) -> int:
    """Go's time.ParseDuration subset: `30s`, `1m30s`, `500ms` → integer nanoseconds."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DUR_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise BuildError(f"HEALTHCHECK --{flag}={text}: not a duration (e.g. 30s, 1m30s)")
    return int(total)


def _with_heredocs(script: str, heredocs) -> str:  # noqa: ANN001
    """A RUN's shell text with its heredoc bodies: a lone `<<EOF` runs the body as the
    script; otherwise the shell gets the line and the bodies (it handles `<<` itself)."""
    words = script.split()
    if len(heredocs) == 1 and len(words) == 1 and words[0].lstrip("0123456789").startswith("<<"):
        return heredocs[0].body
    text = script + "\n"
    for doc in heredocs:
        text += doc.content + doc.name + "\n"
    return text
