"""`pydock`: Docker's image and container commands over the local store."""

from __future__ import annotations

from collections.abc import Sequence

from frontend.cli import run_commands

# command -> module that registers it (each module may register several commands)
COMMANDS: dict[str, str] = {
    **dict.fromkeys(
        [
            "images",
            "image",
            "tag",
            "rmi",
            "history",
            "import",
            "save",
            "load",
            "system",
            "bootstrap",
            "inspect",
        ],
        "frontend.image_commands",
    ),
    **dict.fromkeys(
        [
            "run",
            "create",
            "start",
            "stop",
            "kill",
            "restart",
            "wait",
            "rm",
            "ps",
            "logs",
            "attach",
            "exec",
            "top",
            "diff",
            "cp",
            "export",
            "commit",
            "pause",
            "unpause",
            "rename",
            "port",
            "stats",
            "events",
            "info",
            "version",
            "container",
        ],
        "frontend.container_commands",
    ),
    "volume": "frontend.volume_commands",
}


def main(argv: Sequence[str] | None = None) -> int:
    # Docker exits 125 when the docker command itself fails (bad flag, unknown name).
    return run_commands(
        "pydock",
        "A Docker-like front end over pydock's local image store.",
        COMMANDS,
        argv,
        usage_exit_code=125,
    )


if __name__ == "__main__":
    raise SystemExit(main())
