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
