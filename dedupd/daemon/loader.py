"""Load a :class:`MatchIndex` from a store without a running daemon (``dedupd report``).

Mirrors ``Daemon._load_index`` (files in state ``ok`` under a configured root, with a stored
encoding) but never writes to the store, so it works on a store opened ``readonly=True`` while a
daemon holds the writer lock.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dedupd.daemon.config import Config
from dedupd.daemon.index import FileInfo, MatchIndex, Matching
from dedupd.daemon.store import Store
from dedupd.daemon.walk import root_of


def matching_of(config: Config) -> Matching:
    """The duplicate rule a config asks for."""
    return Matching(config.hash_methods(), config.cnn.threshold if config.cnn else None, config.match,
                    config.strong_bounds(), config.variant_options(),
                    config.cnn.confirm if config.cnn else None)


def load_index(store: Store, config: Config, *, build_graph: bool = True) -> MatchIndex:
    """Every indexed file of ``store`` under ``config``'s roots, with the duplicate graph built
    (or, with ``build_graph=False``, to be built by :meth:`MatchIndex.build_graph`)."""
    index = MatchIndex(matching_of(config))
    encodings: dict[bytes, Any] = {}
    items = []
    for path, rec in store.iter_files():
        if rec.state != "ok" or rec.digest is None or root_of(path, config) is None:
            continue
        enc = encodings.get(rec.digest)
        if enc is None:
            enc = encodings[rec.digest] = store.get_encoding(rec.digest)
        if enc is None:
            continue
        vec = np.frombuffer(enc.cnn_vector, dtype=np.float32) if enc.cnn_vector is not None else None
        items.append((path, FileInfo(rec.digest, rec.size, rec.mtime_ns, enc.width, enc.height), enc.hashes, vec))
    index.bulk_load(items, build_graph=build_graph)
    return index
