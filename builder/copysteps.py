"""The ADD/COPY step: sources (context, heredoc, URL, another stage or image), their key parts,
and the layer written by `builder.copy`.

Key parts: ("parent", ...), ("instruction", expanded text), then one ("src:<path>", key) per
source: the context content key (path, mode, owner, content; never mtime), the heredoc body's
hash, the URL's checksum or fetched content hash, or for `--from` the source stage's last step
key (or image id), so a rebuilt stage re-runs the COPY that reads it.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from pathlib import Path
from typing import Any

import xxhash

from builder.context import ContextError
from builder.copy import (
    CopyError,
    CopySource,
    LayerBuilder,
    Reuse,
    archive_kind,
    copy_sources,
    dest_path,
    entries_from_context,
    parse_chmod,
    unpack_archive,
)

_URL_RE = re.compile(r"^https?://", re.IGNORECASE)
_WILD = re.compile(r"[*?\[]")


def copy_step(solver: Any, ctx: Any, node: Any, what: str) -> None:
    from builder.history import json_list
    from builder.steps import BuildError, commit_dir

    fname = solver.opts.dockerfile_name
    flags = solver._flags(ctx, node, expand=("from", "chown", "chmod", "checksum", "exclude"))
    heredocs = {h.name: h for h in node.heredocs}
    words = []
    for w in node.args:
        if w.startswith("<<") and w.lstrip("<-").strip("'\"") in heredocs:
            words.append(w)
        else:
            words.append(solver._expand(ctx, w))
    if len(words) < 2:
        raise BuildError(f"{fname}:{node.start_line}: {what} requires at least two arguments")
    srcs, dest = words[:-1], words[-1]
    from_ref = (flags.get("from") or [None])[-1]
    chown_text = (flags.get("chown") or [None])[-1]
    chmod = parse_chmod(flags["chmod"][-1]) if "chmod" in flags else None
    link = "link" in flags and flags["link"][-1] != "false"
    checksum = (flags.get("checksum") or [None])[-1]
    parents = "parents" in flags and flags["parents"][-1] != "false"
    excludes = flags.get("exclude", [])
    for unsupported in ("keep-git-dir",):
        if unsupported in flags:
            raise BuildError(f"{fname}:{node.start_line}: {what} --{unsupported} is not supported")
    if what == "COPY" and any(_URL_RE.match(s) for s in srcs):
        raise BuildError(f"{fname}:{node.start_line}: COPY cannot fetch URLs; use ADD")

    parts: list[tuple[str, str]] = [("parent", "link" if link else ctx.state.key)]
    flag_text = " ".join(node.flags)
    instr = f"{what} {flag_text + ' ' if flag_text else ''}{json_list([*srcs, dest])}"
    if link:
        instr += f" workdir={ctx.state.workdir}"
    parts.append(("instruction", instr))

    # Resolve sources now: their content is part of the key.
    plan: list[tuple[str, Any]] = []  # (kind, payload)
    detail: dict[str, dict[str, str]] = {}
    if from_ref is not None:
        from_state, from_key = solver.stage_state(from_ref, node)
        for s in srcs:
            parts.append((f"src:--from={from_ref}:{s}", from_key))
            plan.append(("from", (from_state, s)))
    else:
        context = solver.context
        for s in srcs:
            if s.startswith("<<") and s.lstrip("<-").strip("'\"") in heredocs:
                doc = heredocs[s.lstrip("<-").strip("'\"")]
                body = doc.body
                if doc.expand:
                    body = _expand_body(solver, ctx, body)
                parts.append((f"src:<<{doc.name}", xxhash.xxh3_128_hexdigest(body.encode())))
                plan.append(("bytes", (doc.name, body.encode())))
            elif what == "ADD" and _URL_RE.match(s):
                part, payload = _url_source(s, checksum, dest)
                parts.append((f"src:{s}", part))
                plan.append(("url", payload))
            else:
                try:
                    resolved = context.resolve(s, what)
                except ContextError as exc:
                    raise ContextError(f"{fname}:{node.start_line}: {exc.message}") from None
                for src in resolved:
                    part = f"src:{src.rel or '.'}"
                    parts.append((part, context.content_key(src)))
                    if src.is_dir:
                        detail[part] = context.file_keys(src)
                    plan.append(("context", src))

    if checksum and not any(k == "url" for k, _ in plan):
        raise BuildError(f"{fname}:{node.start_line}: ADD --checksum only works with URL sources")

    diff_ids = list(ctx.state.diff_ids)
    workdir = ctx.state.workdir
    sde = solver.sde
    # Docker's classic form: `COPY file:<hash> in /dest `, `dir:` for one folder, `multi:`
    # for several sources (our hash is the content key, xxh3-128, not Docker's sha256).
    src_keys = [v for k, v in parts if k.startswith("src:")]
    if len(plan) == 1 and plan[0][0] == "context" and plan[0][1].is_dir:
        kind_word = "dir"
    elif len(plan) == 1:
        kind_word = "file"
    else:
        kind_word = "multi"
    summary = (
        src_keys[0]
        if len(src_keys) == 1
        else xxhash.xxh3_128_hexdigest(",".join(src_keys).encode())
    )
    from_note = f"--from={from_ref} " if from_ref is not None else ""
    created_by = (
        f"{' '.join(ctx.state.shell)} #(nop)  {what} {from_note}{kind_word}:{summary} in {dest} "
    )

    excluder = None
    if excludes:
        from builder.dockerignore import parse_ignore

        excluder = parse_ignore("\n".join(excludes), source="--exclude")

    def execute(num: int, name: str) -> str | None:
        view = solver.view_of(diff_ids)
        owner = None
        if chown_text:
            from builder.rootview import lookup_user

            try:
                owner = lookup_user(view, chown_text)
            except KeyError as exc:
                raise CopyError(f"{what} --chown={chown_text}: {exc.args[0]}") from None
        with solver.store.tmp_dir("copy") as d:
            upper = d / "upper"
            upper.mkdir()
            lb = LayerBuilder(upper, None if link else view, sde)
            sources: list[CopySource] = []
            archives: list[tuple[Path, str]] = []
            for kind, payload in plan:
                if kind == "context":
                    src = payload
                    if what == "ADD" and not src.is_dir:
                        ak = archive_kind(src.path)
                        if ak is not None:
                            archives.append((src.path, ak))
                            continue
                    cs = _context_source(solver.context, src, excluder, parents)
                    if cs is not None:
                        sources.append(cs)
                elif kind == "bytes":
                    name_, data = payload
                    sources.append(CopySource("bytes", name_, data=data, mode=0o644))
                elif kind == "url":
                    sources.append(_fetch(payload, d))
                elif kind == "from":
                    st, s = payload
                    sources.extend(_stage_sources(solver, st, s, name))
            total = len(sources) + len(archives)
            if total > 1 and not dest.endswith("/"):
                raise CopyError(
                    f"{what}: when using {what} with more than one source file, the "
                    f"destination must be a directory and end with a / ({dest})"
                )
            # An archive unpacked over the layer may rewrite any path: no record, no links.
            record = not archives
            if record:
                lb.hashes = _context_hashes(solver.context, sources)
                if not solver.opts.no_cache:
                    lb.reuse = _previous_layer(solver, parts, diff_ids, sde)
            if sources:
                copy_sources(lb, sources, dest, workdir, chown=owner, chmod=chmod, what=what)
            for path, ak in archives:
                target = lb.resolve(dest_path(dest, workdir).rstrip("/") or "/")
                unpack_archive(lb, path, ak, target, owner)
                lb.finish()
            diff_id = commit_dir(
                solver.store, upper, overlay_upper=False, sde=sde, stack=diff_ids, keep_empty=True
            )
            if record and diff_id is not None and lb.record:
                solver.cache.write_files(diff_id, lb.record)
            return diff_id

    display = node.original if len(node.original) < 200 else node.original[:197] + "..."
    solver._step(ctx, node, display, parts, execute, created_by, detail=detail)


def _context_hashes(context: Any, sources: list[CopySource]) -> dict[Path, str]:
    """Content hashes of the regular context files among `sources` (host path -> hash), from
    the context's stat cache (already computed for the step's key)."""
    out: dict[Path, str] = {}
    if context is None or context.root is None:
        return out
    prefix = str(context.root).rstrip("/") + "/"
    for cs in sources:
        if cs.keep_owner:  # another stage's or image's files: no context hash
            continue
        if cs.kind == "dir":
            items = [(host, st) for _rel, host, st in cs.entries]
        elif cs.kind == "file" and cs.host is not None and cs.st is not None:
            items = [(cs.host, cs.st)]
        else:
            continue
        for host, st in items:
            if not stat.S_ISREG(st.st_mode):
                continue
            path = str(host)
            if path.startswith(prefix):
                out[host] = context.file_hash(path[len(prefix) :], st)
    return out


def _previous_layer(
    solver: Any, parts: list[tuple[str, str]], diff_ids: list[str], sde: int | None
) -> Reuse | None:
    """The layer the same step made last time, unpacked on this very parent stack, with its
    file record; None if there is none.

    Only the entry of the same parent key and instruction counts, and only its dir at
    layers/<chain of this stack + that layer>: every inode shared that way stays within the
    runs of one step at one place in the stack, so a layer below never holds one of them (an
    overlay stack showing one inode at two paths would make `du` or `tar` in a container see
    hard links that a build without reuse does not have). For the same reason a layer that is
    in the stack below is never linked from."""
    from cache.digest import chain_ids

    prev = solver.cache.closest(parts)
    if prev is None or not prev.diff_id or prev.diff_id in diff_ids:
        return None
    if dict(prev.parts).get("parent") != dict(parts).get("parent"):
        return None
    files = solver.cache.read_files(prev.diff_id)
    if not files:
        return None
    u = solver.store.layers.unpacked(chain_ids([*diff_ids, prev.diff_id])[-1])
    return Reuse(u.path, files, sde) if u is not None else None


def _expand_body(solver: Any, ctx: Any, body: str) -> str:
    """A heredoc body with variables expanded (quotes kept, as BuildKit does)."""
    env = solver._env(ctx)

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return env.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, body)


def _context_source(
    context: Any, src: Any, excluder: Any = None, parents: bool = False
) -> CopySource | None:
    """A context source as a CopySource; `excluder` (COPY --exclude rules) drops paths,
    matched relative to the source folder; `parents` keeps the source's own path under DEST."""
    name = posixpath.basename(src.rel) if src.rel else "."
    if src.is_dir:
        entries = entries_from_context(context.files(src.rel), context.root, src.rel)
        if excluder is not None:
            entries = [e for e in entries if not excluder.excluded(e[0])]
        subdir = src.rel if parents else ""
        return CopySource("dir", name, host=src.path, st=src.st, entries=entries, subdir=subdir)
    if excluder is not None and (excluder.excluded(src.rel) or excluder.excluded(name)):
        return None
    return CopySource("file", src.rel if parents else name, host=src.path, st=src.st)


