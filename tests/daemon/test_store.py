"""The LMDB store on real LMDB in tmp_path: round-trips, atomicity, growth, locking, crash safety."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dedupd.daemon.store import SCHEMA_VERSION, EncoderMismatch, EncodingRecord, FileRecord, QuarantineEntry, Store
from dedupd.daemon.store import schema as store_schema
from dedupd.daemon.store.lock import StoreLockedError
from dedupd.daemon.store.records import MAX_PATH_KEY
from dedupd.errors import StoreError

REPO = Path(__file__).resolve().parents[2]
U64 = (1 << 64) - 1


def rec(digest: bytes | None = b"d" * 16, *, inode: int = 1, state: str = "ok", error: str | None = None) -> FileRecord:
    return FileRecord(size=100, mtime_ns=1_700_000_000_123_456_789, dev=2049, inode=inode, digest=digest,
                      state=state, error=error, encoded_at=1.5)


def enc(phash: int = 1, *, vector: bytes | None = None) -> EncodingRecord:
    return EncodingRecord(640, 480, "JPEG", {"phash": phash, "dhash": U64}, "v1:decode=exact:exif=0",
                          vector, None if vector is None else "mobilenet_v3_small")


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path / "store") as s:
        yield s


def run_py(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE, **kw)


def check_consistent(store: Store) -> None:
    """Every ok record has its encoding, the digest index matches the records, no orphan encoding."""
    by_digest: dict[bytes, set[str]] = {}
    for path, record in store.iter_files():
        if record.digest is not None:
            by_digest.setdefault(record.digest, set()).add(path)
        if record.state == "ok":
            assert store.get_encoding(record.digest) is not None, path
    for digest, paths in by_digest.items():
        assert set(store.files_with_digest(digest)) == paths
    for digest, _ in store.iter_encodings():
        assert digest in by_digest, "orphan encoding"


# -- round trips -------------------------------------------------------------------------------

def test_file_and_encoding_round_trip(store: Store) -> None:
    vector = bytes(range(256)) * 4
    store.put_file("/srv/a.jpg", rec(), enc(U64, vector=vector))
    assert store.get_file("/srv/a.jpg") == rec()
    assert store.get_encoding(b"d" * 16) == enc(U64, vector=vector)
    assert store.get_file("/srv/b.jpg") is None and store.get_encoding(b"x") is None
    assert store.count_files() == 1 and store.files_with_digest(b"d" * 16) == ["/srv/a.jpg"]
    store.put_file("/srv/c.png", rec(None, state="unreadable", error="empty file (0 bytes)"))
    assert store.get_file("/srv/c.png").error == "empty file (0 bytes)"  # type: ignore[union-attr]


def test_non_utf8_names_round_trip(store: Store) -> None:
    raw = b"/tmp/x/\xff.jpg"
    error = f"cannot decode {os.fsdecode(raw)}: truncated"  # an error text quoting the odd name
    store.put_file(raw, rec(state="unreadable", error=error))
    assert store.get_file(raw) == store.get_file(os.fsdecode(raw)) == rec(state="unreadable", error=error)
    [(path, _)] = list(store.iter_files())
    assert os.fsencode(path) == raw
    assert [os.fsencode(p) for p in store.files_with_digest(b"d" * 16)] == [raw]
    qid = store.add_quarantine(QuarantineEntry(os.fsdecode(raw), "/q/\udcfe.jpg", "/k.jpg"))
    assert os.fsencode(store.get_quarantine(qid).origin) == raw  # type: ignore[union-attr]


def test_long_paths_are_keyed_by_hash_but_behave_the_same(store: Store) -> None:
    long_dir = "/data/" + "d" * 300 + "/" + "e" * 200
    assert len(long_dir) > MAX_PATH_KEY
    store.put_file(f"{long_dir}/a.jpg", rec(), enc())
    store.put_file("/data/short.jpg", rec(), None)
    assert store.get_file(f"{long_dir}/a.jpg") == rec()
    assert {p for p, _ in store.iter_files()} == {f"{long_dir}/a.jpg", "/data/short.jpg"}
    assert set(store.files_with_digest(b"d" * 16)) == {f"{long_dir}/a.jpg", "/data/short.jpg"}
    assert store.rename_prefix("/data", "/moved") == 2
    assert store.get_file(f"/moved{long_dir[5:]}/a.jpg") == rec()
    assert store.delete_file(f"/moved{long_dir[5:]}/a.jpg") and store.count_files() == 1
    check_consistent(store)


def test_paths_must_be_absolute(store: Store) -> None:
    with pytest.raises(ValueError, match="absolute"):
        store.put_file("rel/a.jpg", rec(), enc())


@pytest.mark.parametrize(
    "make",
    [
        lambda: FileRecord(1, 1, 1, 1, None, "ok"),
        lambda: FileRecord(1, 1, 1, 1, b"d", "gone"),
        lambda: FileRecord(1, 1, 1, 1, b"d" * 65),
        lambda: EncodingRecord(1, 1, None, {"phash": 1 << 64}),
        lambda: EncodingRecord(1, 1, None, {"phash": -1}),
        lambda: EncodingRecord(1, 1, None, {}, "", b"1234", None),
        lambda: EncodingRecord(1, 1, None, {}, "", b"123", "m"),
        lambda: QuarantineEntry("/a", "/b", "/c", state="lost"),
    ],
)
def test_records_validate(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_file_record_from_stat(tmp_path: Path) -> None:
    f = tmp_path / "a.jpg"
    f.write_bytes(b"abc")
    st = os.stat(f)
    record = FileRecord.from_stat(st, b"d" * 16)
    assert record.same_stat(st) and record.size == 3 and record.encoded_at > 0
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert not record.same_stat(os.stat(f))


# -- atomicity, reference counting -------------------------------------------------------------

def test_ok_record_without_encoding_is_refused_and_the_batch_rolls_back(store: Store) -> None:
    batch = [("/a/1.jpg", rec(b"1" * 16), enc()), ("/a/2.jpg", rec(b"2" * 16), None), ("/a/3.jpg", rec(b"3" * 16), enc())]
    with pytest.raises(StoreError, match="no encoding stored for its digest"):
        store.put_files(batch)
    assert store.count_files() == 0 and list(store.iter_encodings()) == []
    store.put_files([batch[0], ("/a/2.jpg", rec(b"2" * 16), enc()), batch[2]], deletes=["/a/none.jpg"])
    assert store.count_files() == 3 and len(list(store.iter_encodings())) == 3


def test_an_exception_mid_batch_writes_nothing(store: Store) -> None:
    def batch():
        yield "/a/1.jpg", rec(), enc()
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError):
        store.put_files(batch())
    assert store.count_files() == 0


def test_encodings_are_pruned_when_the_last_path_goes(store: Store) -> None:
    d = b"d" * 16
    store.put_files([("/a/1.jpg", rec(d), enc()), ("/a/2.jpg", rec(d), None)])
    assert store.delete_file("/a/1.jpg") and store.get_encoding(d) is not None
    assert not store.delete_file("/a/1.jpg")
    assert store.delete_file("/a/2.jpg") and store.get_encoding(d) is None
    # overwriting a path with new content prunes the old encoding, keeps shared ones
    store.put_files([("/a/1.jpg", rec(b"x" * 16), enc()), ("/a/2.jpg", rec(b"y" * 16), enc())])
    store.put_file("/a/1.jpg", rec(b"y" * 16))
    assert store.get_encoding(b"x" * 16) is None and store.files_with_digest(b"y" * 16) == ["/a/1.jpg", "/a/2.jpg"]
    # an unreadable record may keep its digest without an encoding (same bytes fail the same way)
    store.put_file("/a/2.jpg", rec(b"z" * 16, state="unreadable", error="corrupt"))
    assert store.files_with_digest(b"z" * 16) == ["/a/2.jpg"]
    check_consistent(store)


def test_content_handed_over_within_one_batch_keeps_its_encoding(store: Store) -> None:
    """a.jpg (the only file with content D) becomes E while a new b.jpg gets D, in one batch."""
    d, e = b"d" * 16, b"e" * 16
    store.put_file("/r/a.jpg", rec(d), enc(1))
    store.put_files([("/r/a.jpg", rec(e), enc(2)), ("/r/b.jpg", rec(d, inode=2), None)])
    assert store.get_encoding(d) == enc(1) and store.get_encoding(e) == enc(2)
    assert store.files_with_digest(d) == ["/r/b.jpg"]
    # the same hand-over through a delete in the same batch
    store.put_files([("/r/c.jpg", rec(e, inode=3), None)], deletes=["/r/a.jpg"])
    assert store.get_encoding(e) == enc(2)
    check_consistent(store)


def test_folder_moved_over_a_folder_keeps_contents_that_move_in(store: Store) -> None:
    """/a/1 (content X) replaces /b/1 (content Y) while /a/2 (content Y) moves to /b/2."""
    x, y = b"x" * 16, b"y" * 16
    store.put_files([("/a/1.jpg", rec(x), enc(1)), ("/b/1.jpg", rec(y, inode=2), enc(2))])
    store.put_files([("/a/2.jpg", rec(y, inode=3), None)], deletes=["/b/1.jpg"])
    store.put_file("/b/1.jpg", rec(y, inode=2))
    assert store.rename_prefix("/a", "/b") == 2
    assert store.get_encoding(y) == enc(2) and store.files_with_digest(y) == ["/b/2.jpg"]
    check_consistent(store)


def test_put_encoding_replaces_only_referenced_digests(store: Store) -> None:
    store.put_file("/a/1.jpg", rec(), enc(1))
    store.put_encoding(b"d" * 16, enc(2))
    assert store.get_encoding(b"d" * 16) == enc(2)
    with pytest.raises(StoreError, match="no file references"):
        store.put_encoding(b"n" * 16, enc())


def test_rename_prefix_moves_a_directory_in_one_transaction(store: Store) -> None:
    paths = ["/r/a/1.jpg", "/r/a/sub/2.jpg", "/r/a-b/3.jpg", "/r/ab/4.jpg", "/r/a.jpg", "/r/b/5.jpg"]
    store.put_files([(p, rec(p.encode()[-8:].rjust(16, b"_")), enc()) for p in paths])
    assert store.rename_prefix("/r/a/", "/r/z") == 2
    assert {p for p, _ in store.iter_files()} == {"/r/z/1.jpg", "/r/z/sub/2.jpg", "/r/a-b/3.jpg", "/r/ab/4.jpg",
                                                  "/r/a.jpg", "/r/b/5.jpg"}
    assert store.files_with_digest(b"/a/1.jpg".rjust(16, b"_")) == ["/r/z/1.jpg"]
    assert store.rename_prefix("/r/a.jpg", "/r/b.jpg") == 1  # a single file works too
    assert store.rename_prefix("/r/z", "/r/z/inner") == 2  # into its own subdirectory
    assert store.get_file("/r/z/inner/sub/2.jpg") is not None
    assert store.rename_prefix("/nowhere", "/x") == 0 and store.rename_prefix("/r", "/r") == 0
    assert store.rename_prefix("/r/z/inner", "/") == 2 and store.get_file("/sub/2.jpg") is not None
    check_consistent(store)


def test_rename_onto_an_existing_record_replaces_it(store: Store) -> None:
    store.put_files([("/a/1.jpg", rec(b"1" * 16), enc()), ("/b/1.jpg", rec(b"2" * 16), enc())])
    assert store.rename_prefix("/a", "/b") == 1
    assert store.get_file("/b/1.jpg").digest == b"1" * 16  # type: ignore[union-attr]
    assert store.get_encoding(b"2" * 16) is None and store.count_files() == 1
    check_consistent(store)


# -- map growth, iteration, threads ------------------------------------------------------------

def test_map_grows_from_a_tiny_initial_size(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", map_size=32 << 10) as s:
        s.put_file("/big.jpg", rec(b"B" * 16), enc(vector=os.urandom(1 << 20)))  # one value 32x the map
        for i in range(30):
            s.put_files([(f"/d/{i}/{j}.jpg", rec(os.urandom(16)), enc(vector=os.urandom(2048))) for j in range(50)])
        stats = s.stats()
        assert stats.map_size >= 4 << 20 and stats.files == 1501 and stats.encodings == 1501
        assert stats.disk_bytes > 3 << 20 and stats.quarantine == 0
        assert len(s.get_encoding(b"B" * 16).cnn_vector) == 1 << 20  # type: ignore[union-attr]
        check_consistent(s)


def test_iteration_is_chunked_and_survives_writes(store: Store) -> None:
    store.put_files([(f"/i/{n:05d}.jpg", rec(b"%016d" % n), enc()) for n in range(1300)])
    seen = []
    for path, _ in store.iter_files():
        seen.append(path)
        if len(seen) % 400 == 0:  # a write (and possibly a map resize) between chunks must not deadlock
            store.put_file(f"/j/{len(seen)}.jpg", rec(b"j" * 16), enc())
    assert seen[:1300] == [f"/i/{n:05d}.jpg" for n in range(1300)]
    assert len(list(store.iter_encodings())) == 1301


def test_concurrent_readers_while_the_map_grows(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", map_size=32 << 10) as s:
        s.put_file("/seed.jpg", rec(b"s" * 16), enc())
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader() -> None:
            try:
                while not stop.wait(0.001):  # a pause, as real readers have: busy loops of C calls
                    assert s.get_file("/seed.jpg") == rec(b"s" * 16)  # that drop the GIL starve
                    sum(1 for _ in s.iter_files())  # the writer for seconds (CPython convoy effect)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for i in range(40):
                s.put_files([(f"/w/{i}/{j}.jpg", rec(os.urandom(16)), enc(vector=os.urandom(4096))) for j in range(20)])
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert not errors and s.count_files() == 801 and s.stats().map_size > 32 << 10


# -- quarantine manifest and metadata ----------------------------------------------------------

def test_quarantine_manifest(tmp_path: Path) -> None:
    entry = QuarantineEntry("/r/dup.jpg", "/q/r/dup.jpg", "/r/orig.jpg", b"d" * 16, "phash distance 2")
    with Store.open(tmp_path / "s") as s:
        assert [s.add_quarantine(entry) for _ in range(3)] == [1, 2, 3]
        first = s.get_quarantine(1)
        assert first is not None and first.id == 1 and first.state == "pending" and first.created_at > 0
        moved = s.update_quarantine(2, state="moved")
        assert moved.state == "moved" and moved.updated_at >= moved.created_at
        assert s.get_quarantine(2) == moved
        with pytest.raises(KeyError):
            s.update_quarantine(9, state="moved")
        with pytest.raises(ValueError):
            s.update_quarantine(1, state="deleted")
        with pytest.raises(TypeError):
            s.update_quarantine(1, id=5)
        assert [e.id for e in s.iter_quarantine()] == [1, 2, 3]
        assert [e.id for e in s.iter_quarantine("pending")] == [1, 3]
    with Store.open(tmp_path / "s") as s:  # ids keep increasing after a reopen
        assert s.add_quarantine(dataclasses.replace(entry, state="failed")) == 4
        assert s.stats().quarantine == 4 and s.get_quarantine(99) is None


def test_encoder_mismatch(store: Store) -> None:
    params = "v1:decode=exact:exif=0"
    assert not store.encoder_mismatch(["phash"], None, hash_params=params).any  # empty store
    store.put_file("/a.jpg", rec(), enc())
    store.set_encoders(["phash", "dhash"], None, hash_params=params)
    assert store.encoder_mismatch(["phash"], None, hash_params=params) == EncoderMismatch(frozenset(), False, 1)
    assert store.encoder_mismatch(["phash", "whash"], None, hash_params=params).hash_methods == {"whash"}
    changed = store.encoder_mismatch(["phash", "dhash"], "effnet", hash_params="v1:decode=fast:exif=0")
    assert changed.hash_methods == {"phash", "dhash"} and changed.cnn and changed.any
    assert store.meta()["hash_methods"] == ["dhash", "phash"] and store.meta()["schema_version"] == SCHEMA_VERSION
    # per record: what a stored encoding lacks for a config
    assert enc().stale(["phash", "whash"], "v1:decode=exact:exif=0", None) == (frozenset({"whash"}), False)
    assert enc().stale(["phash"], "v2", "m") == (frozenset({"phash"}), True)
    assert enc(vector=b"\0" * 8).stale([], "v1:decode=exact:exif=0", "mobilenet_v3_small") == (frozenset(), False)


# -- schema, read-only, lifecycle --------------------------------------------------------------

def test_newer_schema_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_schema, "SCHEMA_VERSION", 7)
    Store.open(tmp_path / "s").close()
    monkeypatch.setattr(store_schema, "SCHEMA_VERSION", 3)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="has schema version 7, but this dedupd only understands up to 3"):
            Store.open(tmp_path / "s", readonly=readonly)
    assert not (tmp_path / "s" / "dedupd.lock").read_text()  # the failed open released its lock


def test_older_schema_is_migrated_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Store.open(tmp_path / "s") as s:
        s.put_file("/a.jpg", rec(), enc())
    monkeypatch.setattr(store_schema, "SCHEMA_VERSION", 4)
    with pytest.raises(StoreError, match="no migration from store schema 3 to 4"):
        Store.open(tmp_path / "s")
    with pytest.raises(StoreError, match="needs migrating"):
        Store.open(tmp_path / "s", readonly=True)
    calls = []
    monkeypatch.setattr(store_schema, "MIGRATIONS", {3: lambda txn, dbs: calls.append(dbs["files"])})
    with Store.open(tmp_path / "s") as s:
        assert len(calls) == 1 and s.meta()["schema_version"] == 4 and s.get_file("/a.jpg") == rec()
    with Store.open(tmp_path / "s") as s:
        assert len(calls) == 1


def test_read_only_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no dedupd store in"):
        Store.open(tmp_path / "missing", readonly=True)
    assert not (tmp_path / "missing").exists()
    with Store.open(tmp_path / "s") as s:
        s.put_file("/a.jpg", rec(), enc())
    with Store.open(tmp_path / "s", readonly=True) as r:
        assert r.get_file("/a.jpg") == rec() and r.readonly
        with pytest.raises(StoreError, match="read-only"):
            r.delete_file("/a.jpg")


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "s")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get_file("/a.jpg")
    with pytest.raises(StoreError, match="closed"):
        s.delete_file("/a.jpg")
    Store.open(tmp_path / "s").close()  # the lock was released


def test_a_second_writer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s"):
        with pytest.raises(StoreLockedError) as info:
            Store.open(tmp_path / "s")
        assert info.value.pid == os.getpid()


# -- real processes ----------------------------------------------------------------------------

HOLDER = """
    import sys
    from dedupd.daemon.store import Store, FileRecord, EncodingRecord
    s = Store.open(sys.argv[1])
    s.put_file("/held.jpg", FileRecord(1, 2, 3, 4, b"h" * 16), EncodingRecord(1, 1, "PNG", {"phash": 5}))
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_lock_contention_between_processes(tmp_path: Path) -> None:
    store_dir = tmp_path / "s"
    with run_py(HOLDER, str(store_dir)) as proc:
        try:
            assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
            with pytest.raises(StoreLockedError) as info:
                Store.open(store_dir)
            assert info.value.pid == proc.pid
            assert f"in use by process {proc.pid}: a running dedupd daemon owns it" in str(info.value)
            with Store.open(store_dir, readonly=True) as reader:  # readers need no lock
                assert reader.get_file("/held.jpg") is not None
        finally:
            proc.send_signal(signal.SIGKILL)  # the kernel drops the flock of a killed holder
            proc.wait(timeout=30)
    with Store.open(store_dir) as s:
        assert s.count_files() == 1


