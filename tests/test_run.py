"""`pydock run`: real containers on busybox, foreground and detached, with Docker's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from container_helpers import REPO, Pydock, drive_pty, leftovers_check, wait_for


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    """Every test: no container left running, no mount or cgroup left behind."""
    yield
    leftovers_check(tmp_path / "root", tmp_path)


@pytest.fixture
def pyd(busybox_store):
    return Pydock(busybox_store.root)


def test_foreground_output_streams_and_exit_code(pyd):
    p = pyd("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    assert pyd.ok("ps", "-aq") == ""  # --rm removed it
    p = pyd("run", "--rm", "-a", "stderr", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "err\n")


def test_env_workdir_user_hostname(pyd, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=f1\nA=overridden-by-e\n")
    p = subprocess.run(
        [sys.executable, "-m", "frontend.pydock", "--root", str(pyd.root), "run", "--rm",
         "--env-file", str(env_file), "-e", "A=1", "-e", "PASSED", "-w", "/work/dir",
         "-u", "nobody", "-h", "myhost", "busybox", "sh", "-c",
         "echo $A $PASSED $FROM_FILE; pwd; id -u; hostname; echo $HOSTNAME"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PASSED": "yes"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n") == ["1 yes f1", "/work/dir", "65534", "myhost", "myhost", ""]


def test_exit_codes_125_126_127(pyd):
    p = pyd("run", "--rm", "no-such-image")
    assert p.returncode == 125 and "not in the local store" in p.stderr
    p = pyd("run", "--rm", "busybox", "/no/such/binary")
    assert p.returncode == 127 and "no such file" in p.stderr
    p = pyd("run", "--rm", "busybox", "nosuchcmd")
    assert p.returncode == 127 and "executable file not found" in p.stderr
    p = pyd("run", "--rm", "busybox", "/etc/passwd")
    assert p.returncode == 126
    p = pyd("run", "--no-such-flag", "busybox")
    assert p.returncode == 125
    p = pyd("run", "--rm", "-p", "8080:80", "busybox", "true")
    assert p.returncode == 125 and "bridge network" in p.stderr
    assert pyd.ok("ps", "-aq") == ""


def test_a_command_that_never_ran_leaves_a_created_container_as_docker(pyd):
    """Docker 20.10 (checked side by side): a run whose user or command is missing exits
    125/127 and leaves the container "Created", with the code and the error in its state
    and no start or finish time; `--rm` removes it."""
    for argv, code, state_code, error in (
        (["-u", "nosuchuser", "busybox", "true"], 125, 128, "unable to find user nosuchuser"),
        (["busybox", "nosuchcmd"], 127, 127, "executable file not found"),
    ):
        p = pyd("run", "--name", "never", *argv)
        assert p.returncode == code and error in p.stderr
        assert pyd.ok("ps", "-a", "--format", "{{.Names}} {{.Status}}") == "never Created\n"
        state = json.loads(pyd.ok("inspect", "-f", "{{json .State}}", "never"))
        assert (state["Status"], state["ExitCode"], state["Pid"]) == ("created", state_code, 0)
        assert error in state["Error"]
        assert state["StartedAt"] == state["FinishedAt"] == "0001-01-01T00:00:00Z"
        pyd.ok("rm", "never")


def test_dns_flags_rewrite_resolv_conf_as_docker(pyd):
    """--dns, --dns-search and --dns-option (--dns-opt) each replace that part of the host's
    resolv.conf, in Docker's order (search, nameserver, options; checked against Docker
    20.10 side by side); `--dns-search .` drops the search line; no flag: the host's file."""
    host = open("/etc/resolv.conf").read()  # noqa: SIM115 - a one-line read
    host_ns = [w.split()[1] for w in host.splitlines() if w.startswith("nameserver ")]
    cat = ["busybox", "cat", "/etc/resolv.conf"]
    assert pyd.ok("run", "--rm", *cat) == host
    out = pyd.ok("run", "--rm", "--dns-search", "example.com", "--dns-option", "ndots:2", *cat)
    assert out.splitlines() == [
        "search example.com",
        *[f"nameserver {ns}" for ns in host_ns],
        "options ndots:2",
    ]
    out = pyd.ok(
        "run", "--rm", "--dns", "9.9.9.9", "--dns-opt", "ndots:3", "--dns-search", ".", *cat
    )
    assert out == "nameserver 9.9.9.9\noptions ndots:3\n"
    cid = pyd.ok("create", "--dns-search", "a.example", "--dns-opt", "ndots:1", "busybox").strip()
    got = pyd.ok(
        "inspect", "-f", "{{json .HostConfig.DnsSearch}} {{json .HostConfig.DnsOptions}}", cid
    )
    assert got.split() == ['["a.example"]', '["ndots:1"]']
    pyd.ok("rm", cid)


