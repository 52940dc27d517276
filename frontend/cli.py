"""Shared command-line machinery: global options, lazy sub-command modules, error rendering.

Each sub-command module exposes `register(subparsers)`, adding its parsers with
`set_defaults(func=handler)`; a handler takes the parsed namespace and returns an exit code.
Only the module of the command being run is imported, which keeps start-up fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import BinaryIO

from cache.errors import PydockError

DEFAULT_ROOT = "/var/lib/pydock"


def store_root(args: argparse.Namespace) -> str:
    """The store root: --root, else $PYDOCK_ROOT, else /var/lib/pydock.

    A root that is not a folder, or whose parent folder does not exist, is refused here, once
    for every command (a mistyped --root must not grow a new tree of folders)."""
    root = getattr(args, "root", None) or os.environ.get("PYDOCK_ROOT") or DEFAULT_ROOT
    if os.path.isdir(root):
        return root
    if os.path.lexists(root):
        raise PydockError(f"store root {root}: not a directory")
    parent = os.path.dirname(os.path.abspath(root))
    if not os.path.isdir(parent):
        raise PydockError(
            f"store root {root}: its parent folder {parent} does not exist or is not a folder"
        )
    return root


def add_global_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=None,
        help=f"store root (default: $PYDOCK_ROOT or {DEFAULT_ROOT})",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")


def _terminal_columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil (see _Formatter)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, minus its `import shutil` (which pulls bz2, lzma and zlib) just
    to learn the terminal's width: argparse makes a formatter for every add_argument, so
    every command, `pydock run` included, paid ~2 ms for it."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width=None
    ) -> None:  # noqa: ANN001 - argparse API
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class RawDescriptionFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    """argparse.RawDescriptionHelpFormatter (descriptions and epilogs printed as written),
    without the shutil import (see _Formatter)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exits with the program's code."""

    usage_exit_code = 2
    _argv: list[str] = []

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - argparse API
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        # argparse checks required positionals before it reports unknown options, so
        # `pydock rmi --bogus` would say "IMAGE is required"; name the real mistake first.
        unknown = self._unknown_flag()
        if unknown and "required" in message:
            message = f"unknown flag: {unknown}"
        self.exit(self.usage_exit_code, f"{self.prog}: error: {message}\n")

    def _unknown_flag(self) -> str | None:
        """The first word of this parser's argv that looks like an option it does not know."""
        known = self._option_string_actions
        for word in self._argv:
            if word == "--":
                return None
            if not word.startswith("-") or word == "-" or word[1:2].isdigit():
                continue
            if word.startswith("--"):
                if word.split("=", 1)[0] not in known:
                    return word.split("=", 1)[0]
                continue
            # -abc: a cluster of short flags, the first one taking a value ends it
            for i in range(1, len(word)):
                action = known.get("-" + word[i])
                if action is None:
                    return "-" + word[i]
                if action.nargs != 0:
                    break
        return None


def write_output(path: str, write: Callable[[BinaryIO], object]) -> None:
    """`-o FILE` of save/export: `write(f)` into a temp file beside FILE, fsync, rename, so a
    failed command leaves no partial file. An OSError becomes one line naming FILE."""
    out = os.path.abspath(path)
    tmp = f"{out}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as e:
        raise PydockError(f"{path}: {e.strerror}") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


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
    except OSError as exc:
        # The machine's limits, not pydock's bugs: a full disk, a quota, a read-only mount.
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return _internal_error(prog, args)
        if getattr(args, "debug", False):
            raise
        sys.stdout.flush()
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"{prog}: error: {where}{exc.strerror}\n")
        return 1
    except Exception:
        return _internal_error(prog, args)


def _internal_error(prog: str, args: argparse.Namespace) -> int:
    """Report the exception being handled (called from an `except` block) as a bug."""
    if getattr(args, "debug", False):
        raise  # noqa: PLE0704 - re-raises the exception the caller is handling
    import traceback

    sys.stderr.write(f"{prog}: internal error (a bug in pydock; rerun with --debug):\n")
    sys.stderr.write(traceback.format_exc().splitlines()[-1] + "\n")
    return 1 if prog == "pybuild" else 125