WRITER = """
    import os, sys
    from dedupd.daemon.store import Store, FileRecord, EncodingRecord, QuarantineEntry
    store_dir, batch, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = Store.open(store_dir, map_size=64 << 10)
    shared = b"shared-content-1"
    while True:
        items = []
        for j in range(size):
            digest = shared if j % 10 == 0 else os.urandom(16)
            record = FileRecord(j, batch, 1, j, digest, encoded_at=float(batch))
            items.append((f"/r/b{batch:06d}/f{j:03d}.jpg", record,
                          EncodingRecord(8, 8, "PNG", {"phash": j}, "v1", os.urandom(1024), "m")))
        old = [f"/r/b{batch - 3:06d}/f{j:03d}.jpg" for j in range(size)]
        s.put_files(items, deletes=old)
        qid = s.add_quarantine(QuarantineEntry(f"/r/{batch}", f"/q/{batch}", "/r/keep"))
        s.update_quarantine(qid, state="moved")
        print(batch, flush=True)
        batch += 1
"""


def test_kill_9_during_writes_leaves_a_consistent_store(tmp_path: Path) -> None:
    store_dir, size, rng = tmp_path / "s", 40, random.Random(3)
    next_batch, may_pend = 0, set()
    for _ in range(6):
        with run_py(WRITER, str(store_dir), str(next_batch), str(size)) as proc:
            committed = -1
            for _ in range(rng.randint(3, 12)):
                committed = int(proc.stdout.readline())  # type: ignore[union-attr]
            time.sleep(rng.random() * 0.02)  # land anywhere in the next batch, map growth included
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        with Store.open(store_dir) as s:
            assert s.stats().map_size > 64 << 10
            check_consistent(s)
            batches: dict[str, int] = {}
            for path, _ in s.iter_files():
                batches[path.split("/")[2]] = batches.get(path.split("/")[2], 0) + 1
            assert set(batches.values()) == {size}, "a batch was half written"
            last = max(int(b[1:]) for b in batches)
            assert last >= committed, "an acknowledged batch was lost"
            # each batch deletes the one three before it, in the same transaction
            assert sorted(batches) == [f"b{b:06d}" for b in range(max(0, last - 2), last + 1)]
            entries = list(s.iter_quarantine())
            assert [e.id for e in entries] == list(range(1, len(entries) + 1))
            may_pend.add(entries[-1].id)  # a crash can only interrupt the newest entry's move
            assert {e.id for e in entries if e.state == "pending"} <= may_pend
            next_batch = last + 1


