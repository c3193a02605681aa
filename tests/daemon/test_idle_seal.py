"""The idle seal (``dedupd.daemon.idleseal``): once the daemon has been idle, it writes the sealed
``groups.json`` and the index snapshot as a clean stop does, so that a start after a crash
(``kill -9``) is as fast as after a clean stop; stamped with the store's txnid captured in a
:class:`~dedupd.daemon.snapshot.Window` (a change during the capture: nothing stamped; after it:
a commit later than the stamp, replayed from the store's journal). Real LMDB stores, a real daemon subprocess and corpus images."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from dedupd.daemon.graph import GraphKeeper
from dedupd.daemon.loader import load_index
from dedupd.daemon.snapshot import SNAPSHOT_NAME, Window, write_snapshot
from dedupd.daemon.store import Store
from dedupd.reports.files import ReportWriter
from dedupd.reports.seal import SEAL_NAME, adoptable
from tests.daemon.test_daemon_snapshot import ADOPTED, adoption, answers, copy_a_member, last_start
from tests.daemon.test_groups_seal import ADOPTED as GROUPS_ADOPTED
from tests.daemon.test_groups_seal import _without_time, full_write
from tests.daemon.test_index_snapshot import _adopt, _cfg, _fill, assert_same_index

IDLE_DONE = "idle seal: groups.json and the index snapshot current"
TAKEN = "groups.json of before the crash taken"  # (groups.json's groups taken after a replay)
FAST = {"DEDUPD_IDLE_SEAL_S": "1.5"}


def test_window_voids_a_capture_that_a_change_overlaps(tmp_path: Path) -> None:
    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    snapshot = tmp_path / "store" / SNAPSHOT_NAME
    with Store.open(cfg.store_dir) as store:
        index = load_index(store, cfg)
        victim, info = next(iter(index.files.items()))
        # a commit during the window: nothing written
        window = Window(store, index)
        assert window.holds()
        assert store.delete_file(victim)
        assert not window.holds()
        assert write_snapshot(store, cfg, index, window) is None and not snapshot.exists()
        # the commit came before the window, its index update during it (the pipeline still busy,
        # then done): nothing written either way
        busy = [True]
        window = Window(store, index, lambda: not busy[0])
        assert write_snapshot(store, cfg, index, window) is None and not snapshot.exists()
        busy[0] = False
        index.remove(victim)
        assert write_snapshot(store, cfg, index, window) is None and not snapshot.exists()
        # settled and unchanged: written, stamped with the window's txnid, and adopted as the store load
        window = Window(store, index, lambda: not busy[0])
        assert write_snapshot(store, cfg, index, window) is True and snapshot.is_file()
        got = _adopt(store, cfg)
        assert got is not None
        got.build_graph()
        assert_same_index(got, load_index(store, cfg))
        # a commit after it is replayed from the store's journal
        other = next(p for p in index.files if p != victim)
        assert store.delete_file(other)
        got = _adopt(store, cfg)
        assert got is not None
        got.build_graph()
        assert_same_index(got, load_index(store, cfg), in_order=False)


def test_groups_seal_needs_the_window_to_hold(tmp_path: Path) -> None:
    _fill(tmp_path)
    cfg = _cfg(tmp_path)
    os.makedirs(cfg.report_dir)
    with Store.open(cfg.store_dir) as store:
        keeper = GraphKeeper(store, cfg)
        index = keeper.load()
        assert keeper.run(index, lambda: False)
        writer = ReportWriter(cfg.report_dir)
        writer.write_groups(index, cfg, store)
        victim = next(iter(index.files))
        window = Window(store, index)
        assert store.delete_file(victim)  # committed, the index not yet updated (a pipeline mid-batch)
        assert not writer.seal(index, cfg, store, window)
        assert not (Path(cfg.report_dir) / SEAL_NAME).exists()
        index.remove(victim)
        writer.write_groups(index, cfg, store)
        window = Window(store, index)
        assert writer.seal(index, cfg, store, window)
        assert adoptable(cfg.report_dir, store.path, window.txnid, cfg) is not None


def test_crash_after_idle_restarts_as_after_a_clean_stop(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    daemon = daemon_factory([watched], methods={"phash": {"threshold": 10, "crop": False}})
    groups_json = daemon.report_dir / "groups.json"

    daemon.start(env=FAST)
    daemon.wait_quiet()
    daemon.wait_until(lambda: IDLE_DONE in last_start(daemon), 30, "the idle seal")
    loaded = answers(daemon)
    assert loaded["counts"][1] > 3
    time.sleep(3)  # two more idle intervals: nothing written again for the same generation
    written = groups_json.read_bytes()
    # 1. kill -9 while idle: both adopted, the same answers and groups.json as a fresh scan
    daemon.kill9()
    assert last_start(daemon).count(IDLE_DONE) == 1  # once per store generation
    daemon.start(env={"DEDUPD_IDLE_SEAL_S": "600"})
    daemon.wait_quiet()
    assert ADOPTED in last_start(daemon) and GROUPS_ADOPTED in last_start(daemon)
    assert answers(daemon) == loaded and groups_json.read_bytes() == written
    # 2. a change after the idle write, then kill -9 before the next idle write: the snapshot is
    # adopted with the change replayed from the store's journal; groups.json (written after the
    # change: a floor seal) is taken, the replayed files' groups recomputed, and written anew
    member, copy = copy_a_member(daemon, loaded, watched)
    daemon.wait_quiet()
    assert IDLE_DONE not in last_start(daemon)
    daemon.kill9()
    daemon.start(env=FAST)
    daemon.wait_quiet()
    adopted = adoption(daemon)
    assert adopted is not None and adopted["replayed"] >= 1 and GROUPS_ADOPTED not in last_start(daemon)
    assert TAKEN in last_start(daemon)
    after = answers(daemon)
    assert member in {d["path"] for d in after["dups"][str(copy)]["duplicates"]}
    assert _without_time(groups_json.read_bytes()) == _without_time(full_write(daemon, tmp_path))
    # 3. idle again: sealed for the new generation; a crash then adopts it, with the copy
    daemon.wait_until(lambda: IDLE_DONE in last_start(daemon), 30, "the idle seal")
    daemon.kill9()
    daemon.start(env=FAST)
    daemon.wait_quiet()
    assert ADOPTED in last_start(daemon) and GROUPS_ADOPTED in last_start(daemon)
    assert answers(daemon) == after
    daemon.stop()
    assert _without_time(groups_json.read_bytes()) == _without_time(full_write(daemon, tmp_path))
    assert not daemon.errors_in_log()


class _Generations:
    """A daemon's store and index generations only (what the idle-seal thread polls)."""

    def __init__(self) -> None:
        import types

        self.txnid = 1
        self.store = types.SimpleNamespace(generation=lambda: self.txnid)
        self.index = types.SimpleNamespace(generation=0)


