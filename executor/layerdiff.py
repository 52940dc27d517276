"""An overlay upper dir after a run, as exactly one OCI layer.

The upper dir holds exactly the run's changes: new and changed files in full, deletions as
overlay's 0/0 character devices (-> `.wh.<name>`), opaque directories as the opaque xattr
(-> `<dir>/.wh..wh..opq`); `cache.tarwriter.write_layer` does the translation, keeps hard
links as links and file capabilities, and never copies overlay's own xattrs. Mount points
(/etc/hosts and friends, volumes) never reach the upper dir: their stubs are removed by
`executor.runtime` when the container ends, and bind-mounted content lives outside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cache.tarwriter import LayerStats, write_layer


def upper_to_layer(
    upper: Path,
    out: BinaryIO,
    source_date_epoch: int | None = None,
    exclude: Callable[[str], bool] | None = None,
) -> LayerStats:
    """Write the layer tar of `upper` to `out` (the caller owns `out`); returns the diff_id,
    size and entry count. The same changes always give the same bytes (sorted entries,
    whole-second mtimes, clamped to `source_date_epoch` when given)."""
    return write_layer(
        upper, out, overlay_upper=True, source_date_epoch=source_date_epoch, exclude=exclude
    )


def upper_is_empty(upper: Path) -> bool:
    """True when the run changed nothing (pybuild may then skip the layer, as BuildKit does
    not: Docker keeps an empty layer for a RUN; the caller decides)."""
    return not any(Path(upper).iterdir())
