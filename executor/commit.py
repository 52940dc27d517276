"""`pydock commit`: a new image from a container's changes (its overlay upper dir).

The upper dir becomes one layer (`executor.layerdiff.upper_to_layer`, whiteouts translated);
the new config is the image's, with the container's runtime settings (Cmd, Entrypoint, Env,
WorkingDir, User, ExposedPorts, Volumes, Labels, StopSignal) as Docker's commit keeps them,
then `config_changes` (from `-c`) on top, and one history entry. A commit that changed no file
adds no layer (an `empty_layer` history entry), Docker's classic rule. A running container is
frozen while its upper dir is read unless `pause` is False.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from cache.errors import PydockError
from executor.containers import Container, rfc3339
from executor.events import log_event

# Files the runtime bind-mounts over while a container runs: their stubs are not changes.
_RUNTIME_STUBS = {"etc/hosts", "etc/hostname", "etc/resolv.conf"}
_KEPT_KEYS = (
    "User",
    "ExposedPorts",
    "Env",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "Labels",
    "StopSignal",
)


def commit_config(base: dict, c: Container, config_changes: dict | None = None) -> dict:
    """The runtime `config` of the committed image: the container's settings, then changes."""
    cfg = dict(base.get("config") or {})
    for key in _KEPT_KEYS:
        value = c.config.get(key)
        if value in (None, {}, [], ""):
            cfg.pop(key, None)
        else:
            cfg[key] = copy.deepcopy(value)
    for key, value in (config_changes or {}).items():
        if key == "Env":
            from executor.lifecycle import merge_env

            cfg["Env"] = merge_env(list(cfg.get("Env") or []), list(value))
        elif key in ("ExposedPorts", "Volumes", "Labels"):
            cfg[key] = {**(cfg.get(key) or {}), **value}
        else:
            cfg[key] = value
    return cfg


def commit_container(
    root: Path | str,
    c: Container,
    *,
    repository: str | None = None,
    message: str = "",
    author: str = "",
    config_changes: dict | None = None,
    pause: bool = True,
):  # noqa: ANN201 - cache.images.Image
    """Write the image made of `c`'s image plus its changes; tag it `repository` if given."""
    from cache.digest import EMPTY_TAR_DIFF_ID
    from cache.errors import ImageNotFound
    from cache.store import Store
    from executor.layerdiff import upper_to_layer
    from executor.lifecycle import set_paused

    root = Path(root)
    store = Store.open(root)
    if repository:
        from cache.refs import parse_reference

        parse_reference(repository)  # a bad name fails before any work
    try:
        base = copy.deepcopy(store.get_image(c.image_id).config)
    except ImageNotFound:
        base = {"architecture": "amd64", "os": "linux", "config": {}}
    base_ids = [str(d) for d in c.diff_ids]
    if (base.get("rootfs") or {}).get("diff_ids") not in (None, base_ids):
        raise PydockError(f"the image of container {c.short_id} no longer matches its layers")

    running = c.state.status == "running"
    exclude = (lambda rel: rel in _RUNTIME_STUBS) if c.state.running else None
    paused_here = False
    if pause and running and c.state.cgroups:
        set_paused(c, True)
        paused_here = True
    try:
        with store.tmp_dir("commit") as tmp:
            tar_path = tmp / "layer.tar"
            with open(tar_path, "wb") as f:
                stats = upper_to_layer(c.upper, f, exclude=exclude)
            empty = stats.entries == 0 or stats.diff_id == EMPTY_TAR_DIFF_ID
            new_ids = list(base_ids)
            if not empty:
                with open(tar_path, "rb") as f:
                    info = store.add_layer(f)
                new_ids.append(str(info.diff_id))
    finally:
        if paused_here:
            set_paused(c, False)

    now = rfc3339(time.time())
    history = list(base.get("history") or [])
    if not history and base_ids:
        history = [{"created": base.get("created", now), "created_by": ""} for _ in base_ids]
    entry: dict = {"created": now, "created_by": " ".join(c.argv)}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    if empty:
        entry["empty_layer"] = True
    history.append(entry)
    config = {k: v for k, v in base.items() if k != "rootfs"}
    config["config"] = commit_config(base, c, config_changes)
    config["created"] = now
    config["history"] = history
    if author:
        config["author"] = author
    else:
        config.pop("author", None)
    image = store.write_image(config, new_ids, tags=[repository] if repository else [])
    log_event(
        root,
        "commit",
        c.id,
        {"name": c.name, "image": c.image_name, "comment": message, "author": author},
    )
    return image
