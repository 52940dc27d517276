"""Typed errors shared by every layer of pydock.

Errors are raised where the problem is known and rendered once, by the command line, as one
line. `exit_code` is what the command exits with when this error ends it.
"""

from __future__ import annotations


class PydockError(Exception):
    """A user-facing error: its message is the whole story, no traceback is shown."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__

    def render(self) -> str:
        """The text shown to the user (may span lines, e.g. a source excerpt)."""
        return self.message


# --- store outcomes (cache/store.py and friends) -------------------------------------------------


class StoreError(PydockError):
    """Something about the on-disk store: a missing or corrupt object, a bad name."""


class BadDigest(StoreError):
    """A string that is not "sha256:<64 lowercase hex>" was given where a digest belongs."""


class BlobNotFound(StoreError):
    """A blob that should be in blobs/sha256/ is not there."""


class DigestMismatch(StoreError):
    """Content does not hash to the digest it was stored or announced under."""


class BadReference(StoreError):
    """An image name that is not a valid Docker reference."""


class ImageNotFound(StoreError):
    """No image answers to the given name, id or id prefix."""


class AmbiguousImage(ImageNotFound):
    """An id prefix matches more than one image."""


class NameInUse(StoreError):
    """A name (tag, container or volume name) is already taken."""


class InvalidImage(StoreError):
    """An image whose manifest, config and layers do not agree (validate_image failed)."""


class LayerNotFound(StoreError):
    """A layer (diff id) that is not stored."""


class BadLayerTar(StoreError):
    """A layer stream that is not a complete, well-formed tar archive."""


class BadLayer(BadLayerTar):
    """A layer the applier refuses: malformed or truncated tar, an entry leading out of the
    root, a forbidden xattr or whiteout. The message names the member and the problem."""
