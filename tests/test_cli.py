"""The two programs start, answer --help and reject unknown flags with Docker's exit codes."""

import subprocess
import sys


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True)


def test_pydock_help_lists_commands():
    p = run("frontend.pydock", "--help")
    assert p.returncode == 0
    assert "images" in p.stdout and "run" in p.stdout


def test_pydock_unknown_flag_exits_125_with_one_line():
    p = run("frontend.pydock", "--no-such-flag")
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "error" in p.stderr
