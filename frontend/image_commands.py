"""pydock's image commands: images, image, tag, rmi, history, import, save, load, system,
bootstrap, inspect.

Argument parsing and rendering only: the work is done by cache/ (store, archive, importer,
imageview, prune, bootstrap). Imports of those happen inside the handlers so that
`pydock images` stays quick to start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cache.errors import PydockError
from frontend.cli import write_output


class CommandError(PydockError):
    """A user error found by the command line itself (a conflict, a refused request)."""


# --- helpers ------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> Any:
    from cache.store import Store
    from frontend.cli import store_root

    return Store.open(store_root(args))


def _root(args: argparse.Namespace) -> str:
    from frontend.cli import store_root

    return store_root(args)


def _since(created: str) -> str:
    import time

    from cache.imageview import parse_created
    from frontend.render import human_duration

    ts = parse_created(created)
    if ts is None:
        return "N/A"
    return human_duration(max(0.0, time.time() - ts)) + " ago"


def _human(n: int) -> str:
    from frontend.render import human_size

    return human_size(n)


def _write(text: str) -> None:
    sys.stdout.write(text)


def _err(line: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"pydock: error: {line}\n")


def _print_formatted(fmt: str, objects: list[dict]) -> None:
    """Print objects with a --format: "json", "table", "table TEMPLATE" or a Go template."""
    from frontend.gotemplate import header_for, render_template, template_headers

    if fmt == "json":
        for obj in objects:
            _write(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n")
        return
    is_table, body = template_headers(fmt)
    if is_table and not body:
        raise CommandError("--format table needs a template, or use the default table output")
    lines = [render_template(body, obj, struct=True) for obj in objects]
    if is_table:
        from frontend.render import print_table

        headers = header_for(body).split("\t")
        rows = [line.split("\t") for line in lines]
        width = len(headers)
        rows = [(r + [""] * width)[:width] for r in rows]
        print_table(headers, rows)
        return
    _write("".join(line + "\n" for line in lines))


# --- images -------------------------------------------------------------------------------------


def _image_json(row: Any, *, no_trunc: bool) -> dict:
    """Docker's `images --format '{{json .}}'` object (keys sorted as Go's map prints them)."""
    from cache.imageview import docker_time, short_id

    return {
        "Containers": "N/A" if row.containers is None else str(row.containers),
        "CreatedAt": docker_time(row.created),
        "CreatedSince": _since(row.created),
        "Digest": row.digest,
        "ID": row.image_id if no_trunc else short_id(row.image_id),
        "Repository": row.repository,
        "SharedSize": "N/A",
        "Size": _human(row.size),
        "Tag": row.tag,
        "UniqueSize": "N/A",
        "VirtualSize": _human(row.size),
    }


def _matches(row: Any, pattern: str | None) -> bool:
    if not pattern:
        return True
    import fnmatch

    repo, _, tag = (
        pattern.rpartition(":") if ":" in pattern.rsplit("/", 1)[-1] else (pattern, "", "")
    )
    if not repo:
        repo, tag = pattern, ""
    if repo.startswith("docker.io/"):
        repo = repo[len("docker.io/") :].removeprefix("library/")
    if not fnmatch.fnmatchcase(row.repository, repo):
        return False
    return not tag or fnmatch.fnmatchcase(row.tag, tag)


def _filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values or []:
        key, eq, value = v.partition("=")
        if not eq or key not in ("dangling", "reference", "label", "before", "since"):
            raise CommandError(
                f"invalid filter {v!r} (supported: dangling=true|false, reference=PATTERN, "
                "label=KEY[=VALUE], before=IMAGE, since=IMAGE)"
            )
        out.setdefault(key, []).append(value)
    return out


def cmd_images(args: argparse.Namespace) -> int:
    from cache.imageview import image_rows, list_images_fast, short_id

    images = list_images_fast(_root(args))
    store = None
    if images is None:  # something unusual: let the store validate and explain
        store = _store(args)
        images = store.list_images()
    rows = image_rows(store, images)
    rows = [r for r in rows if _matches(r, args.repository)]
    filters = _filters(args.filter)
    for value in filters.get("dangling", []):
        want = value.lower() in ("true", "1")
        rows = [r for r in rows if (r.tag == "<none>" and r.repository == "<none>") == want]
    for pattern in filters.get("reference", []):
        rows = [r for r in rows if _matches(r, pattern)]
    labels = {str(i.image_id): (i.config.get("config") or {}).get("Labels") or {} for i in images}
    for want in filters.get("label", []):
        key, eq, value = want.partition("=")
        rows = [
            r
            for r in rows
            if key in labels[str(r.image_id)] and (not eq or labels[str(r.image_id)][key] == value)
        ]
    for kind in ("before", "since"):
        for name in filters.get(kind, []):
            if store is None:
                store = _store(args)
            from cache.imageview import parse_created

            pivot = parse_created(store.get_image(name).created) or 0.0
            if kind == "before":
                rows = [r for r in rows if r.sort_key < pivot]
            else:
                rows = [r for r in rows if r.sort_key > pivot]
    if args.quiet:
        seen: list[str] = []
        for r in rows:
            ident = r.image_id if args.no_trunc else short_id(r.image_id)
            if ident not in seen:  # one line per image, as `docker images -q` in practice
                seen.append(ident)
        _write("".join(s + "\n" for s in seen))
        return 0
    if args.format:
        _print_formatted(args.format, [_image_json(r, no_trunc=args.no_trunc) for r in rows])
        return 0
    from frontend.render import print_table

    headers = (
        ["REPOSITORY", "TAG"]
        + (["DIGEST"] if args.digests else [])
        + ["IMAGE ID", "CREATED", "SIZE"]
    )
    table = []
    for r in rows:
        cells = [r.repository, r.tag]
        if args.digests:
            cells.append(r.digest)
        cells += [
            r.image_id if args.no_trunc else short_id(r.image_id),
            _since(r.created),
            _human(r.size),
        ]
        table.append(cells)
    print_table(headers, table)
    return 0


def _add_images_parser(sub: Any, name: str, aliases: list[str] | None = None) -> None:
    p = sub.add_parser(name, aliases=aliases or [], help="list images")
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument("-a", "--all", action="store_true", help="show all images")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--digests", action="store_true", help="show digests")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument(
        "--format", help="json, table, or a Go template such as '{{.Repository}}:{{.Tag}}'"
    )
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        help="dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE",
    )
    p.set_defaults(func=cmd_images)


# --- tag / rmi ----------------------------------------------------------------------------------


def cmd_tag(args: argparse.Namespace) -> int:
    store = _store(args)
    image = store.get_image(args.source)
    store.tag_image(image, args.target)
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cache.prune import containers, remove_image

    store = _store(args)
    users = containers(Path(_root(args)))
    status = 0
    for name in args.images:
        try:
            done = remove_image(store, name, force=args.force, containers=users)
        except PydockError as e:
            _err(e.message)
            status = 1
            continue
        _write("".join(f"{what}: {item}\n" for what, item in done))
    return status


# --- history ------------------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    from cache.imageview import MISSING, history_json, history_rows, short_id

    store = _store(args)
    image = store.get_image(args.image)
    rows = history_rows(store, image)
    trunc = not args.no_trunc
    if args.quiet:
        for r in rows:
            ident = r.image if (r.image == MISSING or not trunc) else short_id(r.image)
            _write(ident + "\n")
        return 0
    human = str(args.human).lstrip("=").lower() not in ("false", "0", "no")
    size_of = _human if human else str
    when = _since if human else _rfc3339
    if args.format:
        objs = [history_json(r, size_of, when, trunc=trunc) for r in rows]
        _print_formatted(args.format, objs)
        return 0
    from frontend.render import print_table

    table = []
    for r in rows:
        by = r.created_by.replace("\t", " ")
        if trunc:
            by = by.replace("\n", " ")
            if len(by) > 45:
                by = by[:44] + "…"
        ident = r.image if (r.image == MISSING or not trunc) else short_id(r.image)
        table.append([ident, when(r.created), by, size_of(r.size), r.comment])
    headers = ["IMAGE", "CREATED" if human else "CREATED AT", "CREATED BY", "SIZE", "COMMENT"]
    print_table(headers, table)
    return 0


def _rfc3339(created: str) -> str:
    from cache.imageview import parse_created

    ts = parse_created(created)
    if ts is None:
        return ""
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ts)))


# --- inspect ------------------------------------------------------------------------------------


def _container_json(c: Any) -> dict:
    """Docker's inspect JSON of a container, as the containers helper renders it."""
    return c.inspect()


