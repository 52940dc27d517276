"""Typed Dockerfile instructions, each carrying its source range, and their expansion.

Every instruction is a dataclass derived from `Instruction`:

    keyword       upper-case instruction name ("RUN")
    original      the logical line as written (continuations joined)
    start_line    1-based first physical line; end_line the last one (heredoc bodies included)
    column        1-based column of the keyword
    raw_flags     the flags as written, quotes removed ("--from=build")
    escape        the file's escape character (needed to expand words later)

The specific fields hold what the instruction means, *unexpanded* (variables are expanded
by the solver with the environment visible at that step, through `expand_instruction`):

    FromInstruction(image, stage_name, platform)
    RunInstruction(command, shell_form, mounts, network, security, heredocs)
    CmdInstruction / EntrypointInstruction(command, shell_form)
    ShellInstruction(shell)
    EnvInstruction(pairs) / LabelInstruction(pairs)   pairs: list[(key, value)]
    ArgInstruction(args)                               args: list[(name, default or None)]
    CopyInstruction(sources, dest, heredoc_sources, from_stage, chown, chmod, link, parents,
                    exclude)
    AddInstruction(sources, dest, heredoc_sources, chown, chmod, link, checksum, keep_git_dir,
                   exclude, unpack)
    ExposeInstruction(ports) VolumeInstruction(paths) UserInstruction(user)
    WorkdirInstruction(path) StopsignalInstruction(signal) MaintainerInstruction(maintainer)
    HealthcheckInstruction(test, interval, timeout, start_period, start_interval, retries)
    OnbuildInstruction(expression, trigger)

For RUN/CMD/ENTRYPOINT `command` is the exec-form list, or (shell_form=True) a one-element
list holding the shell text, which the solver runs with the SHELL in effect. A heredoc body
used as a COPY/ADD source is a `HeredocSource(path, data, expand)`.

`from_nodes(nodes, dockerfile)` turns parse-tree nodes into these, validating flags and
arguments (errors are `DockerfileError`s with line and column).
`expand_instruction(instr, env)` returns a copy with the words Docker expands expanded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from builder.errors import DockerfileError, ExpansionError, closest, did_you_mean
from builder.expand import check_word, expand_word, expand_words
from builder.nodes import Heredoc, Node
from cache import records

if TYPE_CHECKING:
    from builder.parser import Dockerfile

INSTRUCTION_NAMES = (
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
)


@dataclass(kw_only=True)
class Instruction:
    """Common part of every instruction (see the module docstring)."""

    keyword: str
    original: str = ""
    start_line: int = 0
    end_line: int = 0
    column: int = 1
    raw_flags: list[str] = field(default_factory=list)
    escape: str = "\\"
    heredocs: list[Heredoc] = field(default_factory=list)
    filename: str = "Dockerfile"

    def __str__(self) -> str:
        return self.original


@dataclass(kw_only=True)
class FromInstruction(Instruction):
    image: str
    stage_name: str | None = None  # lower-case, as Docker compares stage names
    platform: str | None = None


@dataclass
class MountSpec:
    """One `RUN --mount=...` as written: `type` plus its other options by key."""

    type: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def from_stage(self) -> str | None:
        return self.options.get("from")

    @property
    def target(self) -> str | None:
        for key in ("target", "dst", "destination"):
            if key in self.options:
                return self.options[key]
        return None


@dataclass(kw_only=True)
class RunInstruction(Instruction):
    command: list[str]
    shell_form: bool = True
    mounts: list[MountSpec] = field(default_factory=list)
    network: str | None = None
    security: str | None = None


@dataclass(kw_only=True)
class CmdInstruction(Instruction):
    command: list[str]
    shell_form: bool = True


@dataclass(kw_only=True)
class EntrypointInstruction(Instruction):
    command: list[str]
    shell_form: bool = True


@dataclass(kw_only=True)
class ShellInstruction(Instruction):
    shell: list[str]


@dataclass(kw_only=True)
class EnvInstruction(Instruction):
    pairs: list[tuple[str, str]]


@dataclass(kw_only=True)
class LabelInstruction(Instruction):
    pairs: list[tuple[str, str]]


@dataclass(kw_only=True)
class ArgInstruction(Instruction):
    args: list[tuple[str, str | None]]


@dataclass
class HeredocSource:
    """A COPY/ADD source given inline: file name `path` with content `data`."""

    path: str
    data: str
    expand: bool = True


@dataclass(kw_only=True)
class CopyInstruction(Instruction):
    sources: list[str]
    dest: str
    heredoc_sources: list[HeredocSource] = field(default_factory=list)
    from_stage: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    exclude: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class AddInstruction(Instruction):
    sources: list[str]
    dest: str
    heredoc_sources: list[HeredocSource] = field(default_factory=list)
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    checksum: str | None = None
    keep_git_dir: bool = False
    exclude: list[str] = field(default_factory=list)
    unpack: bool | None = None


@dataclass(kw_only=True)
class ExposeInstruction(Instruction):
    ports: list[str]


@dataclass(kw_only=True)
class VolumeInstruction(Instruction):
    paths: list[str]


@dataclass(kw_only=True)
class UserInstruction(Instruction):
    user: str


@dataclass(kw_only=True)
class WorkdirInstruction(Instruction):
    path: str


@dataclass(kw_only=True)
class StopsignalInstruction(Instruction):
    signal: str


@dataclass(kw_only=True)
class MaintainerInstruction(Instruction):
    maintainer: str


@dataclass(kw_only=True)
class HealthcheckInstruction(Instruction):
    """`test` is Docker's form: ["NONE"], ["CMD", arg...] or ["CMD-SHELL", text].

    Durations are in seconds (None when not given); `retries` None when not given.
    """

    test: list[str]
    interval: float | None = None
    timeout: float | None = None
    start_period: float | None = None
    start_interval: float | None = None
    retries: int | None = None


@dataclass(kw_only=True)
class OnbuildInstruction(Instruction):
    """`expression` is the trigger text stored in the image; `trigger` its typed form."""

    expression: str
    trigger: Instruction


# ---------------------------------------------------------------------------------------------
# Flags

_STR, _BOOL, _LIST = "string", "bool", "list"
_FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": _STR},
    "RUN": {"mount": _LIST, "network": _STR, "security": _STR, "device": _LIST},
    "COPY": {
        "from": _STR,
        "chown": _STR,
        "chmod": _STR,
        "link": _BOOL,
        "parents": _BOOL,
        "exclude": _LIST,
    },
    "ADD": {
        "chown": _STR,
        "chmod": _STR,
        "link": _BOOL,
        "checksum": _STR,
        "keep-git-dir": _BOOL,
        "exclude": _LIST,
        "unpack": _BOOL,
    },
    "HEALTHCHECK": {
        "interval": _STR,
        "timeout": _STR,
        "start-period": _STR,
        "start-interval": _STR,
        "retries": _STR,
    },
}


class _Ctx:
    """Where errors of one node go: its file, line and column."""

    def __init__(self, node: Node, df: Dockerfile) -> None:
        self.node = node
        self.df = df

    def error(self, msg: str, offset: int | None = None) -> DockerfileError:
        line, col = self.node.locate(self.node.rest_offset if offset is None else offset)
        return self.df.error(msg, line, col)

    def at_keyword(self, msg: str) -> DockerfileError:
        line, col = self.node.locate(0)
        return self.df.error(msg, line, col)


def _parse_flags(ctx: _Ctx, keyword: str) -> dict[str, str | bool | list[str]]:
    """Validated flag values by name (string, bool or list of strings)."""
    spec = _FLAGS.get(keyword, {})
    node = ctx.node
    values: dict[str, str | bool | list[str]] = {}
    for flag, offset in zip(node.flags, node.flag_offsets, strict=False):
        body = flag[2:]
        name, eq, value = body.partition("=")
        kind = spec.get(name)
        if kind is None:
            close = closest(name, spec) if spec else None
            hint = f" (did you mean --{close}?)" if close else ""
            raise ctx.error(f"unknown flag: --{name} for {keyword}{hint}", offset)
        if name in values and kind != _LIST:
            raise ctx.error(f"duplicate flag specified: --{name}", offset)
        if kind == _BOOL:
            if eq and value == "":
                raise ctx.error(f"missing a value on flag: --{name}", offset)
            low = value.lower()
            if low not in ("", "true", "false"):
                raise ctx.error(f"expecting boolean value for flag --{name}, not: {value}", offset)
            values[name] = low != "false"
        elif kind == _STR:
            if not eq:
                raise ctx.error(f"missing a value on flag: --{name}", offset)
            values[name] = value
        else:
            if not eq:
                raise ctx.error(f"missing a value on flag: --{name}", offset)
            lst = values.setdefault(name, [])
            assert isinstance(lst, list)
            lst.append(value)
    return values


def _flag_offset(ctx: _Ctx, name: str) -> int | None:
    for flag, offset in zip(ctx.node.flags, ctx.node.flag_offsets, strict=False):
        if flag[2:].partition("=")[0] == name:
            return offset
    return None


# ---------------------------------------------------------------------------------------------
# Node -> typed instruction


def from_nodes(nodes: list[Node], df: Dockerfile) -> list[Instruction]:
    """Typed instructions for parse-tree nodes; checks that only ARG precedes the first FROM."""
    out: list[Instruction] = []
    seen_from = False
    for node in nodes:
        instr = from_node(node, df)
        if isinstance(instr, FromInstruction):
            seen_from = True
        elif not seen_from and not isinstance(instr, ArgInstruction):
            line, col = node.locate(0)
            raise df.error(
                f"{instr.keyword} instruction before the first FROM "
                "(only ARG can come before FROM)",
                line,
                col,
            )
        out.append(instr)
    return out


def from_node(node: Node, df: Dockerfile) -> Instruction:
    """One typed instruction from its parse-tree node (errors located in `df`)."""
    ctx = _Ctx(node, df)
    keyword = node.cmd.upper()
    builder = _BUILDERS.get(keyword)
    if builder is None:
        raise ctx.at_keyword(
            f"unknown instruction {_dq(node.cmd)}{did_you_mean(node.cmd, INSTRUCTION_NAMES)}"
        )
    flags = _parse_flags(ctx, keyword)
    line, col = node.locate(0)
    common = {
        "keyword": keyword,
        "original": node.original,
        "start_line": node.start_line,
        "end_line": node.end_line,
        "column": col,
        "raw_flags": list(node.flags),
        "escape": df.escape,
        "heredocs": list(node.heredocs),
        "filename": df.filename,
    }
    instr = builder(ctx, flags, common)
    _check_expansions(ctx, instr)
    return instr


def _dq(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _build_from(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    args = ctx.node.args
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9\-_.]*", name):
            raise ctx.error(
                f'invalid name for build stage: "{args[2]}", '
                "name can't start with a number or contain symbols",
                _word_offset(ctx, 2),
            )
    elif len(args) != 1:
        raise ctx.error("FROM requires either one or three arguments")
    return FromInstruction(image=args[0], stage_name=name, platform=flags.get("platform"), **common)


def _word_offset(ctx: _Ctx, index: int) -> int:
    """Offset in the line of the index-th whitespace-separated argument word."""
    rest = ctx.node.rest
    spans = [m.start() for m in re.finditer(r"[^\t\v\f\r ]+", rest)]
    at = spans[index] if index < len(spans) else len(rest)
    return ctx.node.rest_offset + at


def _build_run(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    node = ctx.node
    mounts = []
    for raw in flags.get("mount", []):
        mounts.append(_parse_mount(ctx, raw, check=True))
    network = flags.get("network")
    if network is not None and network not in ("default", "none", "host") and "$" not in network:
        raise ctx.error(f"unsupported network mode: {network}", _flag_offset(ctx, "network"))
    security = flags.get("security")
    if security is not None and security not in ("sandbox", "insecure"):
        raise ctx.error(f"unsupported security mode: {security}", _flag_offset(ctx, "security"))
    return RunInstruction(
        command=_command(node),
        shell_form=not node.json,
        mounts=mounts,
        network=network,
        security=security,
        **common,
    )


_MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_MOUNT_KEYS = {
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "rw",
    "readwrite",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "required",
    "size",
    "env",
}


def _parse_mount(ctx: _Ctx | None, raw: str, *, check: bool) -> MountSpec:
    """A `--mount` value (comma-separated key=value, CSV quoting allowed) as a MountSpec."""
    import csv

    try:
        fields = next(csv.reader([raw]))
    except (csv.Error, StopIteration):
        fields = raw.split(",")
    mtype = "bind"
    options: dict[str, str] = {}
    offset = _flag_offset(ctx, "mount") if ctx else None
    for f in fields:
        key, eq, value = f.partition("=")
        key = key.strip().lower()
        if key == "type":
            mtype = value.lower()
            if check and mtype not in _MOUNT_TYPES and "$" not in mtype:
                msg = f"unsupported mount type {value!r} (use one of {', '.join(_MOUNT_TYPES)})"
                if ctx:
                    raise ctx.error(msg, offset)
                raise DockerfileError(msg)
            continue
        if check and key not in _MOUNT_KEYS:
            msg = f"unexpected key {key!r} in {raw!r}"
            if ctx:
                raise ctx.error(msg, offset)
            raise DockerfileError(msg)
        options[key] = value if eq else "true"
    return MountSpec(type=mtype, options=options)


def _command(node: Node) -> list[str]:
    if node.json:
        return list(node.args)
    return [" ".join(node.args)] if node.args else []


def _build_cmd(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return CmdInstruction(command=_command(ctx.node), shell_form=not ctx.node.json, **common)


def _build_entrypoint(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return EntrypointInstruction(command=_command(ctx.node), shell_form=not ctx.node.json, **common)


def _build_shell(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    if not ctx.node.json:
        raise ctx.error("SHELL requires the arguments to be in JSON form")
    if not ctx.node.args:
        raise ctx.error("SHELL requires at least one argument")
    return ShellInstruction(shell=list(ctx.node.args), **common)


def _pairs(ctx: _Ctx, keyword: str) -> list[tuple[str, str]]:
    args = ctx.node.args
    if not args:
        raise ctx.error(f"{keyword} requires at least one argument")
    pairs = []
    for i in range(0, len(args) - 2, 3):
        key, value = args[i], args[i + 1]
        if not key:
            raise ctx.error(f"{keyword} names can not be blank")
        pairs.append((key, value))
    return pairs


def _build_env(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return EnvInstruction(pairs=_pairs(ctx, "ENV"), **common)


def _build_label(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return LabelInstruction(pairs=_pairs(ctx, "LABEL"), **common)


def _build_arg(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    if not ctx.node.args:
        raise ctx.error("ARG requires at least one argument")
    out: list[tuple[str, str | None]] = []
    for word in ctx.node.args:
        if "=" in word:
            name, _, value = word.partition("=")
            if not name:
                raise ctx.error("ARG names can not be blank")
            out.append((name, value))
        else:
            out.append((word, None))
    return ArgInstruction(args=out, **common)


def _sources_and_dest(ctx: _Ctx, keyword: str) -> tuple[list[str], str, list[HeredocSource]]:
    from builder.parser import parse_heredoc

    args = ctx.node.args
    if len(args) < 2:
        raise ctx.error(
            f"{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"
        )
    dest = args[-1]
    if not ctx.node.json and parse_heredoc(dest) is not None:
        raise ctx.error(f"{keyword} cannot accept a heredoc as a destination")
    docs = {d.name: d for d in ctx.node.heredocs}
    sources: list[str] = []
    inline: list[HeredocSource] = []
    for src in args[:-1]:
        doc = parse_heredoc(src) if not ctx.node.json else None
        if doc is not None:
            found = docs.get(doc.name, doc)
            body = Heredoc(found.name, found.content, found.expand, found.fd, doc.chomp).body
            inline.append(HeredocSource(path=doc.name, data=body, expand=found.expand))
        else:
            sources.append(src)
    return sources, dest, inline


def _build_copy(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    sources, dest, inline = _sources_and_dest(ctx, "COPY")
    return CopyInstruction(
        sources=sources,
        dest=dest,
        heredoc_sources=inline,
        from_stage=flags.get("from"),
        chown=flags.get("chown"),
        chmod=flags.get("chmod"),
        link=bool(flags.get("link", False)),
        parents=bool(flags.get("parents", False)),
        exclude=list(flags.get("exclude", [])),
        **common,
    )


def _build_add(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    sources, dest, inline = _sources_and_dest(ctx, "ADD")
    return AddInstruction(
        sources=sources,
        dest=dest,
        heredoc_sources=inline,
        chown=flags.get("chown"),
        chmod=flags.get("chmod"),
        link=bool(flags.get("link", False)),
        checksum=flags.get("checksum"),
        keep_git_dir=bool(flags.get("keep-git-dir", False)),
        exclude=list(flags.get("exclude", [])),
        unpack=flags.get("unpack"),
        **common,
    )


_PORT_RE = re.compile(r"(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?")


def check_port(spec: str) -> str | None:
    """None if `spec` is a valid EXPOSE port (`80`, `80/tcp`, `7000-7010/udp`), else why not."""
    m = _PORT_RE.fullmatch(spec)
    if m is None:
        return f"invalid port {spec!r}: expected PORT[-PORT][/PROTOCOL]"
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else start
    if start > 65535 or end > 65535:
        return f"invalid port {spec!r}: port numbers go up to 65535"
    if end < start:
        return f"invalid port range {spec!r}: end is lower than start"
    proto = (m.group(3) or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        return f"invalid port {spec!r}: unknown protocol {m.group(3)!r} (use tcp, udp or sctp)"
    return None


def _build_expose(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    args = ctx.node.args
    if not args:
        raise ctx.error("EXPOSE requires at least one argument")
    for i, port in enumerate(args):
        if "$" in port:
            continue
        problem = check_port(port)
        if problem:
            raise ctx.error(problem, _word_offset(ctx, i))
    return ExposeInstruction(ports=list(args), **common)


def _build_volume(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    args = ctx.node.args
    if not args:
        raise ctx.error("VOLUME requires at least one argument")
    for path in args:
        if not path.strip():
            raise ctx.error("VOLUME specified can not be an empty string")
    return VolumeInstruction(paths=list(args), **common)


def _one(ctx: _Ctx, keyword: str) -> str:
    if len(ctx.node.args) != 1:
        raise ctx.error(f"{keyword} requires exactly one argument")
    return ctx.node.args[0]


def _build_user(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return UserInstruction(user=_one(ctx, "USER"), **common)


def _build_workdir(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return WorkdirInstruction(path=_one(ctx, "WORKDIR"), **common)


def _build_stopsignal(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return StopsignalInstruction(signal=_one(ctx, "STOPSIGNAL"), **common)


def _build_maintainer(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    return MaintainerInstruction(maintainer=_one(ctx, "MAINTAINER"), **common)


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (`30s`, `1m30s`, `1.5h`, `250ms`, `0`); ValueError if bad."""
    if text in ("0", "+0", "-0"):
        return 0.0
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if not body:
        raise ValueError(text)
    pos, total = 0, 0.0
    while pos < len(body):
        m = _DURATION_RE.match(body, pos)
        if m is None:
            raise ValueError(text)
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def _build_healthcheck(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    node = ctx.node
    if not node.args:
        raise ctx.error("HEALTHCHECK requires at least one argument")
    typ = node.args[0].upper()
    rest = node.args[1:]
    if typ == "NONE":
        if rest:
            raise ctx.error("HEALTHCHECK NONE takes no arguments")
        return HealthcheckInstruction(test=["NONE"], **common)
    if typ != "CMD":
        raise ctx.error(f'Unknown type "{typ}" in HEALTHCHECK (try CMD)')
    cmd = list(rest) if node.json else ([" ".join(rest)] if rest else [])
    if not cmd or (not node.json and not cmd[0]):
        raise ctx.error("Missing command after HEALTHCHECK CMD")
    test = ["CMD", *cmd] if node.json else ["CMD-SHELL", *cmd]
    durations: dict[str, float | None] = {}
    for name in ("interval", "timeout", "start-period", "start-interval"):
        raw = flags.get(name)
        if raw in (None, ""):
            durations[name] = None
            continue
        try:
            value = parse_duration(raw)
        except ValueError:
            raise ctx.error(
                f"invalid duration {raw!r} for --{name}", _flag_offset(ctx, name)
            ) from None
        if 0 < value < 0.001 or value < 0:
            raise ctx.error(f"Interval --{name} cannot be less than 1ms", _flag_offset(ctx, name))
        durations[name] = value
    retries = None
    raw = flags.get("retries")
    if raw not in (None, ""):
        try:
            retries = int(raw)
        except ValueError:
            raise ctx.error(
                f"invalid value {raw!r} for --retries: not a number", _flag_offset(ctx, "retries")
            ) from None
        if retries < 0:
            raise ctx.error(
                f"--retries cannot be negative ({retries})", _flag_offset(ctx, "retries")
            )
    return HealthcheckInstruction(
        test=test,
        interval=durations["interval"],
        timeout=durations["timeout"],
        start_period=durations["start-period"],
        start_interval=durations["start-interval"],
        retries=retries,
        **common,
    )


def _build_onbuild(ctx: _Ctx, flags: dict, common: dict) -> Instruction:
    node = ctx.node
    if node.sub is None:
        raise ctx.error("ONBUILD requires at least one argument")
    trigger_word = node.sub.cmd.upper()
    if trigger_word == "ONBUILD":
        raise ctx.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_word in ("MAINTAINER", "FROM"):
        raise ctx.error(f"{trigger_word} isn't allowed as an ONBUILD trigger")
    sub = records.replace(node.sub, heredocs=list(node.heredocs))  # a Node: a record
    trigger = from_node(sub, ctx.df)
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original, count=1)
    for doc in node.heredocs:
        expression += "\n" + doc.content + doc.name
    return OnbuildInstruction(expression=expression, trigger=trigger, **common)


