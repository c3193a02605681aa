"""Who gets a connection slot: per-process and per-user limits, and eviction of idle connections.

Pure bookkeeping (no sockets, no clock of its own): the transport asks :meth:`Admission.admit`
for every accepted connection with the peer's credentials from ``SO_PEERCRED``, marks each
connection's phase, and calls :meth:`Admission.release` when it ends.

The rule, so that no single client can take every slot and the CLI always gets through:

* a process (pid) holds at most ``per_pid`` connections, a user (uid) at most ``per_uid``, everyone
  together at most ``total``;
* a newcomer over a limit takes the place of an *idle* connection (waiting for, or part-way
  through, a request head or body; or closing after an error) instead of being refused: in its own process
  (idle for a second at least) when that process is at its limit, otherwise the idle connection of the process (then user)
  holding the most connections, provided that process holds more than the newcomer's. A
  connection whose request is being processed is never cut;
* only when there is no such idle connection is the newcomer refused (503, ``Retry-After``).

So an attacker that opens (and reopens) as many idle connections as it can holds at most
``per_pid`` slots per process, and even many processes only delay a newcomer by the time it takes
to cut one of their idle connections.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

#: Phases in which a connection holds no work of the daemon and may be cut for a newcomer (a body
#: being received is only bytes on their way: trickled bodies held every slot of a user before).
IDLE_PHASES = frozenset({"idle", "head", "body", "closing"})
#: A process at its own limit recycles only connections idle this long: one that reopens as fast as
#: it can gets cheap 503s (no thread) instead of churning through its own slots.
OWN_IDLE_S = 1.0


@dataclass(eq=False)
class Slot:
    """One admitted connection. ``phase``: idle (no request byte yet), head (part of a head), body
    (its body being received), busy (request processed or answer sent), closing (error answer,
    lingering)."""

    pid: int
    uid: int
    phase: str = "idle"
    since: float = 0.0
    evicted: bool = False
    seq: int = field(default=0)


class Admission:
    """Connection slots with per-pid, per-uid and total limits (not thread-safe: hold a lock)."""

    def __init__(self, total: int, per_uid: int, per_pid: int) -> None:
        if not 1 <= per_pid <= per_uid <= total:
            raise ValueError("need 1 <= per_pid <= per_uid <= total")
        self.total, self.per_uid, self.per_pid = total, per_uid, per_pid
        self.slots: set[Slot] = set()
        self.by_pid: Counter[int] = Counter()
        self.by_uid: Counter[int] = Counter()
        self.evictions = 0
        self.refusals = 0
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self.slots)

    def admit(self, pid: int, uid: int, now: float,
              quiet: Callable[[Slot], bool] | None = None) -> tuple[Slot | None, Slot | None]:
        """``(slot, victim)``: the newcomer's slot (None: refuse it) and a connection to cut for it.

        ``quiet(slot)``, if given, must also hold for a victim (the transport checks that no
        request bytes wait unread on it: a request that just arrived is not idle).
        """
        victim: Slot | None = None
        ok = quiet or (lambda s: True)
        if self.by_pid[pid] >= self.per_pid:  # its own keep-alive leftovers; not what it just opened
            victim = self._oldest_idle(lambda s: s.pid == pid and now - s.since >= OWN_IDLE_S and ok(s))
        elif self.by_uid[uid] >= self.per_uid:
            victim = self._busiest_idle(pid, lambda s: s.uid == uid and ok(s))
        elif len(self.slots) >= self.total:
            victim = self._busiest_idle(pid, ok)
        else:
            return self._add(pid, uid, now), None
        if victim is None:
            self.refusals += 1
            return None, None
        self._remove(victim)
        victim.evicted = True
        self.evictions += 1
        return self._add(pid, uid, now), victim

    def release(self, slot: Slot) -> None:
        if not slot.evicted and slot in self.slots:
            self._remove(slot)

    # -- internals ------------------------------------------------------------------------------

    def _add(self, pid: int, uid: int, now: float) -> Slot:
        slot = Slot(pid, uid, since=now, seq=next(self._seq))
        self.slots.add(slot)
        self.by_pid[pid] += 1
        self.by_uid[uid] += 1
        return slot

    def _remove(self, slot: Slot) -> None:
        self.slots.discard(slot)
        for counter, key in ((self.by_pid, slot.pid), (self.by_uid, slot.uid)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def _oldest_idle(self, scope: Callable[[Slot], bool]) -> Slot | None:
        idle = [s for s in self.slots if s.phase in IDLE_PHASES and scope(s)]
        return min(idle, key=lambda s: (s.since, s.seq), default=None)

    def _busiest_idle(self, pid: int, scope: Callable[[Slot], bool]) -> Slot | None:
        """The oldest idle connection of the process (then user) holding the most connections, if
        that process holds more than the newcomer's process does."""
        idle = [s for s in self.slots if s.phase in IDLE_PHASES and scope(s)]
        if not idle:
            return None
        best = max(idle, key=lambda s: (self.by_pid[s.pid], self.by_uid[s.uid], -s.since, -s.seq))
        return best if self.by_pid[best.pid] > self.by_pid[pid] else None