def _find_container(root: str, name: str) -> Any:
    try:
        from executor.containers import ContainerStore
    except ImportError:
        return None
    try:
        return ContainerStore(root).find(name)
    except PydockError:
        return None


def cmd_inspect(args: argparse.Namespace) -> int:
    from cache.errors import BadReference, ImageNotFound
    from cache.imageview import inspect_image

    store = _store(args)
    root = _root(args)
    kind = getattr(args, "type", None) or getattr(args, "forced_type", None)
    results: list[dict] = []
    status = 0
    for name in args.names:
        obj = None
        if kind in (None, "container"):
            c = _find_container(root, name)
            if c is not None:
                obj = _container_json(c)
        if obj is None and kind in (None, "image"):
            try:
                obj = inspect_image(store, store.get_image(name))
            except (ImageNotFound, BadReference):
                obj = None
        if obj is None:
            what = {"image": "image", "container": "container"}.get(kind or "", "object")
            _err(f"No such {what}: {name}")
            status = 1
            continue
        results.append(obj)
    from frontend.render import print_inspect

    print_inspect(results, args.format)
    return status


# --- import / save / load -----------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from cache.importer import import_rootfs

    store = _store(args)
    if args.file == "-":
        image = import_rootfs(
            store,
            sys.stdin.buffer,
            tag=args.reference,
            changes=args.change,
            message=args.message,
            source_name="-",
        )
    else:
        image = import_rootfs(
            store, args.file, tag=args.reference, changes=args.change, message=args.message
        )
    _write(f"{image.image_id}\n")
    return 0


