"""The change journal (``dedupd.daemon.store.journal``) and its replay onto an index snapshot: after
any sequence of commits since the snapshot, adopting it and replaying the journal gives the index a
load of the store gives; a journal that does not reach back, a change it cannot replay or too many
changes mean the store load. Real LMDB stores."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import numpy as np
import pytest

from dedupd.daemon import snapshot
from dedupd.daemon.index import MatchIndex
from dedupd.daemon.loader import load_index
from dedupd.daemon.snapshot import write_snapshot
from dedupd.daemon.store import EncodingRecord, FileRecord, Store
from dedupd.daemon.store import journal as store_journal
from tests.daemon.test_graph_store import PARAMS, contents
from tests.daemon.test_index_snapshot import _adopt, _cfg, _fill, assert_same_index


class Changes:
    """Random commits to a filled store, each as the pipeline makes them: the edges of a new or
    re-encoded content planned against an index that mirrors the store."""

    def __init__(self, tmp: Path, store: Store, seed: int) -> None:
        self.tmp, self.store, self.cfg = tmp, store, _cfg(tmp)
        self.rng = random.Random(seed)
        self.fresh = iter(contents(1000 + seed, 60).items())  # digests never stored yet
        self.made = 0

    def mirror(self) -> MatchIndex:
        return load_index(self.store, self.cfg)

    def _record(self, digest: bytes | None, state: str = "ok") -> FileRecord:
        self.made += 1
        return FileRecord(500 + self.made, 2 * 10**18 + self.made, 1, 9000 + self.made, digest, state=state,
                          error=None if state == "ok" else "cannot decode", encoded_at=2.0)

    def _new_path(self) -> str:
        where = self.rng.choice(["deep", "deep/sub", "deep/new", "flat", "elsewhere", "long"])
        if where == "long":
            return str(self.tmp / "deep" / ("L" * 250) / f"n{self.made}-\udcff.jpg")
        return str(self.tmp / where / f"n{self.made}.jpg")

    def _fresh(self) -> tuple[bytes, dict[str, int], EncodingRecord]:
        digest, hashes = next(self.fresh)
        vector = np.full(4, 2, np.float32).tobytes() if self.rng.random() < 0.2 else None
        return digest, hashes, EncodingRecord(320, 200 + self.made % 3, "JPEG", hashes, PARAMS, vector,
                                              "m" if vector else None)

    def one(self) -> str:
        live = self.mirror()
        paths = sorted(live.files)
        op = self.rng.choice(["new", "new", "copy", "change", "delete", "delete", "unreadable", "rename",
                              "rename_dir", "delete_dir", "reencode", "batch", "near", "near"])
        if op == "near":  # a new content a bit flip from a stored one: it joins that one's group
            digest, _, enc = self._fresh()
            old = live.hashes_of(live.files[self.rng.choice(paths)].digest)
            hashes = {m: v ^ (1 << self.rng.randrange(64)) for m, v in old.items()}
            enc = EncodingRecord(320, 200, "JPEG", hashes, PARAMS)
            self.store.put_files([(self._new_path(), self._record(digest), enc)],
                                 edges=live.plan({digest: (hashes, None)}))
        elif op in ("new", "change"):
            digest, hashes, enc = self._fresh()
            path = self._new_path() if op == "new" else self.rng.choice(paths)
            edges = live.plan({digest: (hashes, None)})
            self.store.put_files([(path, self._record(digest), enc)], edges=edges)
        elif op == "copy":  # another path of a stored content
            digest = live.files[self.rng.choice(paths)].digest
            self.store.put_files([(self._new_path(), self._record(digest), None)])
        elif op == "delete":
            assert self.store.delete_file(self.rng.choice(paths))
        elif op == "unreadable":
            self.store.put_files([(self.rng.choice(paths), self._record(None, "unreadable"), None)])
        elif op == "rename":
            self.store.rename_prefix(self.rng.choice(paths), self._new_path())
        elif op == "rename_dir":
            self.store.rename_prefix(str(self.tmp / "deep" / "sub"), str(self.tmp / "deep" / f"moved{self.made}"))
            self.made += 1
        elif op == "delete_dir":
            self.store.delete_prefix(str(self.tmp / self.rng.choice(["deep/sub", "flat", "deep/new"])))
        elif op == "reencode":  # new values for a stored content (a method's settings changed)
            digest = live.files[self.rng.choice(paths)].digest
            old = live.hashes_of(digest)
            hashes = {m: v ^ (1 << self.rng.randrange(64)) for m, v in old.items()}
            edges = [e for e in live.plan({digest: (hashes, None)}) if digest in e[:2]]
            self.store.put_encoding(digest, EncodingRecord(321, 201, "JPEG", hashes, PARAMS), edges)
        else:  # a pipeline batch: new files, a deletion and a copy together
            news = [self._fresh() for _ in range(3)]
            edges = live.plan({d: (h, None) for d, h, _ in news})
            batch = [(self._new_path(), self._record(d), enc) for d, _, enc in news]
            batch.append((self._new_path(), self._record(news[0][0]), None))
            self.store.put_files(batch, deletes=[self.rng.choice(paths)], edges=edges)
        return op


@pytest.mark.parametrize("seed", range(8))
def test_replayed_snapshot_is_the_store_load(tmp_path: Path, seed: int) -> None:
    _fill(tmp_path)
    with Store.open(_cfg(tmp_path).store_dir) as store:
        changes = Changes(tmp_path, store, seed)
        assert write_snapshot(store, changes.cfg, changes.mirror())
        done = [changes.one() for _ in range(4 + seed * 3)]
        want = changes.mirror()
        got = _adopt(store, changes.cfg)
        assert got is not None, done
        got.build_graph()
        assert_same_index(got, want, in_order=False)
        # the adopted index goes on like a loaded one, and its own snapshot round-trips
        assert write_snapshot(store, changes.cfg, got)
        again = _adopt(store, changes.cfg)
        assert again is not None
        again.build_graph()
        assert_same_index(again, want)


def test_the_journal_is_trimmed_with_the_next_write(tmp_path: Path) -> None:
    _fill(tmp_path)
    with Store.open(_cfg(tmp_path).store_dir) as store:
        changes = Changes(tmp_path, store, 1)
        assert write_snapshot(store, changes.cfg, changes.mirror())
        sealed = store.generation()
        for _ in range(3):
            changes.one()
        told = store.journal_since(sealed, 10**6)
        assert not isinstance(told, str) and told.entries >= 3
        assert store.journal_entries() > told.entries  # the fill's commits, before the snapshot
        assert _adopt(store, changes.cfg) is not None  # asks for a trim up to the snapshot ...
        assert store.journal_entries() > told.entries  # ... not done by itself (no commit of its own)
        changes.one()  # ... but with this write
        after = store.journal_since(sealed, 10**6)
        assert not isinstance(after, str) and after.entries == store.journal_entries() > told.entries
        assert "does not reach back" in store.journal_since(sealed - 1, 10**6)
        got = _adopt(store, changes.cfg)
        assert got is not None
        got.build_graph()
        assert_same_index(got, changes.mirror(), in_order=False)


def test_what_the_journal_cannot_replay_means_the_store_load(tmp_path: Path, monkeypatch) -> None:
    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    with Store.open(cfg.store_dir) as store:
        changes = Changes(tmp_path, store, 2)
        # more changes than a replay is worth
        assert write_snapshot(store, cfg, changes.mirror())
        for _ in range(3):
            changes.one()
        with monkeypatch.context() as m:
            m.setattr(snapshot, "REPLAY_MIN", 1)
            m.setattr(snapshot, "REPLAY_FRACTION", 0.0)
            assert _adopt(store, cfg) is None
        assert _adopt(store, cfg) is not None
        # a new graph stamp since (a reload that re-derives, other encoders): not replayable
        assert write_snapshot(store, cfg, changes.mirror())
        changes.one()
        stamp = store.graph_stamp()
        assert stamp is not None
        store.reset_graph(stamp, clear=False)
        assert "graph" in store.journal_since(store.generation() - 1, 10**6)
        assert _adopt(store, cfg) is None
        # a journal past its cap stops (and is dropped) until the next store load starts it again
        assert write_snapshot(store, cfg, changes.mirror())
        with monkeypatch.context() as m:
            m.setattr(store_journal, "JOURNAL_MAX", 4)
            for _ in range(6):
                changes.one()
            assert store.journal_entries() == 0
            assert "does not reach back" in store.journal_since(store.generation(), 10**6)
            assert _adopt(store, cfg) is None
        store.trim_journal(None)  # (what the daemon asks after a store load)
        assert write_snapshot(store, cfg, changes.mirror())
        sealed = store.generation()
        changes.one()
        assert isinstance(store.journal_since(sealed, 10**6), store_journal.JournalChanges)
        got = _adopt(store, cfg)
        assert got is not None
        got.build_graph()
        assert_same_index(got, changes.mirror(), in_order=False)


def test_an_older_dedupd_store_is_migrated_without_a_journal(tmp_path: Path, caplog) -> None:
    """A schema-2 store opened by this dedupd: migrated, and no snapshot is replayed across the
    commits an older dedupd made (the journal starts with the daemon's first store load)."""
    import lmdb

    from dedupd.daemon.store.records import pack

    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    with Store.open(cfg.store_dir) as store:
        assert write_snapshot(store, cfg, load_index(store, cfg))
    env = lmdb.open(cfg.store_dir, max_dbs=10)
    with env.begin(write=True) as txn:  # what schema 2 had: no journal
        txn.drop(env.open_db(b"journal", txn=txn), delete=True)
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"schema_version", pack(2), db=meta)
        txn.put(b"journal_from", pack(0), db=meta)  # (even a stale mark is dropped by the migration)
    env.close()
    with Store.open(cfg.store_dir) as store:
        assert store.meta()["schema_version"] == 3
        assert "does not reach back" in store.journal_since(0, 10**6)
        assert store.delete_file(next(iter(load_index(store, cfg).files)))
        assert os.path.exists(os.path.join(store.path, snapshot.SNAPSHOT_NAME))
        caplog.set_level(logging.INFO, logger="dedupd.daemon.snapshot")
        assert _adopt(store, cfg) is None
        assert "the change journal does not reach back to it" in caplog.text


