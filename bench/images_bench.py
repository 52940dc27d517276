"""Benchmarks of the image commands (run by hand, as root: `.venv/bin/python bench/images_bench.py`).

1. `pydock images` (and `-q`, `--format json`) over a store of 200 images, whole process
   wall time (target: under 150 ms).
2. `pydock import` of a ~200 MB rootfs tarball against `tar -x` of the same file (target: at
   least half as fast as tar).

Prints a table; exits 0 whatever the numbers (speed is reported, not asserted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
PYDOCK = str(HERE / ".venv" / "bin" / "pydock")


def timed(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return out


def make_store(root: Path, count: int) -> None:
    """`count` images sharing the busybox layer, each with its own config and tag."""
    from cache.bootstrap import make_busybox
    from cache.store import Store

    store = Store.open(root)
    base = make_busybox(store, "/bin/busybox")
    for i in range(count - 1):
        cfg = {k: v for k, v in base.config.items() if k != "rootfs"}
        cfg["config"] = dict(cfg.get("config") or {}, Cmd=["echo", str(i)])
        cfg["created"] = f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
        store.write_image(cfg, base.diff_ids, tags=[f"bench/img{i}:v{i % 7}"])


def make_rootfs(dest: Path, total_mb: int) -> None:
    """A tree like a distribution's: many small files, some medium, a few large ones."""
    rnd = os.urandom(1 << 20)
    size = 0
    target = total_mb << 20
    n = 0
    while size < target:
        d = dest / f"usr/lib/pkg{n // 200}"
        d.mkdir(parents=True, exist_ok=True)
        if n % 500 == 0:
            length = 8 << 20
        elif n % 20 == 0:
            length = 256 << 10
        else:
            length = 2000 + (n * 7919) % 30000
        with open(d / f"file{n}.so", "wb") as f:
            left = length
            while left:
                chunk = rnd[: min(left, len(rnd))]
                f.write(chunk)
                left -= len(chunk)
        if n % 50 == 0:
            os.symlink(f"file{n}.so", d / f"link{n}")
        size += length
        n += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--import-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--skip-import", action="store_true")
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="pydock-bench-") as tmp:
        work = Path(tmp)
        root = work / "root"
        make_store(root, args.images)
        for label, extra in [
            ("images", []),
            ("images -q", ["-q"]),
            ("images --format json", ["--format", "json"]),
        ]:
            t = timed([PYDOCK, "--root", str(root), "images", *extra], args.runs)
            rows.append(
                (
                    f"pydock {label} ({args.images} images)",
                    f"{statistics.median(t) * 1000:.0f} ms",
                    "< 150 ms",
                )
            )
        t = timed([sys.executable, "-c", "pass"], args.runs)
        rows.append(
            ("python -c pass (interpreter start)", f"{statistics.median(t) * 1000:.0f} ms", "")
        )

        if not args.skip_import:
            src = work / "src"
            make_rootfs(src, args.import_mb)
            tarball = work / "rootfs.tar"
            subprocess.run(["tar", "-C", str(src), "-cf", str(tarball), "."], check=True)
            shutil.rmtree(src)
            mb = tarball.stat().st_size / 1e6
            out = work / "x"
            tar_times = []
            for _ in range(3):
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                subprocess.run(["sync"])
                t0 = time.perf_counter()
                subprocess.run(["tar", "-C", str(out), "-xf", str(tarball)], check=True)
                tar_times.append(time.perf_counter() - t0)
            shutil.rmtree(out, ignore_errors=True)
            imp_times = []
            for i in range(3):
                # a fresh store each time: the first import of this content, as a user sees it
                iroot = work / f"iroot{i}"
                subprocess.run([PYDOCK, "--root", str(iroot), "images", "-q"], check=True)
                subprocess.run(["sync"])
                t0 = time.perf_counter()
                subprocess.run(
                    [PYDOCK, "--root", str(iroot), "import", str(tarball), f"bench/rootfs:{i}"],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                imp_times.append(time.perf_counter() - t0)
            tt, it = min(tar_times), min(imp_times)
            rows.append((f"tar -x ({mb:.0f} MB)", f"{tt:.2f} s", ""))
            rows.append(
                (f"pydock import ({mb:.0f} MB)", f"{it:.2f} s", f"<= {2 * tt:.2f} s (2x tar)")
            )
            rows.append(("import / tar -x", f"{it / tt:.2f}x", "<= 2.00x"))
    width = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{width}}   {'result':>10}   target")
    for name, value, target in rows:
        print(f"{name:<{width}}   {value:>10}   {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
