"""The sealed index snapshot (``dedupd.daemon.snapshot``): written at a clean stop, adopted at the
next start only when the store, config and code are those it was written against, and then the
same index as a load from the store; truncated, corrupted or inconsistent files fall back to the
store with a warning. Real LMDB stores; the daemon's own flow in ``test_daemon_snapshot.py``."""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dedupd.daemon import snapshot
from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.graph import GraphKeeper
from dedupd.daemon.index import MatchIndex
from dedupd.daemon.loader import load_index
from dedupd.daemon.snapshot import SNAPSHOT_NAME, adopt_snapshot, write_snapshot
from dedupd.daemon.store import EncodingRecord, FileRecord, Store
from tests.daemon.test_graph_store import PARAMS, contents, graph


def _cfg(tmp: Path, extra: dict | None = None, **methods):
    return config_from_mapping({
        "roots": [str(tmp / "deep"), {"path": str(tmp / "flat"), "recursive": False}],
        "store_dir": str(tmp / "store"), "report_dir": str(tmp / "r"), "socket_path": str(tmp / "s"),
        "methods": methods or {"phash": 10, "dhash": 10}, **(extra or {})})


def _fill(tmp: Path) -> None:
    """A store with shared digests, long (hashed-key) and non-UTF-8 paths, files outside the
    roots, contents lacking a method and a stored CNN vector, and its duplicate graph derived."""
    deep, flat = tmp / "deep", tmp / "flat"
    deep.mkdir()
    flat.mkdir()
    hashes = contents(11, 180)
    digests = sorted(hashes)
    for d in digests[::7]:
        del hashes[d]["dhash"]  # a content without one method: another key layout, None scores
    long_dir = deep / ("d" * 240) / ("e" * 240)
    odd = os.fsdecode(os.fsencode(str(deep)) + b"/caf\xe9-\xff.jpg")
    placed = [*((str(deep / f"a{k:03d}.jpg"), d) for k, d in enumerate(digests[:140])),
              *((str(deep / "sub" / f"b{k:03d}.jpg"), d) for k, d in enumerate(digests[120:160])),
              *((str(flat / f"c{k:03d}.jpg"), d) for k, d in enumerate(digests[160:170])),
              (str(flat / "sub" / "nested.jpg"), digests[170]), (str(tmp / "elsewhere" / "x.jpg"), digests[171]),
              (str(long_dir / "long.jpg"), digests[172]), (str(long_dir / "long-copy.jpg"), digests[0]),
              (odd, digests[173])]
    cfg = _cfg(tmp)
    with Store.open(cfg.store_dir) as store:
        store.put_files([(path, FileRecord(100 + k, 10**18 + k, 1, k, d, encoded_at=1.0),
                          EncodingRecord(640 + k % 5, 480, "JPEG", hashes[d], PARAMS,
                                         np.ones(4, np.float32).tobytes() if k % 11 == 0 else None,
                                         "m" if k % 11 == 0 else None))
                         for k, (path, d) in enumerate(placed)])
        keeper = GraphKeeper(store, cfg)
        index = keeper.load()
        assert keeper.run(index, lambda: False)


def assert_same_index(got: MatchIndex, want: MatchIndex, *, in_order: bool = True) -> None:
    """Same files (in order: as a load reads them; else as a map, as after incremental changes),
    contents, hash columns, near edges, graph and evidence."""
    if in_order:
        assert list(got.files.items()) == list(want.files.items())
    else:
        assert got.files == want.files
    assert got.content_count == want.content_count
    for d, c in want._contents.items():
        g = got._contents[d]
        assert list(g.hashes.items()) == list(c.hashes.items())
        assert (g.has_vector, sorted(g.paths), type(g.paths)) == (c.has_vector, sorted(c.paths), type(c.paths))
    assert got.near_edges() == want.near_edges()
    assert graph(got) == graph(want) and got.duplicate_lists() == want.duplicate_lists()
    assert (got.derived, got.derived_to, got.reach, got.matching) == (want.derived, want.derived_to, want.reach,
                                                                     want.matching)
    for column, tree in want._trees.items():
        other = got._trees[column]
        assert sorted((want._cids.keys[i], v) for i, v in tree) == sorted((got._cids.keys[i], v) for i, v in other)
        for d in list(want._contents)[:25]:
            if column in want._contents[d].hashes:
                v = want._contents[d].hashes[column]
                assert sorted(got._search(column, v, 12)) == sorted(want._search(column, v, 12))


def _adopt(store: Store, cfg) -> MatchIndex | None:
    keeper = GraphKeeper(store, cfg)
    reach = keeper.prepare()
    adopted = adopt_snapshot(store, cfg, reach)
    if adopted is None:
        return None
    index, edges = adopted
    assert edges == len(index.near_edges())
    return index