def test_name_in_use_is_refused(pyd):
    pyd.ok("run", "--name", "one", "busybox", "true")
    p = pyd("run", "--name", "one", "busybox", "true")
    assert p.returncode == 125
    assert 'The container name "/one" is already in use' in p.stderr
    assert p.stderr.count("\n") == 1
    pyd.ok("rm", "one")


def test_bind_mounts_rw_and_ro(pyd, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in").write_text("from host\n")
    p = pyd(
        "run",
        "--rm",
        "-v",
        f"{host}:/mnt",
        "busybox",
        "sh",
        "-c",
        "cat /mnt/in; echo back > /mnt/out",
    )
    assert p.returncode == 0 and p.stdout == "from host\n"
    assert (host / "out").read_text() == "back\n"
    p = pyd("run", "--rm", "-v", f"{host}:/mnt:ro", "busybox", "sh", "-c", "echo x > /mnt/out2")
    assert p.returncode != 0 and not (host / "out2").exists()


def test_entrypoint_override_and_cmd_args(pyd):
    assert pyd.ok("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b") == "a b\n"
    # The image's Cmd (sh) is replaced by the arguments.
    assert pyd.ok("run", "--rm", "busybox", "echo", "-n", "x") == "x"


def test_detached_web_lifecycle(pyd):
    cid = pyd.ok(
        "run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; exec sleep 1000"
    ).strip()
    assert len(cid) == 64
    ps = pyd.ok("ps")
    assert ps.splitlines()[0].split() == [
        "CONTAINER",
        "ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    assert cid[:12] in ps and "Up " in ps and "web" in ps
    info = json.loads(pyd.ok("inspect", "web"))[0]
    assert info["Id"] == cid and info["Name"] == "/web"
    assert info["State"]["Running"] is True and info["State"]["Pid"] > 0
    assert info["Config"]["Cmd"] == ["sh", "-c", "echo started; exec sleep 1000"]
    wait_for(lambda: "sleep 1000" in pyd.ok("top", "web"))
    wait_for(lambda: pyd.ok("logs", "web") == "started\n")
    assert pyd.ok("exec", "web", "sh", "-c", "echo in-$HOSTNAME") == f"in-{cid[:12]}\n"
    # an exec'd process gets the container command's profile: seccomp, caps, umask
    probe = "grep -E '^(Seccomp|CapBnd):' /proc/self/status; umask; unshare -U true || echo refused"
    out = pyd.ok("exec", "web", "sh", "-c", probe)
    assert out.split("\n")[:4] == ["CapBnd:\t00000000a80425fb", "Seccomp:\t2", "0022", "refused"]
    # sleep as PID 1 has no SIGTERM handler: the kernel drops it, SIGKILL follows the timeout.
    assert pyd.ok("stop", "-t", "1", "web") == "web\n"
    psa = pyd.ok("ps", "-a")
    assert "Exited (137)" in psa
    assert pyd.ok("ps", "-q") == ""
    info = json.loads(pyd.ok("inspect", "web"))[0]
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137
    p = pyd("exec", "web", "true")
    assert p.returncode != 0 and "is not running" in p.stderr
    pyd.ok("rm", "web")


def test_kill_signal_and_wait_exit_codes(pyd):
    script = "trap 'exit 7' USR1; echo ready; while true; do sleep 0.05; done"
    pyd.ok("run", "-d", "--name", "trapper", "busybox", "sh", "-c", script)
    wait_for(lambda: "ready" in pyd.ok("logs", "trapper"))
    assert pyd.ok("kill", "-s", "USR1", "trapper") == "trapper\n"
    assert pyd.ok("wait", "trapper") == "7\n"
    pyd.ok("run", "-d", "--name", "sleeper", "busybox", "sleep", "1000")
    pyd.ok("kill", "sleeper")
    assert pyd.ok("wait", "sleeper") == "137\n"
    # With --init, an init is PID 1 and passes SIGTERM on: the command dies of it (143).
    pyd.ok("run", "-d", "--init", "--name", "inited", "busybox", "sleep", "1000")
    wait_for(lambda: "sleep 1000" in pyd.ok("top", "inited"))
    assert pyd.ok("stop", "-t", "10", "inited") == "inited\n"
    assert pyd.ok("wait", "inited") == "143\n"
    pyd.ok("rm", "inited")
    p = pyd("kill", "sleeper")
    assert p.returncode == 1 and "is not running" in p.stderr
    pyd.ok("rm", "trapper", "sleeper")


def test_detached_rm_removes_after_exit(pyd):
    pyd.ok("run", "-d", "--rm", "--name", "brief", "busybox", "sleep", "1000")
    pyd.ok("stop", "-t", "1", "brief")
    wait_for(lambda: pyd.ok("ps", "-aq") == "")


def test_rm_of_running_container_needs_force(pyd):
    pyd.ok("run", "-d", "--name", "busy", "busybox", "sleep", "1000")
    p = pyd("rm", "busy")
    assert p.returncode == 1
    assert "stop the container before removing or force remove" in p.stderr
    assert pyd.ok("rm", "-f", "busy") == "busy\n"
    assert pyd.ok("ps", "-aq") == ""


def test_interactive_tty_shell(pyd):
    code, out = drive_pty(
        [
            "-m",
            "frontend.pydock",
            "--root",
            str(pyd.root),
            "run",
            "-i",
            "-t",
            "--rm",
            "busybox",
            "/bin/sh",
        ],
        b"echo hi; exit 3\r",
    )
    assert code == 3
    assert b"\nhi\r\n" in out.replace(b"\r\r", b"\r")
    assert pyd.ok("ps", "-aq") == ""


def test_tty_is_a_terminal_inside(pyd):
    code, out = drive_pty(
        [
            "-m",
            "frontend.pydock",
            "--root",
            str(pyd.root),
            "run",
            "-t",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "tty; echo $TERM",
        ],
        b"",
    )
    assert code == 0
    assert b"/dev/pts/0" in out and b"xterm" in out


def test_memory_limit_oom_kill_is_reported(pyd):
    p = pyd(
        "run", "--name", "hog", "-m", "32m", "busybox", "sh", "-c",
        "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived",
    )  # fmt: skip
    assert p.returncode == 137, (p.stdout, p.stderr)
    assert "survived" not in p.stdout
    info = json.loads(pyd.ok("inspect", "hog"))[0]
    assert info["State"]["OOMKilled"] is True
    assert info["State"]["ExitCode"] == 137
    assert info["HostConfig"]["Memory"] == 32 * 1024 * 1024
    pyd.ok("rm", "hog")


def test_cidfile_and_create_then_start(pyd, tmp_path):
    cidfile = tmp_path / "cid"
    cid = pyd.ok(
        "create", "--cidfile", str(cidfile), "--name", "later", "busybox", "echo", "made"
    ).strip()
    assert cidfile.read_text() == cid
    assert "Created" in pyd.ok("ps", "-a")
    p = pyd("start", "-a", "later")
    assert (p.returncode, p.stdout) == (0, "made\n")
    pyd.ok("start", "later")
    assert pyd.ok("wait", "later") == "0\n"
    assert pyd.ok("logs", "later") == "made\nmade\n"
    pyd.ok("rm", "later")
    p = pyd("run", "--cidfile", str(cidfile), "busybox", "true")
    assert p.returncode == 125 and "Container ID file found" in p.stderr


def test_readonly_root_and_network_none(pyd):
    p = pyd("run", "--rm", "--read-only", "busybox", "touch", "/x")
    assert p.returncode != 0 and "Read-only file system" in p.stderr
    out = pyd.ok("run", "--rm", "busybox", "cat", "/proc/net/dev")
    assert "lo:" in out and "eth0" not in out


def test_exec_interactive_tty(pyd):
    pyd.ok("run", "-d", "--name", "shellhost", "busybox", "sleep", "1000")
    code, out = drive_pty(
        ["-m", "frontend.pydock", "--root", str(pyd.root), "exec", "-it", "shellhost", "sh"],
        b"tty; echo hello; exit 5\r",
    )
    assert code == 5
    assert b"/dev/pts/" in out and b"hello\r\n" in out
    pyd.ok("rm", "-f", "shellhost")


def test_sigint_is_forwarded_to_a_foreground_container(pyd):
    import signal

    script = 'trap "echo got INT; exit 9" INT; echo ready; while true; do sleep 0.05; done'
    p = subprocess.Popen(
        [sys.executable, "-m", "frontend.pydock", "--root", str(pyd.root), "run", "--rm", "busybox", "sh", "-c", script],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )  # fmt: skip
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=20)
    assert (p.returncode, out) == (9, b"got INT\n")


def test_image_config_user_workdir_entrypoint_are_honoured(pyd):
    pyd.ok("create", "--name", "cfg", "busybox", "true")
    pyd.ok(
        "commit", "-c", "USER nobody", "-c", "WORKDIR /tmp", "-c", 'ENTRYPOINT ["echo", "entry"]',
        "-c", 'CMD ["default"]', "-c", "ENV GREETING=hi", "cfg", "configured",
    )  # fmt: skip
    assert pyd.ok("run", "--rm", "configured") == "entry default\n"
    assert pyd.ok("run", "--rm", "configured", "other") == "entry other\n"
    out = pyd.ok(
        "run", "--rm", "--entrypoint", "sh", "configured", "-c", "id -u; pwd; echo $GREETING"
    )
    assert out == "65534\n/tmp\nhi\n"
    assert pyd.ok("run", "--rm", "-u", "0", "--entrypoint", "id", "configured", "-u") == "0\n"
    pyd.ok("rm", "cfg")


def test_wait_on_an_auto_removed_container(pyd):
    cid = pyd.ok("run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.5; exit 4").strip()
    assert pyd.ok("wait", cid) == "4\n"


def test_output_into_a_closed_pipe_ends_the_container(pyd):
    cmd = f"{sys.executable} -m frontend.pydock --root {pyd.root} run --name yes busybox yes | head -2"
    out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout == "y\ny\n"
    info = json.loads(pyd.ok("inspect", "yes"))[0]
    # As PID 1, yes has SIGPIPE ignored by the kernel and exits 1 on EPIPE (Docker: the same).
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] in (1, 141)
    pyd.ok("rm", "yes")


def test_more_run_flags_reach_the_container(pyd):
    out = pyd.ok(
        "run", "--rm", "--ulimit", "nofile=100:200", "--tmpfs", "/scratch:size=1m",
        "--add-host", "db:10.0.0.2", "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
        "busybox", "sh", "-c",
        "ulimit -n; ulimit -Hn; grep -c scratch /proc/mounts; grep db /etc/hosts;"
        " grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status",
    )  # fmt: skip
    assert out.split("\n") == [
        "100", "200", "1", "10.0.0.2\tdb", "NoNewPrivs:\t1", "CapEff:\t0000000000000000", "",
    ]  # fmt: skip
    p = pyd("run", "--rm", "--restart", "always", "busybox", "true")
    assert p.returncode == 125 and "restart policies" in p.stderr


def test_stdin_is_passed_with_i_only(pyd):
    assert (
        pyd.ok("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input="hello\n")
        == "HELLO\n"
    )
    # Without -i the container's stdin is empty (/dev/null), as with Docker.
    assert pyd.ok("run", "--rm", "busybox", "cat", input="ignored\n") == ""
