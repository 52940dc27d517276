"""Build benchmarks: pybuild against `buildah bud --layers` and `docker build` (BuildKit).

Run by hand, as root: `.venv/bin/python bench/build_bench.py [--scale 0.1] [--runs 3]`.

Workloads (issue 5):
  a  a 10-step Dockerfile of ENV/WORKDIR/ADD/RUN/USER/EXPOSE/ENTRYPOINT/CMD on busybox
  b  ADD of a 200 MB, 2,000-file context, then a RUN
  c  a RUN writing 100 MB in 5,000 files, one deleting half and changing some, one reading
  d  two stages joined by COPY --from
Each is built cold (--no-cache), fully cached, and after rewriting one small file that the
first ADD reads. pybuild is a fresh process every time. The machine's speed drifts, so the
tools are alternated run by run and only the ratios taken in this one run mean anything.
Peers: buildah when installed; docker when a daemon answers (`DOCKER_BUILDKIT=1`, the Debian
client /usr/bin/docker when present, `--network=none`). Missing peers are reported as such.

Prints a table (median seconds per tool and scenario, and pybuild's ratio to each peer);
exits 0 whatever the numbers.
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
PYBUILD = str(HERE / ".venv" / "bin" / "pybuild")

DOCKERFILES = {
    "a": """\
FROM busybox
ENV APP=/app MODE=bench
WORKDIR /app
ADD small/ /app/
RUN cat /app/f0.txt > /app/copy.txt
ENV PATH=/app/bin:$PATH
USER nobody
EXPOSE 8080
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hello"]
""",
    "b": """\
FROM busybox
ADD big/ /data/
RUN du -s /data > /du.txt
""",
    "c": """\
FROM busybox
ADD small/ /seed/
RUN mkdir /w && i=0; while [ $i -lt {files} ]; do \
      head -c {size} /dev/zero > /w/f$i; i=$((i+1)); done
RUN i=0; while [ $i -lt {files} ]; do rm /w/f$i; i=$((i+2)); done; \
      i=1; while [ $i -lt {files} ]; do echo changed >> /w/f$i; i=$((i+50)); done
