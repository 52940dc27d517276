"""`pybuild`: build images from Dockerfiles; `pybuild debug ...` shows the front end's view."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "debug":
        from frontend.pybuild_debug import main as debug_main

        return debug_main(argv[1:])
    from frontend.pybuild_build import main as build_main

    return build_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
