"""Container records and the container commands: ps, logs, inspect, rm, rename, diff, cp,
export, commit, pause, events, stats, info (real containers on busybox)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from container_helpers import REPO, Pydock, leftovers_check, wait_for

from executor.containers import (
    Container,
    ContainerStore,
    LogWriter,
    State,
    generate_name,
    new_id,
    process_start_time,
    read_log,
)
from executor.lifecycle import merge_env, parse_bytes, signal_number


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    """Every test: no container left running, no mount or cgroup left behind."""
    yield
    leftovers_check(tmp_path / "root", tmp_path)


@pytest.fixture
def pyd(busybox_store):
    return Pydock(busybox_store.root)


def _record(cstore: ContainerStore, name: str = "", **state) -> Container:
    c = Container(
        id=new_id(),
        name=name,
        created=time.time(),
        image_id="sha256:" + "0" * 64,
        image_name="busybox",
        path="true",
        args=[],
        config={},
        host_config={},
        state=State(**state),
    )
    return cstore.create(c)


# --- records, in-process -------------------------------------------------------------------------


def test_lookup_by_id_prefix_and_name(tmp_path):
    cstore = ContainerStore(tmp_path)
    a = _record(cstore, "alpha")
    b = _record(cstore)
    assert b.name and "_" in b.name  # a generated adjective_surname
    assert cstore.get(a.id).name == "alpha"
    assert cstore.get(a.id[:12]).id == a.id
    assert cstore.get("alpha").id == a.id
    assert cstore.get("/alpha").id == a.id
    assert cstore.find("nope") is None
    with pytest.raises(Exception, match="No such container: nope"):
        cstore.get("nope")
    with pytest.raises(Exception, match="already in use"):
        _record(cstore, "alpha")
    cstore.rename(b, "beta")
    assert cstore.get("beta").id == b.id
    cstore.remove_record(cstore.get("beta"))
    assert [c.id for c in cstore.list()] == [a.id]


def test_running_record_with_dead_pid_is_reconciled(tmp_path):
    cstore = ContainerStore(tmp_path)
    p = subprocess.Popen(["true"])
    p.wait()
    c = _record(
        cstore, "ghost", status="running", pid=p.pid, pid_start=12345, started_at=time.time()
    )
    fresh = cstore.get("ghost")
    assert fresh.state.status == "exited" and fresh.state.exit_code == 137
    # The reconciled state was saved.
    assert json.loads((c.dir / "state.json").read_text())["status"] == "exited"


def test_pid_reuse_does_not_keep_a_dead_container_alive(tmp_path):
    cstore = ContainerStore(tmp_path)
    me = os.getpid()
    # Our own pid is alive, but with another start time it is another process.
    _record(cstore, "reused", status="running", pid=me, pid_start=process_start_time(me) + 1)
    assert cstore.get("reused").state.status == "exited"
    _record(cstore, "alive", status="running", pid=me, pid_start=process_start_time(me))
    assert cstore.get("alive").state.status == "running"


def test_generated_names_are_free_and_well_formed():
    taken = set()
    for _ in range(200):
        n = generate_name(taken)
        assert n not in taken and n.count("_") >= 1 and n != "boring_wozniak"
        taken.add(n)


def test_log_writer_splits_lines_like_json_file(tmp_path):
    w = LogWriter(tmp_path / "log")
    w.write("stdout", b"one\ntw")
    w.write("stderr", b"err\n")
    w.write("stdout", b"o\nthree")
    w.close()
    recs = read_log(tmp_path / "log")
    assert [(r["stream"], r["log"]) for r in recs] == [
        ("stdout", "one\n"),
        ("stderr", "err\n"),
        ("stdout", "two\n"),
        ("stdout", "three"),
    ]
    assert all(r["time"].endswith("Z") for r in recs)


def test_flag_values():
    assert parse_bytes("32m") == 32 << 20
    assert parse_bytes("1g") == 1 << 30
    assert parse_bytes("512") == 512
    assert parse_bytes("-1") == -1
    assert signal_number("KILL") == signal.SIGKILL
    assert signal_number("sigusr1") == signal.SIGUSR1
    assert signal_number("15") == 15
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4"]) == ["A=1", "B=3", "C=4"]


# --- commands, end to end ------------------------------------------------------------------------


def test_ps_columns_filters_and_format(pyd):
    pyd.ok("run", "--name", "ok0", "busybox", "true")
    pyd("run", "--name", "bad3", "busybox", "sh", "-c", "exit 3")
    pyd.ok("create", "--name", "fresh", "busybox", "true")
    lines = pyd.ok("ps", "-a").splitlines()
    assert len(lines) == 4
    assert "fresh" in lines[1]  # newest first
    assert "Exited (3)" in pyd.ok("ps", "-a", "--filter", "name=bad")
    assert pyd.ok("ps", "-a", "--filter", "status=created", "--format", "{{.Names}}") == "fresh\n"
    assert (
        pyd.ok("ps", "-a", "-f", "exited=3", "--format", "{{.Names}} {{.State}}") == "bad3 exited\n"
    )
    assert set(pyd.ok("ps", "-a", "-f", "ancestor=busybox", "--format", "{{.Names}}").split()) == {
        "ok0",
        "bad3",
        "fresh",
    }
    assert pyd.ok("ps", "-l", "--format", "{{.Names}}") == "fresh\n"
    assert len(pyd.ok("ps", "-n", "2", "-q").split()) == 2
    full = pyd.ok("ps", "-a", "-q", "--no-trunc").split()
    assert all(len(i) == 64 for i in full)
    table = pyd.ok("ps", "-a", "--format", "table {{.Names}}\t{{.Status}}").splitlines()
    assert table[0].split() == ["NAMES", "STATUS"]
    assert pyd.ok("ps", "-q") == ""
    pyd.ok("rm", "ok0", "bad3", "fresh")


def test_logs_tail_timestamps_since(pyd):
    pyd.ok("run", "--name", "talk", "busybox", "sh", "-c", "echo a; echo b >&2; echo c")
    p = pyd("logs", "talk")
    assert (p.stdout, p.stderr) == ("a\nc\n", "b\n")
    tail = pyd("logs", "--tail", "1", "talk")  # stdout and stderr records interleave freely
    assert len((tail.stdout + tail.stderr).splitlines()) == 1
    stamped = pyd.ok("logs", "-t", "talk").splitlines()
    assert stamped[0].endswith("Z a") and stamped[0][:4].isdigit()
    assert pyd.ok("logs", "--since", "1h", "talk") == "a\nc\n"
    assert pyd.ok("logs", "--until", "1h", "talk") == ""
    pyd.ok("rm", "talk")


def test_logs_follow_ends_with_the_container(pyd):
    pyd.ok(
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo $i; sleep 0.2; done",
    )
    assert pyd.ok("logs", "-f", "ticker") == "1\n2\n3\n"
    pyd.ok("rm", "ticker")


def test_inspect_container_fields(pyd):
    assert (
        pyd(
            "run", "--name", "insp", "-e", "X=1", "-l", "k=v", "busybox", "sh", "-c", "exit 2"
        ).returncode
        == 2
    )
    info = json.loads(pyd.ok("inspect", "insp"))[0]
    assert info["Name"] == "/insp" and info["Path"] == "sh" and info["Args"] == ["-c", "exit 2"]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 2
    assert info["State"]["FinishedAt"] >= info["State"]["StartedAt"] > "2000"
    assert "X=1" in info["Config"]["Env"] and info["Config"]["Labels"] == {"k": "v"}
    assert info["Config"]["Image"] == "busybox" and info["Image"].startswith("sha256:")
    assert info["HostConfig"]["NetworkMode"] == "none"
    assert info["GraphDriver"]["Data"]["UpperDir"].endswith("/upper")
    assert (
        pyd.ok("inspect", "-f", "{{.State.ExitCode}} {{.Config.Hostname}}", "insp").split()[0]
        == "2"
    )
    assert pyd.ok("container", "inspect", "--format", "{{.Name}}", "insp") == "/insp\n"
    p = pyd("inspect", "no-such-thing")
    assert p.returncode == 1 and "No such" in p.stderr
    pyd.ok("rm", "insp")


def test_rename_and_rm_of_missing(pyd):
    pyd.ok("create", "--name", "old", "busybox", "true")
    pyd.ok("create", "--name", "other", "busybox", "true")
    p = pyd("rename", "old", "other")
    assert p.returncode != 0 and "already in use" in p.stderr
    pyd.ok("rename", "old", "new")
    assert pyd.ok("ps", "-a", "--filter", "name=new", "--format", "{{.Names}}") == "new\n"
    p = pyd("rm", "new", "ghost", "other")
    assert p.returncode == 1 and "No such container: ghost" in p.stderr
    assert p.stdout.split() == ["new", "other"]


def test_diff_after_changes(pyd):
    pyd.ok(
        "run",
        "--name",
        "chg",
        "busybox",
        "sh",
        "-c",
        "echo x > /etc/new; rm /bin/vi; echo y >> /etc/passwd; mkdir -p /a/b",
    )
    assert pyd.ok("diff", "chg").splitlines() == [
        "A /a",
        "A /a/b",
        "C /bin",
        "D /bin/vi",
        "C /etc",
        "A /etc/new",
        "C /etc/passwd",
    ]
    pyd.ok("rm", "chg")


def test_cp_both_ways_and_escapes_refused(pyd, tmp_path):
    pyd.ok(
        "run",
        "--name",
        "box",
        "busybox",
        "sh",
        "-c",
        "mkdir /d; echo inside > /d/f; ln -s / /d/up; ln -s /etc/passwd /d/pw",
    )
    out = tmp_path / "out"
    out.mkdir()
    pyd.ok("cp", "box:/d/f", str(out / "f"))
    assert (out / "f").read_text() == "inside\n"
    pyd.ok("cp", "box:/d", str(out))
    assert (out / "d" / "f").read_text() == "inside\n" and os.readlink(out / "d" / "up") == "/"
    # A symlink in the path resolves inside the container, never on the host.
    pyd.ok("cp", "box:/d/up/etc/passwd", str(out / "via-link"))
    pyd.ok("cp", "-L", "box:/d/pw", str(out / "pw"))
    container_passwd = (out / "pw").read_text()
    assert container_passwd.startswith("root:x:0:0")
    assert (out / "via-link").read_text() == container_passwd != open("/etc/passwd").read()
    p = pyd("cp", "box:/../../../etc/shadow", str(out / "x"))
    assert p.returncode == 1 and "leaves the container" in p.stderr
    p = pyd("cp", "box:/nope", str(out / "x"))
    assert p.returncode == 1 and "Could not find the file /nope" in p.stderr
    # Into the container, through its own symlink: lands inside, not in the host's /.
    src = tmp_path / "hostfile"
    src.write_text("from host\n")
    pyd.ok("cp", str(src), "box:/d/up/tmp/")
    pyd.ok("cp", str(src), "box:/renamed")
    assert not os.path.exists("/tmp/hostfile") or open("/tmp/hostfile").read() != "from host\n"
    p = pyd("start", "-a", "box")  # runs its command again, then check via a new cp
    pyd.ok("cp", "box:/tmp/hostfile", str(out / "back"))
    pyd.ok("cp", "box:/renamed", str(out / "back2"))
    assert (out / "back").read_text() == (out / "back2").read_text() == "from host\n"
    p = pyd("cp", str(src), "box:/../x")
    assert p.returncode == 1 and "leaves the container" in p.stderr
    pyd.ok("rm", "box")


def test_cp_into_running_container(pyd, tmp_path):
    pyd.ok("run", "-d", "--name", "live", "busybox", "sleep", "1000")
    src = tmp_path / "f"
    src.write_text("hot\n")
    pyd.ok("cp", str(src), "live:/tmp/f")
    assert pyd.ok("exec", "live", "cat", "/tmp/f") == "hot\n"
    pyd.ok("rm", "-f", "live")


def test_export_is_a_tar_of_the_whole_root(pyd):
    pyd.ok("run", "--name", "exp", "busybox", "sh", "-c", "echo e > /exported; rm /bin/vi")
    p = pyd("export", "exp", input=b"")
    assert p.returncode == 0
    names = tarfile.open(fileobj=io.BytesIO(p.stdout)).getnames()
    assert "exported" in names and "bin/busybox" in names and "bin/vi" not in names
    listing = subprocess.run(["tar", "t"], input=p.stdout, capture_output=True, check=True).stdout
    assert b"bin/sh\n" in listing
    pyd.ok("rm", "exp")


def test_commit_then_run_the_new_image(pyd):
    pyd.ok("run", "--name", "src", "busybox", "sh", "-c", "echo committed > /greeting")
    image_id = pyd.ok(
        "commit", "-m", "add greeting", "-a", "tester", "-c", 'CMD ["cat", "/greeting"]',
        "-c", "ENV MODE=prod", "src", "greeter:v1",
    ).strip()  # fmt: skip
    assert image_id.startswith("sha256:")
    assert pyd.ok("run", "--rm", "greeter:v1") == "committed\n"
    assert pyd.ok("run", "--rm", "greeter:v1", "sh", "-c", "echo $MODE") == "prod\n"
    assert "greeter" in pyd.ok("images")
    p = pyd("commit", "no-such-container", "x")
    assert p.returncode == 1 and "No such container: no-such-container" in p.stderr
    pyd.ok("rm", "src")


def test_commit_of_running_container_pauses_it(pyd):
    pyd.ok("run", "-d", "--name", "hot", "busybox", "sh", "-c", "echo v > /v; exec sleep 1000")
    wait_for(lambda: "A /v" in pyd.ok("diff", "hot"))
    pyd.ok("commit", "hot", "hotimg")
    assert "Up" in pyd.ok("ps", "--format", "{{.Status}}")  # thawed again
    assert pyd.ok("run", "--rm", "hotimg", "cat", "/v") == "v\n"
    pyd.ok("rm", "-f", "hot")


def test_pause_unpause(pyd):
    pyd.ok("run", "-d", "--name", "frz", "busybox", "sleep", "1000")
    assert pyd.ok("pause", "frz") == "frz\n"
    assert "(Paused)" in pyd.ok("ps")
    assert json.loads(pyd.ok("inspect", "frz"))[0]["State"]["Paused"] is True
    p = pyd("exec", "frz", "true")
    assert p.returncode != 0 and "paused" in p.stderr
    assert pyd.ok("unpause", "frz") == "frz\n"
    assert pyd.ok("exec", "frz", "echo", "awake") == "awake\n"
    pyd.ok("pause", "frz")
    pyd.ok("rm", "-f", "frz")  # a paused container can be force-removed


def test_restart_and_top(pyd):
    pyd.ok("run", "-d", "--name", "rs", "busybox", "sleep", "1000")
    pid1 = json.loads(pyd.ok("inspect", "rs"))[0]["State"]["Pid"]
    top = wait_for(lambda: next((t for t in [pyd.ok("top", "rs")] if "sleep 1000" in t), None))
    assert top.splitlines()[0].split()[:3] == ["UID", "PID", "PPID"]
    pyd.ok("restart", "-t", "1", "rs")
    pid2 = json.loads(pyd.ok("inspect", "rs"))[0]["State"]["Pid"]
    assert pid2 and pid2 != pid1
    pyd.ok("rm", "-f", "rs")
    p = pyd("top", "rs")
    assert p.returncode == 1


def test_events_since_until_filter(pyd):
    t0 = time.time() - 1
    pyd.ok("run", "--name", "ev", "busybox", "true")
    pyd.ok("rm", "ev")
    out = pyd.ok("events", "--since", str(t0), "--until", str(time.time() + 1))
    actions = [line.split()[2] for line in out.splitlines()]
    assert actions == ["create", "start", "die", "destroy"]
    out = pyd.ok(
        "events",
        "--since",
        str(t0),
        "--until",
        "0s",
        "--filter",
        "event=die",
        "--format",
        "{{json .}}",
    )
    ev = json.loads(out)
    assert ev["Action"] == "die" and ev["Actor"]["Attributes"]["exitCode"] == "0"


def test_stats_info_version_port(pyd):
    pyd.ok("run", "-d", "--name", "st", "-m", "64m", "busybox", "sleep", "1000")
    out = pyd.ok("stats", "--no-stream", "st").splitlines()
    assert out[0].startswith("CONTAINER ID") and "st" in out[1] and "64MiB" in out[1]
    info = pyd.ok("info")
    assert "Containers: 1" in info and "Running: 1" in info and "Storage Driver: overlay2" in info
    assert "Version:" in pyd.ok("version")
    assert pyd.ok("port", "st") == ""
    pyd.ok("rm", "-f", "st")
    assert pyd.ok("container", "ls", "-aq") == ""


def test_concurrent_commands_keep_state_consistent(pyd):
    # Eight runs race for one name: exactly one wins, the rest get the clear conflict line.
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "frontend.pydock",
                "--root",
                str(pyd.root),
                "run",
                "--name",
                "contested",
                "busybox",
                "true",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        for _ in range(8)
    ]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0] + [125] * 7
    assert all("already in use" in err for code, err in results if code)
    # Unnamed runs and listings in parallel: every record stays readable and complete.
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "frontend.pydock", "--root", str(pyd.root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        for args in [("run", "busybox", "true")] * 4 + [("ps", "-a")] * 4
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(pyd.ok("ps", "-aq").split()) == 5
    pyd.ok("rm", *pyd.ok("ps", "-aq").split())


def test_attach_to_detached_containers(pyd):
    from container_helpers import drive_pty

    # A tty shell started with -d -i -t: attach, type, get its exit code.
    cid = pyd.ok("run", "-d", "-i", "-t", "busybox", "sh").strip()
    code, out = drive_pty(
        ["-m", "frontend.pydock", "--root", str(pyd.root), "attach", cid],
        b"echo attached; exit 3\r",
        prompt=None,
    )
    assert code == 3 and b"attached\r\n" in out
    # stdin of a -d -i container reaches it through attach; output comes back.
    cid2 = pyd.ok("run", "-d", "-i", "busybox", "sh", "-c", "read x; echo got $x; exit 5").strip()
    p = pyd("attach", cid2, input="hello\n")
    assert (p.returncode, p.stdout) == (5, "got hello\n")
    # ctrl-p ctrl-q detaches and leaves it running.
    cid3 = pyd.ok("run", "-d", "-i", "-t", "busybox", "sh").strip()
    code, out = drive_pty(
        ["-m", "frontend.pydock", "--root", str(pyd.root), "attach", cid3], b"\x10\x11", prompt=None
    )
    assert code == 0 and b"read escape sequence" in out
    assert pyd.ok("ps", "-q") == cid3[:12] + "\n"
    p = pyd("attach", cid)
    assert p.returncode == 1 and "start it first" in p.stderr
    pyd.ok("rm", "-f", cid, cid2, cid3)


def test_container_group_and_prune(pyd):
    pyd.ok("container", "run", "--name", "done1", "busybox", "true")
    pyd.ok("container", "create", "--name", "made", "busybox", "true")
    pyd.ok("container", "run", "-d", "--name", "up", "busybox", "sleep", "1000")
    out = pyd.ok("container", "prune", "-f")
    assert out.startswith("Deleted Containers:") and out.count("\n") >= 3
    assert pyd.ok("container", "ls", "-a", "--format", "{{.Names}}") == "up\n"
    pyd.ok("container", "rm", "-f", "up")


def test_torn_records_do_not_break_listing(tmp_path):
    cstore = ContainerStore(tmp_path)
    good = _record(cstore, "good")
    torn = _record(cstore, "torn")
    (torn.dir / "state.json").write_text('{"status": "runn')  # a crash mid-write
    half = _record(cstore, "half")
    (half.dir / "config.json").write_text("")
    names = {c.name: c.state.status for c in cstore.list()}
    assert names == {"good": "created", "torn": "dead"}
    cstore.remove_record(cstore.get("torn"))
    assert [c.id for c in cstore.list()] == [good.id]