def test_adopted_snapshot_is_the_store_load(tmp_path: Path) -> None:
    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    with Store.open(cfg.store_dir) as store:
        want = load_index(store, cfg)
        assert len(want.near_edges()) > 100 and len(want.files) > 180
        assert _adopt(store, cfg) is None  # nothing written yet
        (Path(store.path) / ".snapshot-cut-short").write_bytes(b"x" * 100)  # a write killed midway
        assert write_snapshot(store, cfg, want)
        assert not list(Path(store.path).glob(".snapshot-*"))
        path = os.path.join(store.path, SNAPSHOT_NAME)
        written = os.stat(path)
        assert write_snapshot(store, cfg, want)  # nothing committed since: the file is kept as is
        assert os.stat(path).st_ino == written.st_ino
        got = _adopt(store, cfg)
        assert got is not None
        got.build_graph()
        assert_same_index(got, want)
        # the keeper's start-up path adopts it too, and the graph thread then only finishes up
        keeper = GraphKeeper(store, cfg)
        started = keeper.load()
        assert keeper.edges_loaded == len(want.near_edges()) and keeper.run(started, lambda: False)
        assert_same_index(started, want)
        # an adopted index goes on like a loaded one: a change and another snapshot round trip
        victim = next(iter(want.files))
        for index in (started, want):
            index.remove(victim)
        assert_same_index(started, want)


def test_not_adopted_after_a_commit_another_config_or_code(tmp_path: Path, monkeypatch) -> None:
    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    with Store.open(cfg.store_dir) as store:
        assert write_snapshot(store, cfg, load_index(store, cfg))
        assert _adopt(store, cfg) is not None
        # a threshold within the stored reach: same edges, another rule -> the config digest differs
        assert _adopt(store, _cfg(tmp_path, phash=9, dhash=10)) is None
        # so does a root, an exclude rule or the reach's margin
        assert _adopt(store, _cfg(tmp_path, {"roots": [str(tmp_path / "deep")]})) is None
        assert _adopt(store, _cfg(tmp_path, {"exclude": ["*.png"]})) is None
        assert _adopt(store, _cfg(tmp_path, {"graph_margin": 3})) is None
        # what is decided about the groups and where reports go leave the index as it is: adopted
        other = _cfg(tmp_path, {"policy": "quarantine", "quarantine_dir": str(tmp_path / "q"), "dry_run": True,
                                "report_dir": str(tmp_path / "r2"), "report_mode": "0640",
                                "keep": ["shortest_path", "oldest_mtime"]})
        got = _adopt(store, other)
        assert got is not None
        got.build_graph()
        assert_same_index(got, load_index(store, other))
        with monkeypatch.context() as m:  # another dedupd version
            m.setattr(snapshot, "code_digest", lambda: "another")
            assert _adopt(store, cfg) is None
        # a commit since (what a daemon killed after a write leaves behind), with no journal back
        # to the snapshot (a store load starts it afresh with its next write)
        assert store.delete_file(str(tmp_path / "deep" / "a000.jpg"))
        store.trim_journal(None)
        assert store.delete_file(str(tmp_path / "deep" / "a001.jpg"))
        assert _adopt(store, cfg) is None
        want = load_index(store, cfg)
        assert str(tmp_path / "deep" / "a000.jpg") not in want.files
        # the CNN-less rule only: an index that matches on vectors is not snapshotted
        assert write_snapshot(store, cfg, want)
        got = _adopt(store, cfg)
        assert got is not None
        got.build_graph()
        assert_same_index(got, want)


def _rewrite(path: str, **changes) -> None:
    """The snapshot at ``path`` with some arrays replaced (a well-formed file, CRCs and all)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty", "ids", "paths", "orphan", "shape"])
def test_a_damaged_snapshot_means_the_store_load(tmp_path: Path, damage: str, caplog) -> None:
    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    with Store.open(cfg.store_dir) as store:
        want = load_index(store, cfg)
        assert write_snapshot(store, cfg, want)
        path = os.path.join(store.path, SNAPSHOT_NAME)
        data = Path(path).read_bytes()
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "truncated":
            Path(path).write_bytes(data[: len(data) // 2])
        elif damage == "flipped":  # one bit inside the hash column's data: the member's CRC disagrees
            with zipfile.ZipFile(path) as zf:
                info = zf.getinfo("c_hash.npy")
            at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
            Path(path).write_bytes(data[:at] + bytes([data[at] ^ 4]) + data[at + 1:])
        elif damage == "garbage":
            Path(path).write_bytes(os.urandom(4096))
        elif damage == "empty":
            Path(path).write_bytes(b"")
        elif damage == "ids":
            _rewrite(path, e_b=arrays["e_b"] + len(arrays["c_digest"]))
        elif damage == "paths":
            _rewrite(path, f_path=arrays["f_path"][: len(arrays["f_path"]) // 2])
        elif damage == "orphan":  # a content no file refers to (the store load drops it)
            _rewrite(path, f_cid=np.where(arrays["f_cid"] == 3, 4, arrays["f_cid"]))
        elif damage == "shape":
            _rewrite(path, c_wh=arrays["c_wh"][:-1])
        caplog.set_level(logging.INFO, logger="dedupd.daemon.snapshot")
        assert _adopt(store, cfg) is None
        assert any(r.levelno == logging.WARNING and "unusable" in r.getMessage() for r in caplog.records)
        keeper = GraphKeeper(store, cfg)  # the daemon's path: the store load, nothing lost
        index = keeper.load()
        assert keeper.run(index, lambda: False)
        assert_same_index(index, want)