def test_a_trim_never_commits_by_itself(tmp_path: Path) -> None:
    """A pending trim waits for a write that changes something: a write transaction with nothing
    to write (a deletion of a path never stored) still commits nothing, so a sealed groups.json and
    the snapshot keep their transaction id."""
    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    with Store.open(cfg.store_dir) as store:
        changes = Changes(tmp_path, store, 3)
        assert write_snapshot(store, cfg, changes.mirror())
        changes.one()
        assert write_snapshot(store, cfg, changes.mirror())
        sealed = store.generation()
        assert _adopt(store, cfg) is not None  # a trim is pending now
        assert not store.delete_file(str(tmp_path / "deep" / "never-stored.jpg"))
        assert store.generation() == sealed
        store.trim_journal(None)
        assert not store.delete_file(str(tmp_path / "deep" / "never-stored.jpg"))
        assert store.generation() == sealed
        assert _adopt(store, cfg) is not None


@pytest.mark.parametrize("seed", range(8))
def test_groups_after_a_replay_are_a_full_write(tmp_path: Path, seed: int, caplog) -> None:
    """groups.json sealed with the snapshot (exact), rewritten after some commits (floor seals
    chained from it), then a crash: the start takes the file's groups and recomputes the replayed
    paths' only, and writes exactly what a full write from a store load writes."""
    from dedupd.reports.files import ReportWriter, write_reports
    from tests.daemon.test_groups_seal import _without_time
    from tests.daemon.test_idle_seal import TAKEN

    _fill(tmp_path)
    with Store.open(_cfg(tmp_path).store_dir) as store:
        changes = Changes(tmp_path, store, seed)
        cfg = changes.cfg
        live = changes.mirror()
        writer = ReportWriter(cfg.report_dir)
        writer.write_groups(live, cfg, store)
        assert writer.seal(live, cfg, store) and write_snapshot(store, cfg, live)
        done = []
        for k in range(4 + seed * 3):
            done.append(changes.one())
            if k % 3 == seed % 3:  # the daemon's writes between the commits (each a floor seal)
                writer.write_groups(changes.mirror(), cfg, store)
        caplog.set_level(logging.INFO, logger="dedupd.reports.files")
        got = _adopt(store, cfg)
        assert got is not None and got.replayed_from is not None, done
        got.build_graph()
        after = ReportWriter(cfg.report_dir)
        after.write_groups(got, cfg, store)
        assert TAKEN in caplog.text, done
        write_reports(str(tmp_path / "full"), load_index(store, cfg), cfg, store)
        want = (tmp_path / "full" / "groups.json").read_bytes()
        assert _without_time((tmp_path / "r" / "groups.json").read_bytes()) == _without_time(want), done
        groups = json.loads(want)["groups"]
        assert after.counts == {"groups": len(groups), "duplicates": sum(g["size"] - 1 for g in groups)}, done


