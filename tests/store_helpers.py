"""Helpers for store tests: a full snapshot of a root, small tars, minimal configs."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its type, mode, and content hash or link target."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[rel] = ("f", st.st_mode, hashlib.sha256(f.read()).hexdigest())
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            else:
                out[rel] = ("d" if stat.S_ISDIR(st.st_mode) else "o", st.st_mode)
    return out


def make_tar(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
        for name, target in (links or {}).items():
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.LNKTYPE
            ti.linkname = target
            tf.addfile(ti)
    return buf.getvalue()


def simple_config(n_layers: int = 1) -> dict:
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "history": [{"created_by": f"step {i}"} for i in range(n_layers)],
    }
