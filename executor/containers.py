"""Container records: ROOT/containers/<id>/ with config.json, state.json, the overlay dirs and log.

A container's folder holds:
- `config.json`: what it was created with, in Docker's vocabulary (`Config`, `HostConfig`,
  `Mounts`, image id and name, the image's layer diff_ids), written once (rename rewrites it);
- `state.json`: where it is in its life (`created`, `running`, `paused`, `exited`, `dead`), the
  host pid of its init with that process's start time, the pid of the process that holds it
  (a foreground `pydock run` or the detached supervisor), exit code, OOM kill, start and finish
  times;
- `upper/`, `work/`, `merged/` for its overlay root; `hostname`, `hosts`, `resolv.conf`;
- `json.log`: its output as Docker's json-file driver writes it, one `{"log","stream","time"}`
  object a line.

State is reconciled on read: a container recorded as running whose process is gone (checked with
the pid *and* its start time, so a reused pid does not keep a dead container alive) becomes
exited, with the exit code its holder recorded or 137 when the holder died too. Writers take the
store lock (ROOT/lock) for the short read-modify-write of a record; every file is replaced by
rename so readers never see a partial one.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from json.encoder import encode_basestring as _encode_json_str
from pathlib import Path

from cache.errors import NameInUse, PydockError
from cache.records import asdict, field, fields, record

CONTAINERS_DIR = "containers"
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"


class NoSuchContainer(PydockError):
    """No container answers to the given id, id prefix or name."""

    exit_code = 1


class ContainerStateError(PydockError):
    """The container is not in a state that allows the operation (running, stopped, paused)."""

    exit_code = 1


# --- times ---------------------------------------------------------------------------------------


def rfc3339(t: float) -> str:
    """Docker's timestamp format with nanoseconds, UTC; the zero time for 0."""
    if not t:
        return ZERO_TIME
    sec = int(t)
    ns = int(round((t - sec) * 1e9))
    if ns >= 1_000_000_000:
        sec, ns = sec + 1, ns - 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ns:09d}Z"


# --- processes -----------------------------------------------------------------------------------


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); None if gone.

    A pid plus its start time names one process for good: a later process reusing the pid
    starts later. A zombie counts as gone (it has exited; only its status is left).
    """
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def process_alive(pid: int, start: int) -> bool:
    """True if the process `pid` started at `start` still runs (start 0: pid alone decides)."""
    st = process_start_time(pid)
    return st is not None and (not start or st == start)


# --- records -------------------------------------------------------------------------------------


@record
class State:
    """Where a container is in its life; saved as state.json."""

    status: str = "created"  # created | running | paused | exited | dead
    pid: int = 0  # host pid of the container's first process
    pid_start: int = 0
    monitor_pid: int = 0  # the pydock process (foreground run or supervisor) holding it
    monitor_start: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    restart_count: int = 0
    cgroups: dict[str, str] = field(default_factory=dict)  # executor CgroupSet.paths

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused")

    @classmethod
    def from_json(cls, obj: dict) -> State:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


@record
class Container:
    """One container's config (fixed at create) and state (changes over its life)."""

    id: str
    name: str
    created: float
    image_id: str
    image_name: str
    path: str  # argv[0]
    args: list[str]
    config: dict  # Docker's Config: Env, Cmd, Entrypoint, WorkingDir, User, Tty, Labels, ...
    host_config: dict  # Docker's HostConfig: Binds, Memory, NetworkMode, AutoRemove, ...
    mounts: list[dict] = field(default_factory=list)  # Type, Name, Source, Destination, RW
    diff_ids: list[str] = field(default_factory=list)  # the image's layers, oldest first
    state: State = field(default_factory=State)
    dir: Path = Path()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def argv(self) -> list[str]:
        return [self.path, *self.args] if self.path else list(self.args)

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def merged(self) -> Path:
        return self.dir / "merged"

    @property
    def log_path(self) -> Path:
        return self.dir / "json.log"

    def inspect(self) -> dict:
        """Docker's `inspect` JSON of this container (what `pydock inspect` prints)."""
        return inspect_container(self.dir.parent.parent, self.id)

    def config_json(self) -> dict:
        return {
            "Id": self.id,
            "Name": self.name,
            "Created": self.created,
            "Image": self.image_id,
            "ImageName": self.image_name,
            "Path": self.path,
            "Args": self.args,
            "Config": self.config,
            "HostConfig": self.host_config,
            "Mounts": self.mounts,
            "DiffIDs": self.diff_ids,
        }

    @classmethod
    def from_json(cls, obj: dict, state: State, folder: Path) -> Container:
        return cls(
            id=obj["Id"],
            name=obj["Name"],
            created=obj["Created"],
            image_id=obj.get("Image", ""),
            image_name=obj.get("ImageName", ""),
            path=obj.get("Path", ""),
            args=list(obj.get("Args") or []),
            config=obj.get("Config") or {},
            host_config=obj.get("HostConfig") or {},
            mounts=list(obj.get("Mounts") or []),
            diff_ids=list(obj.get("DiffIDs") or []),
            state=state,
            dir=folder,
        )


