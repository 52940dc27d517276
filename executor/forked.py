"""Work done in a forked child that must not touch the caller's mount namespace.

`cp`, `export` and volume seeding mount a container's or an image's root in a private mount
namespace of their own: the child unshares, mounts, works and exits, so nothing can be left
mounted in the caller, whatever goes wrong. The child reports failure as text on a pipe.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cache.errors import PydockError


def _describe(e: BaseException) -> str:
    if isinstance(e, PydockError):
        return e.message
    if isinstance(e, OSError):
        name = f"{e.filename}: " if e.filename else ""
        return f"{name}{e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def run_in_child(work: Callable[[], None]) -> str | None:
    """Run `work()` in a forked child and wait for it; its error message, or None."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            work()
        except BaseException as e:  # noqa: BLE001 - nothing may escape a forked child
            os.write(w, _describe(e).encode(errors="replace"))
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    msg = b""
    while chunk := os.read(r, 65536):
        msg += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return msg.decode(errors="replace") or None
