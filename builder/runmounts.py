"""`RUN --mount=...`: cache, bind and tmpfs mounts turned into executor mounts.

- `type=cache,target=/root/.cache[,id=..][,mode=..][,uid=..][,gid=..][,ro]`: a folder kept
  under ROOT/buildcache/mounts/<id> across builds (the id defaults to the target), never in a
  layer;
- `type=bind,target=..[,source=..][,from=stage|image][,rw]`: a folder or file of the context
  (read-only unless rw; Docker discards writes, we refuse them) or of another stage's root;
- `type=tmpfs,target=..[,size=..]`: a fresh tmpfs.
Secrets and ssh mounts are refused with a clear message.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import xxhash

from cache.errors import PydockError
from executor.spec import Mount


class MountError(PydockError):
    pass


def _fields(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        k, eq, v = item.partition("=")
        out[k.strip().lower()] = v.strip() if eq else "true"
    return out


def mount_key_parts(specs: list[str], solver: Any, node: Any) -> list[tuple[str, str]]:
    """Key parts for what a RUN reads through bind mounts: the content key of a context
    source, or the last step key / image id of the stage or image it comes from. Cache and
    tmpfs mounts are deliberately not in the key (a cache mount is a cache)."""
    parts: list[tuple[str, str]] = []
    for spec in specs:
        f = _fields(spec)
        if f.get("type", "bind") != "bind":
            continue
        source = f.get("source") or f.get("src") or "."
        if "from" in f:
            _, key = solver.stage_state(f["from"], node)
            parts.append((f"mount:--from={f['from']}:{source}", key))
        else:
            for src in solver.context.resolve(source, "RUN --mount"):
                parts.append((f"mount:{src.rel or '.'}", solver.context.content_key(src)))
    return parts


def _merged_copy(view: Any, rel: str, scratch: Path, link: bool) -> Path:
    """The merged content of `rel` in another image, gathered into a fresh folder (files
    hard-linked from the unpacked layers for a read-only mount, copied for a writable one)."""
    import shutil
    import stat as st_

    src = view.host_path(rel)
    dest = Path(tempfile.mkdtemp(dir=scratch, prefix="bind-"))
    if not st_.S_ISDIR(os.lstat(src).st_mode):
        target = dest / "file"
        if link:
            os.link(src, target)
        else:
            shutil.copy2(src, target)
        return target
    for name, host, st in view.walk(rel):
        target = dest / name
        if st_.S_ISDIR(st.st_mode):
            target.mkdir()
            os.chmod(target, st_.S_IMODE(st.st_mode))
        elif st_.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(host), target)
        elif st_.S_ISREG(st.st_mode):
            if link:
                os.link(host, target)
            else:
                shutil.copy2(host, target)
    return dest


def parse_mounts(
    specs: list[str], solver: Any, ctx: Any, node: Any, scratch: Path | None = None
) -> list[Mount]:
    where = f"{solver.opts.dockerfile_name}:{node.start_line}"
    scratch = scratch or Path(solver.store.root) / "tmp"
    mounts: list[Mount] = []
    for spec in specs:
        f = _fields(spec)
        kind = f.get("type", "bind")
        target = f.get("target") or f.get("dst") or f.get("destination")
        if not target:
            raise MountError(f"{where}: RUN --mount={spec}: target= is required")
        if not target.startswith("/"):
            target = os.path.join(ctx.state.workdir, target)
        readonly = f.get("ro") == "true" or f.get("readonly") == "true"
        if kind == "cache":
            ident = f.get("id") or target
            name = xxhash.xxh3_64_hexdigest(ident.encode())
            d = Path(solver.store.root) / "buildcache" / "mounts" / name
            if not d.exists():
                d.mkdir(parents=True)
                os.chmod(d, int(f.get("mode", "755"), 8))
                os.chown(d, int(f.get("uid", "0")), int(f.get("gid", "0")))
            mounts.append(Mount(target=target, type="bind", source=d, readonly=readonly))
        elif kind == "tmpfs":
            opts = f"size={f['size']}" if "size" in f else ""
            mounts.append(Mount(target=target, type="tmpfs", options=opts))
        elif kind == "bind":
            source = f.get("source") or f.get("src") or "."
            rw = f.get("rw") == "true" or f.get("readwrite") == "true"
            if "from" in f:
                st, _ = solver.stage_state(f["from"], node)
                view = solver.view_of(list(st.diff_ids))
                rel = view.resolve(source)
                if view.host_path(rel) is None:
                    raise MountError(f"{where}: RUN --mount: {source} not found in {f['from']}")
                host = _merged_copy(view, rel, scratch, link=not rw)
            else:
                ctx_src = solver.context.resolve(source, "RUN --mount")[0]
                host = ctx_src.path
            mounts.append(Mount(target=target, type="bind", source=Path(host), readonly=not rw))
        else:
            raise MountError(
                f"{where}: RUN --mount=type={kind} is not supported (cache, bind, tmpfs)"
            )
    return mounts
