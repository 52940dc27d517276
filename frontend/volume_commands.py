"""`pydock volume ls/create/inspect/rm/prune` over `executor.volumes`."""

from __future__ import annotations

import argparse
import sys

from cache.errors import PydockError
from frontend.cli import store_root as _given_root


def store_root(args) -> str:  # noqa: ANN001
    """The store root as an absolute path (a detached supervisor runs from /)."""
    import os.path

    return os.path.abspath(_given_root(args))


def _vstore(args: argparse.Namespace):  # noqa: ANN202
    from executor.volumes import VolumeStore

    return VolumeStore(store_root(args))


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def cmd_create(args: argparse.Namespace) -> int:
    if args.driver not in ("local", None):
        raise PydockError(f"volume driver {args.driver!r} is not supported (only local)")
    name = args.name or args.name_opt or ""
    try:
        v, _ = _vstore(args).create(name, labels=_labels(args.label), anonymous=False)
    except PydockError as e:
        e.exit_code = 1  # 125 is for `run -v`; `docker volume create` exits 1
        raise
    print(v.name)
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    vstore = _vstore(args)
    vols = vstore.list()
    for f in args.filter:
        key, _, value = f.partition("=")
        if key == "dangling":
            want = value.lower() in ("true", "1")
            vols = [v for v in vols if (not vstore.users(v.name)) == want]
        elif key == "name":
            vols = [v for v in vols if value in v.name]
        elif key == "label":
            k, _, val = value.partition("=")
            vols = [v for v in vols if k in v.labels and (not val or v.labels[k] == val)]
        else:
            raise PydockError(f"invalid filter '{key}'")
    if args.quiet:
        sys.stdout.write("".join(v.name + "\n" for v in vols))
        return 0
    if args.format:
        from frontend.gotemplate import render_template

        for v in vols:
            row = {
                "Name": v.name,
                "Driver": "local",
                "Mountpoint": str(v.mountpoint),
                "Scope": "local",
            }
            print(render_template(args.format, row, struct=True))
        return 0
    from frontend.container_commands import docker_table

    docker_table(["DRIVER", "VOLUME NAME"], [["local", v.name] for v in vols])
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    vstore = _vstore(args)
    out, code = [], 0
    for name in args.names:
        try:
            out.append(vstore.get(name).inspect())
        except PydockError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            code = 1
    from frontend.render import print_inspect

    print_inspect(out, args.format)
    return code


def cmd_rm(args: argparse.Namespace) -> int:
    vstore = _vstore(args)
    code = 0
    for name in args.names:
        try:
            vstore.remove(name, force=args.force)
            print(name)
        except PydockError as e:
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
    return code


def cmd_prune(args: argparse.Namespace) -> int:
    from frontend.render import human_size

    removed = _vstore(args).prune(all_volumes=args.all)
    if removed:
        print("Deleted Volumes:")
        for name, _size in removed:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(sum(s for _, s in removed))}")
    return 0


def register(subparsers) -> None:  # noqa: ANN001 - argparse's private type
    """Add `volume` and its sub-commands to the `pydock` parser."""
    group = subparsers.add_parser("volume", help="Manage volumes")
    sub = group.add_subparsers(dest="volume_command", metavar="COMMAND", parser_class=type(group))

    p = sub.add_parser("create", help="Create a volume")
    p.add_argument("name", nargs="?", default=None, metavar="VOLUME")
    p.add_argument("--name", dest="name_opt", default=None, help="volume name")
    p.add_argument("-d", "--driver", default="local", help="volume driver (local)")
    p.add_argument("--label", action="append", default=[], help="set metadata")
    p.add_argument("-o", "--opt", action="append", default=[], help="driver options (ignored)")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser("ls", aliases=["list"], help="List volumes")
    p.add_argument("-q", "--quiet", action="store_true", help="only display volume names")
    p.add_argument("-f", "--filter", action="append", default=[], help="dangling=, name=, label=")
    p.add_argument("--format", default=None, help="format output using a Go template")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("inspect", help="Display detailed information on volumes")
    p.add_argument("-f", "--format", default=None, help="format output using a Go template")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("rm", aliases=["remove"], help="Remove volumes")
    p.add_argument("-f", "--force", action="store_true", help="ignore missing volumes")
    p.add_argument("names", nargs="+", metavar="VOLUME")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("prune", help="Remove unused volumes (anonymous only unless -a)")
    p.add_argument("-a", "--all", action="store_true", help="also remove unused named volumes")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt")
    p.set_defaults(func=cmd_prune)
