"""The RUN instruction: shell or exec form through the image's SHELL, build args visible as
env (recorded in history as Docker does: `|N K=V ... /bin/sh -c ...`), `--mount` and
`--network`; executed by `builder.steps.run_in_container`. A mixin of `Solver`.
"""

from __future__ import annotations

import json
from typing import Any

from builder.history import json_list
from builder.steps import BuildError, RunRequest

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


class RunSteps:
    """The `_i_run` handler."""

    # ---- RUN ------------------------------------------------------------------------------
    def _i_run(self, ctx: Any, node) -> None:  # noqa: ANN001
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
            if script.startswith("#!"):
                # A lone heredoc with a shebang is a script file run by its interpreter
                # (BuildKit's rule); it is bind-mounted read-only for the RUN only.
                argv = [HEREDOC_SCRIPT]
        network = (flags.get("network") or [self.opts.network])[-1]
        if network == "default":
            network = self.opts.network
        if network not in ("none", "host"):
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: RUN --network={network}: only none and host are supported"
            )
        if (flags.get("security") or ["sandbox"])[-1] != "sandbox":
            raise BuildError(
                f"{self.opts.dockerfile_name}:{node.start_line}: RUN --security=insecure is not"
                " supported (RUN steps always run sandboxed)"
            )
        mount_specs = flags.get("mount", [])
        visible_args = {k: v for k, v in ctx.args.items() if k not in PROXY_ARGS}
        env_list = list(ctx.state.config.get("Env") or [])
        env_names = {e.partition("=")[0] for e in env_list}
        run_env = env_list + [f"{k}={v}" for k, v in ctx.args.items() if k not in env_names]
        # The predefined proxy ARGs reach RUN from --build-arg without an ARG line (Docker),
        # and stay out of the history and the key (they are host settings, not content).
        run_env += [
            f"{k}={v}"
            for k, v in sorted(self.opts.build_args.items())
            if k in PROXY_ARGS and k not in ctx.args and k not in env_names
        ]
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
            if argv == [HEREDOC_SCRIPT] or any("from=" in m for m in mount_specs):
                with self.store.tmp_dir("mounts") as scratch:
                    mounts = parse_mounts(mount_specs, self, ctx, node, scratch)
                    if argv == [HEREDOC_SCRIPT]:
                        mounts.append(_script_mount(scratch, script))
                    return run_with(mounts, num, name)
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


HEREDOC_SCRIPT = "/.pybuild-heredoc-script"


def _script_mount(scratch, body: str):  # noqa: ANN001, ANN202
    import os

    from executor.spec import Mount

    path = scratch / "script"
    path.write_text(body)
    os.chmod(path, 0o755)
    return Mount(target=HEREDOC_SCRIPT, type="bind", source=path, readonly=True)


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
