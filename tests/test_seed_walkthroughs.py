"""The walkthroughs of the seed notes (shared/seed/000_*.txt), with `pydock` for `docker` and
busybox for ubuntu: ps/inspect of a running shell, the run flags it lists, interactive and
detached use, the data-container pattern, commit/top/diff/export, and the command list."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess

import pytest
from container_helpers import Pydock, drive_pty, leftovers_check, wait_for

from frontend.pydock import main


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    """Every test: no container left running, no mount or cgroup left behind."""
    yield
    leftovers_check(tmp_path / "root", tmp_path)


@pytest.fixture
def pyd(busybox_store):
    return Pydock(busybox_store.root)


def test_ps_a_and_inspect_of_a_running_shell(pyd):
    # "docker ps -a" listing an interactive /bin/bash that is Up, then "docker inspect 84d4".
    cid = pyd.ok("run", "-d", "-i", "-t", "busybox", "/bin/sh").strip()
    row = pyd.ok("ps", "-a").splitlines()
    assert row[0].split() == [
        "CONTAINER",
        "ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    assert row[1].startswith(cid[:12]) and '"/bin/sh"' in row[1] and "Up " in row[1]
    name = row[1].split()[-1]
    assert "_" in name  # a generated adjective_surname name
    info = json.loads(pyd.ok("inspect", cid[:4]))[0]
    assert info["Id"] == cid and info["Name"] == "/" + name
    assert info["Path"] == "/bin/sh" and info["Args"] == []
    cfg = info["Config"]
    assert cfg["Tty"] is True and cfg["OpenStdin"] is True
    assert cfg["Cmd"] == ["/bin/sh"] and cfg["Entrypoint"] is None and cfg["Image"] == "busybox"
    assert cfg["Hostname"] == cid[:12] and any(e.startswith("PATH=") for e in cfg["Env"])
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "User", "WorkingDir", "Domainname"):
        assert key in cfg
    hc = info["HostConfig"]
    for key in ("Binds", "ContainerIDFile", "Dns", "DnsSearch", "Links", "LxcConf", "NetworkMode",
                "PortBindings", "Privileged", "PublishAllPorts", "VolumesFrom"):  # fmt: skip
        assert key in hc
    st = info["State"]
    assert st["Running"] is True and st["Paused"] is False and st["Pid"] > 0 and st["ExitCode"] == 0
    for key in ("HostnamePath", "HostsPath", "ResolvConfPath", "Created", "Driver", "Image",
                "MountLabel", "ProcessLabel", "NetworkSettings", "Volumes", "VolumesRW"):  # fmt: skip
        assert key in info
    assert pyd.ok("kill", cid[:4]) == cid[:4] + "\n"
    assert pyd.ok("wait", cid) == "137\n"
    pyd.ok("rm", cid)


def test_run_flags_of_the_seed_are_accepted_and_recorded(pyd, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=1\n")
    cidfile = tmp_path / "cid"
    p = pyd(
        "run", "-c", "512", "--cpuset", "0", "-m", "64m", "-a", "stdout", "--cidfile", str(cidfile),
        "-e", "A=b", "--env-file", str(env_file), "-h", "seedhost", "--name", "flags",
        "--sig-proxy=true", "-u", "root", "-w", "/srv", "--dns", "127.0.0.1",
        "--dns-search", "example.com", "--entrypoint", "/bin/sh", "--expose", "80",
        "--net", "none", "busybox", "-c", "hostname; pwd; echo $A$FROM_FILE",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == "seedhost\n/srv\nb1\n"
    info = json.loads(pyd.ok("inspect", "flags"))[0]
    hc = info["HostConfig"]
    assert (hc["CpuShares"], hc["CpusetCpus"], hc["Memory"]) == (512, "0", 64 << 20)
    assert hc["Dns"] == ["127.0.0.1"] and hc["DnsSearch"] == ["example.com"]
    assert info["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert cidfile.read_text() == info["Id"]
    # Port publishing and links need a bridge network: a clear error, exit 125.
    for flags in (["-p", "8080:80"], ["-P", "--expose", "80"], ["--link", "flags:alias"]):
        p = pyd("run", "--rm", *flags, "busybox", "true")
        assert p.returncode == 125 and "bridge network" in p.stderr, flags
    pyd.ok("rm", "flags")


def test_interactive_shell_through_a_pty(pyd):
    # "docker run -i -t --rm ubuntu /bin/bash"
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
    assert code == 3 and b"hi\r\n" in out
    assert pyd.ok("ps", "-aq") == ""


def test_detached_non_interactive_application(pyd):
    # "docker run -d ubuntu <cmd>", then attach, logs and wait.
    cid = pyd.ok(
        "run", "-d", "busybox", "sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.3; done"
    ).strip()
    attached = pyd("attach", cid)
    assert attached.returncode == 0
    assert pyd.ok("wait", cid) == "0\n"
    assert pyd.ok("logs", cid) == "tick 1\ntick 2\ntick 3\n"
    pyd.ok("rm", cid)


def test_data_container(pyd):
    # Section 3 of the seed, verbatim but for the image.
    p = pyd("run", "--name", "data-container", "-v", "/data-dir", "busybox", "/bin/true")
    assert p.returncode == 0 and p.stdout == ""
    pyd.ok(
        "run",
        "--rm",
        "--volumes-from",
        "data-container",
        "busybox",
        "sh",
        "-c",
        "echo hello > /data-dir/hello",
    )
    out = pyd.ok(
        "run",
        "--rm",
        "--volumes-from",
        "data-container",
        "busybox",
        "sh",
        "-c",
        "cat /data-dir/hello",
    )
    assert out == "hello\n"
    assert "Exited (0)" in pyd.ok("ps", "-a", "--filter", "name=data-container")
    # The volume belongs to the data container: it outlives the users, goes with `rm -v`.
    assert len(pyd.ok("volume", "ls", "-q").split()) == 1
    pyd.ok("rm", "-v", "data-container")
    assert pyd.ok("volume", "ls", "-q") == ""


def test_snapshot_with_commit_top_diff_export_import(pyd):
    # "commit: snapshot a container into an image", "top", "diff", "export/import".
    pyd.ok(
        "run", "-d", "--name", "app", "busybox", "sh", "-c", "echo v1 > /version; exec sleep 1000"
    )
    wait_for(lambda: "A /version" in pyd.ok("diff", "app"))
    wait_for(lambda: "sleep 1000" in pyd.ok("top", "app"))
    pyd.ok("commit", "-m", "snapshot", "app", "app:snap")
    assert pyd.ok("run", "--rm", "app:snap", "cat", "/version") == "v1\n"
    exported = pyd("export", "app", input=b"").stdout
    listing = subprocess.run(["tar", "t"], input=exported, capture_output=True, check=True).stdout
    assert b"version\n" in listing
    imported = pyd("import", "-", "flat:latest", input=exported)
    if imported.returncode == 0:  # `import` belongs to the image commands
        assert pyd.ok("run", "--rm", "flat", "cat", "/version") == "v1\n"
    assert pyd.ok("stop", "-t", "1", "app") == "app\n"
    pyd.ok("rm", "app")


def test_the_seed_command_list_answers(pyd):
    # Every container command of the seed's `docker` usage is there (image ones are elsewhere).
    help_text = pyd.ok("--help")
    for cmd in ("attach", "commit", "cp", "diff", "events", "export", "info", "inspect", "kill",
                "logs", "port", "pause", "ps", "restart", "rm", "run", "start", "stop", "top",
                "unpause", "version", "wait"):  # fmt: skip
        assert cmd in help_text, cmd
        # In-process (22 interpreters would cost seconds): each command has its parser.
        with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(io.StringIO()):
            main(["--root", str(pyd.root), cmd, "--help"])
        assert exit_info.value.code == 0, cmd
    pyd.ok("run", "-d", "--name", "misc", "busybox", "sleep", "1000")
    pyd.ok("pause", "misc")
    pyd.ok("unpause", "misc")
    pyd.ok("restart", "-t", "1", "misc")
    assert pyd.ok("port", "misc") == ""
    assert "Running: 1" in pyd.ok("info")
    pyd.ok("rm", "-f", "misc")
    actions = [
        ln.split()[2] for ln in pyd.ok("events", "--since", "1h", "--until", "0s").splitlines()
    ]
    for a in ("create", "start", "pause", "unpause", "kill", "die", "stop", "destroy"):
        assert a in actions, a
