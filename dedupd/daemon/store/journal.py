"""The change journal: what each commit changed of the index's inputs, so that a start after a
crash adopts the last index snapshot and replays the commits since it instead of loading every
record (at a million files ~40 s of CPU against ~8 s).

Every write transaction notes the file paths whose record it wrote or deleted and the content
digests whose encoding or edges it wrote or dropped; just before the commit they go into the
``journal`` database under the transaction's id (8 big-endian bytes) and a sequence number, so
the journal reads in commit order. A change the index cannot be brought up to date from
(a new graph stamp, cleared or derived edges, other encoders) is noted as ``graph``: a replay
across it is refused and the store is loaded.

``meta[journal_from]``: the journal holds every change of every commit with a larger id; absent
(a new or migrated store), or once the journal would pass :data:`JOURNAL_MAX` entries, there is
no journal (nothing is noted) until the next :meth:`JournalMixin.trim_journal`. The daemon asks
for a trim once its index is loaded, and the trim rides along with its next write (no commit of
its own: a clean restart commits nothing, and its sealed reports stay adoptable). This module
does not import ``lmdb``.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dedupd.daemon.store.records import pack, unpack

JOURNAL_DB = "journal"
#: ``meta`` key: the journal holds every change of every commit after this transaction id
JOURNAL_FROM = b"journal_from"
#: entries at most; past it journaling stops until the next trim (a start then loads the store)
JOURNAL_MAX = 200_000
_KEY = struct.Struct(">QI")
_TXN = struct.Struct(">Q")
_PATH, _DIGEST, _GRAPH = b"p", b"d", b"g"
_RESET = -1


@dataclass
class JournalChanges:
    """What commits changed: file paths (as ``os.fsdecode`` gives them) and content digests."""

    paths: set[str] = field(default_factory=set)
    digests: set[bytes] = field(default_factory=set)
    entries: int = 0


@dataclass
class _Noted:
    """The changes of the write transaction in progress (raw path bytes)."""

    paths: set[bytes] = field(default_factory=set)
    digests: set[bytes] = field(default_factory=set)
    graph: bool = False


class JournalMixin:
    """The journal half of :class:`dedupd.daemon.store.Store`."""

    if TYPE_CHECKING:
        _dbs: dict[str, Any]

        def _read(self, fn: Any) -> Any: ...

    def _journal_init(self) -> None:
        self._local = threading.local()  # per thread: the write transaction it runs (one at a time)
        self._trim: int | None = None  # a trim to do with the next write (see trim_journal)

    # -- noting (inside a write transaction) --------------------------------------------------

    def _journal_begin(self) -> None:
        self._local.noted = _Noted()

    def _noted(self) -> _Noted:
        noted: _Noted | None = getattr(self._local, "noted", None)
        if noted is None:  # a write helper outside _write: a bug, not something to journal around
            raise RuntimeError("store write outside a write transaction")
        return noted

    def _note_path(self, raw: bytes) -> None:
        self._noted().paths.add(raw)

    def _note_digest(self, digest: bytes) -> None:
        self._noted().digests.add(digest)

    def _note_graph(self) -> None:
        self._noted().graph = True

    def _journal_abandon(self) -> None:
        self._local.noted = None

    def _journal_committed(self, trimmed: int | None) -> None:
        """The transaction that did the trim ``trimmed`` committed: it is done."""
        if trimmed is not None and self._trim == trimmed:
            self._trim = None

    def _journal_commit(self, txn: Any) -> int | None:
        """Write the noted changes (and a pending trim) into ``txn``; returns the trim done, for
        :meth:`_journal_committed`."""
        noted: _Noted = self._local.noted
        self._local.noted = None
        if not (noted.paths or noted.digests or noted.graph):
            return None  # (a trim waits for a transaction that commits anyway: never one of its own)
        db, meta = self._dbs[JOURNAL_DB], self._dbs["meta"]
        trimmed = self._trim
        if trimmed is not None:
            self._trim_in(txn, trimmed)
        raw = txn.get(JOURNAL_FROM, db=meta)
        if raw is None:
            return trimmed
        n = len(noted.paths) + len(noted.digests) + noted.graph
        if txn.stat(db)["entries"] + n > JOURNAL_MAX:
            txn.drop(db, delete=False)
            txn.delete(JOURNAL_FROM, db=meta)
            return trimmed
        txnid = txn.id()
        items = [_PATH + p for p in sorted(noted.paths)] + [_DIGEST + d for d in sorted(noted.digests)]
        if noted.graph:
            items.append(_GRAPH)
        for seq, value in enumerate(items):
            txn.put(_KEY.pack(txnid, seq), value, db=db)
        return trimmed

    def _trim_in(self, txn: Any, through: int) -> None:
        """Drop the entries of commits up to ``through`` (:data:`_RESET`: all, the journal then
        complete from this transaction on)."""
        db, meta = self._dbs[JOURNAL_DB], self._dbs["meta"]
        if through == _RESET:
            txn.drop(db, delete=False)
            txn.put(JOURNAL_FROM, pack(txn.id() - 1), db=meta)
            return
        cur = txn.cursor(db=db)
        end = _TXN.pack(through + 1)
        ok = cur.first()
        while ok and bytes(cur.key()) < end:
            ok = cur.delete()
        raw = txn.get(JOURNAL_FROM, db=meta)
        if raw is not None and unpack(raw) < through:
            txn.put(JOURNAL_FROM, pack(through), db=meta)

    # -- reading and trimming -----------------------------------------------------------------

    def trim_journal(self, through: int | None) -> None:
        """With the next write: forget the entries of commits up to ``through`` (the index
        snapshot the daemon adopted was sealed there), or with None start the journal afresh from
        that write on (the daemon loaded the store: no snapshot older than its next one is needed)."""
        self._trim = _RESET if through is None else through

    def journal_entries(self) -> int:
        """Entries in the journal now (diagnostics)."""
        count: int = self._read(lambda txn: txn.stat(self._dbs[JOURNAL_DB])["entries"])
        return count

    def journal_since(self, txnid: int, limit: int) -> JournalChanges | str:
        """The changes of every commit after ``txnid``, or why they cannot be told: no journal
        back to it, a change that is not replayable, or more than ``limit`` entries."""
        def read(txn: Any) -> JournalChanges | str:
            raw = txn.get(JOURNAL_FROM, db=self._dbs["meta"])
            if raw is None or unpack(raw) > txnid:
                return "the change journal does not reach back to it"
            out = JournalChanges()
            cur = txn.cursor(db=self._dbs[JOURNAL_DB])
            ok = cur.set_range(_TXN.pack(txnid + 1))
            while ok:
                out.entries += 1
                if out.entries > limit:
                    return f"more than {limit:,} changes since it"
                value = bytes(cur.value())
                kind, rest = value[:1], value[1:]
                if kind == _PATH:
                    out.paths.add(os.fsdecode(rest))
                elif kind == _DIGEST:
                    out.digests.add(rest)
                else:
                    return "the duplicate graph or the encoders changed since it"
                ok = cur.next()
            return out

        result: JournalChanges | str = self._read(read)
        return result
