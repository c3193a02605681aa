"""Load a :class:`MatchIndex` from a store: at daemon start-up and without a daemon (``dedupd report``).

Files in state ``ok`` under a configured root, with a stored encoding, are loaded in one pass
over the encodings and one over the files (chunked read transactions, no read per file). The
duplicate graph comes from the store's edges when they reach far enough for the config
(:func:`load_edges`, O(edges)); otherwise it is derived. Never writes to the store, so it works on
a store opened ``readonly=True`` while a daemon holds the writer lock.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable, Iterator

from dedupd.daemon.config import Config
from dedupd.daemon.gcpause import gc_paused
from dedupd.daemon.index import Edge, MatchIndex, Matching, Reach, grown_scores
from dedupd.daemon.store import Store
from dedupd.daemon.store.records import GraphStamp
from dedupd.daemon.walk import root_of

logger = logging.getLogger(__name__)
#: madvise(2) advice: drop the range's pages from this process (a shared file map refaults them)
MADV_DONTNEED = 4
#: stored CNN reach below the configured similarity threshold (see :func:`reach_of`)
CNN_MARGIN = 0.02


def matching_of(config: Config) -> Matching:
    """The duplicate rule a config asks for."""
    return Matching(config.hash_methods(), config.cnn.threshold if config.cnn else None, config.match,
                    config.strong_bounds(), config.variant_options(),
                    config.cnn.confirm if config.cnn else None, config.agree_bounds())


def reach_of(config: Config) -> Reach:
    """How far the persisted graph reaches for ``config``: each hash threshold plus ``graph_margin``
    bits (default 2), and the CNN threshold less :data:`CNN_MARGIN`.

    Why 2 bits: a threshold is usually tuned a step or two from its default; every extra bit at a
    radius near 10 multiplies the unrelated pairs within reach by about (64 - r) / (r + 1) ≈ 5
    (uniform 64-bit hashes), so 2 bits cost ~25x the chance pairs of the threshold itself (a few
    thousand at 1M files, against the true near-duplicates) while a ±2 change stays a filter.
    """
    return Reach.of(matching_of(config), config.graph_margin, CNN_MARGIN)


def stamp_of(config: Config, reach: Reach, *, complete: bool = False, cursor: bytes | None = None) -> GraphStamp:
    """The store's ``graph`` stamp for edges of ``reach`` under ``config``'s encoders."""
    return GraphStamp(reach.radii, reach.cnn, config.hash_params_id(), config.cnn_model_id(), complete, cursor)


def usable_stamp(store: Store, config: Config) -> GraphStamp | None:
    """The stored stamp when its edges serve ``config`` (its reach covers the thresholds), else None.

    The encoder settings need not agree: every write of an encoding replaces that digest's edges,
    so the stored edges always describe the stored hash values, however they were computed.
    """
    stamp = store.graph_stamp()
    if stamp is None or not Reach(stamp.radii, stamp.cnn).covers(matching_of(config)):
        return None
    return stamp


def upgrade_stamp(store: Store, config: Config) -> GraphStamp | None:
    """When the stored edges lack only check scores that ``config`` reads (stored before the
    framing check existed), compute those from the stored hashes and store the edges again under
    the grown reach, in one transaction (a one-off O(edges) at start-up, against a derivation of
    the whole graph); returns the new stamp. None when that does not apply."""
    stamp = store.graph_stamp()
    if stamp is None:
        return None
    stored = Reach(stamp.radii, stamp.cnn)
    grown = stored.with_checks(matching_of(config))
    if grown is None:
        return None
    hashes: dict[bytes, dict[str, int] | None] = {}

    def hashes_of(digest: bytes) -> dict[str, int] | None:
        if digest not in hashes:
            enc = store.get_encoding(digest)
            hashes[digest] = None if enc is None else dict(enc.hashes)
        return hashes[digest]

    edges: list[Edge] = []
    for chunk in store.iter_edges():
        for a, b, scores in chunk:
            ha, hb = hashes_of(a), hashes_of(b)
            if ha is not None and hb is not None and (new := grown_scores(stored, grown, scores, ha, hb)) is not None:
                edges.append((a, b, new))
    new_stamp = stamp_of(config, grown, complete=stamp.complete, cursor=stamp.cursor)
    written = store.replace_graph(new_stamp, edges)
    logger.info("stored duplicate graph given the check scores of this config", extra={"edges": written,
                "checks": [m for m in grown.names if m not in stored.names]})
    return new_stamp


def load_edges(store: Store, index: MatchIndex, stamp: GraphStamp, should_stop: Callable[[], bool] = lambda: False
               ) -> int:
    """Link the store's edges into ``index`` (whose reach must be the stamp's), one chunk per lock
    hold, then say how far they are derived. Returns the number of edges linked."""
    n = 0
    for chunk in store.iter_edges():
        if should_stop():
            return n
        n += index.load_edges(chunk)
    index.mark_derived(stamp.cursor, stamp.complete)
    release_mapped(store)
    return n


def release_mapped(store: Store) -> int:
    """Drop this process's resident pages of the store's memory map (``data.mdb``) after a bulk
    read; returns the bytes of map advised.

    A start-up load reads every record through the map: ~0.5 GB at a million files, counted in
    the daemon's RSS although the index holds copies and the kernel may reclaim them. LMDB maps
    its file read-only and shared (writes go through ``pwrite``), so ``MADV_DONTNEED`` only
    unmaps the pages: they stay in the page cache and a later read faults them back in. Linux
    only (``/proc/self/maps``); elsewhere, or on any error, nothing is done.
    """
    target = os.path.realpath(os.path.join(store.path, "data.mdb"))
    done = 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/self/maps") as f:
            spans = [line.split(maxsplit=5) for line in f]
        for span in spans:
            if len(span) == 6 and span[5].strip() == target and span[1].startswith("r-") and span[1][3] == "s":
                lo, hi = (int(x, 16) for x in span[0].split("-"))
                if libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), MADV_DONTNEED) == 0:
                    done += hi - lo
    except (OSError, AttributeError, ValueError) as exc:
        logger.debug("could not release the store's mapped pages: %s", exc)
    return done


def release_memory(store: Store | None) -> None:
    """After a walk of every file: the store's mapped pages (:func:`release_mapped`) and the C
    heap's free pages (``malloc_trim``: glibc keeps freed memory of the walk's million small
    allocations otherwise) back to the kernel."""
    if store is not None:
        release_mapped(store)
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _files(store: Store, config: Config) -> Iterator[tuple[str, int, int, bytes]]:
    """``(path, size, mtime_ns, digest)`` of every ok file under a root of ``config``."""
    inside: dict[str, bool] = {}  # by folder: whether a root holds a file does not depend on its name
    for row in store.iter_ok_files():
        folder = row[0].rpartition("/")[0]
        if (ok := inside.get(folder)) is None:
            ok = inside[folder] = root_of(row[0], config) is not None
        if ok:
            yield row


def load_index(store: Store, config: Config, *, build_graph: bool = True, reach: Reach | None = None) -> MatchIndex:
    """Every indexed file of ``store`` under ``config``'s roots.

    With ``build_graph`` the duplicate graph is complete on return: the stored edges when they
    serve the config (derivation finished in memory if the store's was interrupted), else derived
    in memory. Without it the files are loaded with the given ``reach`` and no edges: the caller
    loads and derives them (the daemon, in the background).
    """
    stamp = usable_stamp(store, config) if build_graph else None
    if stamp is not None:
        reach = Reach(stamp.radii, stamp.cnn)
    index = MatchIndex(matching_of(config), reach)
    with gc_paused():
        index.load_store(store.iter_encodings_brief(), _files(store, config), build_graph=False)
    release_mapped(store)
    if build_graph:
        if stamp is not None:
            load_edges(store, index, stamp)
        index.build_graph()
    return index
