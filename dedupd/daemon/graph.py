"""The persisted duplicate graph: keeps the store's edges and the index's graph in step.

The pipeline writes the edges of every new encoding in its own transaction (see
:meth:`MatchIndex.plan`). This module covers the rest:

- start-up: the stored edges serve the config when their reach covers its thresholds: they are
  loaded (O(edges)); edges stored before a check score (the framing check) existed first get it
  from the stored hashes (:func:`~dedupd.daemon.loader.upgrade_stamp`). Otherwise the store's
  edges are cleared, stamped with the new reach, and derived in the background
  (:meth:`MatchIndex.build_graph`), each step written with its progress so that a restart resumes
  where the last one stopped. An old store (schema 1, no edges) takes
  the second path.
- reload: a threshold or mode change within the reach refilters the graph in memory; other
  methods or thresholds beyond the reach re-derive, as above. Called on the pipeline thread, so
  that no batch of the pipeline is planned under one reach and written under another.

Everything long runs on the ``graph`` thread, a short lock hold at a time: queries, status and
the watchdog are never blocked for long.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

from dedupd.daemon.config import Config
from dedupd.daemon.gcpause import gc_paused
from dedupd.daemon.index import Edge, MatchIndex, Reach
from dedupd.daemon.loader import (
    load_edges,
    load_index,
    matching_of,
    reach_of,
    stamp_of,
    upgrade_stamp,
    usable_stamp,
)
from dedupd.daemon.snapshot import Window, adopt_snapshot, write_snapshot
from dedupd.daemon.store import Store
from dedupd.daemon.store.records import GraphStamp

logger = logging.getLogger(__name__)


class GraphKeeper:
    """Owns the ``graph`` stamp of one store for one running daemon."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.state = "loading"  # loading | deriving | refiltering | ready | stopped
        self.edges_loaded = 0
        self._stamp: GraphStamp | None = None  # stored edges to load at the next run()
        self._derive = False  # the stored edges were cleared: the next run() derives them all
        self._lock = threading.Lock()

    def prepare(self) -> Reach:
        """Start-up, before the index is loaded: the reach of the graph (the stored one if it serves
        the config; else a new one, the stored edges cleared)."""
        # edges stored before a check score existed get it from the stored hashes (no derivation)
        stamp = usable_stamp(self.store, self.config) or upgrade_stamp(self.store, self.config)
        if stamp is not None:
            self._stamp = stamp
            return Reach(stamp.radii, stamp.cnn)
        reach = reach_of(self.config)
        old = self.store.graph_stamp()
        logger.info("the stored duplicate graph does not serve this config: deriving it in the background",
                    extra={"stored": None if old is None else dict(old.radii), "wanted": dict(reach.radii)})
        self.store.reset_graph(stamp_of(self.config, reach), clear=True)
        self._derive = True
        return reach

    def load(self) -> MatchIndex:
        """Start-up: :meth:`prepare`, then the index: the sealed snapshot of the last clean stop
        or idle seal with its edges linked when it matches the store, with the commits since it
        replayed from the store's journal (:mod:`dedupd.daemon.snapshot`), else loaded from the
        store (its edges then linked by :meth:`run`)."""
        reach = self.prepare()
        if self._stamp is not None and self._stamp.complete:
            adopted = adopt_snapshot(self.store, self.config, reach)
            if adopted is not None:
                with self._lock:
                    self._stamp = None  # linked already: run() only finishes the graph
                index, self.edges_loaded = adopted
                return index
        index = load_index(self.store, self.config, build_graph=False, reach=reach)
        self.store.trim_journal(None)  # the journal starts afresh: the next snapshot is sealed after it
        return index

    def save(self, index: MatchIndex, window: Window | None = None) -> bool | None:
        """Clean stop (the store quiescent), or idle (``window``: see :mod:`dedupd.daemon.idleseal`):
        the snapshot of ``index`` for the next start (None: ``window`` did not hold)."""
        return write_snapshot(self.store, self.config, index, window)

    def run(self, index: MatchIndex, should_stop: Callable[[], bool]) -> bool:
        """The ``graph`` thread: load the stored edges (start-up), then refilter or derive what is due."""
        t0 = time.monotonic()
        with self._lock:
            stamp, self._stamp = self._stamp, None
            derive, self._derive = self._derive, False
        if derive:
            index.mark_derived(None, False)
        if stamp is not None:
            self.state = "loading"
            with gc_paused():
                self.edges_loaded = load_edges(self.store, index, stamp, should_stop)
                gc.freeze()  # the linked graph lives on: later full collections need not walk it
            logger.info("duplicate graph loaded", extra={"edges": self.edges_loaded, "complete": stamp.complete,
                                                        "seconds": round(time.monotonic() - t0, 2)})
        self.state = "deriving" if not index.derived else "refiltering"
        reach, config = index.reach, self.config

        def persist(edges: list[Edge], expect: dict[bytes, dict[str, int]], last: bytes | None) -> bool:
            stamp = stamp_of(config, reach, complete=last is None, cursor=last)
            return self.store.put_edges(stamp, edges, expect) >= 0

        if self.state == "refiltering":
            # a new graph of every matching edge (dicts by the hundred thousand at a million files):
            # no full collection meanwhile (each walked every object not frozen, 0.1 s and more of
            # held GIL), and none that walks it afterwards (it lives until the next reload)
            with gc_paused():
                done = index.build_graph(should_stop, persist)
                if done:  # before the collector resumes: its first collection would walk every new object
                    gc.freeze()
        else:
            done = index.build_graph(should_stop, persist)
        if done:
            self.state = "ready"
            logger.info("duplicate graph ready", extra={"files": len(index.files),
                                                       "seconds": round(time.monotonic() - t0, 2)})
        return done

    def retune(self, index: MatchIndex, config: Config) -> None:
        """Adopt a reloaded config (on the pipeline thread); the caller then starts :meth:`run`."""
        old, self.config = self.config, config
        matching = matching_of(config)
        if index.reach.covers(matching):
            index.retune(matching)
            if (old.hash_params_id(), old.cnn_model_id()) != (config.hash_params_id(), config.cnn_model_id()):
                stored = self.store.graph_stamp()
                if stored is not None:
                    self.store.reset_graph(stamp_of(config, index.reach, complete=stored.complete,
                                                    cursor=stored.cursor), clear=False)
            self.state = "refiltering"
            return
        reach = reach_of(config)
        logger.info("new thresholds or methods beyond the stored graph: deriving it in the background",
                    extra={"reach": dict(reach.radii), "cnn": reach.cnn})
        self.store.reset_graph(stamp_of(config, reach), clear=True)
        index.retune(matching, reach)
        self.state = "deriving"
