"""Benchmark: `pydock run --rm busybox true` as a whole process, and `pydock ps -a` with 100
containers; docker and podman side by side when they are installed and answer.

Targets (issue 6): `pydock run --rm busybox true` under 0.10 s and faster than docker and
podman measured in the same bench run; `pydock ps -a` with 100 containers under 0.2 s.
Prints a table of the best and median of N runs. Runs as root on a throw-away store.

Python byte-code caching matters for a short-lived CLI: the bench runs pydock without
PYTHONDONTWRITEBYTECODE (after one warm-up run that writes the .pyc files), as a user's
installation would.

    .venv/bin/python bench/run_bench.py [--runs 10] [--containers 100]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float] | None:
    """(best, median) wall seconds of `argv`, or None when it fails."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - t)
        if p.returncode != 0:
            sys.stderr.write(f"{' '.join(argv)}: exit {p.returncode}: {p.stderr.decode()[-300:]}\n")
            return None
    return min(times), statistics.median(times)


def other_engine(name: str, argv: list[str], runs: int) -> tuple[float, float] | None:
    if shutil.which(name) is None:
        return None
    probe = subprocess.run([name, "image", "inspect", "busybox"], capture_output=True)
    if probe.returncode != 0:
        return None  # no daemon, or no busybox image: nothing to compare with (no pulling)
    return timed(argv, dict(os.environ), runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--containers", type=int, default=100)
    args = ap.parse_args()

    from cache.bootstrap import make_busybox
    from cache.store import Store

    pydock = [str(REPO / ".venv" / "bin" / "pydock")]
    if not os.path.exists(pydock[0]):
        pydock = [sys.executable, "-m", "frontend.pydock"]
    rows: list[tuple[str, tuple[float, float] | None, str]] = []
    with tempfile.TemporaryDirectory(prefix="pydock-run-bench-") as tmp:
        root = Path(tmp) / "root"
        make_busybox(Store.open(root), "/bin/busybox")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYDOCK_ROOT"] = str(root)
        run = [*pydock, "run", "--rm", "busybox", "true"]
        subprocess.run(run, env=env, check=True)  # warm-up: .pyc files, unpacked layer
        rows.append(("pydock run --rm busybox true", timed(run, env, args.runs), "< 0.100 s"))
        rows.append(
            (
                "docker run --rm busybox true",
                other_engine("docker", ["docker", "run", "--rm", "busybox", "true"], args.runs),
                "(compare)",
            )
        )
        rows.append(
            (
                "podman run --rm --network=none busybox true",
                other_engine(
                    "podman",
                    ["podman", "run", "--rm", "--network=none", "busybox", "true"],
                    args.runs,
                ),
                "(compare)",
            )
        )
        # ps -a over N exited containers (made in-process: creating them is not measured).
        from executor.containers import ContainerStore
        from executor.lifecycle import RunOptions, create_container

        store = Store.open(root)
        for i in range(args.containers):
            c = create_container(root, RunOptions(image="busybox", command=["true"]), store=store)
            ContainerStore(root).update_state(c, lambda s, i=i: _exited(s, i))
        ps = [*pydock, "ps", "-a"]
        subprocess.run(ps, env=env, check=True, stdout=subprocess.DEVNULL)
        rows.append(
            (f"pydock ps -a ({args.containers} containers)", timed(ps, env, args.runs), "< 0.200 s")
        )
        py = timed([sys.executable, "-c", "pass"], env, args.runs)
        rows.append(("python -c pass (interpreter floor)", py, ""))

    width = max(len(r[0]) for r in rows)
    print(f"{'what'.ljust(width)}   {'best':>8}   {'median':>8}   target")
    for name, result, target in rows:
        if result is None:
            print(f"{name.ljust(width)}   {'n/a':>8}   {'n/a':>8}   {target}")
        else:
            print(f"{name.ljust(width)}   {result[0]:8.3f}   {result[1]:8.3f}   {target}")
    return 0


def _exited(state, i: int) -> None:  # noqa: ANN001
    state.status = "exited"
    state.exit_code = i % 3
    state.started_at = time.time() - 60
    state.finished_at = time.time() - 30


if __name__ == "__main__":
    raise SystemExit(main())