RUN cat /w/* | wc -c > /total
""",
    "d": """\
FROM busybox AS build
ADD small/ /src/
RUN mkdir /out && cat /src/*.txt > /out/all.txt

FROM busybox
COPY --from=build /out/all.txt /app/all.txt
CMD ["cat", "/app/all.txt"]
""",
}


def make_context(ctx: Path, workload: str, scale: float) -> None:
    ctx.mkdir(parents=True)
    small = ctx / "small"
    small.mkdir()
    for i in range(10):
        (small / f"f{i}.txt").write_text(f"file {i}\n")
    text = DOCKERFILES[workload]
    if workload == "b":
        big = ctx / "big"
        files = max(10, int(2000 * scale))
        size = 100_000  # 2,000 x 100 kB = 200 MB at scale 1
        chunk = os.urandom(size)
        for i in range(files):
            sub = big / f"d{i % 20}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i}.bin").write_bytes(chunk[i % 97 :] + chunk[: i % 97])
    if workload == "c":
        files = max(10, int(5000 * scale))
        text = text.format(files=files, size=20_000)  # 5,000 x 20 kB = 100 MB
    (ctx / "Dockerfile").write_text(text)


# Edits are unique to this bench run: the peers' caches outlive a run (dockerd, buildah's
# storage) and are keyed by content, so an edit repeated from an earlier run would be a
# cache hit for them (a whole (c) rebuild in 0.08 s) while pybuild starts from a fresh store.
RUN_TOKEN = os.urandom(8).hex()


def touch_first_add(ctx: Path, n: int) -> None:
    """Rewrite one small file the first ADD reads (in b, one file of the big context)."""
    if (ctx / "big").is_dir():
        (ctx / "big" / "d0" / "f0.bin").write_bytes(f"edit {n} {RUN_TOKEN}\n".encode() * 100)
        return
    (ctx / "small" / "f0.txt").write_text(f"file 0, edit {n} {RUN_TOKEN}\n")


class Tool:
    name = ""

    def available(self) -> bool:
        return True

    def build(self, ctx: Path, tag: str, no_cache: bool) -> float:
        raise NotImplementedError

    @staticmethod
    def _timed(argv: list[str], env: dict | None = None) -> float:
        t = time.perf_counter()
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {p.stderr.decode()[-500:]}")
        return dt


class Pybuild(Tool):
    name = "pybuild"

    def __init__(self, root: Path) -> None:
        self.root = root

    def build(self, ctx: Path, tag: str, no_cache: bool) -> float:
        argv = [PYBUILD, "--root", str(self.root), "-q", "-t", tag, str(ctx)]
        if no_cache:
            argv.insert(3, "--no-cache")
        # Like a user's shell: bytecode is cached (some sandboxes set DONTWRITEBYTECODE,
        # which makes every run recompile the project, a cost no installed copy pays).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return self._timed(argv, env)


class Buildah(Tool):
    name = "buildah"

    def available(self) -> bool:
        return shutil.which("buildah") is not None

    def prepare(self, archive: Path) -> None:
        subprocess.run(
            ["buildah", "pull", f"docker-archive:{archive}"], check=True, capture_output=True
        )
        subprocess.run(
            ["buildah", "tag", "busybox:latest", "docker.io/library/busybox:latest"],
            capture_output=True,
        )

    def build(self, ctx: Path, tag: str, no_cache: bool) -> float:
        argv = ["buildah", "bud", "--layers", "--pull=never", "-q", "-t", tag]
        # Debian's crun refuses hybrid cgroups ("drop all controllers from cgroupv2"); runc
        # gives the same OCI isolation (namespaces, overlay), chroot is the last resort.
        if os.path.exists("/usr/sbin/runc"):
            argv.append("--runtime=/usr/sbin/runc")
        else:
            argv.append("--isolation=chroot")
        if no_cache:
            argv.append("--no-cache")
        return self._timed([*argv, str(ctx)])


class Docker(Tool):
    name = "docker"

    def __init__(self) -> None:
        self.bin = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
        self.env = {**os.environ, "DOCKER_BUILDKIT": "1"}

    def available(self) -> bool:
        if shutil.which(self.bin) is None:
            return False
        return subprocess.run([self.bin, "info"], capture_output=True).returncode == 0

    def prepare(self, archive: Path) -> None:
        subprocess.run([self.bin, "load", "-i", str(archive)], check=True, capture_output=True)

    def build(self, ctx: Path, tag: str, no_cache: bool) -> float:
        argv = [self.bin, "build", "--network=none", "-q", "-t", tag]
        if no_cache:
            argv.append("--no-cache")
        return self._timed([*argv, str(ctx)], self.env)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per tool and scenario (median)")
    ap.add_argument(
        "--scale", type=float, default=1.0, help="shrink workloads b and c (0.1 = 10%%)"
    )
    ap.add_argument("--workloads", default="abcd")
    args = ap.parse_args()

    from cache.bootstrap import make_busybox
    from cache.store import Store

    work = Path(tempfile.mkdtemp(prefix="build-bench-"))
    try:
        root = work / "root"
        store = Store.open(root)
        image = make_busybox(store)
        archive = work / "busybox.tar"
        from cache.archive import save_images

        with open(archive, "wb") as f:
            save_images(store, [(image, ["busybox:latest"])], f, fmt="docker")
        tools: list[Tool] = [Pybuild(root)]
        missing = []
        for peer in (Buildah(), Docker()):
            if peer.available():
                try:
                    peer.prepare(archive)  # type: ignore[attr-defined]
                    tools.append(peer)
                except (subprocess.CalledProcessError, OSError) as e:
                    missing.append(f"{peer.name} (cannot load busybox: {e})")
            else:
                missing.append(f"{peer.name} (not installed or no daemon)")

        rows = []
        peer_names = [t.name for t in tools[1:]]
        for w in args.workloads:
            ctx = work / f"ctx-{w}"
            make_context(ctx, w, args.scale)
            times: dict[tuple[str, str], list[float]] = {}
            for t in list(tools):  # warm each tool's cache once (not measured)
                try:
                    t.build(ctx, f"bench-{w}", no_cache=False)
                except RuntimeError as e:
                    if t.name == "pybuild":
                        raise
                    tools.remove(t)
                    missing.append(f"{t.name} (failed on workload {w}: {str(e)[-200:]})")
            edit = 0
            for _ in range(args.runs):
                for t in tools:  # alternate the tools within each round
                    times.setdefault((t.name, "cold"), []).append(t.build(ctx, f"bench-{w}", True))
                    times.setdefault((t.name, "cached"), []).append(
                        t.build(ctx, f"bench-{w}", False)
                    )
                    edit += 1
                    touch_first_add(ctx, edit)
                    times.setdefault((t.name, "one file"), []).append(
                        t.build(ctx, f"bench-{w}", False)
                    )
            for scenario in ("cold", "cached", "one file"):
                row = [w, scenario]
                base = statistics.median(times[("pybuild", scenario)])
                row.append(f"{base:.3f}")
                for name in peer_names:
                    if (name, scenario) in times:
                        peer = statistics.median(times[(name, scenario)])
                        row.append(f"{peer:.3f} (x{peer / base:.2f})")
                    else:
                        row.append("-")
                rows.append(row)
        headers = ["workload", "scenario", "pybuild s"] + [
            f"{n} s (peer/pybuild)" for n in peer_names
        ]
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        for r in [headers, *rows]:
            print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
        for m in missing:
            print(f"peer not measured: {m}")
        print(
            f"scale {args.scale}, {args.runs} runs per cell (median), pybuild a fresh process each time"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
