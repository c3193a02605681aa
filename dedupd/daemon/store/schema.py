"""Store layout version and migrations: the hook that opens older stores and refuses newer ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dedupd.daemon.store.records import pack, unpack
from dedupd.errors import StoreError

#: Named LMDB databases of one store (see :mod:`dedupd.daemon.store.records` for their layout).
DB_NAMES: tuple[str, ...] = ("files", "digests", "encodings", "quarantine", "meta", "edges", "journal")
#: Version of the layout written by this dedupd. Bump it and add ``MIGRATIONS[old]`` together.
#: 2: the ``edges`` database (the persisted duplicate graph, see :class:`~.records.GraphStamp`).
#: 3: the ``journal`` database (changes since the index snapshot, see :mod:`.journal`): an older
#: dedupd must not write the store, as its commits would be missing from the journal.
SCHEMA_VERSION = 3
#: ``MIGRATIONS[v](txn, dbs)`` rewrites a version-``v`` store into version ``v + 1`` inside the
#: opening write transaction, so a crash mid-migration leaves the old version intact.
MIGRATIONS: dict[int, Callable[[Any, dict[str, Any]], None]] = {}


def _add_edges(txn: Any, dbs: dict[str, Any]) -> None:
    """1 → 2: the ``edges`` database is created empty (by opening it in the same transaction); with
    no ``graph`` stamp in ``meta`` the daemon derives the edges in the background after start-up."""
    txn.delete(b"graph", db=dbs["meta"])


MIGRATIONS[1] = _add_edges


def _add_journal(txn: Any, dbs: dict[str, Any]) -> None:
    """2 → 3: the ``journal`` database is created empty (by opening it in the same transaction);
    with no ``journal_from`` in ``meta`` there is no journal until the daemon's next start."""
    txn.delete(b"journal_from", db=dbs["meta"])


MIGRATIONS[2] = _add_journal


def init_or_migrate(txn: Any, dbs: dict[str, Any], path: str, readonly: bool) -> None:
    """Stamp a new store with :data:`SCHEMA_VERSION`, migrate an older one, or refuse a newer one.

    Raises:
        StoreError: newer schema; older schema opened read-only; no migration path; damaged meta.
    """
    meta = dbs["meta"]
    raw = txn.get(b"schema_version", db=meta)
    if raw is None:
        if readonly or txn.stat(dbs["files"])["entries"]:
            raise StoreError(f"the store in {path} has no schema version: it is not a dedupd store or is "
                             "damaged; move it aside and let dedupd create a new one")
        txn.put(b"schema_version", pack(SCHEMA_VERSION), db=meta)
        txn.put(b"created_at", pack(time.time()), db=meta)
        return
    version = unpack(raw)
    if not isinstance(version, int) or version < 1:
        raise StoreError(f"the store in {path} has an invalid schema version {version!r}: it is damaged")
    if version > SCHEMA_VERSION:
        raise StoreError(f"the store in {path} has schema version {version}, but this dedupd only "
                         f"understands up to {SCHEMA_VERSION}: it was written by a newer dedupd. Upgrade "
                         "dedupd, or set store_dir to another directory")
    if version == SCHEMA_VERSION:
        return
    if readonly:
        raise StoreError(f"the store in {path} has schema version {version} and needs migrating to "
                         f"{SCHEMA_VERSION}; open it once read-write (start the daemon or run `dedupd scan`)")
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise StoreError(f"no migration from store schema {version} to {version + 1} in this dedupd")
        step(txn, dbs)
        version += 1
    txn.put(b"schema_version", pack(SCHEMA_VERSION), db=meta)
    txn.put(b"migrated_at", pack(time.time()), db=meta)
