"""Benchmark of the executor (run by hand, as root: `.venv/bin/python bench/executor_bench.py`).

1. One executor run of `true` on a busybox root (fresh upper dir, mount, namespaces, pivot,
   exec, wait, diff of the empty upper dir into a layer, teardown), timed inside this Python
   process, against the shell floor measured side by side: an overlay mount +
   `unshare --mount --pid --fork --uts --ipc --net chroot ROOT /bin/true` + umount.
   Target: at most 2x the shell floor.
2. An upper dir of 100 MB / 5,000 files into a layer (`upper_to_layer`) against `tar -c` of
   the same dir. Target: at least half as fast as tar.

Prints a table; exits 0 whatever the numbers (speed is reported, not asserted).

    .venv/bin/python bench/executor_bench.py [--runs 30] [--files 5000] [--mb 100]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "tests"))

from executor_rootfs import make_busybox_rootfs  # noqa: E402

from executor.layerdiff import upper_to_layer  # noqa: E402
from executor.runtime import run  # noqa: E402
from executor.spec import RunSpec  # noqa: E402


def executor_true(lower: Path, work_root: Path, runs: int) -> list[float]:
    times = []
    null = os.open("/dev/null", os.O_WRONLY)
    for i in range(runs):
        d = work_root / f"run{i}"
        t = time.perf_counter()
        for sub in ("upper", "work", "merged"):
            (d / sub).mkdir(parents=True)
        spec = RunSpec(
            lowers=[lower],
            upper=d / "upper",
            work=d / "work",
            merged=d / "merged",
            argv=["/bin/true"],
            stdout=null,
            stderr=null,
        )
        result = run(spec)
        upper_to_layer(d / "upper", io.BytesIO())
        times.append(time.perf_counter() - t)
        assert result.exit_code == 0, result
        shutil.rmtree(d)
    os.close(null)
    return times


SHELL_FLOOR = """
set -e
d={d}
mkdir -p $d/upper $d/work $d/merged
mount -t overlay overlay -o lowerdir={lower},upperdir=$d/upper,workdir=$d/work $d/merged
unshare --mount --pid --fork --uts --ipc --net chroot $d/merged /bin/true
umount $d/merged
"""


def shell_floor(lower: Path, work_root: Path, runs: int) -> list[float]:
    """Each iteration is one `sh -c` (whose own start is part of the shell's cost), run in a
    private mount namespace so an interrupted bench leaves no mount behind."""
    times = []
    for i in range(runs):
        d = work_root / f"sh{i}"
        script = SHELL_FLOOR.format(d=d, lower=lower)
        t = time.perf_counter()
        subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], check=True
        )
        times.append(time.perf_counter() - t)
        shutil.rmtree(d)
    return times


def make_tree(root: Path, files: int, total_mb: int) -> None:
    rng = random.Random(4)
    per_file = total_mb * (1 << 20) // files
    for i in range(files):
        sub = root / f"d{i % 50:02d}" / f"e{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        size = max(1, int(per_file * rng.uniform(0.2, 1.8)))
        (sub / f"f{i:05d}.bin").write_bytes(rng.randbytes(size))


def layer_vs_tar(tree: Path, out_dir: Path, runs: int) -> tuple[float, float]:
    ours, tar = [], []
    for _ in range(runs):
        t = time.perf_counter()
        with open(out_dir / "ours.tar", "wb") as f:
            upper_to_layer(tree, f)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(["tar", "-cf", str(out_dir / "gnu.tar"), "-C", str(tree), "."], check=True)
        tar.append(time.perf_counter() - t)
    return min(ours), min(tar)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--layer-runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (containers need it)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="pydock-exec-bench-", dir="/var/tmp"))
    try:
        lower = make_busybox_rootfs(base / "lower")
        executor_true(lower, base, 3)  # warm up both paths
        shell_floor(lower, base, 3)
        # interleave the two so drift on the machine hits both alike
        ours, floor = [], []
        for _ in range(args.runs // 5 or 1):
            ours += executor_true(lower, base, 5)
            floor += shell_floor(lower, base, 5)
        tree = base / "tree"
        make_tree(tree, args.files, args.mb)
        diff_s, tar_s = layer_vs_tar(tree, base, args.layer_runs)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    med_ours, med_floor = statistics.median(ours), statistics.median(floor)
    rows = [
        ("executor run of `true` (median)", f"{med_ours * 1000:.1f} ms", ""),
        ("shell floor: mount+unshare+chroot+umount", f"{med_floor * 1000:.1f} ms", ""),
        ("ratio executor / shell floor", f"{med_ours / med_floor:.2f}x", "target <= 2.00x"),
        (f"upper dir -> layer ({args.files} files, {args.mb} MB)", f"{diff_s:.3f} s", ""),
        ("tar -c of the same dir", f"{tar_s:.3f} s", ""),
        ("ratio layer / tar", f"{diff_s / tar_s:.2f}x", "target <= 2.00x"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>10}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
