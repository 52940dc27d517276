"""The build context: a folder, a tar read from stdin (unpacked to a staging folder), or none.

The file set is what remains after `.dockerignore`. Sources of ADD/COPY are resolved here and
get a content key: xxh3_128 over, for every file under the source, its context-relative path,
type, mode bits, uid, gid, symlink target and content hash. mtime is left out on purpose, so a
`touch` or a fresh checkout does not bust the cache.

Hashing content is the expensive part; a stat cache (path → size, mtime, inode, ctime, hash)
persisted under ROOT/buildcache/contexts/ makes re-keying an unchanged context nearly free.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
from pathlib import Path

import xxhash

from builder.dockerignore import IgnoreRules
from cache.errors import PydockError
from cache.records import record
from cache.staging import atomic_write


class ContextError(PydockError):
    """A source that is missing, ignored or outside the build context."""


_WILDCARD = re.compile(r"[*?\[]")


@record
class Source:
    """One resolved source: its context-relative path ('' for the root) and its lstat."""

    rel: str
    path: Path
    st: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)


def clean_rel(src: str) -> str:
    """A source as written → a context-relative path; `..` escapes are refused.

    Docker reads a leading `/` as the context root, so `/app` and `app` are the same source.
    """
    norm = posixpath.normpath("/" + src.replace("\\", "/") if src else "/")
    rel = norm.lstrip("/")
    raw = posixpath.normpath(src) if src else "."
    if raw == ".." or raw.startswith("../"):
        raise ContextError(f"COPY/ADD source {src!r} is outside the build context")
    return "" if rel == "." else rel


class BuildContext:
    """A build context rooted at `root` (None: no context, every local source is an error)."""

    def __init__(
        self,
        root: Path | None,
        ignore: IgnoreRules | None = None,
        stat_cache_path: Path | None = None,
    ) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.ignore = ignore or IgnoreRules()
        self._stat_cache_path = stat_cache_path
        self._stat_cache: dict[str, list] | None = None
        self._stat_dirty = False
        self._key_memo: dict[str, str] = {}
        self._detail_memo: dict[str, dict[str, str]] = {}
        self._walk: dict[str, os.stat_result] | None = None
        self._walks: dict[str, dict[str, os.stat_result]] = {}

    # ---- file set -------------------------------------------------------------------------
    def included(self, rel: str) -> bool:
        return rel == "" or not self.ignore.excluded(rel)

    def files(self, under: str = "") -> dict[str, os.stat_result]:
        """Every path of the context (or of the folder `under`, paths still relative to the
        context root) after .dockerignore, sorted parents first, with its lstat.

        A folder that is excluded is pruned unless exception patterns could bring back
        something under it; then it is walked and kept if anything under it stays. Only the
        folder asked for is walked: `COPY app/ ...` never reads the rest of the context.
        """
        if self._walk is not None:
            if not under:
                return self._walk
            prefix = under + "/"
            return {k: v for k, v in self._walk.items() if k.startswith(prefix)}
        if under in self._walks:
            return self._walks[under]
        out: dict[str, os.stat_result] = {}
        if self.root is None:
            return out
        has_exc = self.ignore.has_exceptions
        ignore = self.ignore

        def walk(dirpath: str, prefix: str) -> bool:
            kept_any = False
            try:
                entries = sorted(os.scandir(dirpath), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                return False
            for ent in entries:
                rel = prefix + ent.name
                st = ent.stat(follow_symlinks=False)
                excluded = ignore.excluded(rel) if ignore.patterns else False
                if stat.S_ISDIR(st.st_mode):
                    if excluded and not (has_exc and ignore.may_include_below(rel)):
                        continue
                    out[rel] = st
                    below = walk(ent.path, rel + "/")
                    if excluded and not below:
                        del out[rel]
                        continue
                    kept_any = True
                elif not excluded:
                    out[rel] = st
                    kept_any = True
            return kept_any

        start = self.root / under if under else self.root
        walk(str(start), under + "/" if under else "")
        result = dict(sorted(out.items()))
        if under:
            self._walks[under] = result
        else:
            self._walk = result
        return result

    # ---- resolving sources ----------------------------------------------------------------
    def resolve(self, src: str, instruction: str = "COPY") -> list[Source]:
        """The sources one ADD/COPY argument names (a path or a wildcard), sorted.

        Missing sources raise ContextError naming the path, and saying when it exists but is
        excluded by .dockerignore. A symlink named directly is followed inside the context
        and refused when it leads out.
        """
        if self.root is None:
            raise ContextError(
                f"{instruction} {src}: there is no build context (the Dockerfile came on stdin)"
            )
        rel = clean_rel(src)
        if _WILDCARD.search(rel):
            pat = _glob_regex(rel)
            fixed: list[str] = []
            for part in rel.split("/"):
                if _WILDCARD.search(part):
                    break
                fixed.append(part)
            under = "/".join(fixed)
            if under and not (self.root / under).is_dir():
                under = ""
            # A wildcard matching nothing copies nothing (BuildKit, Docker's builder).
            names = [p for p in self.files(under) if pat.match(p)]
            return [self._source(n, src, instruction) for n in names]
        return [self._source(rel, src, instruction)]

    def _source(self, rel: str, src: str, instruction: str, follow: bool = True) -> Source:
        assert self.root is not None
        path = self.root / rel if rel else self.root
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise ContextError(
                f"{instruction} {src}: {rel or '.'!s} not found in the build context"
            ) from None
        if rel and not self.included(rel):
            raise ContextError(
                f"{instruction} {src}: {rel} exists but is excluded by {self.ignore.source or '.dockerignore'}"
            )
        if stat.S_ISLNK(st.st_mode) and follow:
            target = self._follow(rel)
            if target is None:
                raise ContextError(
                    f"{instruction} {src}: symlink {rel} leads outside the build context"
                )
            rel = target
            path = self.root / rel if rel else self.root
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                raise ContextError(
                    f"{instruction} {src}: {rel} (symlink target) not found in the build context"
                ) from None
        return Source(rel, path, st)

    def _follow(self, rel: str, depth: int = 0) -> str | None:
        """Resolve a symlink chain inside the context root; None when it leads out."""
        assert self.root is not None
        if depth > 40:
            return None
        parts = rel.split("/")
        cur: list[str] = []
        for i, part in enumerate(parts):
            cand = "/".join([*cur, part])
            p = self.root / cand
            if p.is_symlink():
                link = os.readlink(p)
                base = "" if link.startswith("/") else "/".join(cur)
                joined = posixpath.normpath(posixpath.join("/", base, link))
                rest = "/".join(parts[i + 1 :])
                full = posixpath.normpath(posixpath.join(joined, rest)) if rest else joined
                # An absolute target or `..` past the root leaves the context.
                if link.startswith("/") or _escapes(base, link):
                    return None
                return self._follow(full.lstrip("/"), depth + 1) if full != "/" else ""
            cur.append(part)
        return rel

    # ---- content keys ---------------------------------------------------------------------
    def content_key(self, source: Source) -> str:
        """The content key of a source: a file, a symlink, or a folder and all it holds."""
        if source.rel in self._key_memo:
            return self._key_memo[source.rel]
        h = xxhash.xxh3_128()
        detail: dict[str, str] = {}
        if source.is_dir:
            prefix = source.rel + "/" if source.rel else ""
            for rel, st in self.files(source.rel).items():
                if rel.startswith(prefix):
                    detail[rel] = self._feed(h, rel[len(prefix) :], rel, st)
        else:
            detail[source.rel] = self._feed(
                h, posixpath.basename(source.rel), source.rel, source.st
            )
        key = h.hexdigest()
        self._key_memo[source.rel] = key
        self._detail_memo[source.rel] = detail
        return key

    def file_keys(self, source: Source) -> dict[str, str]:
        """Per-file keys of a source (context path -> short key), to name what changed."""
        self.content_key(source)
        return self._detail_memo[source.rel]

    def _feed(self, h: xxhash.xxh3_128, name: str, rel: str, st: os.stat_result) -> str:
        # In the key: relative name, file type + permission bits, uid, gid, link target,
        # content. Not in it: mtime, atime, ctime, inode (they change without the content).
        kind = stat.S_IFMT(st.st_mode)
        extra = ""
        if stat.S_ISREG(kind):
            extra = self.file_hash(rel, st)
        elif stat.S_ISLNK(kind):
            assert self.root is not None
            extra = os.readlink(self.root / rel)
        line = (
            f"{name}\0{kind:o}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_uid}\0{st.st_gid}\0{extra}\n"
        )
        data = line.encode("utf-8", "surrogateescape")
        h.update(data)
        return xxhash.xxh3_64_hexdigest(data)

    def file_hash(self, rel: str, st: os.stat_result) -> str:
        """Content hash (xxh3-128) of the context file `rel` whose lstat is `st`, from the
        stat cache when size, mtime, inode and ctime are unchanged."""
        cache = self._load_stat_cache()
        sig = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        hit = cache.get(rel)
        if hit is not None and hit[:4] == sig:
            return hit[4]
        assert self.root is not None
        h = xxhash.xxh3_128()
        with open(self.root / rel, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        cache[rel] = [*sig, digest]
        self._stat_dirty = True
        return digest

    def _load_stat_cache(self) -> dict[str, list]:
        if self._stat_cache is None:
            self._stat_cache = {}
            if self._stat_cache_path is not None:
                try:
                    self._stat_cache = json.loads(self._stat_cache_path.read_bytes())
                except (OSError, ValueError):
                    self._stat_cache = {}
        return self._stat_cache

    def save_stat_cache(self) -> None:
        """Write the stat cache back if it learned anything (temp file, then rename)."""
        if not self._stat_dirty or self._stat_cache_path is None or self._stat_cache is None:
            return
        path = self._stat_cache_path
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self._stat_cache, separators=(",", ":")).encode()
        atomic_write(path.parent, path, data, 0o600, sync=False, kind=".stat")
        self._stat_dirty = False


def stat_cache_path(store_root: Path, context_root: Path) -> Path:
    """Where the stat cache of one context folder lives in the store."""
    name = xxhash.xxh3_64_hexdigest(str(Path(context_root).resolve()).encode())
    return Path(store_root) / "buildcache" / "contexts" / f"{name}.json"


def _escapes(base: str, link: str) -> bool:
    depth = len([p for p in base.split("/") if p])
    for part in link.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return True
    return False


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match over whole paths: `*` and `?` stay inside one path element."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and "]" in pattern[i + 1 :]:
            j = pattern.index("]", i + 1)
            body = pattern[i + 1 : j]
            if body[:1] in ("^", "!"):
                body = "^" + body[1:]
            out.append("[" + body + "]")
            i = j
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out))


def unpack_tar_context(stream, dest: Path) -> None:
    """Unpack a tar context (plain or compressed) read from a stream into `dest`."""
    import tarfile

    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            tf.extractall(dest, filter="tar")
    except (tarfile.TarError, OSError) as exc:
        raise ContextError(f"cannot read the build context tar from stdin: {exc}") from None