def test_a_slow_write_spaces_the_next(monkeypatch) -> None:
    """After a write of W seconds the next idle write waits SPACING x W, however idle the daemon
    is meanwhile: a trickle of changes does not rewrite a big snapshot after each one."""
    import threading

    from dedupd.daemon import idleseal

    monkeypatch.setattr(idleseal, "POLL_S", 0.005)
    for spacing, least in ((0.0, 0.0), (20.0, 1.0)):  # 20 x 0.05 s
        monkeypatch.setattr(idleseal, "SPACING", spacing)
        gens = _Generations()
        sealer = idleseal.IdleSealer(gens, idle=lambda: True, settled=lambda: True, interval=0.01)
        times: list[float] = []

        def seal_once(sealer=sealer, gens=gens, times=times) -> bool:
            time.sleep(0.05)
            times.append(time.monotonic())
            sealer.sealed_txnid = gens.txnid
            gens.txnid += 1  # a change right after each write
            return True

        monkeypatch.setattr(sealer, "seal_once", seal_once)
        stop = threading.Event()
        thread = threading.Thread(target=sealer.run, args=(stop,))
        thread.start()
        deadline = time.monotonic() + 10
        while len(times) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        thread.join(5)
        assert len(times) >= 3
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert min(gaps) >= least and (spacing or max(gaps) < 0.5), gaps
