"""Benchmarks of the store core (run by hand, as root: `.venv/bin/python bench/store_bench.py`).

Over a store of 200 images (busybox plus one small layer each):
- `pydock images` / `pydock images -q` as whole processes (the issue's target: under 150 ms);
- `store.list_images()` in one process, cold (fresh Store: every manifest and config read and
  verified) and warm (parsed blobs cached);
- `store.get_image()` by tag and by 12-character id prefix;
- `store.write_image()` per image, `store.add_layer()` throughput against hashing alone, and
  `store.unpacked_lowers()` of a 50 MB layer against `tar -x` of the same file.

Prints a table; exits 0 whatever the numbers (speed is reported, not asserted).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
PYDOCK = str(HERE / ".venv" / "bin" / "pydock")

from cache.bootstrap import make_busybox  # noqa: E402
from cache.digest import sha256_stream  # noqa: E402
from cache.store import Store  # noqa: E402


def timeit(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def small_tar(i: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = f"image {i}\n".encode()
        ti = tarfile.TarInfo(f"etc/image-{i}")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def big_tar(path: Path, megabytes: int) -> None:
    """A layer of many files (1/4 small, 3/4 in 1 MB files) totalling about `megabytes`."""
    rnd = os.urandom(1 << 20)
    with tarfile.open(path, "w") as tf:
        for i in range(megabytes * 64):  # 4 KB files: a quarter of the size
            ti = tarfile.TarInfo(f"small/{i // 100}/f{i}")
            ti.size = 4096
            tf.addfile(ti, io.BytesIO(rnd[i % 1000 : i % 1000 + 4096]))
        for i in range(megabytes * 3 // 4):
            ti = tarfile.TarInfo(f"big/f{i}")
            ti.size = len(rnd)
            tf.addfile(ti, io.BytesIO(rnd))


def fmt(samples: list[float]) -> tuple[str, str]:
    return f"{statistics.median(samples) * 1000:.1f}", f"{min(samples) * 1000:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--layer-mb", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="store-bench-"))
    rows: list[tuple[str, str, str, str]] = []
    try:
        root = work / "root"
        store = Store.open(root)
        base = make_busybox(store)
        writes = []
        for i in range(args.images - 1):
            info = store.add_layer(io.BytesIO(small_tar(i)))
            cfg = {k: v for k, v in base.config.items() if k != "rootfs"}
            cfg["history"] = base.history + [{"created_by": f"bench {i}"}]
            t = time.perf_counter()
            store.write_image(cfg, [*base.diff_ids, info.diff_id], tags=[f"bench/app{i}:v1"])
            writes.append(time.perf_counter() - t)
        n = len(Store(root).list_images())
        rows.append((f"write_image (x{len(writes)})", *fmt(writes), "per image"))

        env = dict(os.environ, PYDOCK_ROOT=str(root))
        if shutil.which(PYDOCK) or os.path.exists(PYDOCK):
            for argv in (["images"], ["images", "-q"]):
                samples = timeit(
                    lambda argv=argv: subprocess.run(
                        [PYDOCK, *argv], env=env, check=True, stdout=subprocess.DEVNULL
                    ),
                    args.runs,
                )
                rows.append(
                    (f"pydock {' '.join(argv)} ({n} images)", *fmt(samples), "target < 150")
                )
        rows.append(
            (
                f"list_images cold ({n})",
                *fmt(timeit(lambda: Store(root).list_images(), args.runs)),
                "fresh Store",
            )
        )
        warm = Store(root)
        warm.list_images()
        rows.append((f"list_images warm ({n})", *fmt(timeit(warm.list_images, args.runs)), ""))
        probe = f"bench/app{min(7, args.images - 2)}:v1"
        some = warm.get_image(probe)
        rows.append(
            (
                "get_image by tag",
                *fmt(timeit(lambda: Store(root).get_image(probe), args.runs)),
                "cold",
            )
        )
        rows.append(
            (
                "get_image by id prefix",
                *fmt(timeit(lambda: Store(root).get_image(some.short_id), args.runs)),
                "cold",
            )
        )

        tar = work / "big.tar"
        big_tar(tar, args.layer_mb)
        size_mb = tar.stat().st_size / 1e6

        def hash_only() -> None:
            with open(tar, "rb") as f:
                sha256_stream(f)

        rows.append((f"sha256 of {size_mb:.0f} MB", *fmt(timeit(hash_only, 3)), "floor"))

        def add() -> None:
            s = Store.open(work / "ingest")
            with open(tar, "rb") as f:
                s.add_layer(f)
            shutil.rmtree(work / "ingest")

        rows.append((f"add_layer {size_mb:.0f} MB", *fmt(timeit(add, 3)), "hash+copy+check"))
        with open(tar, "rb") as f:
            diff_id = store.add_layer(f).diff_id

        def unpack() -> None:
            Store(root).unpacked_lowers([diff_id])
            chain = store.chain_ids([diff_id])[0]
            store.remove_unpacked(chain)

        rows.append((f"unpacked_lowers {size_mb:.0f} MB", *fmt(timeit(unpack, 3)), "applier"))

        def tar_x() -> None:
            d = work / "tarx"
            d.mkdir()
            subprocess.run(["tar", "-xf", str(tar), "-C", str(d)], check=True)
            shutil.rmtree(d)

        rows.append((f"tar -x {size_mb:.0f} MB", *fmt(timeit(tar_x, 3)), "reference"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    headers = ("operation", "median ms", "min ms", "note")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(4)]
    for r in [headers, *rows]:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
