"""The reconcile walk: a walk asked for while one runs is done again afterwards (a reload that
changes the roots or the methods mid-walk is never dropped), and a stop leaves a refresh pending."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.index import MatchIndex, Matching
from dedupd.daemon.pipeline import Work
from dedupd.daemon.reconcile import Reconciler
from dedupd.daemon.store import Store


def make(tmp_path: Path, queue: Callable[[Work], None], stopping: Callable[[], bool] = lambda: False):
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        (root / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    cfg = config_from_mapping({"roots": [str(root)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "reports")}, env={"HOME": str(tmp_path)})
    threads: list[threading.Thread] = []

    def spawn(name: str, target: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=target, name=name)
        t.start()
        threads.append(t)
        return t

    store = Store.open(cfg.store_dir)
    return cfg, store, Reconciler(store, MatchIndex(Matching({"phash": 10})), queue, spawn, stopping), threads


def test_a_walk_asked_for_during_a_walk_is_done_again(tmp_path: Path) -> None:
    release = threading.Event()
    queued: list[Work] = []

    def queue(work: Work) -> None:  # a full pipeline queue holds the walk
        release.wait(10)
        queued.append(work)

    cfg, store, rec, threads = make(tmp_path, queue)
    try:
        assert rec.start(cfg) and not rec.done
        assert not rec.start(cfg)  # a reload's walk while the first one runs: remembered, not dropped
        assert rec.again and rec.due
        rec.refresh = True  # and the reload added a method
        release.set()
        for t in threads:
            t.join(10)
        assert rec.done and rec.complete and len(queued) == 3
        assert rec.start(cfg) and rec.progress["run"] == 2 and not rec.again  # the walk owed
        for t in threads:
            t.join(10)
        assert rec.complete and not rec.due  # the refresh was consumed by this walk
        assert len(queued) == 6  # refresh: every file queued again, unchanged or not
    finally:
        store.close()


def test_a_stopped_walk_is_incomplete_and_keeps_its_refresh(tmp_path: Path) -> None:
    stop = threading.Event()

    def queue(work: Work) -> None:
        stop.set()  # the daemon stops during the walk

    cfg, store, rec, threads = make(tmp_path, queue, stopping=stop.is_set)
    try:
        rec.refresh = True
        rec.start(cfg)
        for t in threads:
            t.join(10)
        assert rec.done and not rec.complete and rec.refresh  # the next start-up refreshes again
    finally:
        store.close()
