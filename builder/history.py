"""Image config and history as a build changes them, in Docker's shape.

`BuildState` is the image a stage has built so far: the runtime config (`config` of the image
config: Env, Cmd, WorkingDir, ...), the layer DiffIDs (oldest first), the history entries and
the key of the last step (the next step's parent). Metadata steps return a new runtime config;
every step adds one history entry, `empty_layer` when it produced no layer (Docker's classic
rule), so that `len(diff_ids) == count of non-empty history entries` always holds.
"""

from __future__ import annotations

import copy
import json
import time

from cache.records import field, record

DEFAULT_SHELL = ["/bin/sh", "-c"]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def rfc3339(ts: float) -> str:
    """Docker's timestamp form: UTC, nanoseconds trimmed of zeros, `Z`."""
    whole = int(ts)
    frac = round((ts - whole) * 1_000_000_000)
    if frac >= 1_000_000_000:
        whole, frac = whole + 1, 0
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))  # (no datetime import)
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def now(source_date_epoch: int | None) -> str:
    """The timestamp of a new history entry or image: SOURCE_DATE_EPOCH when set."""
    return rfc3339(source_date_epoch if source_date_epoch is not None else time.time())


@record
class BuildState:
    """The image a stage has built so far (values; a step returns a new one)."""

    image: dict  # the full image config of the base (architecture, os, ...), without rootfs
    config: dict  # runtime config: Env, Cmd, Entrypoint, WorkingDir, User, Labels, ...
    diff_ids: list[str] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    key: str = ""  # the last step's key: the parent part of the next step's key
    base_name: str = ""

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.config.get("Env") or []:
            k, _, v = item.partition("=")
            out[k] = v
        return out

    @property
    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    @property
    def user(self) -> str:
        return self.config.get("User") or ""

    def with_config(self, config: dict) -> BuildState:
        return BuildState(
            self.image, config, list(self.diff_ids), list(self.history), self.key, self.base_name
        )

    def add_step(self, key: str, diff_id: str | None, history: dict | None) -> BuildState:
        """A new state with one more history entry (and layer, when `diff_id`); with
        `history` None (BuildKit records no ONBUILD) only the key moves on."""
        if history is None:
            return BuildState(
                self.image,
                self.config,
                list(self.diff_ids),
                list(self.history),
                key,
                self.base_name,
            )
        entry = dict(history)
        if diff_id is None:
            entry["empty_layer"] = True
        else:
            entry.pop("empty_layer", None)
        diff_ids = [*self.diff_ids, diff_id] if diff_id else list(self.diff_ids)
        return BuildState(
            self.image, self.config, diff_ids, [*self.history, entry], key, self.base_name
        )

    def image_config(self, created: str) -> dict:
        """The full image config to store (rootfs is filled in by the store)."""
        out = {k: v for k, v in self.image.items() if k not in ("rootfs", "history", "config")}
        out.setdefault("architecture", "amd64")
        out.setdefault("os", "linux")
        out["created"] = created
        out["config"] = clean_config(self.config)
        out["history"] = self.history
        out["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        return out


def clean_config(config: dict) -> dict:
    """Drop empty values Docker leaves out, keep the rest (sorted by the serializer)."""
    return {k: v for k, v in config.items() if v not in (None, "", [], {})}


def scratch_state() -> BuildState:
    return BuildState(
        {"architecture": "amd64", "os": "linux"},
        {"Env": [f"PATH={DEFAULT_PATH}"]},
        base_name="scratch",
    )


def state_from_image(image_config: dict, name: str, image_id: str) -> BuildState:
    """The starting state of a stage built FROM a stored image."""
    cfg = copy.deepcopy(image_config.get("config") or {})
    diff_ids = list((image_config.get("rootfs") or {}).get("diff_ids") or [])
    history = copy.deepcopy(image_config.get("history") or [])
    return BuildState(copy.deepcopy(image_config), cfg, diff_ids, history, image_id, name)


def nop(shell: list[str], text: str) -> str:
    """`created_by` of a metadata step: `/bin/sh -c #(nop)  CMD ["sh"]` (Docker's two spaces)."""
    return " ".join([*shell, "#(nop) ", text])


def json_list(values: list[str]) -> str:
    """Go's rendering of a string list in history: `["a","b"]`."""
    return json.dumps(values, separators=(",", ":"))


def set_env(config: dict, key: str, value: str) -> dict:
    cfg = copy.deepcopy(config)
    env = [e for e in cfg.get("Env") or [] if e.partition("=")[0] != key]
    # Docker replaces a variable in place, keeping its position.
    old = cfg.get("Env") or []
    for i, item in enumerate(old):
        if item.partition("=")[0] == key:
            env = list(old)
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    cfg["Env"] = env
    return cfg
