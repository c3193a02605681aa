"""The quarantine manifest: one entry per move, written (and fsynced) before the move happens.

Entries live in the store's ``quarantine`` database under their id as 8 big-endian bytes, so
they iterate in id order; ids come from a counter in ``meta`` and are never reused. Paths are
stored as the bytes ``os.fsencode`` gives, so any file name round-trips. This module does not
import ``lmdb``: :class:`ManifestMixin` runs its work through the Store's transactions (``txn``).
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dedupd.daemon.store.records import pack, unpack

QUARANTINE_STATES: tuple[str, ...] = ("pending", "moved", "restored", "failed")
_QID = struct.Struct(">Q")
T = TypeVar("T")


@dataclass(frozen=True)
class QuarantineEntry:
    """One move in the quarantine manifest. ``id`` and the times are set by the store."""

    origin: str
    dest: str
    keeper: str
    digest: bytes | None = None
    reason: str = ""
    state: str = "pending"
    created_at: float = 0.0
    updated_at: float = 0.0
    id: int = 0

    def as_dict(self) -> dict[str, object]:
        """The entry as the socket API and ``dedupd quarantine list --json`` show it (no digest)."""
        return {"id": self.id, "origin": self.origin, "dest": self.dest, "keeper": self.keeper, "reason": self.reason,
                "state": self.state, "created_at": self.created_at, "updated_at": self.updated_at}

    def __post_init__(self) -> None:
        if self.state not in QUARANTINE_STATES:
            raise ValueError(f"QuarantineEntry.state must be one of {QUARANTINE_STATES}, got {self.state!r}")


def pack_quarantine(entry: QuarantineEntry) -> bytes:
    """Encode a manifest entry (paths as bytes, so any file name round-trips)."""
    return pack([1, os.fsencode(entry.origin), os.fsencode(entry.dest), os.fsencode(entry.keeper),
                 entry.digest, entry.reason, entry.state, entry.created_at, entry.updated_at])


def unpack_quarantine(qid: int, data: bytes) -> QuarantineEntry:
    """Decode a manifest entry stored under ``qid``."""
    _v, origin, dest, keeper, digest, reason, state, created, updated = unpack(data)
    return QuarantineEntry(os.fsdecode(origin), os.fsdecode(dest), os.fsdecode(keeper), digest, reason,
                           state, created, updated, qid)


class ManifestMixin:
    """The manifest half of :class:`dedupd.daemon.store.Store`."""

    if TYPE_CHECKING:  # provided by Store
        _dbs: dict[str, Any]

        def _read(self, fn: Callable[[Any], T]) -> T: ...
        def _write(self, fn: Callable[[Any], T]) -> T: ...
        def _scan(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def add_quarantine(self, entry: QuarantineEntry) -> int:
        """Append ``entry`` to the manifest (durable on return) and return its new id (1, 2, ...)."""
        def work(txn: Any) -> int:
            meta = self._dbs["meta"]
            raw = txn.get(b"quarantine_next_id", db=meta)
            qid = unpack(raw) if raw is not None else 1
            now = time.time()
            stored = dataclasses.replace(entry, id=qid, created_at=entry.created_at or now,
                                         updated_at=entry.updated_at or now)
            txn.put(_QID.pack(qid), pack_quarantine(stored), db=self._dbs["quarantine"])
            txn.put(b"quarantine_next_id", pack(qid + 1), db=meta)
            return qid

        return self._write(work)

    def get_quarantine(self, qid: int) -> QuarantineEntry | None:
        """The manifest entry ``qid``, or None."""
        data = self._read(lambda txn: txn.get(_QID.pack(qid), db=self._dbs["quarantine"]))
        return None if data is None else unpack_quarantine(qid, data)

    def update_quarantine(self, qid: int, **changes: Any) -> QuarantineEntry:
        """Change fields of entry ``qid`` (``updated_at`` defaults to now) and return the new entry.

        Raises:
            KeyError: no entry ``qid``.  TypeError/ValueError: an unknown field or a bad state.
        """
        if "id" in changes:
            raise TypeError("a manifest entry's id cannot change")

        def work(txn: Any) -> QuarantineEntry:
            data = txn.get(_QID.pack(qid), db=self._dbs["quarantine"])
            if data is None:
                raise KeyError(qid)
            entry = dataclasses.replace(unpack_quarantine(qid, data), **{"updated_at": time.time(), **changes})
            txn.put(_QID.pack(qid), pack_quarantine(entry), db=self._dbs["quarantine"])
            return entry

        return self._write(work)

    def iter_quarantine(self, state: str | None = None) -> Iterator[QuarantineEntry]:
        """Manifest entries in id order, optionally only those in ``state``."""
        for key, value in self._scan("quarantine"):
            entry = unpack_quarantine(_QID.unpack(key)[0], value)
            if state is None or entry.state == state:
                yield entry
