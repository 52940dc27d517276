"""The executor runs real containers on a busybox root: process, stdio, users, pty, limits."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import executor_rootfs as er
import pytest
from executor_rootfs import NAME_PREFIX, run_capture, sh, spec_for

from executor.cgroups import CgroupSet
from executor.runtime import run, run_detached, start
from executor.spec import ExecutorError, Limits, Mount, RunResult

rootfs = er.rootfs
no_leftovers = er.no_leftovers
pytestmark = pytest.mark.usefixtures("no_leftovers")


def test_exit_code_and_output_pass_through(tmp_path, rootfs):
    res, out, err = sh(tmp_path, rootfs, "echo to-out; echo to-err >&2; exit 3")
    assert res.exit_code == 3 and res.signal is None and not res.oom_killed
    assert out == "to-out\n" and err == "to-err\n"
    assert res.finished_at >= res.started_at > 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_killed_by_signal_is_128_plus_n(tmp_path, rootfs, sig):
    res, _, _ = sh(tmp_path, rootfs, f"kill -{int(sig)} $$")
    assert res.exit_code == 128 + sig and res.signal == sig


@pytest.mark.parametrize("init", [True, False])
def test_signals_are_default_in_the_command(tmp_path, rootfs, init):
    # Python ignores SIGPIPE; the command must not inherit that (yes would never end)
    res, out, _ = sh(tmp_path, rootfs, "yes | head -n 2", init=init)
    assert res.exit_code == 0 and out == "y\ny\n"
    spec = spec_for(tmp_path, rootfs, ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    spec.init = init
    res, out, _ = run_capture(spec)
    blocked, ignored = (int(line.split()[1], 16) for line in out.splitlines())
    assert blocked == 0
    # posix_spawn (init=True) leaves glibc's two internal signals (32, 33) ignored; every
    # signal a program can name is at its default
    assert ignored & ~(0b11 << 31) == 0


def test_without_init_the_command_is_pid_1(tmp_path, rootfs):
    res, out, _ = sh(tmp_path, rootfs, "echo $$; exit 7", init=False)
    assert out == "1\n" and res.exit_code == 7


def test_init_forwards_signals_and_reaps(tmp_path, rootfs):
    spec = spec_for(
        tmp_path,
        rootfs,
        "trap 'echo got-term; exit 42' TERM; (sleep 0 &); echo ready; while :; do sleep 0.05; done",
        use_cgroups=True,
    )
    out_path = tmp_path / "out"
    with open(out_path, "wb") as out:
        spec.stdout = out.fileno()
        c = start(spec)
        deadline = time.monotonic() + 10
        while b"ready" not in out_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        # the orphaned `sleep 0` was reparented to PID 1 and reaped: no zombie stays around
        zombies = [0]
        while zombies and time.monotonic() < deadline:
            zombies = [p for p in _container_pids(c) if "Z" in _proc_status(p).get("State", "")]
            time.sleep(0.01)
        c.kill(signal.SIGTERM)
        res = c.wait()
    assert res.exit_code == 42
    assert "got-term" in out_path.read_text()
    assert zombies == []


def test_exited_waits_with_a_timeout(tmp_path, rootfs):
    c = start(spec_for(tmp_path, rootfs, "read x"))  # stdin is /dev/null: ends at once
    assert c.exited(timeout=10)
    assert c.wait().exit_code == 1
    c = start(spec_for(tmp_path, rootfs, "sleep 5"))
    assert not c.exited(timeout=0.05)
    c.kill(signal.SIGTERM)  # forwarded by the init: sleep dies of it
    assert c.exited(timeout=10)
    res = c.wait()
    assert res.exit_code == 143 and res.signal == signal.SIGTERM


def _container_pids(c) -> list[int]:
    return c.cgroups.pids() if c.cgroups else []


def _proc_status(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def test_env_home_path_and_cwd_created(tmp_path, rootfs):
    res, out, _ = sh(
        tmp_path,
        rootfs,
        'echo "$FOO|$HOME|$PATH"; pwd; ls -ld /work/dir | cut -c1-10',
        env=["FOO=bar baz", "PATH=/bin:/sbin"],
        cwd="/work/dir",
    )
    assert res.exit_code == 0
    assert out.splitlines() == ["bar baz|/root|/bin:/sbin", "/work/dir", "drwxr-xr-x"]
    assert (tmp_path / "upper/work/dir").is_dir()  # Docker keeps the created working dir


def test_default_path_when_env_has_none(tmp_path, rootfs):
    _, out, _ = sh(tmp_path, rootfs, 'echo "$PATH"')
    assert out.strip() == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize(
    "user, expected",
    [
        ("", "uid=0(root) gid=0(root) groups=10(wheel)"),
        ("alice", "uid=1000(alice) gid=1000(alice) groups=50(staff),100(users)"),
        ("1000", "uid=1000(alice) gid=1000(alice) groups=50(staff),100(users)"),
        ("alice:staff", "uid=1000(alice) gid=50(staff)"),
        ("1000:4242", "uid=1000(alice) gid=4242"),
        ("4242", "uid=4242 gid=0(root)"),
        ("nobody", "uid=65534(nobody) gid=65534(nogroup)"),
    ],
)
def test_user_resolved_in_the_images_passwd(tmp_path, rootfs, user, expected):
    res, out, _ = sh(tmp_path, rootfs, "id; echo $HOME", user=user)
    assert res.exit_code == 0
    lines = out.splitlines()
    assert lines[0] == expected
    if user in ("alice", "1000"):
        assert lines[1] == "/home/alice"


def test_unknown_user_name_is_an_error(tmp_path, rootfs):
    with pytest.raises(ExecutorError, match="unable to find user mallory"):
        run(spec_for(tmp_path, rootfs, "true", user="mallory"))


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["no-such-command"], 127, 'exec: "no-such-command": executable file not found in $PATH'),
        (["/no/such"], 127, "no such file or directory"),
        (["/etc/passwd"], 126, "permission denied"),
    ],
)
def test_exec_failure(tmp_path, rootfs, argv, code, message):
    res, _, _ = run_capture(spec_for(tmp_path, rootfs, argv))
    assert res.exit_code == code and message in res.error


def test_stdin_is_streamed(tmp_path, rootfs):
    (tmp_path / "in").write_bytes(b"line one\nline two\n")
    with open(tmp_path / "in", "rb") as stdin:
        res, out, _ = run_capture(spec_for(tmp_path, rootfs, "wc -l", stdin=stdin.fileno()))
    assert res.exit_code == 0 and out.strip() == "2"


def test_pty_gives_a_terminal_with_window_size(tmp_path, rootfs):
    res, out, _ = sh(
        tmp_path,
        rootfs,
        "tty; stty size; [ -t 0 ] && echo stdin-is-tty; echo via-console > /dev/console",
        tty=True,
        tty_size=(33, 99),
    )
    assert res.exit_code == 0
    assert out.replace("\r", "").splitlines() == [
        "/dev/pts/0",
        "33 99",
        "stdin-is-tty",
        "via-console",
    ]


@pytest.mark.parametrize("init", [True, False])
def test_pty_for_a_non_root_user(tmp_path, rootfs, init):
    res, out, err = sh(
        tmp_path,
        rootfs,
        "tty; id -u; ls -ln $(tty) | awk '{print $3}'",
        tty=True,
        user="alice",
        init=init,
    )
    assert res.exit_code == 0, err
    assert out.replace("\r", "").splitlines() == ["/dev/pts/0", "1000", "1000"]


def test_ulimits(tmp_path, rootfs):
    _, out, _ = sh(tmp_path, rootfs, "ulimit -n; ulimit -Hn", ulimits={"nofile": (512, 1024)})
    assert out.split() == ["512", "1024"]


def test_umask_is_dockers(tmp_path, rootfs):
    old = os.umask(0o077)
    try:
        _, out, _ = sh(tmp_path, rootfs, "umask")
    finally:
        os.umask(old)
    assert out.strip() == "0022"


@pytest.mark.parametrize(
    "limits, message",
    [
        (Limits(memory=1 << 20), "Minimum memory limit allowed is 6MB"),
        (Limits(memory=64 << 20, memory_swap=32 << 20), "Minimum memoryswap limit"),
        (Limits(memory_swap=32 << 20), "always set the Memory limit"),
    ],
)
def test_bad_limits_are_refused(tmp_path, rootfs, limits, message):
    with pytest.raises(ExecutorError, match=message):
        run(spec_for(tmp_path, rootfs, "true", limits=limits))


def test_hostname_and_etc_files(tmp_path, rootfs):
    res, out, _ = sh(
        tmp_path,
        rootfs,
        "hostname; cat /etc/hostname; grep -c box1 /etc/hosts; grep 10.1.2.3 /etc/hosts; cat /etc/resolv.conf",
        hostname="box1",
        extra_hosts=["db:10.1.2.3"],
        dns=["192.0.2.53"],
    )
    assert out.splitlines() == ["box1", "box1", "1", "10.1.2.3\tdb", "nameserver 192.0.2.53"]


def test_bind_and_tmpfs_mounts(tmp_path, rootfs):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in.txt").write_text("from host\n")
    ro = tmp_path / "ro"
    ro.mkdir()
    res, out, err = sh(
        tmp_path,
        rootfs,
        "cat /data/in.txt; echo written > /data/out.txt; touch /ro/x 2>/dev/null || echo ro-refused;"
        "echo t > /scratch/f && grep /scratch /proc/mounts | cut -d' ' -f3",
        mounts=[
            Mount("/data", source=vol),
            Mount("/ro", source=ro, readonly=True),
            Mount("/scratch", type="tmpfs", options="size=1m"),
        ],
    )
    assert res.exit_code == 0, err
    assert out.splitlines() == ["from host", "ro-refused", "tmpfs"]
    assert (vol / "out.txt").read_text() == "written\n"
    # mount points made for the run are not left in the upper dir (so never in a layer)
    assert sorted(os.listdir(tmp_path / "upper")) == []


def test_readonly_root(tmp_path, rootfs):
    res, out, _ = sh(
        tmp_path,
        rootfs,
        "touch /newfile 2>/dev/null || echo refused; echo ok > /dev/shm/x && cat /dev/shm/x",
        readonly_root=True,
    )
    assert out.splitlines() == ["refused", "ok"]
    assert os.listdir(tmp_path / "upper") == []


def test_host_network_sees_host_interfaces(tmp_path, rootfs):
    host = sorted(os.listdir("/sys/class/net"))
    _, out, _ = sh(tmp_path, rootfs, "ls /sys/class/net; echo; cat /etc/hosts", network="host")
    interfaces, _, hosts = out.partition("\n\n")
    assert sorted(interfaces.split()) == host
    assert hosts == Path("/etc/hosts").read_text()


def test_nested_mounts_in_any_order(tmp_path, rootfs):
    outer, inner = tmp_path / "outer", tmp_path / "inner"
    outer.mkdir()
    inner.mkdir()
    (inner / "f").write_text("inner\n")
    _, out, err = sh(
        tmp_path,
        rootfs,
        "cat /a/b/f",
        mounts=[Mount("/a/b", source=inner), Mount("/a", source=outer)],
    )
    assert out == "inner\n", err
    assert (outer / "b").is_dir()  # the stub for the inner mount lives in the outer volume


def test_deep_image_of_200_layers_mounts(tmp_path, rootfs):
    layers = tmp_path / "l"
    layers.mkdir()
    lowers = [rootfs]
    for i in range(199):
        d = layers / f"{i:012d}"  # the store's 12-character l/<short> names
        d.mkdir()
        (d / f"f{i}").write_text(f"{i}\n")
        lowers.append(d)
    res, out, _ = sh(tmp_path, rootfs, "cat /f0 /f198; ls / | grep -c '^f'", lowers=lowers)
    assert res.exit_code == 0
    assert out.splitlines() == ["0", "198", "199"]


def test_legacy_mount_options_use_short_relative_names(tmp_path):
    from executor.overlay import legacy_options

    lowers = [tmp_path / "l" / f"{i:05d}" for i in range(300)]
    cwd, opts = legacy_options(lowers, tmp_path / "u", tmp_path / "w")
    assert cwd == str(tmp_path / "l")
    assert opts.startswith("lowerdir=00299:00298:") and len(opts) < 4096


def test_memory_limit_oom_is_reported(tmp_path, rootfs):
    limits = Limits(memory=32 << 20, memory_swap=32 << 20)
    res, _, _ = sh(tmp_path, rootfs, "head -c 200m /dev/zero | tail > /dev/null", limits=limits)
    assert res.oom_killed
    assert res.exit_code in (137, 1)  # tail killed (SIGKILL) -> the shell's status


def test_pids_limit(tmp_path, rootfs):
    res, out, err = sh(
        tmp_path,
        rootfs,
        "sh -c 'for i in $(seq 30); do sleep 3 & done'; echo done",
        limits=Limits(pids=10),
    )
    assert out == "done\n"
    assert "can't fork" in err


def test_container_reads_its_limits_in_sys_fs_cgroup(tmp_path, rootfs):
    from executor.cgroups import is_v2

    files = (
        "memory.max pids.max" if is_v2() else "memory/memory.limit_in_bytes pids/pids.max"
    ).split()
    res, out, err = sh(
        tmp_path,
        rootfs,
        f"cd /sys/fs/cgroup && cat {files[0]} {files[1]};"
        f"echo 1 > {files[1]} 2>/dev/null || echo read-only",
        limits=Limits(memory=64 << 20, pids=33),
    )
    assert out.split() == [str(64 << 20), "33", "read-only"], err


def test_no_cgroups_unless_limits_or_asked(tmp_path, rootfs):
    c = start(spec_for(tmp_path, rootfs, "true"))
    assert c.cgroups is None
    assert c.wait().exit_code == 0
    res, out, _ = sh(tmp_path, rootfs, "cat /proc/self/cgroup | grep memory", use_cgroups=True)
    assert out.strip().endswith(":memory:/")  # its own cgroup namespace


def test_cgroup_limits_are_written(tmp_path, rootfs):
    spec = spec_for(
        tmp_path,
        rootfs,
        "sleep 5",
        limits=Limits(memory=64 << 20, cpu_shares=512, cpus=0.5, cpuset="0", pids=50),
    )
    c = start(spec)
    try:
        paths = c.cgroups.paths
        if c.cgroups.version == 1:
            read = lambda ctrl, f: Path(paths[ctrl], f).read_text().strip()  # noqa: E731
            assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
            assert read("cpu", "cpu.shares") == "512"
            assert read("cpu", "cpu.cfs_quota_us") == "50000"
            assert read("cpuset", "cpuset.cpus") == "0"
            assert read("pids", "pids.max") == "50"
            assert str(c.pid) in read("memory", "cgroup.procs").split()
        # pause and unpause through the freezer
        c.pause()
        assert c.cgroups.is_frozen()
        c.unpause()
        assert not c.cgroups.is_frozen()
        again = CgroupSet.from_paths(paths)
        assert again.pids() == c.cgroups.pids()
    finally:
        c.kill()
        res = c.wait()
    assert res.exit_code == 137 and res.signal == signal.SIGKILL


def test_run_detached_outlives_the_caller(tmp_path, rootfs):
    spec = spec_for(tmp_path, rootfs, "echo hi; sleep 0.2; exit 5")
    log = open(tmp_path / "log", "wb")
    spec.stdout = spec.stderr = log.fileno()
    result_file = tmp_path / "result.json"
    pid_file = tmp_path / "pid"

    def on_start(c):
        pid_file.write_text(str(c.pid))

    def on_exit(res: RunResult):
        tmp = tmp_path / "result.tmp"
        tmp.write_text(json.dumps(res.to_json()))
        tmp.rename(result_file)

    supervisor = run_detached(spec, on_start, on_exit)
    log.close()
    assert supervisor > 0
    deadline = time.monotonic() + 20
    while not result_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    res = RunResult.from_json(json.loads(result_file.read_text()))
    assert res.exit_code == 5
    assert int(pid_file.read_text()) > 0
    assert (tmp_path / "log").read_text() == "hi\n"
    while _alive(supervisor) and time.monotonic() < deadline:
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


_CALLER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from executor_rootfs import make_spec
from executor.runtime import run
spec = make_spec(Path({tmp!r}), Path({rootfs!r}), ["/bin/sh", "-c", "sleep 60"], name={name!r}, use_cgroups=True)
spec.mounts = []
print("starting", flush=True)
run(spec)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_caller_interrupted_or_killed_leaves_nothing(tmp_path, rootfs, sig):
    name = NAME_PREFIX + "caller-" + secrets.token_hex(4)
    er._ISSUED.append(name)
    code = _CALLER.format(
        tests=str(Path(__file__).parent), tmp=str(tmp_path), rootfs=str(rootfs), name=name
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd="/")
    assert proc.stdout.readline() == b"starting\n"
    deadline = time.monotonic() + 20
    pids: list[int] = []
    while len(pids) < 2 and time.monotonic() < deadline:  # PID 1 and the shell
        time.sleep(0.02)
        for path in _find_cgroups(name):
            if "/pids/" in path:
                with contextlib.suppress(OSError):
                    pids = [int(x) for x in Path(path, "cgroup.procs").read_text().split()]
    assert len(pids) >= 2
    proc.send_signal(sig)
    proc.wait(timeout=20)
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(p) for p in pids)
    if sig == signal.SIGKILL:
        # nobody was left to remove the (now empty) cgroups: do what a later run's sweep does
        for path in _find_cgroups(name):
            while os.path.isdir(path) and time.monotonic() < deadline:
                try:
                    os.rmdir(path)
                except OSError:
                    time.sleep(0.02)
    assert _find_cgroups(name) == []


def _find_cgroups(name: str) -> list[str]:
    import glob

    return glob.glob(f"/sys/fs/cgroup/**/pydock/{name}", recursive=True)


def _in_private_mount_ns(fn) -> int:
    """Run `fn()` in a forked child with its own mount namespace; its exit code (0 = ok)."""
    from executor import rootfs as rootfs_mod
    from executor import syscalls

    pid = os.fork()
    if pid == 0:
        try:
            syscalls.unshare(syscalls.CLONE_NEWNS)
            rootfs_mod.make_private()
            os._exit(0 if fn() else 1)
        except BaseException:
            os._exit(2)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("new_api", [True, False])
def test_overlay_mount_both_apis_with_many_layers(tmp_path, new_api):
    """The legacy mount(2) path (kernels before 6.8) takes deep stacks through names relative
    to their common parent (120 of Docker's 26-character names, or 200+ of the store's 12);
    the new API takes them one by one."""
    from executor.overlay import mount_overlay

    lowers = []
    for i in range(120):
        d = tmp_path / "l" / f"{i:026d}"
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        lowers.append(d)
    (lowers[0] / "shadowed").write_text("old")
    (lowers[-1] / "shadowed").write_text("new")
    for sub in ("u", "w", "m"):
        (tmp_path / sub).mkdir()

    def check() -> bool:
        mount_overlay(lowers, tmp_path / "u", tmp_path / "w", tmp_path / "m", new_api=new_api)
        names = os.listdir(tmp_path / "m")
        return len(names) == 121 and (tmp_path / "m/shadowed").read_text() == "new"

    assert _in_private_mount_ns(check) == 0


def test_containers_run_from_several_threads_at_once(tmp_path, rootfs):
    import threading

    results: dict[int, tuple] = {}

    def worker(i: int) -> None:
        d = tmp_path / f"t{i}"
        d.mkdir()
        results[i] = sh(d, rootfs, f"echo $$ {i}; exit {i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        res, out, _ = results[i]
        assert res.exit_code == i and out.split()[1] == str(i)
    # and the caller's own children still go into its own pid namespace
    assert os.readlink("/proc/self/ns/pid") == os.readlink(
        f"/proc/{os.getpid()}/ns/pid_for_children"
    )
