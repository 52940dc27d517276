"""Bad input of every kind, across every `pydock` sub-command: one clear line, Docker's exit
code, no traceback, and the store exactly as it was.

One table of (argv, exit code, a substring of the message). The rows run in this process
(`frontend.pydock.main`) against one store that holds busybox, a running container `web`
(with the named volume `inuse`), stopped containers `stopped` and `other`; each row compares
a snapshot of the whole root (paths, modes, content hashes) before and after.

Exit codes as Docker's: 125 for usage errors and for `run`/`create` failing before the
container's command ran; 1 for the errors of the other commands (Docker's daemon errors).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from container_helpers import REPO, Pydock, leftovers_check
from store_helpers import snapshot

from frontend.pydock import main

NOSUCH = "no-such-thing"


# --- the table ----------------------------------------------------------------------------------

# Commands and the arguments that satisfy their positionals (for the unknown-flag rows).
COMMANDS: dict[str, list[str]] = {
    "images": [],
    "tag": ["busybox", "x"],
    "rmi": ["busybox"],
    "history": ["busybox"],
    "import": ["/etc/passwd"],
    "save": ["busybox"],
    "load": [],
    "inspect": ["busybox"],
    "system df": [],
    "system prune": [],
    "image ls": [],
    "image rm": ["busybox"],
    "image inspect": ["busybox"],
    "image prune": [],
    "bootstrap busybox": [],
    "run": ["busybox", "true"],
    "create": ["busybox", "true"],
    "start": ["stopped"],
    "stop": ["web"],
    "kill": ["web"],
    "restart": ["web"],
    "wait": ["web"],
    "rm": ["stopped"],
    "ps": [],
    "logs": ["web"],
    "attach": ["web"],
    "exec": ["web", "true"],
    "top": ["web"],
    "diff": ["web"],
    "cp": ["web:/etc/passwd", "/tmp/x"],
    "export": ["web"],
    "commit": ["web"],
    "pause": ["web"],
    "unpause": ["web"],
    "rename": ["stopped", "x"],
    "port": ["web"],
    "stats": ["web"],
    "events": [],
    "info": [],
    "version": [],
    "container ls": [],
    "container rm": ["stopped"],
    "container prune": [],
    "volume ls": [],
    "volume create": [],
    "volume inspect": ["inuse"],
    "volume rm": ["inuse"],
    "volume prune": [],
}

# Commands with a required positional: alone, they are a usage error.
NEEDS_ARGS = [c for c, a in COMMANDS.items() if a and c not in ("stats",)]

ROWS: list = [
    *[([*c.split(), "--bogus-flag", *a], 125, "--bogus-flag") for c, a in COMMANDS.items()],
    *[([*c.split(), "--bogus-flag"], 125, "--bogus-flag") for c in NEEDS_ARGS],
    *[(c.split(), 125, "required") for c in NEEDS_ARGS],
    (["nosuchcommand"], 125, "invalid choice"),
    (["image", "nonsense"], 125, "invalid choice"),
    (["volume", "nonsense"], 125, "invalid choice"),
    # unknown images
    *[([c, NOSUCH], 1, f"No such image: {NOSUCH}") for c in ("rmi", "history", "save")],
    (["tag", NOSUCH, "x"], 1, f"No such image: {NOSUCH}"),
    (["inspect", NOSUCH], 1, f"No such object: {NOSUCH}"),
    (["image", "inspect", NOSUCH], 1, f"No such image: {NOSUCH}"),
    (["images", "-f", f"before={NOSUCH}"], 1, f"No such image: {NOSUCH}"),
    (["run", NOSUCH], 125, "not in the local store"),
    (["create", NOSUCH], 125, "not in the local store"),
    # unknown containers
    *[
        ([*c.split(), NOSUCH, *extra], 1, f"No such container: {NOSUCH}")
        for c, extra in (
            ("start", []), ("stop", []), ("kill", []), ("restart", []), ("wait", []),
            ("rm", []), ("logs", []), ("attach", []), ("exec", ["true"]), ("top", []),
            ("diff", []), ("export", []), ("commit", []), ("pause", []), ("unpause", []),
            ("rename", ["x"]), ("port", []), ("stats", ["--no-stream"]),
            ("container inspect", []),
        )
    ],  # fmt: skip
    (["cp", f"{NOSUCH}:/etc/passwd", "/tmp/x"], 1, f"No such container: {NOSUCH}"),
    (["run", "--volumes-from", NOSUCH, "busybox", "true"], 125, f"No such container: {NOSUCH}"),
    # run/create values
    (["run", "-m", "lots", "busybox", "true"], 125, "invalid value 'lots' for --memory"),
    (["run", "--memory-swap", "x", "busybox", "true"], 125, "--memory-swap"),
    (["run", "--cpus", "abc", "busybox", "true"], 125, "--cpus"),
    (["run", "--cpus", "-1", "busybox", "true"], 125, "Range of CPUs"),
    (["run", "--cpus", "nan", "busybox", "true"], 125, "Range of CPUs"),
    (["run", "--cpus", "1e309", "busybox", "true"], 125, "Range of CPUs"),
    (["run", "--cpus", "999", "busybox", "true"], 125, "Range of CPUs"),
    (["run", "-c", "99999999999999999999", "busybox", "true"], 125, "--cpu-shares"),
    (["run", "--pids-limit", "99999999999999999999", "busybox", "true"], 125, "--pids-limit"),
    (["run", "-c", "x", "busybox", "true"], 125, "--cpu-shares"),
    (["run", "-c", "-5", "busybox", "true"], 125, "--cpu-shares"),
    (["run", "-e"], 125, "expected one argument"),
    (["run", "-e", "", "busybox", "true"], 125, "invalid environment variable"),
    (["run", "-e", "=x", "busybox", "true"], 125, "invalid environment variable: =x"),
    (["create", "-e", "=x", "busybox", "true"], 125, "invalid environment variable: =x"),
    (["run", "--env-file", "/nonexistent", "busybox", "true"], 125, "/nonexistent"),
    (["run", "-v", "./rel:/x", "busybox", "true"], 125, "must be absolute"),
    (["run", "-v", "rel/sub:/x", "busybox", "true"], 125, "invalid characters"),
    (["run", "-v", "::", "busybox", "true"], 125, "invalid volume specification"),
    (["run", "-v", "", "busybox", "true"], 125, "invalid volume specification"),
    (["run", "-v", "/tmp:rel", "busybox", "true"], 125, "must be absolute"),
    (["run", "-v", "/tmp:/", "busybox", "true"], 125, "destination can't be '/'"),
    (["run", "-v", "/tmp:/x:bogus", "busybox", "true"], 125, "invalid mode"),
    (["run", "--tmpfs", "rel", "busybox", "true"], 125, "must be absolute"),
    (["run", "--cpuset-cpus", "99", "busybox", "true"], 125, "Requested CPUs are not available"),
    (["run", "--cpuset-cpus", "abc", "busybox", "true"], 125, "Invalid value abc for cpuset"),
    (["create", "--cpuset-cpus", "0-99", "busybox", "true"], 125, "Requested CPUs"),
    (["run", "--pids-limit", "x", "busybox", "true"], 125, "--pids-limit"),
    (["run", "--stop-timeout", "x", "busybox", "true"], 125, "--stop-timeout"),
    (["run", "--stop-signal", "NOPE", "busybox", "true"], 125, "invalid signal: NOPE"),
    (["run", "--stop-signal", "999", "busybox", "true"], 125, "invalid signal: 999"),
    (["run", "-p", "garbage", "busybox", "true"], 125, "garbage"),
    (["run", "-p", "8080:80", "busybox", "true"], 125, "bridge network"),
    (["run", "-P", "--expose", "80", "busybox", "true"], 125, "bridge network"),
    (["create", "-p", "1:2:3:4", "busybox", "true"], 125, "1:2:3:4"),
    (["run", "--expose", "abc", "busybox", "true"], 125, "abc"),
    (["run", "--network", "weird", "busybox", "true"], 125, "network weird not found"),
    (["run", "--name", "web", "busybox", "true"], 125, 'The container name "/web" is already'),
    (["run", "--name", "bad name", "busybox", "true"], 125, "Invalid container name"),
    (["run", "-a", "nope", "busybox", "true"], 125, "STDIN, STDOUT and STDERR"),
    (["run", "--label", "=x", "busybox", "true"], 125, "invalid label"),
    # (`run -u nosuchuser` fails in the container's own setup, which this sweep never
    # reaches: tests/test_run.py checks it, and the "Created" record it leaves, as Docker's)
    (["run", "-w", "rel", "busybox", "true"], 125, "not absolute"),
    (["run", "--ulimit", "bogus", "busybox", "true"], 125, "invalid ulimit"),
    (["run", "--restart", "always", "busybox", "true"], 125, "restart policies"),
    (["run", "--cap-add", "NOPE", "busybox", "true"], 125, "unknown capability"),
    (["run", "--security-opt", "nope", "busybox", "true"], 125, "--security-opt nope"),
    (["run", "--add-host", "bad", "busybox", "true"], 125, "invalid extra host"),
    (["run", "--entrypoint", "", "busybox"], 125, "No command specified"),
    (["run", "--cidfile", "/nonexistent/dir/cid", "busybox", "true"], 125, "/nonexistent/dir"),
    # container commands
    (["kill", "-s", "NOPE", "web"], 1, "invalid signal: NOPE"),
    (["kill", "-s", "999", "web"], 1, "invalid signal: 999"),
    (["kill", "stopped"], 1, "is not running"),
    (["stop", "-t", "x", "web"], 125, "invalid int value: 'x'"),
    (["restart", "-t", "x", "web"], 125, "invalid int value: 'x'"),
    (["rm", "web"], 1, "container is running"),
    (["logs", "--tail", "x", "web"], 1, "invalid value for --tail: x"),
    (["logs", "--since", "garbage", "web"], 1, "invalid time value"),
    (["logs", "--until", "garbage", "web"], 1, "invalid time value"),
    (["attach", "stopped"], 1, "start it first"),
    (["exec", "stopped", "true"], 1, "is not running"),
    (["exec", "web"], 125, "exec needs a command"),
    (["exec", "-e", "=x", "web", "true"], 125, "invalid environment variable: =x"),
    (["top", "stopped"], 1, "is not running"),
    (["pause", "stopped"], 1, "is not running"),
    (["unpause", "web"], 1, "is not paused"),
    (["cp", "web:/../../../etc/shadow", "/tmp/sweep-out"], 1, "leaves the container"),
    (["cp", "/etc/passwd", "stopped:/../../../../tmp/x"], 1, "leaves the container"),
    (["cp", "stopped:/nope", "/tmp/sweep-out"], 1, "Could not find the file /nope"),
    (["cp", "/nonexistent", "stopped:/tmp"], 1, "/nonexistent"),
    (["cp", "a", "b"], 1, "must specify at least one container"),
    (["cp", "stopped:/etc/passwd", "-"], 1, "'-'"),
    (["cp", "-", "stopped:/tmp"], 1, "'-'"),
    (["cp", "stopped:/etc/passwd", "/nonexistent/dir/x"], 1, "/nonexistent/dir"),
    (["export", "-o", "/nonexistent/dir/x.tar", "stopped"], 1, "/nonexistent/dir/x.tar"),
    (["export", "-o", "/tmp", "stopped"], 1, "/tmp"),
    (["commit", "stopped", "UPPER"], 1, "must be lowercase"),
    (["commit", "stopped", "a:b:c"], 1, "invalid reference format"),
    (["commit", "-c", "BOGUS x", "stopped"], 1, "BOGUS is not a supported change"),
    (["commit", "-c", "CMD [bad", "stopped"], 1, "not a JSON array"),
    (["commit", "-c", "VOLUME [bad", "stopped"], 1, "not a JSON array"),
    (["rename", "stopped", "web"], 1, 'The container name "/web" is already'),
    (["rename", "stopped", "bad name"], 1, "Invalid container name"),
    (["rename", "stopped", "other"], 1, 'The container name "/other" is already'),
    (["ps", "--filter", "bogus"], 1, "bad format of filter"),
    (["ps", "--filter", "bogus=1"], 1, "invalid filter 'bogus'"),
    (["ps", "-n", "x"], 125, "invalid int value: 'x'"),
    (["events", "--since", "garbage"], 1, "invalid time value"),
    (["events", "--filter", "bogus"], 1, "bad format of filter"),
    (["events", "--filter", "bogus=1", "--until", "0"], 1, "invalid filter 'bogus'"),
    # --format templates
    (["images", "--format", "{{"], 1, "unclosed action"),
    (["images", "--format", "{{.Nope}}"], 1, "can't evaluate field Nope"),
    (["images", "--format", "table"], 1, "--format table"),
    (["ps", "-a", "--format", "{{"], 1, "unclosed action"),
    (["ps", "-a", "--format", "{{.Nope}}"], 1, "can't evaluate field Nope"),
    (["inspect", "--format", "{{", "busybox"], 1, "unclosed action"),
    (["inspect", "--format", "{{.Nope}}", "busybox"], 1, "can't evaluate field Nope"),
    (["inspect", "--format", "{{.Nope}}", "web"], 1, "can't evaluate field Nope"),
    (["history", "--format", "{{.X", "busybox"], 1, "unclosed action"),
    (["system", "df", "--format", "{{"], 1, "unclosed action"),
    (["volume", "ls", "--format", "{{"], 1, "unclosed action"),
    (["volume", "inspect", "--format", "{{.Nope}}", "inuse"], 1, "can't evaluate field Nope"),
    (["container", "ls", "--format", "{{if}}"], 1, "template: missing {{end}}"),
    # image commands
    (["tag", "busybox", "UPPER:tag"], 1, "must be lowercase"),
    (["tag", "busybox", "a:b:c"], 1, "invalid reference format"),
    (["tag", "busybox", ""], 1, "invalid reference format"),
    (["tag", "busybox", "sha256:" + "a" * 64], 1, "invalid reference format"),
    (["rmi", "busybox"], 1, "being used by running container"),
    (["images", "-f", "bogus=1"], 1, "invalid filter"),
    (["save", "-o", "/nonexistent/dir/x.tar", "busybox"], 1, "/nonexistent/dir/x.tar"),
    (["save", "-o", "/tmp", "busybox"], 1, "/tmp: Is a directory"),
    (["save", "--format", "weird", "busybox"], 125, "invalid choice: 'weird'"),
    (["load", "-i", "/nonexistent"], 1, "/nonexistent: no such file"),
    (["load", "-i", "/tmp"], 1, "/tmp: a folder that is not an image layout"),
    (["load", "-i", "/dev/null"], 1, "/dev/null: not a regular file"),
    (["load", "-i", "/etc/passwd"], 1, "/etc/passwd: not a tar archive"),
    (["load", "-i", "{tmp}/empty"], 1, "/empty: not an image archive: empty file"),
    (["import", "{tmp}/empty"], 1, "empty stream"),
    (["import", "/nonexistent"], 1, "/nonexistent: no such file"),
    (["import", "/etc/passwd"], 1, "/etc/passwd: not a tar"),
    (["import", "/tmp"], 1, "/tmp: is a directory"),
    (["import", "/dev/null"], 1, "empty stream"),
    (["import", "-c", "RUN x", "/etc/passwd"], 1, ""),
    (["system", "prune", "--bogus"], 125, "--bogus"),
    (["bootstrap", "busybox", "--busybox", "/nonexistent"], 1, "/nonexistent"),
    # volumes
    (["volume", "rm", "inuse"], 1, "volume is in use"),
    (["volume", "rm", NOSUCH], 1, "no such volume"),
    (["volume", "inspect", NOSUCH], 1, "no such volume"),
    (["volume", "create", "bad name"], 1, "includes invalid characters"),
    (["volume", "create", "-d", "nfs", "v2"], 1, "not supported"),
    (["volume", "ls", "-f", "bogus=1"], 1, "invalid filter 'bogus'"),
]  # fmt: skip


def _row_id(row) -> str:  # noqa: ANN001
    argv = row.values[0][0] if hasattr(row, "values") else row[0]
    return " ".join(argv)[:60] or "-"


# --- the world the rows run in -------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(busybox_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """A store with busybox, a running `web` (volume `inuse`), stopped `stopped` and `other`."""
    from conftest import copy_store

    tmp = tmp_path_factory.mktemp("sweep")
    root = tmp / "root"
    copy_store(busybox_root, root)
    pyd = Pydock(root)
    pyd("run", "-d", "--name", "web", "-v", "inuse:/data", "busybox", "sleep", "1000", check=True)
    pyd("run", "--name", "stopped", "busybox", "true", check=True)
    pyd("create", "--name", "other", "busybox", "true", check=True)
    (tmp / "empty").write_bytes(b"")
    try:
        yield root
    finally:
        pyd("rm", "-f", "web")
        leftovers_check(root, tmp)


def run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`pydock ARGV` in this process: (exit code, stdout, stderr)."""

    def too_long(signum, frame):  # noqa: ANN001, ANN202
        raise TimeoutError(f"pydock {' '.join(argv)} did not return")

    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(10)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code if isinstance(e.code, int) else 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clean_line(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err


class StartedAContainer(Exception):
    """A row got as far as starting a container: its bad input was not refused."""


@pytest.fixture(autouse=True)
def _own_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dispatchers build only the parser named by sys.argv when run as `pydock ...`;
    # pytest's own argv must not look like a pydock command line.
    monkeypatch.setattr(sys, "argv", ["pytest"])


@pytest.fixture
def _no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input must be refused before anything starts: a row that would start a container
    (in this very process) fails instead."""
    import executor.exec
    import executor.supervisor

    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise StartedAContainer("the input was accepted: a container was about to start")

    monkeypatch.setattr(executor.supervisor, "hold", refuse)
    monkeypatch.setattr(executor.supervisor, "start_detached", refuse)
    monkeypatch.setattr(executor.exec, "exec_in_container", refuse)


@pytest.mark.parametrize("row", ROWS, ids=_row_id)
def test_bad_input(row, world: Path, capsys: pytest.CaptureFixture, _no_start) -> None:
    argv, code, message = row
    argv = [a.replace("{tmp}", str(world.parent)) for a in argv]
    before = snapshot(world)
    got, out, err = run_main(["--root", str(world), *argv], capsys)
    assert_one_clean_line(err)
    assert message in err, err
    assert got == code, (got, err)
    assert snapshot(world) == before


# --- the store root itself -----------------------------------------------------------------------

ROOT_COMMANDS = [
    ["images"], ["ps", "-a"], ["volume", "ls"], ["run", "busybox", "true"],
    ["tag", "busybox", "x"], ["system", "df"], ["system", "prune", "-f"], ["info"],
    ["events", "--until", "0"], ["volume", "create", "vv"], ["load", "-i", "/etc/passwd"],
    ["container", "prune", "-f"],
]  # fmt: skip


@pytest.mark.parametrize("argv", ROOT_COMMANDS, ids=lambda a: " ".join(a))
@pytest.mark.parametrize("kind", ["file", "file-parent", "missing-parent"])
def test_root_that_cannot_be_a_store(kind, argv, tmp_path: Path, capsys, _no_start) -> None:
    (tmp_path / "afile").write_text("x")
    root = {
        "file": tmp_path / "afile",
        "file-parent": tmp_path / "afile" / "root",
        "missing-parent": tmp_path / "no" / "such" / "root",
    }[kind]
    before = snapshot(tmp_path)
    code, _, err = run_main(["--root", str(root), *argv], capsys)
    assert_one_clean_line(err)
    assert str(root) in err or str(root.parent) in err, err
    assert code in (1, 125), err
    assert snapshot(tmp_path) == before


READ_ONLY_OK = [["images"], ["ps", "-a"], ["volume", "ls"], ["history", "busybox"],
                ["inspect", "busybox"], ["system", "df"], ["info"]]  # fmt: skip
READ_ONLY_REFUSED = [
    ["run", "busybox", "true"], ["create", "busybox", "true"], ["tag", "busybox", "x"],
    ["rmi", "busybox"], ["system", "prune", "-f"], ["image", "prune", "-f"],
    ["volume", "create", "vv"], ["volume", "prune", "-f"], ["load", "-i", "/etc/passwd"],
    ["import", "/etc/passwd"], ["bootstrap", "busybox"],
]  # fmt: skip


@pytest.fixture
def read_only_root(busybox_root: Path, tmp_path: Path):
    """A busybox store behind a read-only bind mount (unmounted after)."""
    src = tmp_path / "src"
    shutil.copytree(busybox_root, src, symlinks=True)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", str(src), str(mnt)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_read_only_store(read_only_root: Path, capsys, _no_start) -> None:
    before = snapshot(read_only_root)
    for argv in READ_ONLY_OK:
        code, out, err = run_main(["--root", str(read_only_root), *argv], capsys)
        assert (code, err) == (0, ""), argv
    for argv in READ_ONLY_REFUSED:
        code, out, err = run_main(["--root", str(read_only_root), *argv], capsys)
        assert_one_clean_line(err)
        assert "read-only" in err.lower(), (argv, err)
        assert code == (125 if argv[0] in ("run", "create") else 1), (argv, err)
    assert snapshot(read_only_root) == before


# --- stress: closed pipes, interrupts ------------------------------------------------------------


def _pydock(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "frontend.pydock", "--root", str(root), *args]


def test_stdout_closed_early(world: Path) -> None:
    """`pydock images | head -0`, `pydock logs -f ... | head -1`: no traceback, no noise."""
    # A reader that closed its end before pydock wrote anything.
    for args in (["images"], ["ps", "-a"], ["inspect", "busybox"], ["save", "busybox"]):
        r, w = os.pipe()
        os.close(r)
        p = subprocess.run(_pydock(world, *args), stdout=w, stderr=subprocess.PIPE, cwd=REPO)
        os.close(w)
        assert b"Traceback" not in p.stderr and b"internal error" not in p.stderr, p.stderr
        assert p.stderr == b"", (args, p.stderr)


def test_logs_follow_into_head(world: Path, tmp_path: Path) -> None:
    pyd = Pydock(world)
    cid = pyd.ok("run", "-d", "busybox", "sh", "-c", "while true; do echo x; sleep 0.05; done")
    try:
        cmd = " ".join(_pydock(world, "logs", "-f", cid.strip()))
        p = subprocess.run(
            f"{cmd} | head -1", shell=True, capture_output=True, text=True, cwd=REPO, timeout=30
        )
        assert p.stdout == "x\n"
        assert p.stderr == "", p.stderr
    finally:
        pyd("rm", "-f", cid.strip())


@pytest.mark.parametrize("what", ["save", "load"])
def test_sigint_during_save_and_load(what: str, busybox_root: Path, tmp_path: Path) -> None:
    """^C in the middle of `save`/`load` of a large image: one line, store and files as before."""
    from conftest import copy_store

    root = tmp_path / "root"
    copy_store(busybox_root, root)
    big = tmp_path / "big.tar"
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    with open(rootfs / "blob", "wb") as f:
        f.write(os.urandom(1 << 20) * 300)  # 300 MB, quick to write, slow enough to interrupt
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(big), "."], check=True)
    (rootfs / "blob").unlink()
    Pydock(root)("import", str(big), "big:1", check=True)
    archive = tmp_path / "big-archive.tar"
    if what == "load":
        Pydock(root)("save", "-o", str(archive), "big:1", check=True)
        Pydock(root)("rmi", "big:1", check=True)
        args = ["load", "-i", str(archive)]
    else:
        args = ["save", "-o", str(tmp_path / "out.tar"), "big:1"]
    big.unlink()
    before = snapshot(root)
    files_before = sorted(os.listdir(tmp_path))
    proc = subprocess.Popen(_pydock(root, *args), stderr=subprocess.PIPE, cwd=REPO)
    import time

    time.sleep(0.6)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip(f"{what} finished before the interrupt")
    assert proc.returncode == 130, err
    assert err.decode().splitlines() == ["pydock: interrupted"], err
    assert snapshot(root) == before
    assert sorted(os.listdir(tmp_path)) == files_before
