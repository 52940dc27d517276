"""`pybuild [OPTIONS] CONTEXT`: the build command line (parsing and rendering only).

The build itself is `builder.solver.build`; this module turns flags into a `BuildOptions`,
picks the progress renderer, and writes the outputs the user asked for.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cache.errors import PydockError
from frontend.cli import RawDescriptionFormatter, make_parser, run_handler, store_root

USAGE_EXAMPLES = """\
CONTEXT is a folder, `-` for a tar archive (or a lone Dockerfile) on stdin; with `-f -` the
Dockerfile comes from stdin and CONTEXT is still the folder.

examples:
  pybuild -t hello examples/hello
  pybuild --no-cache --build-arg SOURCE_DATE_EPOCH=0 -t app:1 .
  pybuild --dry-run .                       # the plan: every step, hit or miss and why
  pybuild --output type=oci,dest=app.tar .  # also write an OCI archive
  tar -C ctx -c . | pybuild -t app -
"""


class UsageError(PydockError):
    exit_code = 125  # Docker's CLI exits 125 for its own usage errors (docker build too)


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(
        "pybuild", "Build an image from a Dockerfile into the local store.", usage_exit_code=125
    )
    p.epilog = USAGE_EXAMPLES
    p.formatter_class = RawDescriptionFormatter
    a = p.add_argument
    a(
        "context",
        metavar="CONTEXT",
        nargs="?",
        help="build context: a folder, or - for a tar on stdin (none with -f -)",
    )
    a(
        "-t",
        "--tag",
        action="append",
        default=[],
        metavar="NAME[:TAG]",
        help="name the image (repeatable)",
    )
    a(
        "-f",
        "--file",
        metavar="FILE",
        help="the Dockerfile (default CONTEXT/Dockerfile; - for stdin)",
    )
    a(
        "--build-arg",
        action="append",
        default=[],
        metavar="K[=V]",
        help="set a build-time variable (repeatable)",
    )
    a("--target", metavar="STAGE", help="build this stage and what it needs, not the last one")
    a("--no-cache", action="store_true", help="rebuild every step (and refresh the cache)")
    a(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="add a label to the image (repeatable)",
    )
    a(
        "--progress",
        choices=["auto", "tty", "plain", "json"],
        default="auto",
        help="progress output (default auto)",
    )
    a("-q", "--quiet", action="store_true", help="print only the image id")
    a("--iidfile", metavar="FILE", help="write the image id to FILE")
    a(
        "--network",
        choices=["none", "host"],
        default="none",
        help="network for RUN steps (default none)",
    )
    a(
        "--platform",
        metavar="OS/ARCH",
        help="target platform; only the host's (e.g. linux/amd64) can be built here",
    )
    a(
        "--output",
        "-o",
        action="append",
        default=[],
        metavar="type=docker|oci|tar|local,dest=PATH",
        help="also export the result: an archive (docker, oci), a tar of the root, or a folder",
    )
    a(
        "--dry-run",
        action="store_true",
        help="print the plan with cache hits and misses; run nothing",
    )
    return p


def parse_kv(items: Sequence[str], what: str, env_fallback: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
        if not eq:
            if not env_fallback:
                raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
            if key not in os.environ:
                continue  # Docker: `--build-arg K` with K unset passes nothing
            value = os.environ[key]
        out[key] = value
    return out


def parse_output(text: str) -> dict[str, str]:
    """`type=oci,dest=x.tar` (or a bare path: local folder) → dict with type and dest."""
    if "=" not in text:
        return {"type": "local", "dest": text}
    out: dict[str, str] = {}
    for field in text.split(","):
        k, _, v = field.partition("=")
        out[k.strip()] = v.strip()
    kind = out.get("type")
    if kind not in ("docker", "oci", "tar", "local"):
        raise UsageError(f"--output: unknown type {kind!r} (use docker, oci, tar or local)")
    if not out.get("dest"):
        raise UsageError(f"--output type={kind}: dest=PATH is required")
    return out


def host_platform() -> str:
    import platform

    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7"}.get(
        platform.machine(), platform.machine()
    )
    return f"linux/{arch}"


def check_platform(text: str) -> None:
    """pybuild runs RUN steps natively (no emulation): only the host's platform builds."""
    wanted = [p.strip().lower() for p in text.split(",") if p.strip()]
    host = host_platform()
    for p in wanted:
        if p not in (host, "local"):
            raise UsageError(f"--platform {p}: only the host platform {host} can be built here")


