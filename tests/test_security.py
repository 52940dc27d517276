"""Security acceptance (issue 4): what a process inside a default container cannot do.

Every test runs a real container on the busybox root and checks the outcome from both sides
where it matters (inside: the command fails; outside: the host is unchanged).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import executor_rootfs as er
import pytest
from executor_rootfs import make_busybox_rootfs, run_capture, sh, spec_for

from executor.runtime import run
from executor.spec import ExecutorError, Mount

rootfs = er.rootfs
no_leftovers = er.no_leftovers
pytestmark = pytest.mark.usefixtures("no_leftovers")


def test_cannot_see_host_processes(tmp_path, rootfs):
    res, out, _ = sh(tmp_path, rootfs, "ps -o pid,comm; echo; ls /proc | grep '^[0-9]*$'")
    assert res.exit_code == 0
    table, _, pids = out.partition("\n\n")
    visible = [int(p) for p in pids.split()]
    # PID 1 (init), the shell, ps/ls: a handful of small pids, none of the host's
    assert max(visible) < 20 and len(visible) <= 5
    assert os.getpid() not in visible or os.getpid() < 20
    assert "pytest" not in table and "systemd" not in table
    assert table.splitlines()[1].split() == ["1", "pydock-init"]


def test_cannot_see_host_mounts(tmp_path, rootfs):
    res, out, _ = sh(tmp_path, rootfs, "cat /proc/1/cmdline; echo; cat /proc/self/mountinfo")
    assert res.exit_code == 0
    cmdline, _, out = out.partition("\n")
    assert cmdline.strip("\0") == "pydock-init"  # the caller's command line is not readable
    # Like Docker, the root's overlay options name the host dirs; no other line does.
    leaks = [line for line in out.splitlines() if str(tmp_path) in line]
    assert len(leaks) == 1 and " - overlay " in leaks[0]
    mountpoints = {line.split()[4] for line in out.splitlines()}
    assert "/work" not in mountpoints and "/sys/fs/cgroup/memory" not in mountpoints
    assert {"/", "/proc", "/dev", "/sys", "/etc/hosts"} <= mountpoints


def test_network_none_has_only_lo(tmp_path, rootfs):
    res, out, _ = sh(
        tmp_path,
        rootfs,
        "ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags;"
        "wget -q -T 2 -O- http://192.0.2.1/ 2>&1 || echo no-route",
    )
    lines = out.splitlines()
    assert lines[0] == "lo"
    assert int(lines[2], 16) & 1  # IFF_UP
    assert lines[-1] == "no-route"


def test_proc_sys_and_sysrq_are_not_writable(tmp_path, rootfs):
    before = socket.gethostname()
    res, out, _ = sh(
        tmp_path,
        rootfs,
        "echo evil > /proc/sys/kernel/hostname 2>/dev/null || echo sys-refused;"
        "echo h > /proc/sysrq-trigger 2>/dev/null || echo sysrq-refused;"
        "echo 1 > /sys/kernel/profiling 2>/dev/null || echo sysfs-refused;"
        "mount -o remount,rw /proc/sys 2>/dev/null || echo remount-refused",
    )
    assert out.split() == ["sys-refused", "sysrq-refused", "sysfs-refused", "remount-refused"]
    assert socket.gethostname() == before


def test_kcore_and_masked_proc_files_are_unreadable(tmp_path, rootfs):
    res, out, _ = sh(
        tmp_path,
        rootfs,
        "for f in /proc/kcore /proc/keys /proc/timer_list /proc/interrupts; do"
        " printf '%s %s\\n' $f $(cat $f 2>/dev/null | wc -c); done; ls /sys/firmware | wc -l",
    )
    sizes = dict(line.split() for line in out.splitlines()[:-1])
    assert all(v == "0" for v in sizes.values()), sizes
    assert out.splitlines()[-1] == "0"


def test_device_nodes_made_inside_are_unusable(tmp_path, rootfs):
    disk = os.stat("/proc/self/mountinfo")  # any host block device: take the root's
    root_dev = os.stat("/").st_dev
    major, minor = os.major(root_dev), os.minor(root_dev)
    res, out, _ = sh(
        tmp_path,
        rootfs,
        f"for d in /tmp/blk /dev/blk /dev/shm/blk; do mknod $d b {major} {minor} 2>/dev/null;"
        " head -c 512 $d 2>/dev/null | wc -c; done;"
        "mknod /tmp/mem c 1 1 2>/dev/null; head -c 1 /tmp/mem 2>/dev/null | wc -c;"
        "echo ok > /dev/null && head -c 4 /dev/zero | wc -c",
    )
    assert disk  # (only to keep the host-side stat visible in failures)
    assert out.split() == ["0", "0", "0", "0", "4"]


def test_cannot_mount_anything(tmp_path, rootfs):
    res, out, _ = sh(
        tmp_path,
        rootfs,
        "mkdir -p /mnt; mount -t tmpfs none /mnt 2>/dev/null || echo tmpfs-refused;"
        "mount -t proc proc /mnt 2>/dev/null || echo proc-refused;"
        "mount --bind / /mnt 2>/dev/null || echo bind-refused;"
        "umount /proc/keys 2>/dev/null || echo umount-refused;"
        "mount -o remount,rw / 2>/dev/null; echo $?",
    )
    lines = out.split()
    assert lines[:4] == ["tmpfs-refused", "proc-refused", "bind-refused", "umount-refused"]
    assert lines[4] != "0"


def test_dotdot_and_proc_root_stay_inside(tmp_path, rootfs):
    marker = tmp_path / f"host-marker-{secrets.token_hex(4)}"
    marker.write_text("host secret")
    res, out, _ = sh(
        tmp_path,
        rootfs,
        f"cd /../../../..; pwd; ls -a | sort | tr '\\n' ' '; echo;"
        f"cat {marker} 2>/dev/null || echo no-marker;"
        f"cat /proc/1/root/../../..{marker} 2>/dev/null || echo no-marker;"
        "readlink /proc/1/exe 2>/dev/null || echo exe-hidden;"
        "readlink /proc/1/fd/0 2>/dev/null || echo fds-hidden;"
        "ls /proc/self/fd | tr '\\n' ' '",
    )
    lines = out.splitlines()
    assert lines[0] == "/"
    assert "bin" in lines[1].split() and "work" not in lines[1].split()
    assert lines[2:6] == ["no-marker", "no-marker", "exe-hidden", "fds-hidden"]
    # only stdio and ls's own directory fd: nothing of the host leaked in
    assert lines[6].split() == ["0", "1", "2", "3"]


@pytest.mark.parametrize("init", [True, False])
def test_no_host_fd_reaches_the_command(tmp_path, rootfs, init):
    """Even fds the caller made inheritable (a host directory here: the CVE-2024-21626
    shape) are closed before the exec."""
    leak = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(leak, True)
    try:
        res, out, _ = run_capture(spec_for(tmp_path, rootfs, ["ls", "/proc/self/fd"], init=init))
    finally:
        os.close(leak)
    assert out.split() == ["0", "1", "2", "3"]  # stdio and ls's own directory fd


# x86_64 machine code of the probe: (bytes, or ("lea", label) = lea rdi,[rip+label], or
# ("jnz", label), or ("label", name)).
_PROBE = [
    "b853000000", ("lea", "esc"), "beed010000", "0f05",  # mkdir("/esc", 0755)
    "b8a1000000", ("lea", "esc"), "0f05",  # chroot("/esc")
    "bb40000000", ("label", "loop"),  # 64 times:
    "b850000000", ("lea", "dotdot"), "0f05",  #   chdir("..")
    "ffcb", ("jnz", "loop"),
    "b8a1000000", ("lea", "dot"), "0f05",  # chroot(".")
    "b815000000", ("lea", "marker"), "31f6", "0f05",  # access(marker, F_OK)
    "bf07000000", "85c0", "7505", "bf2a000000",  # edi = 7 if it failed else 42
    "b8e7000000", "0f05",  # exit_group(edi)
]  # fmt: skip
_ITEM_SIZE = {"lea": 7, "jnz": 2, "label": 0}


def escape_probe(marker: str) -> bytes:
    """A static x86_64 ELF (no compiler needed): mkdir+chroot("/esc"), chdir("..") 64 times,
    chroot("."), then exit 42 if `marker` exists (it reached the host's root) else 7. The
    classic escape from a chroot-only container (CAP_SYS_CHROOT is a default capability)."""
    data = {"esc": b"/esc\0", "dotdot": b"..\0", "dot": b".\0", "marker": marker.encode() + b"\0"}
    base = 0x400000 + 64 + 56  # code right after the ELF and program headers
    labels: dict[str, int] = {}
    addr = base
    for item in _PROBE:
        if isinstance(item, tuple):
            if item[0] == "label":
                labels[item[1]] = addr
            addr += _ITEM_SIZE[item[0]]
        else:
            addr += len(item) // 2
    for name, raw in data.items():
        labels[name] = addr
        addr += len(raw)
    code = b""
    for item in _PROBE:
        here = base + len(code)
        if isinstance(item, str):
            code += bytes.fromhex(item)
        elif item[0] == "lea":
            code += bytes.fromhex("488d3d") + struct.pack("<i", labels[item[1]] - (here + 7))
        elif item[0] == "jnz":
            code += bytes([0x75, (labels[item[1]] - (here + 2)) & 0xFF])
    code += b"".join(data.values())
    total = 64 + 56 + len(code)
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, total, total, 0x1000)
    return ehdr + phdr + code


def test_chroot_escape_stays_inside(tmp_path, rootfs):
    if os.uname().machine != "x86_64":
        pytest.skip("the escape probe is x86_64 machine code")
    marker = tmp_path / f"host-marker-{secrets.token_hex(4)}"
    marker.write_text("x")
    image = tmp_path / "image"
    image.mkdir()
    (image / "escape").write_bytes(escape_probe(str(marker)))
    os.chmod(image / "escape", 0o755)
    # the probe does escape a plain chroot (so the check below means something) ...
    jail = tmp_path / "jail"
    jail.mkdir()
    shutil.copy2(image / "escape", jail / "escape")
    assert subprocess.run(["chroot", str(jail), "/escape"]).returncode == 42
    # ... and stays inside a pydock container (pivot_root, old root detached)
    res, _, err = sh(tmp_path, rootfs, ["/escape"], lowers=[rootfs, image])
    assert res.exit_code == 7, err


def test_hostname_change_stays_in_the_container(tmp_path, rootfs):
    before = socket.gethostname()
    _, out, _ = sh(tmp_path, rootfs, "hostname evil 2>/dev/null || echo refused; hostname")
    assert out.split() == ["refused", "pydock"]  # no CAP_SYS_ADMIN by default
    _, out, _ = sh(tmp_path, rootfs, "hostname evil && hostname", privileged=True)
    assert out.strip() == "evil"
    assert socket.gethostname() == before


def _caps(out: str) -> dict[str, str]:
    return dict(line.split(":\t") for line in out.splitlines() if line.startswith("Cap"))


def test_only_dockers_default_capabilities(tmp_path, rootfs):
    _, out, _ = sh(tmp_path, rootfs, "grep -E '^(Cap|NoNewPrivs)' /proc/self/status")
    caps = _caps(out)
    assert caps == {
        "CapInh": "0000000000000000",
        "CapPrm": "00000000a80425fb",
        "CapEff": "00000000a80425fb",
        "CapBnd": "00000000a80425fb",
        "CapAmb": "0000000000000000",
    }
    assert "NoNewPrivs:\t0" in out  # Docker's default: setuid binaries keep working


def test_non_root_user_has_no_effective_capabilities(tmp_path, rootfs):
    _, out, _ = sh(tmp_path, rootfs, "grep ^Cap /proc/self/status", user="alice")
    caps = _caps(out)
    assert caps["CapEff"] == caps["CapPrm"] == "0000000000000000"
    assert caps["CapBnd"] == "00000000a80425fb"


def test_privileged_and_cap_add_drop(tmp_path, rootfs):
    _, out, _ = sh(tmp_path, rootfs, "grep ^CapBnd /proc/self/status", privileged=True)
    ours = _caps(Path("/proc/self/status").read_text())["CapBnd"]
    assert _caps(out)["CapBnd"] == ours  # everything the caller has
    _, out, _ = sh(
        tmp_path,
        rootfs,
        "grep ^CapBnd /proc/self/status",
        cap_add=["NET_ADMIN"],
        cap_drop=["CAP_MKNOD", "chown"],
    )
    assert int(_caps(out)["CapBnd"], 16) == (0xA80425FB | (1 << 12)) & ~(1 << 27) & ~1


def test_no_new_privs_on_request(tmp_path, rootfs):
    _, out, _ = sh(tmp_path, rootfs, "grep ^NoNewPrivs /proc/self/status", no_new_privs=True)
    assert out.split() == ["NoNewPrivs:", "1"]


def test_symlink_out_write_stays_inside(tmp_path, rootfs):
    name = f"owned-{secrets.token_hex(6)}"
    res, _, err = sh(tmp_path, rootfs, f"ln -s / /x && echo pwned > /x/tmp/{name}")
    assert res.exit_code == 0, err
    assert not os.path.exists(f"/tmp/{name}")
    assert (tmp_path / "upper/tmp" / name).read_text() == "pwned\n"


def test_workdir_through_proc_self_fd_is_refused(tmp_path, rootfs):
    for n in range(3, 8):
        with pytest.raises(ExecutorError):
            run(spec_for(tmp_path, rootfs, "pwd", cwd=f"/proc/self/fd/{n}"))


@pytest.mark.parametrize("planted", ["proc", "dev", "sys"])
def test_image_with_symlinked_special_dir_is_refused(tmp_path, planted):
    bad = make_busybox_rootfs(tmp_path / "bad")
    os.rmdir(bad / planted)
    os.symlink("/", bad / planted)
    with pytest.raises(ExecutorError, match=f"/{planted}"):
        run(spec_for(tmp_path, bad, "true", lowers=[bad]))


def test_etc_file_symlinked_into_proc_is_refused(tmp_path):
    bad = make_busybox_rootfs(tmp_path / "bad")
    (bad / "etc/hosts").unlink()
    os.symlink("/proc/sys/kernel/core_pattern", bad / "etc/hosts")
    with pytest.raises(ExecutorError, match="/etc/hosts"):
        run(spec_for(tmp_path, bad, "true", lowers=[bad]))


def test_etc_file_symlinked_outside_lands_inside(tmp_path):
    bad = make_busybox_rootfs(tmp_path / "bad")
    (bad / "etc/resolv.conf").unlink()
    os.symlink("../../../../../../../etc/resolv.conf.target", bad / "etc/resolv.conf")
    res, out, _ = sh(tmp_path, bad, "cat /etc/resolv.conf.target", lowers=[bad], dns=["192.0.2.9"])
    assert out == "nameserver 192.0.2.9\n"
    assert not os.path.exists("/etc/resolv.conf.target")


def test_volume_target_symlinked_outside_lands_inside(tmp_path, rootfs):
    vol = tmp_path / "vol"
    vol.mkdir()
    lower2 = tmp_path / "l2"
    lower2.mkdir()
    os.symlink("/../../../../../" + str(tmp_path / "hostdir").lstrip("/"), lower2 / "link")
    res, out, err = sh(
        tmp_path,
        rootfs,
        "echo hi > /link/f; cat /link/f",
        lowers=[rootfs, lower2],
        mounts=[Mount("/link", source=vol)],
    )
    assert res.exit_code == 0, err
    assert (vol / "f").read_text() == "hi\n"
    assert not (tmp_path / "hostdir").exists()


def test_seccomp_refuses_new_user_namespaces(tmp_path, rootfs):
    script = "unshare -U true 2>/dev/null && echo userns-made || echo userns-refused"
    _, out, _ = sh(tmp_path, rootfs, script)
    assert out.strip() == "userns-refused"
    _, out, _ = sh(tmp_path, rootfs, script, seccomp=False)
    assert out.strip() == "userns-made"  # (the filter is what refuses it)
    _, out, _ = sh(tmp_path, rootfs, "grep ^Seccomp: /proc/self/status")
    assert out.split() == ["Seccomp:", "2"]


def test_passwd_symlinked_to_a_kernel_file_is_not_read(tmp_path):
    bad = make_busybox_rootfs(tmp_path / "bad")
    (bad / "etc/passwd").unlink()
    os.symlink("/proc/kmsg", bad / "etc/passwd")
    res, out, _ = sh(tmp_path, bad, "id -u", lowers=[bad], user="1000")
    assert res.exit_code == 0 and out.strip() == "1000"
    with pytest.raises(ExecutorError, match="unable to find user alice"):
        run(spec_for(tmp_path, bad, "true", lowers=[bad], user="alice"))


def test_device_nodes_in_a_bind_mounted_host_dir_are_unusable(tmp_path, rootfs):
    """A volume or build-cache dir lives on a host filesystem that honours device nodes: the
    bind mount is nodev, so a node made there (CAP_MKNOD is a default) cannot be opened."""
    vol = tmp_path / "vol"
    vol.mkdir()
    root_dev = os.stat("/").st_dev
    res, out, _ = sh(
        tmp_path,
        rootfs,
        f"mknod /vol/disk b {os.major(root_dev)} {os.minor(root_dev)} && echo made;"
        "head -c 512 /vol/disk 2>/dev/null | wc -c; grep ' /vol ' /proc/mounts | grep -c nodev",
        mounts=[Mount("/vol", source=vol)],
    )
    assert out.split() == ["made", "0", "1"]
    (vol / "disk").unlink()
