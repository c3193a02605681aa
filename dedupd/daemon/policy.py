"""The daemon's quarantine policy: plan from the index, move on the pipeline thread, restore.

Control flows one way, as data: the reporter thread asks :meth:`QuarantinePolicy.plan` for a
:class:`QuarantinePlan` (the decision of :func:`dedupd.core.policy.decide_groups`, plus the facts
each move was decided on) and queues it as a ``Work("quarantine", plan=...)``; the pipeline thread
hands it to :meth:`QuarantinePolicy.run`, which applies what still holds. A restore is a
:class:`RestoreRequest` queued the same way; the caller waits for its complete result.

A plan can be stale by the time it runs (files change, a SIGHUP lowers a threshold or switches
the policy), so every move is re-verified as the files are *now*: the keeper and the victim still
have the bytes (digest) and stat the plan saw, and the pair still matches under the current
config. Failed moves back off instead of being retried every report cycle; a full quarantine
filesystem pauses all moves until a probe succeeds.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dedupd.core.policy import STRONG, Evidence, pair_evidence
from dedupd.daemon.config import Config, KeepRule
from dedupd.daemon.encoder import file_digest
from dedupd.daemon.index import MatchIndex
from dedupd.daemon.loader import matching_of
from dedupd.daemon.quarantine import Quarantine
from dedupd.errors import DedupdError
from dedupd.reports.groups import decide

logger = logging.getLogger(__name__)

#: errnos meaning "the quarantine filesystem has no room": every move waits, not just this one
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def same_file(a: str, b: str) -> bool:
    """Whether two indexed paths name one file: one is a symlink resolving to the other (or both
    to a third). Moving one would move (or break) the other. Hard links are separate names: each
    may move without the other."""
    return os.path.realpath(a) == os.path.realpath(b)


class RestoreTimeout(DedupdError):
    """A restore did not finish in time; the message says what was (not) done."""


@dataclass(frozen=True)
class Seen:
    """One file as the plan saw it (index facts); the move re-checks them on disk."""

    path: str
    digest: bytes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class PlannedMove:
    """Quarantine ``victim``, a direct duplicate of ``keeper`` by ``evidence``."""

    victim: Seen
    keeper: Seen
    evidence: Evidence

    @property
    def reason(self) -> str:
        return self.evidence.reason


@dataclass(frozen=True)
class QuarantinePlan:
    """Moves decided on one view of the index, and the keep-rules they were decided under."""

    moves: tuple[PlannedMove, ...]
    keep: tuple[KeepRule, ...]


class RestoreRequest:
    """A restore queued for the pipeline thread, and its one, complete result.

    The waiter either gets the whole result or :class:`RestoreTimeout`; after a timeout the job
    does not start (if still queued) or stops before its next file (if running), so nothing the
    caller was told changes afterwards.
    """

    #: what the job does, for the timeout message
    what, done = "restore", "restored"

    def __init__(self, paths: list[str] | None) -> None:
        self.paths = None if paths is None else tuple(paths)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._abandoned = False
        self._started = False
        self._result: tuple[dict[str, Any], ...] = ()

    def begin(self) -> bool:
        """Called by the job: False when the waiter already gave up (then do nothing)."""
        with self._lock:
            self._started = not self._abandoned
            return self._started

    def abandoned(self) -> bool:
        with self._lock:
            return self._abandoned

    def finish(self, result: list[dict[str, Any]]) -> None:
        with self._lock:
            self._result = tuple(result)
            self._done.set()

    def wait(self, timeout: float) -> list[dict[str, Any]]:
        """The complete result, or :class:`RestoreTimeout` after ``timeout`` seconds."""
        self._done.wait(timeout)
        with self._lock:
            if not self._done.is_set():
                self._abandoned = True
                raise RestoreTimeout(
                    f"{self.what} did not finish within {timeout:g} s (the daemon is busy); "
                    + (f"it stopped before its next file: files already {self.done} stay {self.done} "
                       f"(see `dedupd quarantine list`); run the {self.what} again for the rest"
                       if self._started else f"it was cancelled before it started: nothing was {self.done}"))
            return [dict(r) for r in self._result]


class SelectedQuarantine(RestoreRequest):
    """Quarantine the files a user selected (``POST /v1/quarantine``, the review page), whatever
    the policy: each must be a direct duplicate of its group's kept copy, re-verified as the files
    are now. One result per path, like a restore."""

    what, done = "quarantine", "quarantined"

    def __init__(self, paths: list[str]) -> None:
        super().__init__(paths)


@dataclass
class _Backoff:
    attempts: int = 0
    next_at: float = 0.0
    entry: int | None = None  # the "failed" manifest entry, reused by the next attempt


class QuarantinePolicy:
    """Plans quarantine moves, applies them (re-verified) and runs restores for the daemon.

    Args:
        quarantine: the mover and manifest keeper; its ``config`` is the current config.
        index: the daemon's index (read to plan; moved files are removed from it).
        on_moved: called with each quarantined path (the daemon counts it).
        on_restored: called with each restored path (the daemon counts it and re-indexes it).
        on_change: called after moves changed the index (reports are rewritten).
        stopping: True once the daemon is shutting down (a plan stops between moves).
        retry_s, retry_max_s: first and largest wait before retrying a failed move.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, quarantine: Quarantine, index: MatchIndex, *,
                 on_moved: Callable[[str], None] = lambda p: None,
                 on_restored: Callable[[str], None] = lambda p: None,
                 on_change: Callable[[], None] = lambda: None,
                 stopping: Callable[[], bool] = lambda: False,
                 retry_s: float = 2.0, retry_max_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quarantine = quarantine
        self.index = index
        self._on_moved = on_moved
        self._on_restored = on_restored
        self._on_change = on_change
        self._stopping = stopping
        self.retry_s, self.retry_max_s = retry_s, retry_max_s
        self._clock = clock
        self._lock = threading.Lock()  # guards the backoff state (planned on one thread, run on another)
        self._backoff: dict[tuple[str, bytes], _Backoff] = {}
        self._no_space = _Backoff()  # the quarantine filesystem is full: every move waits
        self._failed_entries: dict[tuple[str, bytes | None], int] | None = None
        self._poked = float("-inf")  # retry_due() answered True for every wait ending by then

    @property
    def config(self) -> Config:
        return self.quarantine.config

    # -- planning (reporter thread) -----------------------------------------------------------

    def plan(self) -> QuarantinePlan | None:
        """The moves the current index asks for (None when there is nothing to do now)."""
        cfg = self.config
        if not cfg.moves_files:  # report, or a dry run: the reports mark what would move
            return None
        now = self._clock()
        with self._lock:
            if self._no_space.attempts and now < self._no_space.next_at:
                return None
            waiting = {k for k, b in self._backoff.items() if now < b.next_at}
        exempt_pairs = self.quarantine.exempt()
        moves = []
        with self.index.lock:
            files = self.index.files
            exempt = {p for p, digest in exempt_pairs if p in files and files[p].digest == digest}
            with self._lock:  # forget back-offs of files that are gone or changed
                self._backoff = {k: b for k, b in self._backoff.items()
                                 if k[0] in files and files[k[0]].digest == k[1]}
            review = self.quarantine.store.review()
            for group in decide(self.index, cfg.keep, exempt, review, cfg):
                k = files[group.keep]
                keeper = Seen(group.keep, k.digest, k.size, k.mtime_ns)
                for d in group.moves:
                    v = files[d.path]
                    if (d.path, v.digest) in waiting:
                        continue
                    assert d.evidence is not None
                    if d.evidence.band != STRONG:  # weak matches are reported for review, never moved
                        continue
                    if same_file(d.path, group.keep):  # one file under two names (a symlink): nothing to move
                        continue
                    moves.append(PlannedMove(Seen(d.path, v.digest, v.size, v.mtime_ns), keeper, d.evidence))
        if not moves:
            return None
        return QuarantinePlan(tuple(moves), tuple(cfg.keep))

    def retry_due(self) -> bool:
        """A failed move's wait just ended: re-plan now (True once per ended wait)."""
        if not self.config.moves_files:
            return False
        now = self._clock()
        with self._lock:
            ends = [b.next_at for b in (self._no_space, *self._backoff.values()) if b.attempts]
            due = any(self._poked < t <= now for t in ends)
            if due:
                self._poked = now
            return due

    # -- applying (pipeline thread) -----------------------------------------------------------

    def run(self, work: QuarantinePlan | RestoreRequest) -> None:
        """Carry out queued policy work (called by the pipeline for ``quarantine``/``restore`` items)."""
        if isinstance(work, QuarantinePlan):
            self.apply(work)
        elif isinstance(work, SelectedQuarantine):
            self.run_selected(work)
        else:
            self.run_restore(work)

    def apply(self, plan: QuarantinePlan) -> int:
        """Move what still holds of ``plan``; returns how many files were quarantined."""
        done = 0
        if tuple(self.config.keep) != plan.keep:
            # another keeper may win now; the reload that changed them asks for a new plan
            logger.info("keep rules changed since the quarantine plan: dropping it")
            return 0
        if self._failed_entries is None:
            self._failed_entries = self.quarantine.failed()
        exempt = self.quarantine.exempt()
        checked: dict[tuple, str | None] = {}  # a kept copy with many duplicates is read once
        for move in plan.moves:
            if not self.config.moves_files or self._stopping():
                break  # reloaded to another policy, or stopping: each move so far is complete
            why = self.verify(move, exempt, checked)
            if why is not None:
                self._skip(move, why)
                continue
            if self._apply_one(move):
                done += 1
            elif self._no_space.attempts and self._clock() < self._no_space.next_at:
                break  # the quarantine filesystem is full: the rest waits too, untouched
        if done:
            self._on_change()
        return done

    def verify(self, move: PlannedMove, exempt: set[tuple[str, bytes | None]] | None = None,
               checked: dict[tuple, str | None] | None = None, *, selected: bool = False) -> str | None:
        """Why ``move`` must not happen now (None: it still holds, as the files are now).

        Checks, in order: the policy is still quarantine (not a dry run); the victim is not in a
        reference root, pinned, or declared distinct from the keeper; it was not restored by a user;
        keeper and victim are indexed, recorded and *on disk* with the digest the plan saw (the
        index is updated by this same thread, so it is current); and the pair matches under the
        current thresholds (re-computed from the stored encodings, not read from the graph).
        ``checked`` caches digest checks within one plan by the file's full stat (ctime included, so
        any write or ``utime`` since invalidates it): a kept copy is read once, not per duplicate.
        ``selected``: a user asked for this move (the policy and an earlier restore do not matter).
        """
        cfg = self.config
        matching = matching_of(cfg)
        if not selected and cfg.policy != "quarantine":
            return "policy is no longer quarantine"
        if cfg.dry_run:
            return "dry_run is on"
        if cfg.is_reference(move.victim.path):
            return "it is in a reference root"
        if same_file(move.victim.path, move.keeper.path):
            return (f"it is the kept copy {move.keeper.path} under another name (a symlink resolves to it): "
                    "moving it would take the kept copy away")
        why = self._decided(move)
        if why is not None:
            return why
        if not selected and (move.victim.path, move.victim.digest) in (
                self.quarantine.exempt() if exempt is None else exempt):
            return "restored by a user"
        store = self.quarantine.store
        for seen, role in ((move.keeper, "kept copy"), (move.victim, "duplicate")):
            why = self._unchanged(seen, {} if checked is None else checked)
            if why is not None:
                return f"{role} {seen.path} {why}"
        if move.keeper.digest != move.victim.digest:
            a, b = store.get_encoding(move.keeper.digest), store.get_encoding(move.victim.digest)
            if a is None or b is None:
                return "no stored encoding to re-check the match"
            sim = None
            if a.cnn_vector is not None and b.cnn_vector is not None:
                sim = float(np.frombuffer(a.cnn_vector, dtype=np.float32) @ np.frombuffer(b.cnn_vector, dtype=np.float32))
            ev = pair_evidence(matching, a.hashes, b.hashes, sim)
            if ev is None:
                return "no longer a duplicate of the kept copy under the current thresholds"
            if ev.band != STRONG:
                return f"only a {ev.band} match of the kept copy ({ev.reason}): reported for review, never moved"
        return None

    def _decided(self, move: PlannedMove) -> str | None:
        """The user's word against ``move`` made since the plan (pin, "not a duplicate"), or None."""
        review = self.quarantine.store.review()
        if review.empty:
            return None
        bound = review.bind({move.victim.path: move.victim.digest, move.keeper.path: move.keeper.digest})
        if bound.protected(move.victim.path, move.keeper.path):
            return "kept by the user"
        if bound.distinct(move.victim.path, move.keeper.path):
            return "the user said it is not a duplicate of the kept copy"
        return None

    def _unchanged(self, seen: Seen, checked: dict[tuple, str | None]) -> str | None:
        """Why ``seen`` is not the file the plan saw any more (None: it still is)."""
        info = self.index.files.get(seen.path)
        if info is None or (info.digest, info.size, info.mtime_ns) != (seen.digest, seen.size, seen.mtime_ns):
            return "changed since the plan"
        rec = self.quarantine.store.get_file(seen.path)
        if rec is None or rec.digest != seen.digest:
            return "changed since the plan"
        try:
            st = os.stat(seen.path)
            if not rec.same_stat(st):
                return "changed on disk since the plan"
            key = (seen, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if key not in checked:  # same stat, other bytes: only reading tells
                checked[key] = None if file_digest(seen.path) == seen.digest else "changed on disk since the plan"
            return checked[key]
        except OSError as exc:
            return f"cannot be read: {exc.strerror or exc}"

    def _skip(self, move: PlannedMove, why: str) -> None:
        # no re-plan from here: the change that made the plan stale reaches the pipeline as an
        # event, and processing it asks for new reports and a new plan
        logger.info("not quarantining %s: %s", move.victim.path, why)

    def _apply_one(self, move: PlannedMove) -> bool:
        v = move.victim
        key = (v.path, v.digest)
        assert self._failed_entries is not None
        with self._lock:
            retry = self._backoff.get(key)
            entry = retry.entry if retry is not None else self._failed_entries.get(key)
        outcome = self.quarantine.move(v.path, move.keeper.path, v.digest, move.reason, retry_of=entry)
        now = self._clock()
        with self._lock:
            if outcome.ok:
                self._backoff.pop(key, None)
                self._failed_entries.pop(key, None)
                if self._no_space.attempts:
                    logger.info("quarantine filesystem has room again: moves resume")
                self._no_space = _Backoff()
            elif outcome.id is not None:  # the move was attempted and failed
                b = self._backoff.setdefault(key, _Backoff())
                b.attempts += 1
                b.entry = outcome.id
                self._failed_entries[key] = outcome.id
                full = outcome.errno in NO_SPACE
                target = self._no_space if full else b
                if full:
                    target.attempts += 1
                target.next_at = now + min(self.retry_max_s, self.retry_s * 2 ** (target.attempts - 1))
                if full:
                    b.next_at = target.next_at
                first = b.attempts == 1 and (not full or self._no_space.attempts == 1)
                log = logger.error if first else logger.debug
                log("could not quarantine %s: %s; retrying in %.0f s%s", v.path, outcome.detail,
                    target.next_at - now, " (the quarantine filesystem is full: all moves wait)" if full else "")
        if outcome.ok:
            self.index.remove(v.path)
            self._on_moved(v.path)
        elif outcome.id is None:
            self._skip(move, outcome.detail)
        return outcome.ok

    # -- selected by a user (pipeline thread) --------------------------------------------------

    def run_selected(self, request: SelectedQuarantine) -> None:
        """Quarantine the paths of ``request`` for a waiting caller; the result is published once."""
        if not request.begin():
            return
        result: list[dict[str, Any]] = []
        try:
            wanted = list(dict.fromkeys(request.paths or ()))
            planned: dict[str, PlannedMove | str] = {}
            with self.index.lock:
                files = self.index.files
                for group in decide(self.index, self.config.keep, (), self.quarantine.store.review(), self.config):
                    k = files[group.keep]
                    keeper = Seen(group.keep, k.digest, k.size, k.mtime_ns)
                    if group.keep in wanted:
                        planned[group.keep] = "it is the kept copy of its group: keep another copy first"
                    for d in group.duplicates:
                        if d.path not in wanted:
                            continue
                        if not d.direct or d.evidence is None:
                            planned[d.path] = (f"it does not match the kept copy {group.keep} directly"
                                               + (f" (only through {d.via})" if d.via else ""))
                            continue
                        v = files[d.path]
                        planned[d.path] = PlannedMove(Seen(d.path, v.digest, v.size, v.mtime_ns), keeper, d.evidence)
            done = 0
            for path in wanted:
                if request.abandoned():
                    break
                move = planned.get(path, "not a member of a duplicate group (not indexed, or no duplicates)")
                if isinstance(move, str):
                    result.append({"path": path, "ok": False, "detail": move})
                    continue
                why = self.verify(move, selected=True)
                if why is not None:
                    result.append({"path": path, "ok": False, "detail": why})
                    continue
                outcome = self.quarantine.move(path, move.keeper.path, move.victim.digest,
                                               f"selected by a user; {move.reason}")
                result.append({"path": path, "ok": outcome.ok, "detail": outcome.detail})
                if outcome.ok:
                    done += 1
                    self.index.remove(path)
                    self._on_moved(path)
            if done:
                self._on_change()
        finally:
            request.finish(result)

    # -- restore (pipeline thread) ------------------------------------------------------------

    def run_restore(self, request: RestoreRequest) -> None:
        """Restore for a waiting caller; the result is published once, complete."""
        if not request.begin():
            return
        result: list[dict[str, Any]] = []
        try:
            for o in self.quarantine.restore(request.paths, should_stop=request.abandoned):
                result.append({"path": o.path, "ok": o.ok, "detail": o.detail})
                if o.ok:
                    with self._lock:
                        self._backoff = {k: b for k, b in self._backoff.items() if k[0] != o.path}
                    self._on_restored(o.path)
        finally:
            request.finish(result)
