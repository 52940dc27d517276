"""The build cache: step key → result, under ROOT/buildcache/<key>.json.

A step key is xxh3_128 over the step's named parts (`("parent", ...)`, `("instruction", ...)`,
`("env", ...)`, `("src:app/main.py", ...)`). Each entry stores those parts next to the result, so
a miss can be explained by diffing against the closest earlier entry: the one last written for
the same parent and instruction (its "family"), else the same instruction under another parent.

The result is what the step produced: the layer's DiffID (or None for "no layer"), the history
entry, and the image's runtime config after the step. Entries are small JSON files written with
temp-file-then-rename, so a crash never leaves a half entry behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import xxhash

from cache.records import field, record
from cache.staging import atomic_write

Parts = Sequence[tuple[str, str]]


def step_key(parts: Parts) -> str:
    """xxh3_128 hex of the named parts; names and values are length-prefixed so no two part
    lists hash alike by shifting text from one part to the next."""
    h = xxhash.xxh3_128()
    for name, value in parts:
        for text in (name, value):
            data = text.encode("utf-8", "surrogateescape")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()


def _family_keys(parts: Parts) -> tuple[str, str]:
    named = dict(parts)
    instr = named.get("instruction", "")
    return (
        step_key([("parent", named.get("parent", "")), ("instruction", instr)]),
        step_key([("instruction", instr)]),
    )


@record
class CacheEntry:
    """One cached step: its key, the parts the key was made of (in order) and the result."""

    key: str
    parts: list[tuple[str, str]]
    result: dict
    created: float = field(default_factory=time.time)
    # Not part of the key: per-file keys of folder sources (part name -> path -> key), kept
    # only so a miss can name the file that changed rather than the folder.
    detail: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def diff_id(self) -> str | None:
        return self.result.get("diff_id")

    def to_json(self) -> bytes:
        doc = {
            "key": self.key,
            "parts": [list(p) for p in self.parts],
            "result": self.result,
            "created": self.created,
        }
        if self.detail:
            doc["detail"] = self.detail
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CacheEntry:
        doc = json.loads(data)
        return cls(
            key=doc["key"],
            parts=[(str(a), str(b)) for a, b in doc.get("parts", [])],
            result=doc.get("result") or {},
            created=float(doc.get("created", 0)),
            detail=doc.get("detail") or {},
        )


def _file_changes(name: str, old: dict[str, str], new: dict[str, str]) -> list[str]:
    prefix = name.split(":", 1)[0] + ":"
    words = [f"{prefix}{p} changed" for p in new if p in old and old[p] != new[p]]
    words += [f"{prefix}{p} added" for p in new if p not in old]
    words += [f"{prefix}{p} removed" for p in old if p not in new]
    if len(words) > 3:
        words = [*words[:3], f"and {len(words) - 3} more"]
    return words


def explain_miss(
    parts: Parts, previous: CacheEntry | None, detail: dict[str, dict[str, str]] | None = None
) -> str:
    """Why a key missed, as a short phrase: which named parts differ from the closest entry
    (naming the files inside a folder source when both sides have per-file detail)."""
    if previous is None:
        return "not built before"
    old = dict(previous.parts)
    new = dict(parts)
    if old.get("parent") != new.get("parent"):
        return "parent changed"
    changed = []
    for n in new:
        if n in old and old[n] != new[n]:
            if detail and n in detail and n in previous.detail:
                changed += _file_changes(n, previous.detail[n], detail[n]) or [n]
            else:
                changed.append(n)
    changed = [c.removesuffix(" changed") for c in changed]
    added = [n for n in new if n not in old]
    removed = [n for n in old if n not in new]
    words = [
        c if c.endswith((" added", " removed")) or c.startswith("and ") else f"{c} changed"
        for c in changed
    ]
    words += [f"{n} added" for n in added]
    words += [f"{n} removed" for n in removed]
    return ", ".join(words) if words else "cache entry incomplete"


class BuildCache:
    """The step-key store under a pydock root (`ROOT/buildcache`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.dir = self.root / "buildcache"
        self.family_dir = self.dir / "family"
        self.tmp = self.root / "tmp"

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def lookup(self, key: str) -> CacheEntry | None:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:
            return CacheEntry.from_json(data)
        except (ValueError, KeyError, TypeError):
            return None  # a damaged entry is a miss, rewritten by the next build

    def closest(self, parts: Parts) -> CacheEntry | None:
        """The entry last written for the same parent + instruction, else same instruction."""
        for fam in _family_keys(parts):
            try:
                key = (self.family_dir / fam).read_text().strip()
            except (FileNotFoundError, NotADirectoryError):
                continue
            entry = self.lookup(key)
            if entry is not None:
                return entry
        return None

    def write(self, entry: CacheEntry) -> None:
        """Store an entry (replacing one with the same key) and point its families at it.

        Renamed into place without fsync: readers never see a part (rename is atomic), and
        after a power cut an entry or family file the disk lost or tore reads as a miss (see
        `lookup`), which a build repairs by running the step. What an entry names (layer
        blobs, configs) was fsync'd before it was written. The fsyncs cost a cold build
        about 1 ms per step (three files a step)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.family_dir.mkdir(parents=True, exist_ok=True)
        self._atomic_write(self._path(entry.key), entry.to_json(), sync=False)
        for fam in _family_keys(entry.parts):
            self._atomic_write(self.family_dir / fam, entry.key.encode(), sync=False)

    # ---- file records of COPY/ADD layers ----------------------------------------------------
    # buildcache/files/<diff hex>.json: {"diff_id": ..., "files": {layer path: [size, hash]}}
    # for the regular files of a COPY/ADD layer whose content hash is known (context files).
    # A record is a pure function of the layer (what its tar holds at those paths), so any
    # build that made the layer may write it. It lets the next run of the same step hard-link
    # the unchanged files from the previous layer's unpacked dir (builder.copy.Reuse). Losing
    # one only costs that speed-up, so it is renamed into place without fsync; a torn or
    # foreign file is ignored.
    def _files_path(self, diff_id: str) -> Path:
        return self.dir / "files" / (diff_id.split(":", 1)[-1] + ".json")

    def write_files(self, diff_id: str, files: dict[str, list]) -> None:
        """Record the content (size, hash) of the files at `files`' paths in layer `diff_id`."""
        path = self._files_path(diff_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"diff_id": diff_id, "files": files}, separators=(",", ":")).encode()
        self._atomic_write(path, data, sync=False)

    def read_files(self, diff_id: str) -> dict[str, list] | None:
        """The record written by `write_files` for layer `diff_id`, or None."""
        try:
            doc = json.loads(self._files_path(diff_id).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("diff_id") != diff_id:
            return None
        files = doc.get("files")
        return files if isinstance(files, dict) else None

    def remove(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def list(self) -> list[CacheEntry]:
        """Every entry (for prune and `system df`), oldest first."""
        out: list[CacheEntry] = []
        for path in self.iter_paths():
            try:
                out.append(CacheEntry.from_json(path.read_bytes()))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        out.sort(key=lambda e: e.created)
        return out

    def prune(self, keep_layer=None) -> tuple[int, int]:  # noqa: ANN001 - (diff_id) -> bool
        """Remove entries (all, or those whose layer `keep_layer(diff_id)` rejects), the family
        links pointing nowhere, parsed-Dockerfile and stat caches, and old build logs.
        Returns (entries removed, bytes freed). Cache mounts (RUN --mount=type=cache) are
        removed too when everything goes."""
        import shutil

        removed = freed = 0
        for path in list(self.iter_paths()):
            try:
                entry = CacheEntry.from_json(path.read_bytes())
            except (OSError, ValueError, KeyError, TypeError):
                entry = None
            if keep_layer is not None and entry is not None:
                if entry.diff_id is None or keep_layer(entry.diff_id):
                    continue
            try:
                freed += path.stat().st_size
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
        files_dir = self.dir / "files"
        if files_dir.is_dir():
            # File records go with the layers they describe.
            for name in os.listdir(files_dir):
                diff_id = "sha256:" + name.removesuffix(".json")
                if keep_layer is not None and keep_layer(diff_id):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    freed += (files_dir / name).stat().st_size
                    (files_dir / name).unlink()
        if self.family_dir.is_dir():
            for fam in os.listdir(self.family_dir):
                p = self.family_dir / fam
                try:
                    if not self._path(p.read_text().strip()).exists():
                        p.unlink()
                except OSError:
                    pass
        extra = ["parsed", "contexts", "logs"] + (["mounts"] if keep_layer is None else [])
        for sub in extra:
            d = self.dir / sub
            if d.is_dir():
                for f in d.rglob("*"):
                    if f.is_file():
                        freed += f.stat().st_size
                shutil.rmtree(d, ignore_errors=True)
        return removed, freed

    def iter_paths(self) -> Iterable[Path]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return [self.dir / n for n in sorted(names) if n.endswith(".json")]

    def _atomic_write(self, path: Path, data: bytes, sync: bool = True) -> None:
        staging = self.tmp if self.tmp.is_dir() else path.parent
        atomic_write(staging, path, data, 0o600, sync=sync, kind=".bc")