def cmd_save(args: argparse.Namespace) -> int:

    from cache.archive import save_images, select_for_save

    store = _store(args)
    selection = select_for_save(store, args.images)
    if not args.output:
        if sys.stdout.isatty():
            raise CommandError(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect"
            )
        sys.stdout.flush()
        save_images(store, selection, sys.stdout.buffer, fmt=args.format)
        sys.stdout.buffer.flush()
        return 0
    write_output(args.output, lambda f: save_images(store, selection, f, fmt=args.format))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from cache.archive import load_archive

    store = _store(args)
    if args.input:
        try:
            loaded = load_archive(store, args.input)
        except PydockError as e:
            if not e.message.startswith(args.input):  # name the file the problem is in
                e.args = (f"{args.input}: {e.message}",)
            raise
    else:
        if sys.stdin.isatty():
            raise CommandError("requested load from stdin, but stdin is empty")
        loaded = load_archive(store, sys.stdin.buffer)
    for img in loaded:
        if img.tags:
            for t in img.tags:
                _write(f"Loaded image: {t}\n")
        else:
            _write(f"Loaded image ID: {img.image_id}\n")
    return 0


# --- system -------------------------------------------------------------------------------------


def _system_df_verbose(store: Any) -> int:
    from cache.imageview import image_rows, short_id
    from cache.prune import disk_usage_verbose
    from frontend.render import print_table

    usage = disk_usage_verbose(store)
    by_id = {str(u.image.image_id): u for u in usage.images}
    _write("Images space usage:\n\n")
    table = []
    for r in image_rows(store, [u.image for u in usage.images]):
        u = by_id[str(r.image_id)]
        table.append(
            [r.repository, r.tag, short_id(r.image_id), _since(r.created), _human(u.size),
             _human(u.shared), _human(u.unique), str(u.containers)]
        )  # fmt: skip
    print_table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE",
         "CONTAINERS"],
        table,
    )  # fmt: skip
    _write("\nContainers space usage:\n\n")
    import time

    from frontend.render import human_duration

    table = []
    for c, size in usage.containers:
        cmd = c.command if len(c.command) <= 20 else c.command[:19] + "…"
        created = human_duration(time.time() - c.created) + " ago" if c.created else ""
        image = c.image_name or short_id(c.image_id)
        table.append(
            [c.id[:12], image, json.dumps(cmd), str(len(c.volumes)), _human(size), created,
             c.status, c.name]
        )  # fmt: skip
    print_table(
        ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS",
         "NAMES"],
        table,
    )  # fmt: skip
    _write("\nLocal Volumes space usage:\n\n")
    print_table(
        ["VOLUME NAME", "LINKS", "SIZE"],
        [[v.name, str(v.links), _human(v.size)] for v in usage.volumes],
    )
    _write(f"\nBuild cache usage: {_human(usage.build_cache)}\n")
    return 0


def cmd_system_df(args: argparse.Namespace) -> int:
    from cache.prune import disk_usage

    if args.verbose and not args.format:
        return _system_df_verbose(_store(args))
    rows = disk_usage(_store(args))
    if args.format:
        objs = [
            {
                "Active": str(r.active),
                "Reclaimable": _reclaim(r),
                "Size": _human(r.size),
                "TotalCount": str(r.total),
                "Type": r.kind,
            }
            for r in rows
        ]
        _print_formatted(args.format, objs)
        return 0
    from frontend.render import print_table

    print_table(
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        [[r.kind, str(r.total), str(r.active), _human(r.size), _reclaim(r)] for r in rows],
    )
    return 0