def new_id() -> str:
    """64 random hex digits whose short form is not all digits (Docker avoids those too)."""
    while True:
        cid = os.urandom(32).hex()
        if not cid[:12].isdigit():
            return cid


def _read_state(path: Path) -> State:
    """state.json; a file torn by a crash reads as a dead container (it can still be removed)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return State.from_json(json.loads(data))
    except (ValueError, TypeError):
        return State(status="dead", error="the container's state file was damaged")


def _write_atomic(path: Path, data: bytes, sync: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class ContainerStore:
    """The containers of one store root: create, look up, list, change state, remove."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()  # records name absolute paths (a supervisor runs from /)
        self.dir = self.root / CONTAINERS_DIR

    # -- locking --

    @contextmanager
    def lock(self) -> Iterator[None]:
        """The store's writer lock (ROOT/lock), shared with cache.store's."""
        from cache.locking import lock_for

        self.root.mkdir(parents=True, exist_ok=True)
        with lock_for(self.root / "lock")():
            yield

    # -- reading --

    def ids(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.dir) if len(n) == 64 and not n.startswith(".")]
        except FileNotFoundError:
            return []

    def _load(self, cid: str, reconcile: bool = True) -> Container | None:
        folder = self.dir / cid
        try:
            with open(folder / "config.json", "rb") as f:
                cfg = json.load(f)
            state = _read_state(folder / "state.json")
        except (FileNotFoundError, NotADirectoryError, ValueError, TypeError, KeyError):
            return None  # being created or removed, or torn by a crash: not a container
        try:
            c = Container.from_json(cfg, state, folder)
        except (KeyError, TypeError):
            return None
        if reconcile:
            self.reconcile(c)
        return c

    def list(self) -> list[Container]:
        """Every container, newest first, with its state reconciled."""
        out = [c for cid in self.ids() if (c := self._load(cid)) is not None]
        out.sort(key=lambda c: c.created, reverse=True)
        return out

    def find(self, ref: str) -> Container | None:
        """The container with this full id, name (with or without "/"), or unique id prefix."""
        ref = ref.strip()
        if not ref:
            return None
        if len(ref) == 64:
            c = self._load(ref)
            if c is not None:
                return c
        name = ref.lstrip("/")
        prefix_hits: list[str] = []
        for cid in self.ids():
            if cid.startswith(ref):
                prefix_hits.append(cid)
        # A name wins over an id prefix, as in Docker.
        for c in self._configs():
            if c.get("Name") == name:
                return self._load(c["Id"])
        if len(prefix_hits) == 1:
            return self._load(prefix_hits[0])
        if len(prefix_hits) > 1:
            raise NoSuchContainer(f"multiple containers found with provided prefix: {ref}")
        return None

    def get(self, ref: str) -> Container:
        """Like `find`, but a missing container is an error naming `ref`."""
        c = self.find(ref)
        if c is None:
            raise NoSuchContainer(f"No such container: {ref}")
        return c

    def _configs(self) -> Iterator[dict]:
        for cid in self.ids():
            try:
                with open(self.dir / cid / "config.json", "rb") as f:
                    yield json.load(f)
            except (FileNotFoundError, NotADirectoryError, ValueError):
                continue

    def name_owner(self, name: str) -> str | None:
        """The id of the container called `name`, if any."""
        for cfg in self._configs():
            if cfg.get("Name") == name:
                return cfg["Id"]
        return None

    # -- writing --

    def create(self, c: Container) -> Container:
        """Make the container's folder and records; the name must be free (NameInUse if not)."""
        with self.lock():
            taken = {cfg.get("Name") for cfg in self._configs()}
            if c.name:
                c.name = c.name.lstrip("/")
                if not NAME_RE.match(c.name):
                    raise PydockError(
                        f"Invalid container name ({c.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                        exit_code=125,
                    )
                if c.name in taken:
                    owner = self.name_owner(c.name) or ""
                    raise NameInUse(
                        f'Conflict. The container name "/{c.name}" is already in use by container '
                        f'"{owner}". You have to remove (or rename) that container to be able to '
                        "reuse that name.",
                        exit_code=125,
                    )
            else:
                c.name = generate_name(taken)
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp_root = self.root / "tmp"
            tmp_root.mkdir(parents=True, exist_ok=True)
            stage = tmp_root / f"container-{os.getpid()}-{os.urandom(6).hex()}"
            stage.mkdir(0o700)
            for sub in ("upper", "work", "merged"):
                (stage / sub).mkdir(0o755)
            # No fsync: a record torn by a crash is skipped by readers (see `_load`), and a
            # `run` stays cheap; the rename below makes it appear whole or not at all.
            _write_atomic(stage / "config.json", _dump(c.config_json()), sync=False)
            _write_atomic(stage / "state.json", _dump(asdict(c.state)), sync=False)
            final = self.dir / c.id
            os.rename(stage, final)
            c.dir = final
        return c

    def save_config(self, c: Container) -> None:
        _write_atomic(c.dir / "config.json", _dump(c.config_json()))

    def save_state(self, c: Container) -> None:
        """Replace state.json with `c.state` (callers hold the lock or own the container).

        Not fsync'd: a state lost in a crash is rebuilt by `reconcile` (the process is gone
        then anyway), and a run stays cheap.
        """
        _write_atomic(c.dir / "state.json", _dump(asdict(c.state)), sync=False)

    def update_state(self, c: Container, change: Callable[[State], None]) -> State:
        """Re-read the state under the lock, apply `change`, save; `c.state` is updated too."""
        with self.lock():
            try:
                st = _read_state(c.dir / "state.json")
            except FileNotFoundError:
                raise NoSuchContainer(f"No such container: {c.short_id}") from None
            change(st)
            c.state = st
            self.save_state(c)
        return st

    def rename(self, c: Container, new_name: str) -> None:
        new_name = new_name.lstrip("/")
        if not NAME_RE.match(new_name):
            raise PydockError(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        with self.lock():
            owner = self.name_owner(new_name)
            if owner is not None and owner != c.id:
                raise NameInUse(
                    f'Conflict. The container name "/{new_name}" is already in use by container '
                    f'"{owner}". You have to remove (or rename) that container to be able to '
                    "reuse that name."
                )
            c.name = new_name
            self.save_config(c)

    def remove_record(self, c: Container) -> None:
        """Delete the container's folder (the caller made sure nothing is mounted or running)."""
        from cache.staging import remove_tree

        with self.lock():
            if not c.dir.exists():
                return
            tmp_root = self.root / "tmp"
            tmp_root.mkdir(parents=True, exist_ok=True)
            doomed = tmp_root / f"rm-{os.getpid()}-{os.urandom(6).hex()}"
            try:
                os.rename(c.dir, doomed)
            except FileNotFoundError:
                return  # removed meanwhile (an --rm supervisor and `rm -f` racing)
        remove_tree(doomed)

    # -- reconciliation --

    def reconcile(self, c: Container) -> None:
        """Turn a 'running' record whose process is gone into the truth (see module doc)."""
        st = c.state
        if not st.running or process_alive(st.pid, st.pid_start):
            return
        # The holder records the exit itself; give a live one a moment to do so.
        deadline = time.monotonic() + 2.0
        while process_alive(st.monitor_pid, st.monitor_start) and time.monotonic() < deadline:
            time.sleep(0.01)
            try:
                st = _read_state(c.dir / "state.json")
            except FileNotFoundError:
                return
            c.state = st
            if not st.running:
                return

        def mark_dead(s: State) -> None:
            if s.running and not process_alive(s.pid, s.pid_start):
                s.status = "exited"
                s.exit_code = s.exit_code or 137
                s.finished_at = s.finished_at or time.time()
                s.pid = 0
                s.error = s.error or "the process holding the container went away"

        try:
            self.update_state(c, mark_dead)
        except (NoSuchContainer, OSError):
            pass


# --- logs ----------------------------------------------------------------------------------------


class LogWriter:
    """Appends a container's output to its json.log, one line per record, as Docker does."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial.get(stream, b"") + data
        *lines, rest = buf.split(b"\n")
        # One timestamp per chunk read: a chunk's lines arrived together.
        tail = f',"stream":"{stream}","time":"{rfc3339(time.time())}"}}\n'
        records = [self._record(line + b"\n", tail) for line in lines]
        # Docker cuts records at 16 KiB even without a newline.
        while len(rest) >= 16384:
            records.append(self._record(rest[:16384], tail))
            rest = rest[16384:]
        self.partial[stream] = rest
        if records:
            data = "".join(records).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]

    @staticmethod
    def _record(data: bytes, tail: str) -> str:
        # The C string encoder of json: the same text as json.dumps, at a fraction of its cost
        # for the many short lines a chatty container writes.
        return '{"log":' + _encode_json_str(data.decode("utf-8", "replace")) + tail

    def close(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                tail = f',"stream":"{stream}","time":"{rfc3339(time.time())}"}}\n'
                os.write(self.fd, self._record(rest, tail).encode())
        self.partial = {}
        os.close(self.fd)


def read_log(path: Path) -> list[dict]:
    """The log records of a container, oldest first (a torn last line is skipped)."""
    out = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def parse_rfc3339(text: str) -> float:
    """Epoch seconds of a Docker timestamp (nanoseconds truncated to what a float keeps)."""
    from datetime import datetime

    if not text or text == ZERO_TIME:
        return 0.0
    main, _, frac = text.rstrip("Z").partition(".")
    t = datetime.fromisoformat(main + "+00:00").timestamp()
    return t + (float("0." + frac) if frac else 0.0)


# --- generated names -----------------------------------------------------------------------------

# Docker names unnamed containers adjective_surname (surnames of scientists and engineers).
_ADJECTIVES = """admiring adoring affectionate agitated amazing angry awesome beautiful blissful bold
boring brave busy charming clever compassionate competent condescending confident cool cranky
crazy dazzling determined distracted dreamy eager ecstatic elastic elated elegant eloquent epic
exciting fervent festive flamboyant focused friendly frosty funny gallant gifted goofy gracious
great happy hardcore heuristic hopeful hungry infallible inspiring intelligent interesting jolly
jovial keen kind laughing loving lucid magical modest musing mystifying naughty nervous nice nifty
nostalgic objective optimistic peaceful pedantic pensive practical priceless quirky quizzical
recursing relaxed reverent romantic sad serene sharp silly sleepy stoic strange stupefied
suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant vigorous wizardly
wonderful xenodochial youthful zealous zen""".split()

_SURNAMES = """agnesi albattani allen almeida archimedes ardinghelli aryabhata austin babbage banach
bardeen bartik bassi beaver bell benz bhabha bhaskara black blackburn blackwell bohr booth borg
bose bouman boyd brahmagupta brattain brown buck burnell cannon carson cartwright cerf chandrasekhar
chaplygin chatelet chatterjee chebyshev cohen chaum clarke colden cori cray curie darwin davinci
dewdney dhawan diffie dijkstra dirac driscoll dubinsky easley edison einstein elbakyan elgamal
elion ellis engelbart euclid euler faraday feistel fermat fermi feynman franklin gagarin galileo
galois ganguly gates gauss germain goldberg goldstine goldwasser golick goodall gould greider
grothendieck haibt hamilton haslett hawking hellman heisenberg hermann herschel hertz heyrovsky
hodgkin hofstadter hoover hopper hugle hypatia ishizaka jackson jang jemison jennings jepsen
johnson joliot jones kalam kapitsa kare keldysh keller kepler khayyam khorana kilby kirch knuth
kowalevski lalande lamarr lamport leakey leavitt lederberg lehmann lewin lichterman liskov
lovelace lumiere mahavira margulis matsumoto maxwell mayer mccarthy mcclintock mclaren mclean
mcnulty meitner mendel mendeleev meninsky merkle mestorf mirzakhani montalcini moore morse moser
murdock napier nash neumann newton nightingale nobel noether northcutt noyce panini pare pascal
pasteur payne perlman pike poincare poitras proskuriakova ptolemy raman ramanujan rhodes ride
ritchie robinson roentgen rosalind rubin saha sammet sanderson satoshi shamir shannon shaw
shirley shockley shtern sinoussi snyder solomon spence stonebraker sutherland swanson swartz
swirles taussig tesla tharp thompson torvalds tu turing varahamihira vaughan villani visvesvaraya
volhard wescoff wilbur wiles williams williamson wilson wing wozniak wright wu yalow yonath
zhukovsky""".split()


def generate_name(taken: set[str]) -> str:
    """A free adjective_surname name (with a digit suffix after many collisions, like Docker)."""

    def choice(words: list[str]) -> str:  # os.urandom: `random` costs ~1 ms to import
        return words[int.from_bytes(os.urandom(4), "big") % len(words)]

    for attempt in range(100):
        name = f"{choice(_ADJECTIVES)}_{choice(_SURNAMES)}"
        if name == "boring_wozniak":  # Steve Wozniak is not boring (Docker's rule)
            continue
        if attempt >= 10:
            name += str(os.urandom(1)[0] % 10)
        if name not in taken:
            return name
    return "container_" + os.urandom(4).hex()


# --- inspect -------------------------------------------------------------------------------------


def container_inspect_json(c: Container, lowers: list[str] | None = None) -> dict:
    """Docker's `inspect` view of a container record."""
    st = c.state
    cfg = dict(c.config)
    hc = {
        "Binds": None,
        "ContainerIDFile": "",
        "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "none",
        "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
        "AutoRemove": False,
        "VolumesFrom": None,
        "Privileged": False,
        "PublishAllPorts": False,
        "ReadonlyRootfs": False,
        **c.host_config,
    }
    return {
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": st.status,
            "Running": st.status in ("running", "paused"),
            "Paused": st.status == "paused",
            "Restarting": False,
            "OOMKilled": st.oom_killed,
            "Dead": st.status == "dead",
            "Pid": st.pid if st.running else 0,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": rfc3339(st.started_at),
            "FinishedAt": rfc3339(st.finished_at),
        },
        "Image": c.image_id,
        "ResolvConfPath": str(c.dir / "resolv.conf"),
        "HostnamePath": str(c.dir / "hostname"),
        "HostsPath": str(c.dir / "hosts"),
        "LogPath": str(c.log_path),
        "Name": "/" + c.name,
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": hc,
        "GraphDriver": {
            "Data": {
                "LowerDir": ":".join(lowers or []),
                "MergedDir": str(c.merged),
                "UpperDir": str(c.upper),
                "WorkDir": str(c.work),
            },
            "Name": "overlay2",
        },
        "Mounts": c.mounts,
        # Docker 1.x's names for the same facts (older scripts read these).
        "Volumes": {m["Destination"]: m["Source"] for m in c.mounts},
        "VolumesRW": {m["Destination"]: bool(m.get("RW", True)) for m in c.mounts},
        "Config": cfg,
        "NetworkSettings": {
            "Bridge": "",
            "PortMapping": None,
            "SandboxID": "",
            "HairpinMode": False,
            "Ports": {},
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "MacAddress": "",
            "Networks": {hc.get("NetworkMode", "none"): {"NetworkID": "", "IPAddress": ""}},
        },
    }


def inspect_container(store_root: Path | str, name: str) -> dict:
    """Docker's `inspect` JSON of the container `name` (id, prefix or name); NoSuchContainer."""
    c = ContainerStore(store_root).get(name)
    lowers: list[str] = []
    if c.diff_ids:
        try:
            from cache.store import Store

            lowers = [str(p) for p in Store(store_root).lower_links(c.diff_ids)]
        except Exception:  # noqa: BLE001 - layers may be gone; inspect still answers
            lowers = []
    return container_inspect_json(c, lowers)