def _stage_sources(solver: Any, st: Any, src: str, step: str) -> list[CopySource]:
    """Sources read from another stage's (or image's) root."""
    view = solver.view_of(list(st.diff_ids))
    base = posixpath.normpath("/" + src)
    if _WILD.search(posixpath.basename(base)):
        import fnmatch

        parent = view.resolve(posixpath.dirname(base))
        names = [
            n for n in view.listdir(parent) if fnmatch.fnmatchcase(n, posixpath.basename(base))
        ]
        rels = [f"{parent}/{n}" if parent else n for n in names]

    else:
        rels = [view.resolve(base)]
    out = []
    for rel in rels:
        host = view.host_path(rel)
        if host is None:
            raise CopyError(f"{step}: {src} not found in the source stage or image")
        lst = os.lstat(host)
        name = posixpath.basename(rel) or "."
        if stat.S_ISDIR(lst.st_mode):
            entries = list(view.walk(rel))
            out.append(CopySource("dir", name, host=host, st=lst, entries=entries, keep_owner=True))
        else:
            out.append(CopySource("file", name, host=host, st=lst, keep_owner=True))
    return out


def _url_source(url: str, checksum: str | None, dest: str) -> tuple[str, dict]:
    """The key part of a URL source: its checksum when given, else the fetched content's."""
    payload = {"url": url, "checksum": checksum, "data": None, "mtime": None}
    if checksum:
        return checksum, payload
    data, mtime = _download(url)
    payload["data"], payload["mtime"] = data, mtime
    import hashlib  # only for ADD of a URL

    return "sha256:" + hashlib.sha256(data).hexdigest(), payload


def _download(url: str) -> tuple[bytes, int | None]:
    import urllib.error
    import urllib.request
    from email.utils import parsedate_to_datetime

    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - http(s) only
            data = resp.read()
            lm = resp.headers.get("Last-Modified")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CopyError(f"ADD {url}: cannot fetch it: {reason}") from None
    mtime = None
    if lm:
        try:
            mtime = int(parsedate_to_datetime(lm).timestamp())
        except (TypeError, ValueError):
            mtime = None
    return data, mtime


def _fetch(payload: dict, tmp: Path) -> CopySource:
    url = payload["url"]
    data = payload["data"]
    mtime = payload["mtime"]
    if data is None:
        data, mtime = _download(url)
    checksum = payload["checksum"]
    if checksum:
        algo, _, want = checksum.partition(":")
        if algo not in ("sha256", "sha384", "sha512") or not want:
            raise CopyError(f"ADD --checksum={checksum}: expected sha256:<hex>")
        import hashlib

        got = hashlib.new(algo, data).hexdigest()
        if got != want:
            raise CopyError(f"ADD {url}: checksum mismatch: expected {checksum}, got {algo}:{got}")
    name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or "index.html"
    return CopySource("bytes", name, data=data, mode=0o600, mtime=mtime)