def _reclaim(r: Any) -> str:
    pct = int(round(100.0 * r.reclaimable / r.size)) if r.size else 0
    return f"{_human(r.reclaimable)} ({pct}%)" if r.kind != "Build Cache" else _human(r.reclaimable)


def _confirm(text: str) -> bool:
    sys.stdout.write(text + "\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _prune_containers(root: str) -> tuple[list[str], int]:
    """Remove stopped containers through the executor (as `docker system prune` does)."""
    from pathlib import Path

    try:
        from executor.containers import ContainerStore
        from executor.lifecycle import remove_container
    except ImportError:
        return [], 0
    from cache.prune import tree_size

    removed, freed = [], 0
    for c in ContainerStore(root).list():
        if c.state.running:
            continue
        size = tree_size(Path(c.dir) / "upper")
        remove_container(root, c)
        removed.append(c.id)
        freed += size
    return removed, freed


def _prune_volumes(root: str) -> tuple[list[str], int]:
    try:
        from executor.volumes import VolumeStore
    except ImportError:
        return [], 0
    removed = VolumeStore(root).prune(all_volumes=False)
    return [name for name, _ in removed], sum(size for _, size in removed)


def cmd_system_prune(args: argparse.Namespace) -> int:
    from cache.prune import prune

    system = args.scope == "system"
    volumes = system and args.volumes
    if not args.force:
        what = (
            "all images without at least one container associated to them"
            if args.all
            else "all dangling images"
        )
        items = []
        if system:
            items.append("all stopped containers")
        if volumes:
            items.append("all anonymous volumes not used by at least one container")
        items.append(what)
        if system:
            items.append("all build cache" if args.all else "unused build cache")
        text = "WARNING! This will remove:\n" + "".join(f"  - {i}\n" for i in items)
        if not _confirm(text.rstrip("\n")):
            return 0
    root = _root(args)
    freed = 0
    if system:
        removed, size = _prune_containers(root)
        freed += size
        if removed:
            _write("Deleted Containers:\n" + "".join(f"{c}\n" for c in removed) + "\n")
    if volumes:
        removed, size = _prune_volumes(root)
        freed += size
        if removed:
            _write("Deleted Volumes:\n" + "".join(f"{v}\n" for v in removed) + "\n")
    report = prune(_store(args), all_images=args.all, build_cache=system)
    if report.deleted_images:
        _write("Deleted Images:\n")
        for t in report.untagged:
            _write(f"untagged: {t}\n")
        for d in report.deleted_images:
            _write(f"deleted: {d}\n")
        _write("\n")
    if report.deleted_cache_entries:
        _write(f"Deleted build cache objects: {report.deleted_cache_entries}\n\n")
    _write(f"Total reclaimed space: {_human(report.reclaimed + freed)}\n")
    return 0


# --- bootstrap ----------------------------------------------------------------------------------


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from cache.bootstrap import make_busybox

    store = _store(args)
    image = make_busybox(store, args.busybox, tag=args.tag)
    _write(f"{args.tag} {image.image_id}\n")
    return 0


# --- registration -------------------------------------------------------------------------------


def _add_rmi(sub: Any, name: str, aliases: list[str] | None = None) -> None:
    p = sub.add_parser(name, aliases=aliases or [], help="remove images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--force", action="store_true", help="force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="accepted for compatibility")
    p.set_defaults(func=cmd_rmi)


def _add_tag(sub: Any) -> None:
    p = sub.add_parser("tag", help="create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)


def _add_history(sub: Any) -> None:
    p = sub.add_parser("history", help="show the history of an image")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    p.add_argument("--format", help="json, table, or a Go template")
    p.add_argument(
        "-H", "--human", default="true", metavar="BOOL", help="human-readable sizes and dates"
    )
    p.set_defaults(func=cmd_history)


def _add_import(sub: Any) -> None:
    p = sub.add_parser("import", help="import a root filesystem tarball as an image")
    p.add_argument("file", metavar="file|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.add_argument(
        "-c", "--change", action="append", default=[], help="apply a Dockerfile instruction"
    )
    p.add_argument("-m", "--message", help="commit message for the imported image")
    p.add_argument(
        "--platform", help="accepted for compatibility (this machine's platform is used)"
    )
    p.set_defaults(func=cmd_import)


def _add_save(sub: Any) -> None:
    p = sub.add_parser("save", help="save images to a tar archive")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-o", "--output", help="write to a file instead of stdout")
    p.add_argument("--format", choices=["docker", "oci"], default="docker", help="archive format")
    p.set_defaults(func=cmd_save)


def _add_load(sub: Any) -> None:
    p = sub.add_parser("load", help="load images from a tar archive or stdin")
    p.add_argument("-i", "--input", help="read from a tar archive file instead of stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")
    p.set_defaults(func=cmd_load)


def _add_inspect(sub: Any, name: str = "inspect", forced: str | None = None) -> None:
    p = sub.add_parser(name, help="return low-level information on images or containers")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("-f", "--format", help="format the output with a Go template, or json")
    if forced is None:
        p.add_argument("--type", choices=["image", "container"], help="only this kind of object")
    p.set_defaults(func=cmd_inspect, forced_type=forced)


def _add_prune(sub: Any, name: str, scope: str) -> None:
    p = sub.add_parser(
        name, help="remove unused data" if scope == "system" else "remove unused images"
    )
    p.add_argument(
        "-a", "--all", action="store_true", help="remove all unused images, not just dangling ones"
    )
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    if scope == "system":
        p.add_argument("--volumes", action="store_true", help="prune anonymous volumes too")
    p.set_defaults(func=cmd_system_prune, scope=scope)


def _wanted_command() -> str | None:
    """The sub-command this pydock process runs, when that is certain (else None).

    Building the parsers of all the image commands costs ~10 ms, a good part of the
    `pydock images` budget, so only the one being run is built. Only a process started as
    `pydock ...` is trusted: a caller of `main(argv)` with its own argv gets every parser.
    """
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    if prog not in ("pydock", "pydock.py"):
        return None
    from frontend.cli import _first_command

    return _first_command(sys.argv[1:], dict.fromkeys(_BUILDERS, ""))


def _add_image_group(subparsers: Any) -> None:
    image = subparsers.add_parser("image", help="manage images")
    isub = image.add_subparsers(dest="image_command", metavar="COMMAND", parser_class=type(image))
    _add_images_parser(isub, "ls", aliases=["list"])
    _add_rmi(isub, "rm", aliases=["remove"])
    _add_inspect(isub, "inspect", forced="image")
    _add_history(isub)
    _add_import(isub)
    _add_save(isub)
    _add_load(isub)
    _add_tag(isub)
    _add_prune(isub, "prune", "image")
    image.set_defaults(func=lambda a: (image.print_help(), 1)[1])


def _add_system_group(subparsers: Any) -> None:
    system = subparsers.add_parser("system", help="manage pydock")
    ssub = system.add_subparsers(
        dest="system_command", metavar="COMMAND", parser_class=type(system)
    )
    df = ssub.add_parser("df", help="show disk usage")
    df.add_argument("-v", "--verbose", action="store_true", help="show detailed information")
    df.add_argument("--format", help="json, table, or a Go template")
    df.set_defaults(func=cmd_system_df)
    _add_prune(ssub, "prune", "system")
    system.set_defaults(func=lambda a: (system.print_help(), 1)[1])


def _add_bootstrap_group(subparsers: Any) -> None:
    boot = subparsers.add_parser("bootstrap", help="make a base image")
    bsub = boot.add_subparsers(dest="bootstrap_command", metavar="IMAGE", parser_class=type(boot))
    bb = bsub.add_parser("busybox", help="make busybox:latest from a static busybox binary")
    bb.add_argument(
        "--busybox", default="/bin/busybox", metavar="PATH", help="the static busybox binary"
    )
    bb.add_argument("-t", "--tag", default="busybox:latest", help="name of the image")
    bb.set_defaults(func=cmd_bootstrap)
    boot.set_defaults(func=lambda a: (boot.print_help(), 1)[1])


_BUILDERS = {
    "images": lambda sub: _add_images_parser(sub, "images"),
    "tag": _add_tag,
    "rmi": lambda sub: _add_rmi(sub, "rmi"),
    "history": _add_history,
    "import": _add_import,
    "save": _add_save,
    "load": _add_load,
    "inspect": _add_inspect,
    "image": _add_image_group,
    "system": _add_system_group,
    "bootstrap": _add_bootstrap_group,
}


def register(subparsers: Any) -> None:
    """Add the image commands to pydock's sub-command parser."""
    wanted = _wanted_command()
    for name, build in _BUILDERS.items():
        if wanted is None or name == wanted:
            build(subparsers)
