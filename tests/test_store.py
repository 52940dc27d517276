"""The store core: layout, verified blobs, layer ingest, atomicity, the writer lock, concurrency."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from store_helpers import make_tar, simple_config, snapshot

from cache.blobs import VerifyingReader
from cache.digest import EMPTY_TAR_DIFF_ID, DiffID, chain_ids, sha256_bytes
from cache.errors import (
    BadDigest,
    BadLayerTar,
    BlobNotFound,
    DigestMismatch,
    InvalidImage,
    LayerNotFound,
    PydockError,
)
from cache.locking import StoreLocked
from cache.prune import prune
from cache.staging import staging_name
from cache.store import Store

# ---- layout ---------------------------------------------------------------------------------


def test_open_creates_oci_layout(store: Store, store_root: Path):
    assert json.loads((store_root / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store_root / "index.json").read_bytes())
    assert index["schemaVersion"] == 2 and index["manifests"] == []
    for sub in ("blobs/sha256", "layers", "l", "tmp", "buildcache", "containers", "volumes"):
        assert (store_root / sub).is_dir(), sub
    assert (store_root / "lock").is_file()
    # Opening again changes nothing.
    before = snapshot(store_root)
    Store.open(store_root)
    assert snapshot(store_root) == before


def test_atomic_write_and_tmp_dir(store: Store, store_root: Path):
    target = store_root / "buildcache" / "x.json"
    store.atomic_write(target, b"one")
    store.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    with store.tmp_dir() as d:
        assert d.parent == store_root / "tmp"
        (d / "f").write_bytes(b"x")
        os.mkdir(d / "ro", 0o500)
        (d / "ro2").mkdir()
        (d / "ro2" / "g").write_bytes(b"y")
        os.chmod(d / "ro2", 0o500)
    assert os.listdir(store_root / "tmp") == []


def test_stale_staging_of_dead_process_is_cleaned(store: Store, store_root: Path):
    dead = store_root / "tmp" / "unpack-999999999-abcdef"
    dead.mkdir()
    (dead / "half").write_bytes(b"x")
    live = store_root / "tmp" / staging_name("layer")
    live.write_bytes(b"mine")
    removed = store.clean_tmp()
    assert removed == [dead.name]
    assert live.exists() and not dead.exists()


# ---- blobs ----------------------------------------------------------------------------------


def test_put_blob_bytes_and_stream(store: Store):
    d1 = store.put_blob(b"hello")
    assert d1 == sha256_bytes(b"hello")
    assert store.has_blob(d1)
    assert store.blob_path(d1).read_bytes() == b"hello"
    assert stat.S_IMODE(store.blob_path(d1).stat().st_mode) == 0o444
    d2 = store.put_blob(io.BytesIO(b"x" * 3_000_000), expected=sha256_bytes(b"x" * 3_000_000))
    assert store.blob_size(d2) == 3_000_000
    # Idempotent.
    assert store.put_blob(b"hello") == d1
    assert store.read_blob(d1) == b"hello"


def test_put_blob_digest_mismatch_stores_nothing(store: Store, store_root: Path):
    before = snapshot(store_root)
    with pytest.raises(DigestMismatch):
        store.put_blob(b"hello", expected=sha256_bytes(b"other"))
    assert snapshot(store_root) == before


def test_bad_digest_strings_are_refused(store: Store):
    for bad in ["sha256:ABC", "md5:" + "0" * 32, "sha256:" + "A" * 64, "../../etc/passwd", ""]:
        with pytest.raises(BadDigest):
            store.blob_path(bad)


def test_missing_blob(store: Store):
    with pytest.raises(BlobNotFound):
        store.open_blob(sha256_bytes(b"nope"))
    with pytest.raises(BlobNotFound):
        store.read_blob(sha256_bytes(b"nope"))


def _damage(path: Path, data: bytes) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_corrupt_blob_detected_on_read(store: Store):
    d = store.put_blob(b"A" * 100_000)
    _damage(store.blob_path(d), b"A" * 99_999 + b"B")
    with store.open_blob(d) as r:
        with pytest.raises(DigestMismatch, match="corrupt"):
            while r.read(4096):
                pass
    with pytest.raises(DigestMismatch):
        store.read_blob(d)


def test_truncated_blob_detected_on_read(store: Store):
    d = store.put_blob(b"A" * 100_000)
    _damage(store.blob_path(d), b"A" * 50_000)
    with store.open_blob(d) as r, pytest.raises(DigestMismatch):
        r.read()


def test_reader_verifies_good_blob(store: Store):
    d = store.put_blob(b"abc" * 1000)
    with store.open_blob(d) as r:
        assert isinstance(r, VerifyingReader)
        assert r.read() == b"abc" * 1000
        assert r.verified


def test_put_blob_repairs_a_truncated_copy(store: Store):
    d = store.put_blob(b"Z" * 1000)
    _damage(store.blob_path(d), b"Z" * 10)
    store.put_blob(b"Z" * 1000)
    assert store.read_blob(d) == b"Z" * 1000


# ---- layers ---------------------------------------------------------------------------------


def test_add_layer_digest_is_diff_id(store: Store):
    data = make_tar({"a.txt": b"hello", "dir/b": b"x" * 10000})
    info = store.add_layer(io.BytesIO(data))
    assert info.diff_id == sha256_bytes(data)
    assert isinstance(info.diff_id, DiffID)
    assert info.size == len(data)
    with store.layer_tar(info.diff_id) as r:
        assert r.read() == data


def test_add_empty_layer(store: Store):
    info = store.add_layer(io.BytesIO(bytes(1024)))
    assert info.diff_id == EMPTY_TAR_DIFF_ID


@pytest.mark.parametrize(
    "case",
    ["truncated_member", "truncated_end", "garbage", "bad_header_mid", "empty", "trailing_junk"],
)
def test_bad_layer_is_refused_and_store_unchanged(store: Store, store_root: Path, case: str):
    good = make_tar({"a": b"1" * 3000, "b": b"2" * 100})
    with tarfile.open(fileobj=io.BytesIO(good)) as tf:
        b_header = tf.getmember("b").offset
    data = {
        "truncated_member": good[:1500],
        "truncated_end": good[: b_header + 1024],  # both members, no end blocks
        "garbage": os.urandom(4096),
        "bad_header_mid": good[:b_header] + b"\xff" * 512 + good[b_header + 512 :],
        "empty": b"",
        "trailing_junk": good + b"junk",
    }[case]
    store.add_layer(io.BytesIO(make_tar({"keep": b"k"})))
    before = snapshot(store_root)
    with pytest.raises(BadLayerTar):
        store.add_layer(io.BytesIO(data))
    assert snapshot(store_root) == before


@pytest.mark.parametrize(
    "files,links",
    [
        ({"../escape": b"x"}, None),
        ({"/etc/passwd": b"x"}, None),
        ({"a/../../b": b"x"}, None),
        ({"a": b"x"}, {"b": "../../etc/shadow"}),
        ({"a": b"x"}, {"b": "/etc/shadow"}),
    ],
)
def test_escaping_layer_members_are_refused(store: Store, store_root: Path, files, links):
    before = snapshot(store_root)
    with pytest.raises(BadLayerTar, match="leaves the layer root"):
        store.add_layer(io.BytesIO(make_tar(files, links=links)))
    assert snapshot(store_root) == before


def test_failed_stream_leaves_store_unchanged(store: Store, store_root: Path):
    class Boom(io.RawIOBase):
        def __init__(self) -> None:
            self.n = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            self.n += 1
            if self.n > 3:
                raise OSError("network went away")
            b[: len(b)] = b"\0" * len(b)
            return len(b)

    before = snapshot(store_root)
    with pytest.raises(OSError, match="network"):
        store.add_layer(Boom())
    assert snapshot(store_root) == before


def test_chain_ids():
    a, b, c = (sha256_bytes(x) for x in (b"a", b"b", b"c"))
    ids = chain_ids([a, b, c])
    assert ids[0] == a
    assert ids[1] == sha256_bytes(f"{a} {b}".encode())
    assert ids[2] == sha256_bytes(f"{ids[1]} {c}".encode())


def test_missing_layer(store: Store):
    with pytest.raises(LayerNotFound):
        store.layer_tar(sha256_bytes(b"nope"))
    with pytest.raises(LayerNotFound):
        store.unpacked_lowers([sha256_bytes(b"nope")])


# ---- write_image refusals leave the store unchanged ------------------------------------------


def test_write_image_refusals(store: Store, store_root: Path):
    info = store.add_layer(io.BytesIO(make_tar({"a": b"a"})))
    before = snapshot(store_root)
    with pytest.raises(InvalidImage, match="history"):
        store.write_image(simple_config(2), [info.diff_id], tags=["x"])
    with pytest.raises(LayerNotFound):
        store.write_image(simple_config(1), [sha256_bytes(b"absent")], tags=["x"])
    with pytest.raises(PydockError):
        store.write_image(simple_config(1), [info.diff_id], tags=["Bad:Name:x"])
    assert snapshot(store_root) == before


# ---- lock -----------------------------------------------------------------------------------


def _try_lock(root: str, q) -> None:  # noqa: ANN001
    try:
        with Store(root).lock(blocking=False):
            q.put("got it")
    except StoreLocked:
        q.put("locked")


def test_lock_is_reentrant_and_excludes_other_processes(store: Store, store_root: Path):
    ctx = multiprocessing.get_context("spawn")
    with store.lock():
        with store.lock(), Store(store_root).lock():
            pass  # re-entrant, also through another Store of the same root
        q = ctx.Queue()
        p = ctx.Process(target=_try_lock, args=(str(store_root), q))
        p.start()
        p.join(60)
        assert q.get(timeout=10) == "locked"
    q = ctx.Queue()
    p = ctx.Process(target=_try_lock, args=(str(store_root), q))
    p.start()
    p.join(60)
    assert q.get(timeout=10) == "got it"


# ---- concurrent writers ---------------------------------------------------------------------


def _writer(root: str, who: str, n: int) -> None:
    store = Store.open(root)
    for i in range(n):
        info = store.add_layer(io.BytesIO(make_tar({f"{who}-{i}": who.encode() * (i + 1)})))
        store.write_image(simple_config(1), [info.diff_id], tags=[f"{who}:{i}"])


def test_concurrent_writers_keep_every_image(store: Store, store_root: Path):
    ctx = multiprocessing.get_context("fork")
    n = 10
    procs = [ctx.Process(target=_writer, args=(str(store_root), who, n)) for who in ("aa", "bb")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    tags = {t for img in store.list_images() for t in img.tags}
    assert tags == {f"{who}:{i}" for who in ("aa", "bb") for i in range(n)}
    assert os.listdir(store_root / "tmp") == []


# ---- leases: what live processes added is a GC root ------------------------------------------


def _add_and_wait(root: str, started, release) -> None:  # noqa: ANN001
    store = Store.open(root)
    with store.lease():
        info = store.add_layer(io.BytesIO(make_tar({"leased": b"l"})))
        store.unpacked_lowers([info.diff_id])
        started.set()
        release.wait(60)


def test_leases_protect_work_of_live_processes(store: Store, store_root: Path):
    ctx = multiprocessing.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_add_and_wait, args=(str(store_root), started, release))
    p.start()
    try:
        assert started.wait(60)
        diff_id = sha256_bytes(make_tar({"leased": b"l"}))
        with store.lock():
            digests, chains = store.leased()
        assert diff_id in digests
        assert chain_ids([diff_id])[0] in chains
        # A prune meanwhile keeps the live build's layer and its unpacked dir.
        prune(store)
        assert store.has_blob(diff_id)
        assert (store_root / "layers" / chain_ids([diff_id])[0].hex / "diff").is_dir()
    finally:
        release.set()
        p.join(60)
    with store.lock():
        assert store.leased() == (set(), set())
    assert os.listdir(store_root / "leases") == []
    # Once the process is gone its work is garbage like any other.
    prune(store)
    assert not store.has_blob(diff_id)
    assert store.all_unpacked() == []


def test_no_lease_outside_a_lease_block(store: Store, store_root: Path):
    store.add_layer(io.BytesIO(make_tar({"a": b"a"})))
    assert os.listdir(store_root / "leases") == []
    with store.lease():
        with store.lease():
            info = store.add_layer(io.BytesIO(make_tar({"b": b"b"})))
        assert store.leased(include_self=True)[0] == {info.diff_id}
    assert store.leased(include_self=True) == (set(), set())
    assert os.listdir(store_root / "leases") == []


@pytest.mark.parametrize("key", ["trusted.overlay.opaque", "user.overlay.whiteout", "trusted.x"])
def test_forbidden_xattrs_are_refused_on_ingest(store: Store, store_root: Path, key: str):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("d")
        ti.type = tarfile.DIRTYPE
        ti.pax_headers = {f"SCHILY.xattr.{key}": "y"}
        tf.addfile(ti)
    before = snapshot(store_root)
    with pytest.raises(BadLayerTar, match="xattr"):
        store.add_layer(io.BytesIO(buf.getvalue()))
    assert snapshot(store_root) == before


def test_readers_never_see_a_half_written_store(store: Store, store_root: Path):
    ctx = multiprocessing.get_context("fork")
    writer = ctx.Process(target=_writer, args=(str(store_root), "rd", 15))
    writer.start()
    seen = 0
    reader = Store(store_root)
    while writer.is_alive() or seen == 0:
        images = reader.list_images()  # must never raise while the writer works
        for img in images:
            assert reader.get_image(img.tags[0]).image_id == img.image_id
            hash(img)
        seen = max(seen, len(images))
    writer.join(60)
    assert writer.exitcode == 0
    assert len(reader.list_images()) == 15


def _sleep_in_child(q) -> None:  # noqa: ANN001
    q.put("started")
    time.sleep(30)


def test_forked_child_does_not_keep_the_lock(store: Store, store_root: Path):
    # A process forked while the lock is held (a container supervisor, say) must not keep
    # the parent's flock alive after the parent releases it.
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    with store.lock():
        child = ctx.Process(target=_sleep_in_child, args=(q,))
        child.start()
        assert q.get(timeout=30) == "started"
    try:
        spawn = multiprocessing.get_context("spawn")
        q2 = spawn.Queue()
        p = spawn.Process(target=_try_lock, args=(str(store_root), q2))
        p.start()
        p.join(60)
        assert q2.get(timeout=10) == "got it"
    finally:
        child.kill()
        child.join()


# ---- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 4 MiB tmpfs (unmounted afterwards, also on failure)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_disk_is_a_clean_error_and_a_clean_store(small_fs: Path):
    store = Store.open(small_fs / "root")
    fits = make_tar({"f": os.urandom(1_500_000)})
    info = store.add_layer(io.BytesIO(fits))
    before = snapshot(store.root)
    with pytest.raises(PydockError, match="No space left"):
        store.put_blob(os.urandom(3_000_000))
    with pytest.raises(PydockError, match="No space left"):
        store.add_layer(io.BytesIO(make_tar({"g": os.urandom(3_000_000)})))
    assert snapshot(store.root) == before
    # Unpacking the 1.5 MB layer fits; after one more blob, no further unpack does.
    store.unpacked_lowers([info.diff_id])
    other = store.add_layer(io.BytesIO(make_tar({"h": os.urandom(900_000)})))
    before = snapshot(store.root)
    with pytest.raises(PydockError):
        store.unpacked_lowers([other.diff_id, info.diff_id, other.diff_id])
    assert snapshot(store.root) == before


def test_symlinked_blob_is_not_followed(store: Store, tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"host file")
    d = sha256_bytes(b"host file")
    os.symlink(secret, store.blob_path(d))
    assert not store.has_blob(d)
    with pytest.raises(DigestMismatch, match="symlink"):
        store.read_blob(d)
    with pytest.raises(DigestMismatch, match="symlink"):
        store.open_blob(d)
    # Storing the real content replaces the symlink.
    store.put_blob(b"host file")
    assert store.has_blob(d) and store.read_blob(d) == b"host file"
    assert secret.read_bytes() == b"host file" and not store.blob_path(d).is_symlink()


def _churn(root: str, n: int, first) -> None:  # noqa: ANN001
    store = Store.open(root)
    for i in range(n):
        info = store.add_layer(io.BytesIO(make_tar({"churn": os.urandom(64) + bytes([i])})))
        store.write_image(simple_config(1), [info.diff_id], tags=["churn"])
        first.set()
        prune(store)  # removes the image the tag left behind, blobs and all


def test_readers_survive_a_concurrent_prune(store: Store, store_root: Path):
    ctx = multiprocessing.get_context("fork")
    first = ctx.Event()
    p = ctx.Process(target=_churn, args=(str(store_root), 10, first))
    p.start()
    assert first.wait(60)
    reads = 0
    while p.is_alive():
        reader = Store(store_root)  # no cache of parsed blobs: every read goes to disk
        assert [img.tags for img in reader.list_images()] in (
            [("churn:latest",)],
            [(), ("churn:latest",)],
        )
        assert reader.get_image("churn").tags == ("churn:latest",)
        reads += 1
    p.join(60)
    assert p.exitcode == 0 and reads > 0


# ---- a user without write access reads, and gets one line when writing -----------------------


@pytest.fixture
def public_dir():
    d = Path(tempfile.mkdtemp(prefix="pydock-public-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv not installed")
def test_unprivileged_reader(busybox_root: Path, public_dir: Path):
    from conftest import copy_store

    store = copy_store(busybox_root, public_dir / "root")
    (store.tmp_path / "write-999999999-leftover").write_bytes(b"x")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # nobody runs a copy of the code from the public folder: the checkout itself may sit
    # below a folder only root can enter (a fresh clone in `mktemp -d`, /root).
    repo = Path(__file__).resolve().parent.parent
    code = public_dir / "code"
    for pkg in ("cache", "executor", "builder", "frontend"):
        shutil.copytree(repo / pkg, code / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [public_dir, *code.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    probe = subprocess.run([*as_nobody, sys.executable, "-c", "pass"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run {sys.executable}: {probe.stderr.decode()[-200:]}")
    source = "from cache.store import Store; print(Store.open(sys.argv[1]).get_image('busybox').short_id)"
    p = subprocess.run(
        [*as_nobody, sys.executable, "-c", "import sys; " + source, str(store.root)],
        capture_output=True,
        text=True,
        cwd=code,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == store.get_image("busybox").short_id
    p = subprocess.run(
        [
            *as_nobody,
            sys.executable,
            "-m",
            "frontend.pydock",
            "--root",
            str(store.root),
            "tag",
            "busybox",
            "x",
        ],
        capture_output=True,
        text=True,
        cwd=code,
    )
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "permission denied" in p.stderr


def test_threads_share_a_store(store: Store, store_root: Path):
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> str:
        info = store.add_layer(io.BytesIO(make_tar({f"t{i}": b"%d" % i})))
        store.unpacked_lowers([info.diff_id])
        return store.write_image(simple_config(1), [info.diff_id], tags=[f"t:{i}"]).image_id

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(work, range(12)))
    assert len(set(ids)) == 12
    assert {t for img in store.list_images() for t in img.tags} == {f"t:{i}" for i in range(12)}
    assert store.verify() == []
    assert os.listdir(store_root / "tmp") == []
