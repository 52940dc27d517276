"""Benchmark: write_layer vs `tar -c` and apply_layer vs `tar -x` on a 100 MB / 5,000-file tree.

Target (issues 2 and 4): each of ours runs at least half as fast as GNU tar, i.e. takes at
most 2x its time. Prints a table; best of N runs each, all on the same filesystem.

    .venv/bin/python bench/layer_bench.py [--files 5000] [--mb 100] [--runs 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cache.applier import apply_layer  # noqa: E402
from cache.tarwriter import write_layer  # noqa: E402


def make_tree(root: Path, files: int, total_mb: int) -> None:
    """Files of random sizes (mean total_mb/files) spread over 50 dirs x 7 subdirs."""
    rng = random.Random(42)
    total = total_mb << 20
    sizes = [rng.randint(0, 2 * total // files) for _ in range(files)]
    scale = total / max(1, sum(sizes))
    noise = os.urandom(1 << 20)
    for i, size in enumerate(sizes):
        d = root / f"d{i % 50:02d}" / f"s{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(size * scale)
        with open(d / f"f{i}", "wb") as f:
            while size > 0:
                f.write(noise[: min(size, len(noise))])
                size -= len(noise)


def best(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to make the tree (default: a temp dir)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="layer-bench-", dir=args.dir))
    try:
        src = work / "src"
        make_tree(src, args.files, args.mb)
        ours_tar, gnu_tar = work / "ours.tar", work / "gnu.tar"

        def ours_write() -> None:
            with open(ours_tar, "wb") as f:
                write_layer(src, f)

        def gnu_write() -> None:
            # to a real file: GNU tar skips reading file data when writing to /dev/null
            subprocess.run(["tar", "-C", src, "-cf", gnu_tar, "."], check=True)

        counter = iter(range(10**6))

        def fresh() -> Path:
            d = work / f"out{next(counter)}"
            d.mkdir()
            return d

        def ours_apply() -> None:
            with open(ours_tar, "rb") as f:
                apply_layer(f, fresh())

        def gnu_apply() -> None:
            subprocess.run(["tar", "-C", fresh(), "-xpf", gnu_tar], check=True)

        rows = []
        for what, ours, theirs in (
            ("write layer", ours_write, gnu_write),
            ("apply layer", ours_apply, gnu_apply),
        ):
            theirs()  # warm the page cache and make the input for the apply rows
            ours()
            t_ours = best(args.runs, ours)
            t_gnu = best(args.runs, theirs)
            for d in work.glob("out*"):
                shutil.rmtree(d)
            rows.append((what, t_ours, t_gnu))

        print(f"layer bench: {args.files} files, {args.mb} MB, best of {args.runs}")
        print(f"{'operation':<14}{'pydock':>10}{'GNU tar':>10}{'ratio':>8}  target <= 2.00x")
        ok = True
        for what, t_ours, t_gnu in rows:
            ratio = t_ours / t_gnu
            ok &= ratio <= 2.0
            verdict = "ok" if ratio <= 2.0 else "SLOW"
            print(f"{what:<14}{t_ours:>9.3f}s{t_gnu:>9.3f}s{ratio:>7.2f}x  {verdict}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