GROWER = """
    import os, sys
    from dedupd.daemon.store import Store, FileRecord, EncodingRecord
    with Store.open(sys.argv[1], map_size=64 << 10) as s:
        for i in range(40):
            s.put_files([(f"/w/{i}/{j}.jpg", FileRecord(1, 1, 1, j, os.urandom(16)),
                          EncodingRecord(1, 1, None, {}, "", os.urandom(4096), "m")) for j in range(20)])
"""


def test_a_reader_adopts_a_map_grown_by_the_writer_process(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s", map_size=64 << 10) as s:
        s.put_file("/a.jpg", rec(), enc())
    with Store.open(tmp_path / "s", readonly=True, map_size=64 << 10) as reader:
        assert reader.count_files() == 1
        with run_py(GROWER, str(tmp_path / "s")) as proc:
            proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert reader.count_files() == 801 and sum(1 for _ in reader.iter_encodings()) == 801
        assert reader.stats().map_size > 1 << 20


def test_durability_settings_are_kept(store: Store) -> None:
    flags = store._env.flags()  # the manifest must be on disk before the move it announces
    assert flags["sync"] and flags["metasync"] and not flags["map_async"]


def test_a_file_in_place_of_the_store_dir(tmp_path: Path) -> None:
    (tmp_path / "s").write_bytes(b"not a directory")
    with pytest.raises(StoreError, match="cannot create store_dir"):
        Store.open(tmp_path / "s")
    with pytest.raises(StoreError, match="no dedupd store"):
        Store.open(tmp_path / "s", readonly=True)
