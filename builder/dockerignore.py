"""`.dockerignore` files, read and matched the way Docker does.

Rules (moby `ignorefile` + `patternmatcher`):
- one pattern per line; a line starting with `#` is a comment; blank lines are skipped;
- a leading `!` makes an exception (re-includes what earlier patterns excluded);
- each pattern is trimmed, path-cleaned (`./a/../b` → `b`) and a leading `/` dropped, so every
  pattern is relative to the context root;
- `*` matches within one path element, `?` one character, `[...]` a class, `\\` escapes,
  `**` any number of elements (including none);
- a pattern that matches a folder excludes everything under it; the last matching pattern wins.
A `<Dockerfile name>.dockerignore` beside the Dockerfile replaces the context's `.dockerignore`.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from cache.records import field, record


@record
class Pattern:
    """One cleaned pattern; `exclusion` is True for a `!` exception."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]


def clean_pattern(raw: str) -> tuple[str, bool] | None:
    """Trim, strip `!`, clean the path; None for a line that holds no pattern."""
    line = raw.strip()
    if not line or line.startswith("#"):
        return None
    exclusion = line.startswith("!")
    if exclusion:
        line = line[1:].strip()
        if not line:
            return None
    line = posixpath.normpath(line)
    if len(line) > 1 and line.startswith("/"):
        line = line.lstrip("/") or "/"
    return line, exclusion


def compile_pattern(text: str) -> re.Pattern[str]:
    """Translate one cleaned pattern to an anchored regex over slash-separated paths."""
    out = ["^"]
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "*":
            if i + 1 < n and text[i + 1] == "*":
                i += 2
                if i < n and text[i] == "/":
                    i += 1  # `**/` is the same as `**`
                # `**` at the end takes everything; elsewhere any number of whole elements
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i < n:
                out.append(re.escape(text[i]))
        elif ch == "[":
            j = text.find("]", i + 1)
            if j == -1:
                out.append(re.escape(ch))
            else:
                body = text[i + 1 : j]
                if body.startswith("^") or body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.DOTALL)


@record
class IgnoreRules:
    """The patterns of one ignore file, in file order; `source` names where they came from."""

    patterns: list[Pattern] = field(default_factory=list)
    source: str = ""

    @property
    def has_exceptions(self) -> bool:
        return any(p.exclusion for p in self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether a context-relative, slash-separated path is left out of the context.

        A pattern matches the path itself or any of its parent folders; the last pattern that
        matches decides (Docker's `MatchesOrParentMatches`).
        """
        if not self.patterns:
            return False
        path = path.strip("/")
        parts = path.split("/")
        parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue  # an exception only matters once excluded, and vice versa
            hit = bool(pat.regex.match(path)) or any(pat.regex.match(p) for p in parents)
            if hit:
                matched = not pat.exclusion
        return matched

    def may_include_below(self, folder: str) -> bool:
        """Whether an excluded folder must still be walked: Docker does so only when an
        exception pattern literally starts with the folder's path (`!logs/keep.log` for
        `logs`); `!**/node_modules/keep` does not bring back `x/node_modules/keep`."""
        prefix = folder.strip("/") + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def parse_ignore(text: str, source: str = ".dockerignore") -> IgnoreRules:
    """Read the text of an ignore file into rules."""
    rules = IgnoreRules(source=source)
    if text.startswith("\ufeff"):
        text = text[1:]
    for raw in text.splitlines():
        cleaned = clean_pattern(raw)
        if cleaned is None:
            continue
        pat, exclusion = cleaned
        rules.patterns.append(Pattern(pat, exclusion, compile_pattern(pat)))
    return rules


def load_ignore(context_dir: Path | None, dockerfile: Path | None) -> IgnoreRules:
    """The rules for a build: `<Dockerfile>.dockerignore` beside the Dockerfile wins over the
    context's `.dockerignore`; no file means nothing is excluded."""
    candidates: list[Path] = []
    if dockerfile is not None:
        candidates.append(dockerfile.with_name(dockerfile.name + ".dockerignore"))
    if context_dir is not None:
        candidates.append(context_dir / ".dockerignore")
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        return parse_ignore(text, source=str(path.name))
    return IgnoreRules()
