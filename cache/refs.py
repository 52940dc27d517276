"""Image references normalised the way Docker does it (distribution/reference grammar).

    busybox                      -> docker.io/library/busybox:latest  (familiar: busybox:latest)
    me/app:1.0                   -> docker.io/me/app:1.0              (familiar: me/app:1.0)
    localhost:5000/app           -> localhost:5000/app:latest
    ghcr.io/o/r@sha256:<hex>     -> ghcr.io/o/r@sha256:<hex>          (no default tag with a digest)

The first path component is a registry host only when it contains "." or ":" or is
"localhost"; otherwise the registry is docker.io, and a single-component name on docker.io
lives under "library/". `str(ref)` is the familiar form (what `docker images` shows and what the
store puts in `org.opencontainers.image.ref.name`); `ref.full` is the fully qualified form (the
`io.containerd.image.name` annotation).
"""

from __future__ import annotations

import re

from cache.digest import Digest, is_digest
from cache.errors import BadReference
from cache.records import record

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"

_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_RE = re.compile(_DOMAIN)
_TAG_RE = re.compile(_TAG)
_HEX64_RE = re.compile(r"[a-f0-9]{64}")


@record(frozen=True)
class Reference:
    """A normalised image reference. `tag` and `digest` may each be None (not both, normally)."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """Fully qualified repository name: docker.io/library/busybox."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Repository name as Docker shows it: busybox, me/app, localhost:5000/app."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        path = self.path
        if path.startswith(OFFICIAL_REPO_PREFIX) and path.count("/") == 1:
            path = path[len(OFFICIAL_REPO_PREFIX) :]
        return path

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def full(self) -> str:
        """docker.io/library/busybox:latest"""
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """busybox:latest"""
        return self.familiar_name + self._suffix()

    def __str__(self) -> str:
        return self.familiar

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.fullmatch(tag):
            raise BadReference(f"invalid tag format: {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def with_default_tag(self) -> Reference:
        """The same reference with tag "latest" when it has neither tag nor digest."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, rest = DEFAULT_DOMAIN, name
    else:
        domain, rest = first, name[i + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_REPO_PREFIX + rest
    return domain, rest


def parse_reference(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise an image reference (raises `BadReference` with Docker's wording).

    With `default_tag` (the default) a reference without tag or digest gets ":latest".
    """
    if not isinstance(text, str) or not text:
        raise BadReference("invalid reference format: empty name")
    if _HEX64_RE.fullmatch(text):
        raise BadReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    rest = text
    digest: Digest | None = None
    if "@" in rest:
        rest, _, dtext = rest.partition("@")
        if not is_digest(dtext):
            raise BadReference(f"invalid reference format: bad digest in {text!r}")
        digest = Digest(dtext)
    tag: str | None = None
    # A tag is after the last ":" that comes after the last "/" (a ":" before is a port).
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise BadReference(f"invalid reference format: bad tag {tag!r} in {text!r}")
    if not rest:
        raise BadReference(f"invalid reference format: {text!r}")
    domain, path = _split_domain(rest)
    if path.lower() != path:
        raise BadReference(f"invalid reference format: repository name must be lowercase: {text!r}")
    if not _DOMAIN_RE.fullmatch(domain) or not _PATH_RE.fullmatch(path):
        raise BadReference(f"invalid reference format: {text!r}")
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise BadReference(
            f"invalid reference format: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters: {text!r}"
        )
    ref = Reference(domain, path, tag, digest)
    return ref.with_default_tag() if default_tag else ref


def try_parse_reference(text: str, *, default_tag: bool = True) -> Reference | None:
    """Like `parse_reference`, but None instead of an error."""
    try:
        return parse_reference(text, default_tag=default_tag)
    except BadReference:
        return None
