"""Pseudo-terminals for `tty=True` containers.

The pty is allocated inside the container, from its own devpts instance (so the process
sees /dev/pts/0, as under Docker), and the master fd is passed back to the caller over a unix
socket (SCM_RIGHTS), like runc's console socket. `relay` copies between the caller's
terminal (or pipes) and the master until the container side is gone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import termios
import tty
from typing import TYPE_CHECKING

from executor import syscalls

if TYPE_CHECKING:
    import socket


def open_pty(ptmx: str = "/dev/ptmx", size: tuple[int, int] | None = None) -> tuple[int, int]:
    """(master, slave) of a new pty from `ptmx`; the window size is set when given."""
    master = os.open(ptmx, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    syscalls.unlock_pty(master)
    try:
        slave = syscalls.open_pty_peer(master, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        slave = os.open(f"/dev/pts/{syscalls.pty_number(master)}", os.O_RDWR | os.O_NOCTTY)
    if size:
        syscalls.set_winsize(slave, *size)
    return master, slave


def bind_console(master: int) -> None:
    """Make /dev/console the container's terminal, as runc does (a bind of its pts)."""
    console = "/dev/console"
    os.close(os.open(console, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
    syscalls.mount(f"/dev/pts/{syscalls.pty_number(master)}", console, None, syscalls.MS_BIND)


def make_controlling(slave: int) -> None:
    """In the process about to exec (a session leader): `slave` becomes its controlling
    tty and its stdio."""
    syscalls.set_controlling_tty(slave)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


# `socket` is imported where used (it costs ~2 ms; only -t needs it). The container's PID 1
# calls send_fd after pivot_root, when no module can be loaded any more: runtime.start has
# imported socket before the fork for a -t container, so the import below is a lookup.


def send_fd(sock: socket.socket, fd: int) -> None:
    import socket

    socket.send_fds(sock, [b"M"], [fd])


def recv_fd(sock: socket.socket) -> int | None:
    """The fd sent with `send_fd`, or None if the peer closed without sending one."""
    import socket

    msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
    return fds[0] if fds else None


def relay(master: int, in_fd: int | None, out_fd: int) -> None:
    """Copy `in_fd` -> master and master -> `out_fd` until the pty's last user closes it.

    When `in_fd` is a terminal it is put in raw mode for the duration (and restored), and
    window size changes (SIGWINCH) are passed on to the pty."""
    saved = None
    old_winch = None
    if in_fd is not None and os.isatty(in_fd):
        with contextlib.suppress(termios.error):
            saved = termios.tcgetattr(in_fd)
            tty.setraw(in_fd)

        def winch(signum, frame):
            size = syscalls.get_winsize(in_fd)
            if size:
                with contextlib.suppress(OSError):
                    syscalls.set_winsize(master, *size)

        with contextlib.suppress(ValueError):  # not the main thread: no resize forwarding
            old_winch = signal.signal(signal.SIGWINCH, winch)
    try:
        _copy_loop(master, in_fd, out_fd)
    finally:
        if saved is not None:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)


def _copy_loop(master: int, in_fd: int | None, out_fd: int) -> None:
    poller = select.poll()
    poller.register(master, select.POLLIN)
    if in_fd is not None:
        poller.register(in_fd, select.POLLIN)
    while True:
        for fd, ev in poller.poll():
            if fd == master:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:  # every slave fd is closed: the container is gone
                        return
                    raise
                if not data:
                    return
                _write_all(out_fd, data)
            else:
                data = os.read(in_fd, 65536) if ev & (select.POLLIN | select.POLLHUP) else b""
                if not data:
                    poller.unregister(in_fd)
                    in_fd = None
                    continue
                _write_all(master, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
