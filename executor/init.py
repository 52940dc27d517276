"""The container's PID 1 when `init=True`: forwards signals to the command and reaps zombies.

A PID 1 that is not an init leaves orphaned grandchildren as zombies and, with no handlers,
ignores SIGTERM/SIGINT sent from outside (the kernel drops default-action signals to a
namespace's init). This loop is the `docker run --init` (tini) behaviour: every catchable
signal goes to the command, every child is reaped, and when the command ends the init ends
with the command's status (the kernel then kills whatever is left in the namespace).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

# Signals an init must not forward: job control stops itself, SIGCHLD is its own business.
_NOT_FORWARDED = {
    signal.SIGCHLD, signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN,
    signal.SIGTTOU, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL,
}  # fmt: skip
FORWARDED = [s for s in signal.valid_signals() if s not in _NOT_FORWARDED and s < signal.SIGRTMIN]


class SignalForwarder:
    """Installed before the fork of the command, so no signal slips between fork and setup:
    signals that come before the command's pid is known are queued and sent right after."""

    def __init__(self) -> None:
        self.child = 0
        self.pending: list[int] = []
        for sig in FORWARDED:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.child:
            try:
                os.kill(self.child, signum)
            except ProcessLookupError:
                pass
        else:
            self.pending.append(signum)

    def set_child(self, pid: int) -> None:
        self.child = pid
        for sig in self.pending:
            self._handle(sig, None)
        self.pending.clear()

    @staticmethod
    def reset_in_child() -> None:
        """In the command's process, before exec: default dispositions everywhere."""
        reset_signals()


def reset_signals() -> None:
    """Default disposition for every signal and an empty mask. Needed before exec: Python
    ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec (`yes | head`
    would never end); the calling thread's mask is inherited too."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # signals the C library reserves for itself
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def reap_until(child: int, report: Callable[[int], None]) -> int:
    """Reap every child until `child` exits; `report(raw_status)` then; returns the exit code
    Docker would show (128+N for a signal)."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == child:
            report(status)
            return exit_code_of(status)


def exit_code_of(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128
