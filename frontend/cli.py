"""Shared command-line machinery: global options, lazy sub-command modules, error rendering.

Each sub-command module exposes `register(subparsers)`, adding its parsers with
`set_defaults(func=handler)`; a handler takes the parsed namespace and returns an exit code.
Only the module of the command being run is imported, which keeps start-up fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from cache.errors import PydockError

DEFAULT_ROOT = "/var/lib/pydock"


def store_root(args: argparse.Namespace) -> str:
    """The store root: --root, else $PYDOCK_ROOT, else /var/lib/pydock."""
    return getattr(args, "root", None) or os.environ.get("PYDOCK_ROOT") or DEFAULT_ROOT


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=None,
        help=f"store root (default: $PYDOCK_ROOT or {DEFAULT_ROOT})",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exits with the program's code."""

    usage_exit_code = 2

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(self.usage_exit_code, f"{self.prog}: error: {message}\n")


def make_parser(prog: str, description: str, usage_exit_code: int = 2) -> argparse.ArgumentParser:
    cls = type("Parser", (_Parser,), {"usage_exit_code": usage_exit_code})
    parser = cls(prog=prog, description=description)
    add_global_options(parser)
    return parser


def _first_command(argv: Sequence[str], commands: dict[str, str]) -> str | None:
    skip_next = False
    for word in argv:
        if skip_next:
            skip_next = False
            continue
        if word == "--root":
            skip_next = True
            continue
        if word.startswith("-"):
            continue
        return word if word in commands else None
    return None


def run_commands(
    prog: str,
    description: str,
    commands: dict[str, str],
    argv: Sequence[str] | None = None,
    usage_exit_code: int = 2,
) -> int:
    """Parse argv for a program whose sub-commands live in the modules named by `commands`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(prog, description, usage_exit_code)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=parser.__class__)
    wanted = _first_command(argv, commands)
    modules = [commands[wanted]] if wanted else sorted(set(commands.values()))
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command group not written yet
        module.register(sub)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return usage_exit_code
    return run_handler(prog, func, args)


def run_handler(
    prog: str, func: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Call a handler, rendering user errors once as a line and never as a traceback."""
    try:
        return int(func(args) or 0)
    except PydockError as exc:
        sys.stdout.flush()
        text = exc.render()
        first, _, rest = text.partition("\n")
        sys.stderr.write(f"{prog}: error: {first}\n{rest + chr(10) if rest else ''}")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`pydock images | head`): not an error worth a traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the final flush
        except OSError:
            pass
        return 0
    except Exception:
        if getattr(args, "debug", False):
            raise
        import traceback

        sys.stderr.write(f"{prog}: internal error (a bug in pydock; rerun with --debug):\n")
        sys.stderr.write(traceback.format_exc().splitlines()[-1] + "\n")
        return 1 if prog == "pybuild" else 125