_BUILDERS = {
    "FROM": _build_from,
    "RUN": _build_run,
    "CMD": _build_cmd,
    "ENTRYPOINT": _build_entrypoint,
    "SHELL": _build_shell,
    "ENV": _build_env,
    "LABEL": _build_label,
    "ARG": _build_arg,
    "COPY": _build_copy,
    "ADD": _build_add,
    "EXPOSE": _build_expose,
    "VOLUME": _build_volume,
    "USER": _build_user,
    "WORKDIR": _build_workdir,
    "STOPSIGNAL": _build_stopsignal,
    "MAINTAINER": _build_maintainer,
    "HEALTHCHECK": _build_healthcheck,
    "ONBUILD": _build_onbuild,
}


# ---------------------------------------------------------------------------------------------
# Expansion


def _expandable_words(instr: Instruction) -> list[str]:
    """The words of `instr` that Docker expands (checked for syntax at parse time)."""
    words: list[str] = []
    if isinstance(instr, (EnvInstruction, LabelInstruction)):
        for k, v in instr.pairs:
            words += [k, v]
    elif isinstance(instr, ArgInstruction):
        words += [v for _, v in instr.args if v is not None]
    elif isinstance(instr, (CopyInstruction, AddInstruction)):
        words += instr.sources + [instr.dest]
        words += [w for w in (instr.chown, instr.chmod) if w]
        words += instr.exclude
        if isinstance(instr, CopyInstruction) and instr.from_stage:
            words.append(instr.from_stage)
        if isinstance(instr, AddInstruction) and instr.checksum:
            words.append(instr.checksum)
    elif isinstance(instr, FromInstruction):
        words.append(instr.image)
        if instr.platform:
            words.append(instr.platform)
    elif isinstance(instr, ExposeInstruction):
        words += instr.ports
    elif isinstance(instr, VolumeInstruction):
        words += instr.paths
    elif isinstance(instr, UserInstruction):
        words.append(instr.user)
    elif isinstance(instr, WorkdirInstruction):
        words.append(instr.path)
    elif isinstance(instr, StopsignalInstruction):
        words.append(instr.signal)
    return words


