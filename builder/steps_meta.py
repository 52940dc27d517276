"""Metadata instructions (ENV, LABEL, ARG, CMD, ENTRYPOINT, EXPOSE, VOLUME, USER, STOPSIGNAL,
SHELL, MAINTAINER, ONBUILD, HEALTHCHECK) and WORKDIR: each changes the image config and adds
one history entry (`/bin/sh -c #(nop)  CMD ["sh"]`), empty-layer except a WORKDIR that had
to create its folder. A mixin of `builder.solver.Solver`: `self._meta`/`self._step` do the
caching.
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any

from builder.history import json_list, nop, set_env
from builder.steps import BuildError


class MetadataSteps:
    """The `_i_<instruction>` handlers of the metadata instructions."""

    # ---- metadata instructions ------------------------------------------------------------
    def _i_env(self, ctx: Any, node) -> None:  # noqa: ANN001
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

    def _i_label(self, ctx: Any, node) -> None:  # noqa: ANN001
        values = [(self._expand(ctx, k), self._expand(ctx, v)) for k, v in _triples(node.args)]
        cfg = dict(ctx.state.config)
        labels = dict(cfg.get("Labels") or {})
        labels.update(values)
        cfg["Labels"] = labels
        body = " ".join(f"{k}={v}" for k, v in values)
        self._meta(ctx, node, f"LABEL {body}", cfg, f"LABEL {body}")

    def _i_arg(self, ctx: Any, node) -> None:  # noqa: ANN001
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

    def _cmdline(self, ctx: Any, node) -> list[str]:  # noqa: ANN001
        if node.json:
            return list(node.args)
        return [*ctx.state.shell, node.args[0]] if node.args else []

    def _i_cmd(self, ctx: Any, node) -> None:  # noqa: ANN001
        cmd = self._cmdline(ctx, node)
        cfg = dict(ctx.state.config)
        cfg["Cmd"] = cmd
        ctx.cmd_set = True
        self._meta(ctx, node, f"CMD {json_list(cmd)}", cfg, f"CMD {_go_list(cmd)}")

    def _i_entrypoint(self, ctx: Any, node) -> None:  # noqa: ANN001
        ep = self._cmdline(ctx, node)
        cfg = dict(ctx.state.config)
        cfg["Entrypoint"] = ep or None
        if not ctx.cmd_set:
            cfg.pop("Cmd", None)  # an ENTRYPOINT resets the CMD inherited from the base
        self._meta(ctx, node, f"ENTRYPOINT {json_list(ep)}", cfg, f"ENTRYPOINT {_go_list(ep)}")

    def _i_expose(self, ctx: Any, node) -> None:  # noqa: ANN001
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

    def _i_volume(self, ctx: Any, node) -> None:  # noqa: ANN001
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

    def _i_user(self, ctx: Any, node) -> None:  # noqa: ANN001
        user = self._expand(ctx, node.args[0] if node.args else "")
        cfg = dict(ctx.state.config)
        cfg["User"] = user
        self._meta(ctx, node, f"USER {user}", cfg, f"USER {user}")

    def _i_stopsignal(self, ctx: Any, node) -> None:  # noqa: ANN001
        sig = self._expand(ctx, node.args[0] if node.args else "")
        cfg = dict(ctx.state.config)
        cfg["StopSignal"] = sig
        self._meta(ctx, node, f"STOPSIGNAL {sig}", cfg, f"STOPSIGNAL {sig}")

    def _i_shell(self, ctx: Any, node) -> None:  # noqa: ANN001
        if not node.json or not node.args:
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: SHELL requires the arguments to be in JSON form"
            )
        cfg = dict(ctx.state.config)
        cfg["Shell"] = list(node.args)
        self._meta(ctx, node, f"SHELL {json_list(node.args)}", cfg, f"SHELL {_go_list(node.args)}")

    def _i_maintainer(self, ctx: Any, node) -> None:  # noqa: ANN001
        who = self._expand(ctx, node.args[0] if node.args else "")
        ctx.state.image = {**ctx.state.image, "author": who}
        self._meta(ctx, node, f"MAINTAINER {who}", dict(ctx.state.config), f"MAINTAINER {who}")

    def _i_onbuild(self, ctx: Any, node) -> None:  # noqa: ANN001
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
        # BuildKit adds no history entry for ONBUILD (checked against Docker 20.10).
        self._meta(ctx, node, f"ONBUILD {trigger}", cfg, f"ONBUILD {trigger}", record=False)

    def _i_healthcheck(self, ctx: Any, node) -> None:  # noqa: ANN001
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

    def _i_workdir(self, ctx: Any, node) -> None:  # noqa: ANN001
        raw = self._expand(ctx, node.args[0] if node.args else "")
        path = posixpath.normpath(posixpath.join(ctx.state.workdir, raw))
        cfg = dict(ctx.state.config)
        cfg["WorkingDir"] = path
        diff_ids = list(ctx.state.diff_ids)
        user = ctx.state.user

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
                # BuildKit makes a missing WORKDIR (and its parents) owned by the USER.
                owner = None
                if user:
                    from builder.rootview import lookup_user

                    try:
                        owner = lookup_user(view, user)
                    except KeyError as exc:
                        raise BuildError(f"WORKDIR {path}: {exc.args[0]}") from None
                lb.ensure_dir(rel, owner)
                lb.finish()
                return commit_dir(
                    self.store, upper, overlay_upper=False, sde=self.sde, stack=diff_ids
                )

        parts = [("parent", ctx.state.key), ("instruction", f"WORKDIR {path}")]
        created_by = nop(ctx.state.shell, f"WORKDIR {path}")
        self._step(ctx, node, f"WORKDIR {path}", parts, execute, created_by, cfg)


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