def check_file_destination(path: str, what: str, *, make_parents: bool = False) -> None:
    """Refuse, before building, a file destination that cannot be written: a folder, or
    (unless the writer makes parents, as the archive outputs do) a missing parent folder."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} {path}: is a directory (a file name is needed)")
    if not make_parents and not p.parent.is_dir():
        raise UsageError(f"{what} {path}: no such directory: {p.parent}")


def _read_stdin_bytes() -> bytes:
    return sys.stdin.buffer.read()


def handle(args: argparse.Namespace) -> int:
    from builder.solver import BuildOptions, build

    root = Path(store_root(args))
    build_args = parse_kv(args.build_arg, "--build-arg", env_fallback=True)
    labels = parse_kv(args.label, "--label")
    outputs = [parse_output(o) for o in args.output]
    from cache.refs import parse_reference

    for tag in args.tag:  # a bad name fails now, not after the whole build
        parse_reference(tag)
    if args.platform:
        check_platform(args.platform)
    if args.iidfile:
        check_file_destination(args.iidfile, "--iidfile")
    for out in outputs:
        if out["type"] != "local":
            check_file_destination(
                out["dest"], f"--output type={out['type']}: dest", make_parents=True
            )

    sde_text = build_args.get("SOURCE_DATE_EPOCH", os.environ.get("SOURCE_DATE_EPOCH"))
    sde: int | None = None
    if sde_text not in (None, ""):
        try:
            sde = int(sde_text)
        except ValueError:
            raise UsageError(
                f"SOURCE_DATE_EPOCH={sde_text!r} is not a whole number of seconds"
            ) from None

    stdin_data: bytes | None = None
    context_dir: Path | None = None
    context_tar: bytes | None = None
    dockerfile_text: str | None = None
    dockerfile_path: Path | None = None
    dockerfile_name = args.file or "Dockerfile"

    if args.context is None and args.file != "-":
        raise UsageError("a CONTEXT is required (a folder, or - for stdin; none only with -f -)")
    if args.file == "-":
        stdin_data = _read_stdin_bytes()
        dockerfile_text = stdin_data.decode("utf-8", "replace")
        dockerfile_name = "Dockerfile"
        if args.context == "-":
            raise UsageError("cannot read both the Dockerfile and the context from stdin")
    if args.context is None:
        pass  # `-f -` alone: a Dockerfile and no context (local sources are an error)
    elif args.context == "-":
        stdin_data = _read_stdin_bytes()
        if _looks_like_archive(stdin_data):
            context_tar = stdin_data
        else:
            dockerfile_text = stdin_data.decode("utf-8", "replace")
    else:
        context_dir = Path(args.context)
        if not context_dir.is_dir():
            raise UsageError(
                f"unable to prepare context: path {args.context!r} not found or not a folder"
            )
        if dockerfile_text is None:
            dockerfile_path = Path(args.file) if args.file else context_dir / "Dockerfile"
            if args.file and not dockerfile_path.exists() and (context_dir / args.file).exists():
                dockerfile_path = context_dir / args.file
            try:
                dockerfile_text = dockerfile_path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                raise UsageError(
                    f"cannot read the Dockerfile: {dockerfile_path} not found"
                ) from None
            except IsADirectoryError:
                raise UsageError(
                    f"cannot read the Dockerfile: {dockerfile_path} is a folder"
                ) from None
            dockerfile_name = str(dockerfile_path)

    from frontend.progress import Progress, make_renderer

    renderer = make_renderer(args.progress, sys.stderr, quiet=args.quiet)
    opts = BuildOptions(
        dockerfile_text=dockerfile_text,
        dockerfile_name=dockerfile_name,
        dockerfile_path=dockerfile_path,
        context_dir=context_dir,
        context_tar=context_tar,
        tags=list(args.tag),
        build_args=build_args,
        target=args.target,
        no_cache=args.no_cache,
        labels=labels,
        network=args.network,
        source_date_epoch=sde,
        dry_run=args.dry_run,
    )
    # Full RUN output of this build, never clipped: ROOT/buildcache/logs/<time>-<pid>/<step>.log
    import time

    log_dir = root / "buildcache" / "logs" / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    progress = Progress(renderer, log_dir=None if args.dry_run else log_dir)
    try:
        result = build(root, opts, progress)
    except PydockError as exc:
        if log_dir.is_dir() and "did not complete successfully" in exc.message:
            exc.args = (f"{exc.message}\nfull output: {log_dir}/",)
        raise
    finally:
        progress.close()
    if args.dry_run:
        for line in result.plan_lines:
            print(line)
        return 0
    image_id = result.image_id
    if args.iidfile:
        Path(args.iidfile).write_text(image_id)
    for out in outputs:
        from builder.outputs import export

        export(root, result, out["type"], Path(out["dest"]), sde)
    if args.quiet:
        print(image_id)
    else:
        for tag in result.tags:
            sys.stderr.write(f"naming to {tag} done\n")
        print(image_id)
    return 0


def _looks_like_archive(data: bytes) -> bool:
    if len(data) >= 262 and data[257:262] == b"ustar":
        return True
    return data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_handler("pybuild", handle, args)


if __name__ == "__main__":
    raise SystemExit(main())