def test_a_decision_since_the_seal_means_a_full_build(tmp_path: Path, caplog) -> None:
    """The user's decisions are not in the journal: one made since the seal (a pin that changes a
    group's kept copy) means groups.json is built in full, from the replayed index."""
    from dedupd.reports.files import ReportWriter, write_reports
    from tests.daemon.test_groups_seal import _without_time
    from tests.daemon.test_idle_seal import TAKEN

    _fill(tmp_path)
    with Store.open(_cfg(tmp_path).store_dir) as store:
        changes = Changes(tmp_path, store, 3)
        cfg, live = changes.cfg, changes.mirror()
        writer = ReportWriter(cfg.report_dir)
        writer.write_groups(live, cfg, store)
        assert writer.seal(live, cfg, store) and write_snapshot(store, cfg, live)
        changes.one()
        groups = json.loads((tmp_path / "r" / "groups.json").read_bytes())["groups"]
        other = groups[0]["duplicates"][0]["path"]
        store.pin(live.files[other].digest, other)
        caplog.set_level(logging.INFO, logger="dedupd.reports.files")
        got = _adopt(store, cfg)
        assert got is not None and got.replayed_from is not None
        got.build_graph()
        ReportWriter(cfg.report_dir).write_groups(got, cfg, store)
        assert TAKEN not in caplog.text
        written = json.loads((tmp_path / "r" / "groups.json").read_bytes())["groups"]
        assert any(g["keep"]["path"] == other for g in written)
        write_reports(str(tmp_path / "full"), load_index(store, cfg), cfg, store)
        want = (tmp_path / "full" / "groups.json").read_bytes()
        assert _without_time((tmp_path / "r" / "groups.json").read_bytes()) == _without_time(want)