def _check_expansions(ctx: _Ctx, instr: Instruction) -> None:
    for word in _expandable_words(instr):
        if "${" not in word and '"' not in word and "'" not in word:
            continue  # only quotes and ${...} can be malformed
        try:
            check_word(word, instr.escape)
        except ExpansionError as exc:
            at = ctx.node.original.find(word)
            offset = at + max(exc.offset, 0) if at >= 0 else None
            if offset is not None and offset > len(ctx.node.original):
                offset = len(ctx.node.original)
            raise ctx.error(exc.msg, offset) from None


def expand_instruction(instr: Instruction, env: Mapping[str, str]) -> Instruction:
    """A copy of `instr` with every word Docker expands expanded under `env`.

    `env` is everything visible at that step: the image's ENV over the ARG values in scope
    (ENV wins; see `builder.dag.expansion_env`). RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK text is
    never expanded (the shell does that); for RUN only the `--mount` options are. Heredoc
    bodies of COPY/ADD are expanded when their name was not quoted. Errors (`${X:?msg}`, bad
    syntax) raise `DockerfileError` located at the instruction.
    """
    esc = instr.escape

    def word(w: str) -> str:
        return expand_word(w, env, esc)

    def optional(w: str | None) -> str | None:
        return word(w) if w else w

    try:
        if isinstance(instr, (EnvInstruction, LabelInstruction)):
            return dataclasses.replace(instr, pairs=[(word(k), word(v)) for k, v in instr.pairs])
        if isinstance(instr, ArgInstruction):
            return dataclasses.replace(
                instr, args=[(n, None if v is None else word(v)) for n, v in instr.args]
            )
        if isinstance(instr, (CopyInstruction, AddInstruction)):
            # the words both have; then --from (COPY) or --checksum (ADD)
            both = {
                "sources": [word(s) for s in instr.sources],
                "dest": word(instr.dest),
                "heredoc_sources": _expand_heredocs(instr.heredoc_sources, env, esc),
                "chown": optional(instr.chown),
                "chmod": optional(instr.chmod),
                "exclude": [word(x) for x in instr.exclude],
            }
            if isinstance(instr, CopyInstruction):
                return dataclasses.replace(instr, **both, from_stage=optional(instr.from_stage))
            return dataclasses.replace(instr, **both, checksum=optional(instr.checksum))
        if isinstance(instr, FromInstruction):
            return dataclasses.replace(
                instr,
                image=word(instr.image),
                platform=optional(instr.platform),
            )
        if isinstance(instr, ExposeInstruction):
            ports: list[str] = []
            for p in instr.ports:
                ports += expand_words(p, env, esc)
            for p in ports:
                problem = check_port(p)
                if problem:
                    raise DockerfileError(problem)
            return dataclasses.replace(instr, ports=ports)
        if isinstance(instr, VolumeInstruction):
            return dataclasses.replace(instr, paths=[word(p) for p in instr.paths])
        if isinstance(instr, UserInstruction):
            return dataclasses.replace(instr, user=word(instr.user))
        if isinstance(instr, WorkdirInstruction):
            return dataclasses.replace(instr, path=word(instr.path))
        if isinstance(instr, StopsignalInstruction):
            return dataclasses.replace(instr, signal=word(instr.signal))
        if isinstance(instr, RunInstruction) and instr.mounts:
            mounts = [
                MountSpec(type=word(m.type), options={k: word(v) for k, v in m.options.items()})
                for m in instr.mounts
            ]
            return dataclasses.replace(instr, mounts=mounts)
    except (ExpansionError, DockerfileError) as exc:
        raise DockerfileError(
            exc.msg,
            filename=instr.filename,
            line=instr.start_line,
            column=instr.column,
            source_line=instr.original,
        ) from None
    return instr


def _expand_heredocs(
    docs: list[HeredocSource], env: Mapping[str, str], escape: str
) -> list[HeredocSource]:
    from builder.expand import Lexer

    lexer = Lexer(escape=escape, skip_quotes=True)
    out = []
    for d in docs:
        data = lexer.process(d.data, env)[0] if d.expand else d.data
        out.append(HeredocSource(path=d.path, data=data, expand=d.expand))
    return out
