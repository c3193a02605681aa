"""The persisted duplicate graph on real LMDB: edges written with their encodings, pruned with them,
loaded at start-up, filtered on a threshold change within the reach, re-derived (resumably) beyond
it, and derived for a store migrated from schema 1 — each time equal to an all-pairs rebuild."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import pytest

from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.graph import GraphKeeper
from dedupd.daemon.index import FileInfo, MatchIndex, Matching, Reach, _hash_score
from dedupd.daemon.loader import load_index, matching_of
from dedupd.daemon.store import EncodingRecord, FileRecord, Store
from dedupd.daemon.store import schema as store_schema
from dedupd.daemon.store.records import pack
from dedupd.reports.files import duplicates_json
from dedupd.reports.thumbnails import stop_workers

PARAMS = "v1:decode=exact:exif=0"


def contents(seed: int, n: int) -> dict[bytes, dict[str, int]]:
    """``n`` digests with phash/dhash values in clusters (a few flipped bits apart)."""
    rng = random.Random(seed)
    out: dict[bytes, dict[str, int]] = {}
    values: list[dict[str, int]] = []
    for k in range(n):
        if values and rng.random() < 0.6:
            base = rng.choice(values)
            h = {}
            for m, v in base.items():
                for _ in range(rng.randrange(0, 14)):
                    v ^= 1 << rng.randrange(64)
                h[m] = v
        else:
            h = {"phash": rng.getrandbits(64), "dhash": rng.getrandbits(64)}
        values.append(h)
        out[rng.getrandbits(128).to_bytes(16, "big") + bytes([k % 256])] = h
    return out


def brute(hashes: dict[bytes, dict[str, int]], reach: Reach) -> set[tuple[bytes, bytes]]:
    """Every pair within ``reach`` on some method, ``(a, b)`` with ``a < b``."""
    keys = sorted(hashes)
    out = set()
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if any((d := _hash_score(m, hashes[a], hashes[b])) is not None and d <= r for m, r in reach.radii):
                out.add((a, b))
    return out


def stored_edges(store: Store) -> dict[tuple[bytes, bytes], list]:
    return {(a, b): s for chunk in store.iter_edges(chunk=7) for a, b, s in chunk}


def fill(store: Store, root: Path, hashes: dict[bytes, dict[str, int]], index: MatchIndex | None = None,
         batch: int = 16) -> None:
    """Record one file per content, in batches, the way the pipeline does (plan → write → add)."""
    items = list(hashes.items())
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        planned = index.plan({d: (h, None) for d, h in chunk}) if index is not None else []
        records = [(str(root / f"{d.hex()}.jpg"), FileRecord(1, 1, 1, k, d, encoded_at=1.0),
                    EncodingRecord(8, 8, "JPEG", h, PARAMS)) for k, (d, h) in enumerate(chunk)]
        store.put_files(records, edges=planned)
        if index is not None:
            for path, rec, enc in records:
                assert rec.digest is not None
                index.add(path, FileInfo(rec.digest, 1, 1, 8, 8), enc.hashes, None,
                          [e for e in planned if rec.digest in e[:2]])


def random_change(index: MatchIndex, rng: random.Random, paths: list[str], hashes: list, root: Path, names: int,
                  adds: float, cfg: Any, retuned: Callable[[int], Any]) -> Any:
    """One random change to ``index`` (``paths``: its paths, kept up to date): an add of a content
    of ``hashes`` under one of ``names`` paths (a share ``adds`` of the changes), a remove, a
    rename, or (3 %) a retune to ``retuned(threshold)``; returns the config now in force."""
    op = rng.random()
    if op < adds or len(paths) < 5:
        d, h = rng.choice(hashes)
        p = f"{root}/{rng.randrange(names)}.jpg"
        index.add(p, FileInfo(d, rng.randrange(1, 9), rng.randrange(3), 8, 8), {"phash": h["phash"]})
        paths.append(p)
    elif op < 0.8:
        index.remove(paths.pop(rng.randrange(len(paths))))
    elif op < 0.97:
        old = paths.pop(rng.randrange(len(paths)))
        new = f"{root}/r{rng.randrange(names)}.jpg"
        if index.rename(old, new):
            paths.append(new)
    else:
        cfg = retuned(rng.choice([6, 8, 10]))
        index.retune(matching_of(cfg))
        assert index.build_graph()
    return cfg


def first_start(store: Store, cfg: Any, root: Path, hashes: dict[bytes, dict[str, int]]
                ) -> tuple[GraphKeeper, MatchIndex]:
    """A daemon's first start on an empty ``store`` (its graph stamped, nothing to derive), then
    ``hashes`` ingested as the pipeline does; returns its graph keeper and index."""
    keeper = GraphKeeper(store, cfg)
    index = MatchIndex(matching_of(cfg), keeper.prepare())
    keeper.run(index, lambda: False)
    fill(store, root, hashes, index)
    return keeper, index


def config(root: Path, tmp: Path, **methods: int | dict):
    return config_from_mapping({"roots": [str(root)], "store_dir": str(tmp / "store"), "report_dir": str(tmp / "r"),
                                "socket_path": str(tmp / "s"), "methods": methods or {"phash": 10, "dhash": 10}})


def phash_index(tmp: Path, seed: int, n: int, threshold: int | dict = 10) -> tuple[Path, Any, MatchIndex]:
    """A root under ``tmp``, its config (phash only) and an index of ``n`` random phash contents
    named ``{root}/{k}.jpg``."""
    root = tmp / "photos"
    root.mkdir()
    cfg = config(root, tmp, phash=threshold)
    index = MatchIndex(matching_of(cfg))
    for k, (d, h) in enumerate(contents(seed, n).items()):
        index.add(f"{root}/{k}.jpg", FileInfo(d, 1, k, 8, 8), {"phash": h["phash"]})
    return root, cfg, index


def graph(index: MatchIndex) -> dict[str, set[str]]:
    return {p: {q for q, _ in index.duplicates_of(p)} for p in index.files}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "photos").mkdir()
    return tmp_path / "photos"


def test_edges_are_written_with_their_encodings_and_pruned_with_them(tmp_path: Path, root: Path) -> None:
    cfg = config(root, tmp_path)
    hashes = contents(1, 120)
    with Store.open(cfg.store_dir) as store:
        keeper = GraphKeeper(store, cfg)
        reach = keeper.prepare()  # a new store: stamped, nothing to derive
        index = MatchIndex(matching_of(cfg), reach)
        # thresholds + graph_margin (2 bits); the crop families (on by default, within 2) too;
        # the framing checks (on with crop) are stored scores, never searched (radius -1)
        assert reach.radii == (("dhash", 12), ("dhash@agree", -1), ("dhash@crop", 4), ("phash", 12),
                               ("phash@agree", -1), ("phash@crop", 4))
        assert keeper.run(index, lambda: False) and store.graph_stamp().complete
        fill(store, root, hashes, index)
        want = brute(hashes, reach)
        got = stored_edges(store)
        assert set(got) == want and len(want) > 50
        for (a, b), scores in got.items():  # in reach order; no crop hashes here, so those scores are None
            assert scores == [_hash_score(m, hashes[a], hashes[b]) for m, _ in reach.radii]
        assert set(index.near_edges()) == want
        # deleting a file prunes its encoding and every edge of it, both directions
        gone = sorted(hashes)[3]
        store.put_files([], deletes=[str(root / f"{gone.hex()}.jpg")])
        del hashes[gone]
        assert set(stored_edges(store)) == brute(hashes, reach)
        # a re-encode (new values for a digest) replaces its edges
        d = sorted(hashes)[5]
        hashes[d] = {"phash": 0, "dhash": 0}
        planned = index.plan({d: (hashes[d], None)})
        store.put_files([(str(root / f"{d.hex()}.jpg"), FileRecord(1, 1, 1, 99, d, encoded_at=1.0),
                          EncodingRecord(8, 8, "JPEG", hashes[d], PARAMS))], edges=planned)
        assert set(stored_edges(store)) == brute(hashes, reach)
        # a folder delete is one key range; everything under it goes, with its edges
        sub = root / "sub"
        store.put_files([(str(sub / "x.jpg"), FileRecord(1, 1, 1, 7, d, encoded_at=1.0), None),
                         (str(root / "subway.jpg"), FileRecord(1, 1, 1, 8, d, encoded_at=1.0), None)])
        assert store.delete_prefix(str(sub)) == [str(sub / "x.jpg")]
        assert store.get_file(str(root / "subway.jpg")) is not None
        assert store.stats().edges == len(brute(hashes, reach))


def test_restart_loads_the_edges_and_equals_a_rebuild(tmp_path: Path, root: Path) -> None:
    cfg = config(root, tmp_path)
    hashes = contents(2, 150)
    with Store.open(cfg.store_dir) as store:
        first_start(store, cfg, root, hashes)
    with Store.open(cfg.store_dir) as store:
        keeper = GraphKeeper(store, cfg)
        loaded = load_index(store, cfg, build_graph=False, reach=keeper.prepare())
        assert not loaded.graph_ready
        assert keeper.run(loaded, lambda: False) and keeper.edges_loaded == len(brute(hashes, loaded.reach))
        assert loaded.graph_ready
        rebuilt = MatchIndex(matching_of(cfg))
        rebuilt.bulk_load([(p, i, h, None) for p, i, h in ((p, loaded.files[p], hashes[loaded.files[p].digest])
                                                          for p in loaded.files)])
        assert graph(loaded) == graph(rebuilt) and sum(map(len, graph(rebuilt).values())) > 20
        # dedupd report (read-only, no daemon) loads the same edges
        assert graph(load_index(store, cfg)) == graph(rebuilt)


@pytest.mark.parametrize("seed", [3, 4])
def test_threshold_change_within_the_reach_is_a_filter_equal_to_a_rebuild(tmp_path: Path, root: Path,
                                                                        seed: int) -> None:
    cfg = config(root, tmp_path)
    hashes = contents(seed, 150)
    with Store.open(cfg.store_dir) as store:
        keeper, index = first_start(store, cfg, root, hashes)
        before = stored_edges(store)
        for methods, mode in (({"phash": 12, "dhash": 8}, "any"), ({"phash": 6, "dhash": 11}, "all")):
            new = config_from_mapping({**_raw(cfg), "methods": methods, "match": mode})
            keeper.retune(index, new)
            assert keeper.state == "refiltering" and not index.graph_ready
            assert keeper.run(index, lambda: False) and index.graph_ready
            assert stored_edges(store) == before  # a filter: the store is not touched
            rebuilt = MatchIndex(matching_of(new))  # the same rule (its framing checks too), rebuilt
            rebuilt.bulk_load([(p, i, hashes[i.digest], None) for p, i in index.files.items()])
            assert graph(index) == graph(rebuilt)
        # and a restart under the last config loads, no derivation
        keeper2 = GraphKeeper(store, new)
        assert keeper2.prepare() == index.reach and stored_edges(store) == before


def _raw(cfg) -> dict:
    return {"roots": [r.path for r in cfg.roots], "store_dir": cfg.store_dir, "report_dir": cfg.report_dir,
            "socket_path": cfg.socket_path}


def test_a_wider_reach_is_re_derived_in_the_background_resumably(tmp_path: Path, root: Path, monkeypatch) -> None:
    cfg = config(root, tmp_path, phash=4, dhash=4)
    hashes = contents(5, 160)
    with Store.open(cfg.store_dir) as store:
        first_start(store, cfg, root, hashes)
    wide = config_from_mapping({**_raw(cfg), "methods": {"phash": 10, "dhash": 9}})
    with Store.open(cfg.store_dir) as store:
        keeper = GraphKeeper(store, wide)
        reach = keeper.prepare()
        assert reach.radii == (("dhash", 11), ("dhash@agree", -1), ("dhash@crop", 4), ("phash", 12),
                               ("phash@agree", -1), ("phash@crop", 4))
        assert not store.graph_stamp().complete
        index = load_index(store, wide, build_graph=False, reach=reach)
        steps = 0

        def stop_midway() -> bool:
            nonlocal steps
            steps += 1
            return steps > 20

        import dedupd.daemon.index as index_mod

        monkeypatch.setattr(index_mod, "STEP_S", 0.0)  # one digest per step: many steps
        assert not keeper.run(index, stop_midway)
        stamp = store.graph_stamp()
        assert not stamp.complete and stamp.cursor is not None  # progress persisted
        partial = stored_edges(store)
        assert partial and set(partial) < brute(hashes, reach)
    # a restart resumes from the cursor and completes
    with Store.open(cfg.store_dir) as store:
        keeper = GraphKeeper(store, wide)
        assert keeper.prepare() == reach
        index = load_index(store, wide, build_graph=False, reach=reach)
        assert keeper.run(index, lambda: False) and 0 < keeper.edges_loaded < len(brute(hashes, reach))
        assert store.graph_stamp().complete and set(stored_edges(store)) == brute(hashes, reach)
        rebuilt = MatchIndex(matching_of(wide))
        rebuilt.bulk_load([(p, i, hashes[i.digest], None) for p, i in index.files.items()])
        assert graph(index) == graph(rebuilt)
        # a reload to other methods while running: cleared and derived again, on the same store
        other = config_from_mapping({**_raw(cfg), "methods": {"phash": 10}})
        keeper.retune(index, other)
        assert keeper.state == "deriving" and keeper.run(index, lambda: False)
        only_phash = {d: {"phash": h["phash"], "dhash": 1 << 70} for d, h in hashes.items()}
        want = {(a, b) for a, b in brute({d: {"phash": h["phash"]} for d, h in only_phash.items()},
                                          Reach((("phash", 12),)))}
        assert set(stored_edges(store)) == want


def make_v1_store(path: Path, root: Path, hashes: dict[bytes, dict[str, int]], monkeypatch) -> None:
    """A store as dedupd wrote it before schema 2: no ``edges`` database, schema_version 1."""
    with Store.open(path) as store:
        fill(store, root, hashes)
    env = lmdb.open(str(path), max_dbs=10)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"edges", txn=txn), delete=True)
        txn.drop(env.open_db(b"journal", txn=txn), delete=True)  # (schema 3's)
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"schema_version", pack(1), db=meta)
        txn.delete(b"graph", db=meta)
    env.close()


def test_a_schema_1_store_is_migrated_and_its_edges_derived(tmp_path: Path, root: Path, monkeypatch) -> None:
    cfg = config(root, tmp_path)
    hashes = contents(6, 120)
    make_v1_store(Path(cfg.store_dir), root, hashes, monkeypatch)
    with pytest.raises(Exception, match="needs migrating"):
        Store.open(cfg.store_dir, readonly=True)
    with Store.open(cfg.store_dir) as store:
        assert store.meta()["schema_version"] == store_schema.SCHEMA_VERSION == 3
        assert store.graph_stamp() is None and not stored_edges(store)
        keeper = GraphKeeper(store, cfg)
        index = load_index(store, cfg, build_graph=False, reach=keeper.prepare())
        assert keeper.run(index, lambda: False)
        assert set(stored_edges(store)) == brute(hashes, index.reach)
        assert len(index.files) == 120


def test_duplicates_json_is_streamed_exactly_as_json_dumps(tmp_path: Path) -> None:
    index = MatchIndex(Matching({"phash": 10}))
    rng = random.Random(9)
    names = ["/r/a.jpg", "/r/ü.jpg", '/r/q"uote.jpg', "/r/\udcff.jpg", "/r/z.jpg"] + [f"/r/{k}.png" for k in range(60)]
    for k, p in enumerate(names):
        v = rng.choice([0, 1, 3, rng.getrandbits(64)])
        index.add(p, FileInfo(bytes([k % 7]) * 8 if k % 5 else bytes([k]) * 9, 1, 1, 8, 8), {"phash": v})
    want = (json.dumps(index.adjacency(), indent=1) + "\n").encode()
    assert b"".join(duplicates_json(index.snapshot())) == want
    assert b"".join(duplicates_json(MatchIndex(Matching({"phash": 1})).snapshot())) == b"{}\n"


def check_store_graph(store_dir: str, cfg) -> int:
    """The (closed) store's edges are exactly the pairs of its encodings within the stamp's reach,
    and the graph a restart loads equals an all-pairs rebuild; returns the number of edges."""
    with Store.open(store_dir, readonly=True) as store:
        stamp = store.graph_stamp()
        assert stamp is not None and stamp.complete
        reach = Reach(stamp.radii, stamp.cnn)
        encodings = {d: dict(e.hashes) for d, e in store.iter_encodings()}
        got = stored_edges(store)
        assert set(got) == brute(encodings, reach)
        loaded = load_index(store, cfg)
    rebuilt = MatchIndex(matching_of(cfg))
    rebuilt.bulk_load([(p, i, encodings[i.digest], None) for p, i in loaded.files.items()])
    assert graph(loaded) == graph(rebuilt)
    return len(got)


@pytest.mark.slow
def test_kill9_mid_ingest_keeps_the_stored_graph_equal_to_a_rebuild(mixed200: Path, tmp_path: Path,
                                                                   daemon_factory) -> None:
    from tests.daemon.helpers import copy_tree_files, image_files

    watched = tmp_path / "photos"
    watched.mkdir()
    names = sorted(str(Path(p).relative_to(mixed200)) for p in image_files(mixed200))
    daemon = daemon_factory([watched], methods={"phash": 10, "dhash": 12}, settle_ms=50)
    cfg = config_from_mapping({k: v for k, v in daemon.config.items() if k != "log"})
    daemon.start()
    copy_tree_files(mixed200, watched, names)
    edges, killed_at = 0, []
    for target in (1, 120):  # the store commits batches of up to 128 files: the first kill is mid-ingest
        daemon.wait_until(lambda n=target: daemon.status()["files"] >= n, 90, "files ingested")
        killed_at.append(daemon.status()["files"])
        assert not daemon.kill9()
        edges = check_store_graph(daemon.config["store_dir"], cfg)
        daemon.start(wait=False)
        daemon.wait_until(daemon.try_status, 30, "daemon answering")
    assert killed_at[0] < len(names), killed_at
    s = daemon.wait_quiet(timeout=180)
    assert s["files"] == len(names) and s["graph"] == "ready"
    daemon.stop()
    assert check_store_graph(daemon.config["store_dir"], cfg) >= edges > 0


def test_incremental_groups_equal_a_full_build(tmp_path: Path) -> None:
    """Reports after each of a random sequence of changes (adds, re-adds, removes, renames, a
    retune) equal the reports written from scratch."""
    from dedupd.reports.files import ReportWriter
    from dedupd.reports.groups import build_groups

    root = tmp_path / "photos"
    root.mkdir()
    # the synthetic contents have no crop hashes, so no framing check (methods.phash.agree)
    cfg = config(root, tmp_path, phash={"threshold": 10, "agree": False})
    rng = random.Random(11)
    hashes = list(contents(12, 80).items())
    index = MatchIndex(matching_of(cfg))
    writer = ReportWriter(str(tmp_path / "r"))
    paths: list[str] = []
    seen_groups = 0
    for step in range(160):
        cfg = random_change(index, rng, paths, hashes, root, 60, 0.5, cfg,
                            lambda t: config(root, tmp_path, phash={"threshold": t, "agree": False}))
        paths = [p for p in dict.fromkeys(paths) if p in index.files]
        if step % 3 == 0:
            counts = writer.write(index, cfg, slow=False)
            got = json.loads((tmp_path / "r" / "groups.json").read_text())["groups"]
            want = build_groups(index, cfg.keep)
            assert got == want, step
            assert counts["groups"] == len(want)
            seen_groups += len(want)
    assert seen_groups > 100  # the sequence builds, merges and splits real groups
    writer.write(index, cfg, slow=True)
    assert json.loads((tmp_path / "r" / "duplicates.json").read_text()) == index.adjacency()


def test_the_final_report_at_shutdown_is_time_boxed(caplog) -> None:
    """A final report write that takes longer than its box is left behind (the previous reports
    stay); one that is quick is waited for."""
    import threading
    import time
    import types

    from dedupd.daemon.service import Daemon

    release = threading.Event()
    calls: list[dict] = []

    def write(index, config, store, **kw):
        calls.append(kw)
        release.wait(5)
        return {"groups": 1, "duplicates": 1}

    fake = types.SimpleNamespace(_dirty=threading.Event(), reports=types.SimpleNamespace(slow_pending=True, write=write),
                                 index=None, config=None, store=None, report_counts={})
    t0 = time.monotonic()
    Daemon._final_report(fake, 0.3)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 2 and "did not finish within" in caplog.text
    assert calls and calls[0]["slow"] is True and callable(calls[0]["on_thumbnails"])  # thumbnails not awaited
    release.set()
    fake.reports.slow_pending, calls[:] = False, []
    Daemon._final_report(fake, 0.3)  # type: ignore[arg-type]
    assert not calls  # nothing owed: nothing written


def _without_time(data: bytes) -> bytes:
    head, sep, rest = data.partition(b', "policy"')
    assert head.startswith(b'{"generated_at": ') and sep
    return sep + rest


@pytest.mark.parametrize("policy", ["report", "quarantine"])
def test_incremental_groups_json_bytes_equal_a_full_write(tmp_path: Path, policy: str) -> None:
    """``groups.json`` kept up to date change by change (its lines kept in file order, the header's
    preview summed per group) has the bytes of a full :func:`write_reports` build after every
    step of a random sequence of adds, removes, renames and a retune (the generation time aside)."""
    from dedupd.reports.files import ReportWriter, write_reports

    root = tmp_path / "photos"
    root.mkdir()

    def cfg_of(phash: int):
        return config_from_mapping({"roots": [str(root)], "store_dir": str(tmp_path / "store"),
                                    "report_dir": str(tmp_path / "r"), "socket_path": str(tmp_path / "s"),
                                    "methods": {"phash": phash}, "policy": policy, "dry_run": True,
                                    **({"quarantine_dir": str(tmp_path / "q")} if policy == "quarantine" else {})})

    cfg = cfg_of(10)
    rng = random.Random(5)
    hashes = list(contents(7, 60).items())
    index = MatchIndex(matching_of(cfg))
    writer = ReportWriter(str(tmp_path / "r"))
    full = tmp_path / "full"
    full.mkdir()
    paths: list[str] = []
    compared = 0
    for step in range(120):
        cfg = random_change(index, rng, paths, hashes, root, 50, 0.55, cfg, cfg_of)
        paths = [p for p in dict.fromkeys(paths) if p in index.files]
        if step % 2 == 0:
            counts = writer.write_groups(index, cfg)
            want = write_reports(str(full), index, cfg)
            got_bytes = (tmp_path / "r" / "groups.json").read_bytes()
            assert _without_time(got_bytes) == _without_time((full / "groups.json").read_bytes()), step
            assert counts == want
            compared += want["groups"]
            if policy == "quarantine":
                assert json.loads(got_bytes)["would_quarantine"] or not want["groups"]
    assert compared > 50


def test_duplicate_lists_equal_duplicates_of_every_path() -> None:
    """:meth:`MatchIndex.duplicate_lists` (one pass, per content) lists what ``duplicates_of``
    lists for each path that has duplicates, in the same order, and no other path."""
    rng = random.Random(3)
    hashes = list(contents(9, 40).items())
    index = MatchIndex(Matching({"phash": 10, "dhash": 8}))
    for k in range(150):
        d, h = rng.choice(hashes)
        index.add(f"/p/{rng.randrange(120)}.jpg", FileInfo(d, 1, k, 8, 8), h)
    lists = index.duplicate_lists()
    want = {p: index.duplicates_of(p) for p in index.files if index.duplicates_of(p)}
    assert lists == want and any(len(v) > 2 for v in want.values())


def test_sorted_in_steps_equals_sorted() -> None:
    """The stepwise sort of ``duplicates.json``'s keys gives ``sorted``'s order, also across
    slices and for names that are not UTF-8 (surrogate escapes)."""
    from dedupd.core.groups import sorted_in_steps

    rng = random.Random(2)
    names = [f"/p/{rng.choice(['a', 'b', 'é', '-', '/', 'Z'])}{rng.randrange(50)}" for _ in range(200)]
    names += ["/p/caf\udce9", "/p/caf", "/p/cafe"]
    assert sorted_in_steps(names, 7) == sorted(names)
    assert sorted_in_steps(names[:5], 7) == sorted(names[:5])


def test_slow_reports_call_yield_to_between_pieces(tmp_path: Path) -> None:
    """``duplicates.json`` and ``report.html`` written by the report writer call its ``yield_to``
    hook before each piece of ``duplicates.json`` and between the steps and pieces of the page
    (where the daemon lets a due groups.json write go first), and the files are the same."""
    from dedupd.reports.files import ReportWriter

    root, cfg, index = phash_index(tmp_path, 4, 40)
    calls: list[int] = []
    writer = ReportWriter(str(tmp_path / "r"))
    page = tmp_path / "r" / "report.html"

    def wait() -> None:  # as the daemon's hook waits for a groups.json write
        calls.append(1)
        time.sleep(0.05)

    writer.yield_to = wait
    t0 = time.monotonic()
    writer.write(index, cfg, slow=True)
    took = time.monotonic() - t0
    want = b"".join(duplicates_json(index.snapshot()))
    assert (tmp_path / "r" / "duplicates.json").read_bytes() == want
    pieces = len(list(duplicates_json(index.snapshot())))
    assert len(calls) >= pieces + 4 and pieces >= 1  # the page's steps and pieces too
    quiet = ReportWriter(str(tmp_path / "q"))
    quiet.write(index, cfg, slow=True)
    assert _without_stamp(page.read_bytes()) == _without_stamp((tmp_path / "q" / "report.html").read_bytes())
    # the write's own time leaves the waits out: it sets the next write's spacing and the next wait's bound
    assert 0 < writer.slow_seconds <= took - 0.05 * len(calls) + 0.05


def _without_stamp(page: bytes) -> bytes:
    """A report page without its generation time."""
    return re.sub(rb"20\d\d-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?[^<\"]*", b"", page)


def test_edges_stored_before_the_framing_check_get_its_scores_without_a_derivation(tmp_path: Path, root: Path,
                                                                                    monkeypatch) -> None:
    """A store written before ``agree`` existed (its edges lack the check score): the next start
    computes the score from the stored hashes and stores the edges again, instead of clearing
    and re-deriving the graph (45 minutes at a million files); the graph equals a rebuild."""
    from tests.daemon.test_index_agree import contents as framed

    old_cfg = config(root, tmp_path, phash={"threshold": 10, "crop": True, "agree": False})
    new_cfg = config(root, tmp_path, phash={"threshold": 10, "crop": True})
    assert dict(matching_of(new_cfg).agree) == {"phash": 10}, "the check is the default"
    hashes = {k.to_bytes(8, "big") + b"\x00" * 8: h for k, h in enumerate(framed(5, 160))}
    with Store.open(old_cfg.store_dir) as store:
        first_start(store, old_cfg, root, hashes)
        old_edges = stored_edges(store)
    assert old_edges and all(len(s) == 2 for s in old_edges.values())  # phash, phash@crop

    derive = MatchIndex._derive_steps

    def no_derivation(*a, **k):
        for step in derive(*a, **k):
            raise AssertionError(f"the graph was derived again: {len(step[0])} edges")
        yield from ()

    with Store.open(new_cfg.store_dir) as store:
        keeper = GraphKeeper(store, new_cfg)
        reach = keeper.prepare()
        assert dict(reach.radii)["phash@agree"] == -1
        stamp = store.graph_stamp()
        assert stamp is not None and stamp.radii == reach.radii and stamp.complete
        new_edges = stored_edges(store)
        assert new_edges.keys() == old_edges.keys()
        assert all(len(s) == 3 and s[0] == old_edges[k][0] for k, s in new_edges.items())  # + phash@agree
        loaded = load_index(store, new_cfg, build_graph=False, reach=reach)
        monkeypatch.setattr(MatchIndex, "_derive_steps", no_derivation)
        assert keeper.run(loaded, lambda: False) and keeper.edges_loaded == len(old_edges)
        monkeypatch.undo()  # the rebuilds below derive, as they should
        rebuilt = MatchIndex(matching_of(new_cfg))
        rebuilt.bulk_load([(p, loaded.files[p], hashes[loaded.files[p].digest], None) for p in loaded.files])
        with_check, without = graph(loaded), graph(load_index(store, old_cfg))
        assert with_check == graph(rebuilt)
        assert sum(map(len, with_check.values())) < sum(map(len, without.values())), "the check must drop pairs"


def test_a_short_slow_write_is_spaced_by_three_times_its_time(tmp_path: Path, monkeypatch) -> None:
    """A small library's ``duplicates.json`` / ``report.html`` write (well under a second) waits 3x
    its time before the next, not the 9x of a million-key write: the reports stay a fraction of a
    second behind ``groups.json`` on a busy machine (a test waiting for quiet reports saw them stale)."""
    from dedupd.reports import files, html
    from dedupd.reports.files import ReportWriter

    root, cfg, index = phash_index(tmp_path, 6, 30, {"threshold": 10, "agree": False})
    real = html.write_html_report

    def slow_html(*a, **k):  # a busy machine's write time
        time.sleep(0.3)
        return real(*a, **k)

    monkeypatch.setattr(html, "write_html_report", slow_html)
    writer = ReportWriter(str(tmp_path / "r"))
    try:  # thumbnails in the background, as the daemon makes them (a pool started under load took seconds)
        for _ in range(5):  # a short write: on a loaded machine the 6-file write itself can take a second
            writer.write(index, cfg, slow=True, on_thumbnails=lambda: None)
            wait = writer.slow_due - time.monotonic()
            if writer.slow_seconds < files.SLOW_SHORT_S:
                break
    finally:
        stop_workers()
    assert 0.3 <= writer.slow_seconds < files.SLOW_SHORT_S
    assert 2.5 * writer.slow_seconds < wait <= files.SLOW_SPACING_SHORT * writer.slow_seconds
