"""Parser speed: prints a table (not a test; numbers depend on the machine).

    .venv/bin/python bench/parse_bench.py

Rows: parse of a 10,000-instruction Dockerfile (parse tree only, and typed instructions),
and whole-process `pybuild debug parse` of a 50-line Dockerfile (median of several runs).
Targets from the issue: under 0.5 s and under 150 ms.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LINES = [
    "RUN --mount=type=cache,target=/root/.cache apt-get update \\\n"
    "    && apt-get install -y curl git && rm -rf /var/lib/apt/lists/*",
    'ENV PATH=/opt/bin:$PATH HOME="/root dir"',
    'COPY --chown=1000:1000 ["a b", "/dst/"]',
    "LABEL org.example.x=1 b=2",
    "ARG VERSION=1.0",
    "WORKDIR /app/$VERSION",
    "EXPOSE 80 443/tcp",
    'CMD ["sh", "-c", "echo hi"]',
    "USER 1000:1000",
    "ADD --chmod=644 src /dst",
]


def dockerfile(n: int) -> str:
    out = ["FROM alpine:3.20 AS base"]
    while len(out) < n:
        out.append(LINES[len(out) % len(LINES)])
    return "\n".join(out) + "\n"


def best_of(fn, runs: int = 5) -> tuple[float, float]:
    """(best wall time, best CPU time) of `runs` calls."""
    walls, cpus = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return min(walls), min(cpus)


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    from builder.parser import parse, parse_nodes

    big = dockerfile(10_000)
    parse_nodes("FROM a\n")  # load the grammar tables once, as a running process has
    rows = [
        ("parse tree, 10,000 instructions", best_of(lambda: parse_nodes(big)), 0.5),
        ("typed parse, 10,000 instructions", best_of(lambda: parse(big)), 0.5),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Dockerfile"
        path.write_text(dockerfile(50))
        cmd = [str(ROOT / ".venv" / "bin" / "pybuild"), "debug", "parse", str(path)]
        if not Path(cmd[0]).exists():
            cmd = [sys.executable, "-m", "frontend.pybuild", "debug", "parse", str(path)]
        subprocess.run(cmd, capture_output=True, check=True)  # warm the table cache
        walls, cpus = [], []
        for _ in range(11):
            t, c = time.perf_counter(), child_cpu()
            subprocess.run(cmd, capture_output=True, check=True)
            walls.append(time.perf_counter() - t)
            cpus.append(child_cpu() - c)
        rows.append(
            (
                "`pybuild debug parse`, 50 lines (process)",
                (statistics.median(walls), statistics.median(cpus)),
                0.15,
            )
        )

    # CPU time is shown too: on a busy machine the wall time says more about the neighbours.
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'wall':>9}  {'cpu':>9}  {'target':>8}  ok (wall)")
    for name, (wall, cpu), target in rows:
        ok = "yes" if wall < target else "NO"
        print(
            f"{name:<{width}}  {wall * 1000:7.1f}ms  {cpu * 1000:7.1f}ms  {target * 1000:6.0f}ms  {ok}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
