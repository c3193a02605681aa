"""The user's decisions in the store's ``review`` database: "not a duplicate" sets and pinned copies.

Keyed by content digest (a rename or a copy keeps the decision); see :mod:`dedupd.core.review` for
what they mean. Layout (msgpack values, never pickle):

- ``b"d" + id`` (8 big-endian bytes): a distinct set ``[1, [digest...], [path...], created_at]``;
  the paths are the ones the user named, for listing only. Ids come from ``meta`` and are never reused.
- ``b"k" + digest``: a pin ``[1, path, pinned_at]``.

A store written before this database existed opens read-only without it (no decisions yet).
Like :mod:`.manifest`, this module runs its work through the Store's transactions.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from dedupd.core.review import Review
from dedupd.daemon.store.records import pack, unpack

#: name of the sub-database (opened by :class:`dedupd.daemon.store.Store` besides ``DB_NAMES``)
REVIEW_DB = "review"
_ID = struct.Struct(">Q")
T = TypeVar("T")


@dataclass(frozen=True)
class DistinctSet:
    """Contents the user declared not duplicates of each other (``dedupd ignore``)."""

    id: int
    digests: frozenset[bytes]
    paths: tuple[str, ...]
    created_at: float


@dataclass(frozen=True)
class Pin:
    """A content the user chose to keep (``dedupd keep``)."""

    digest: bytes
    path: str
    pinned_at: float


class ReviewMixin:
    """The decisions half of :class:`dedupd.daemon.store.Store`."""

    if TYPE_CHECKING:  # provided by Store
        _dbs: dict[str, Any]

        def _read(self, fn: Callable[[Any], T]) -> T: ...
        def _write(self, fn: Callable[[Any], T]) -> T: ...
        def _scan(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]: ...

    def add_distinct(self, digests: Iterable[bytes], paths: Iterable[str]) -> int:
        """Record that ``digests`` are distinct contents (at least two); returns the set's id.

        The same set recorded again returns the existing id.
        """
        wanted = frozenset(digests)
        if len(wanted) < 2:
            raise ValueError("a distinct set needs at least two different contents")
        for s in self.distinct_sets():
            if s.digests == wanted:
                return s.id
        names = [os.fsencode(p) for p in paths]

        def work(txn: Any) -> int:
            meta = self._dbs["meta"]
            raw = txn.get(b"review_next_id", db=meta)
            sid = unpack(raw) if raw is not None else 1
            txn.put(b"d" + _ID.pack(sid), pack([1, sorted(wanted), names, time.time()]), db=self._dbs[REVIEW_DB])
            txn.put(b"review_next_id", pack(sid + 1), db=meta)
            return sid

        return self._write(work)

    def remove_distinct(self, ids: Iterable[int]) -> list[int]:
        """Forget distinct sets by id; returns the ids that existed."""
        keys = [(i, b"d" + _ID.pack(i)) for i in ids]
        return self._write(lambda txn: [i for i, k in keys if txn.delete(k, db=self._dbs[REVIEW_DB])])

    def distinct_sets(self) -> list[DistinctSet]:
        """Every distinct set, oldest first."""
        if REVIEW_DB not in self._dbs:
            return []
        out = []
        for key, value in self._scan(REVIEW_DB, b"d"):
            _v, digests, names, created = unpack(value)
            out.append(DistinctSet(_ID.unpack(key[1:])[0], frozenset(digests), tuple(map(os.fsdecode, names)),
                                   created))
        return out

    def pin(self, digest: bytes, path: str) -> None:
        """Keep the content ``digest`` (named ``path`` by the user) whenever it is in a group."""
        self._write(lambda txn: txn.put(b"k" + digest, pack([1, os.fsencode(path), time.time()]),
                                        db=self._dbs[REVIEW_DB]))

    def unpin(self, digests: Iterable[bytes]) -> list[bytes]:
        """Forget pins; returns the digests that were pinned."""
        keys = list(digests)
        return self._write(lambda txn: [d for d in keys if txn.delete(b"k" + d, db=self._dbs[REVIEW_DB])])

    def pins(self) -> list[Pin]:
        """Every pin, by digest."""
        if REVIEW_DB not in self._dbs:
            return []
        out = []
        for key, value in self._scan(REVIEW_DB, b"k"):
            _v, name, when = unpack(value)
            out.append(Pin(key[1:], os.fsdecode(name), when))
        return out

    def review(self) -> Review:
        """The decisions as :class:`dedupd.core.review.Review` (for the group decision)."""
        return Review(tuple(s.digests for s in self.distinct_sets()),
                      tuple((p.digest, p.pinned_at, p.path) for p in self.pins()))
