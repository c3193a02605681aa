"""Quarantine and restore: moves that are recorded before they happen and never delete an image.

A move is announced in the store's manifest (``pending``, fsynced by the LMDB commit) before the
file is touched, and confirmed (``moved``) after. Same filesystem: one ``rename``. Across
filesystems: copy to a temp name → fsync → verify the digest → rename into place → unlink the
original. After a crash, :meth:`Quarantine.recover` finishes or rolls back every ``pending`` entry
by looking at the disk. Restore moves back the same way and refuses to overwrite anything.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dedupd.daemon.config import Config
from dedupd.daemon.encoder import file_digest
from dedupd.daemon.store import QuarantineEntry, Store
from dedupd.daemon.walk import root_of

logger = logging.getLogger(__name__)

PARTIAL = ".dedupd-partial"


@dataclass(frozen=True)
class Outcome:
    path: str
    ok: bool
    detail: str
    errno: int | None = None  # why a move failed (an OSError's errno), when it did
    id: int | None = None  # the manifest entry written, if any


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolves_below(folder: str, base: str) -> bool:
    """Whether ``folder`` (``base`` or a path below it, existing or not) reaches no symlink below
    ``base``: a move there cannot land elsewhere (a folder swapped for a link to outside)."""
    probe, base = os.path.normpath(folder), os.path.normpath(base)
    while probe != base and not os.path.lexists(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)  # the folders a move would create are made below ``probe``
    rel = os.path.relpath(probe, base)
    if rel == ".." or rel.startswith("../"):
        return False
    return os.path.realpath(probe) == os.path.normpath(os.path.join(os.path.realpath(base), rel))


def safe_move(src: str, dst: str, digest: bytes | None) -> None:
    """Move ``src`` to ``dst`` (which must not exist), verifying content across filesystems.

    Raises:
        FileExistsError: ``dst`` exists. OSError: the move failed (``src`` is then untouched).
    """
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "destination exists", dst)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.rename(src, dst)  # atomic on one filesystem
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    else:
        _fsync_dir_after_move(os.path.dirname(dst))
        return
    tmp = dst + PARTIAL
    try:
        shutil.copy2(src, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        want = digest or file_digest(src)
        if file_digest(tmp) != want:
            raise OSError(errno.EIO, "copy verification failed", src)
        os.rename(tmp, dst)
    except BaseException:
        # our own partial copy (a full disk, a failed verify), never the user's file: a failed
        # attempt must leave nothing behind, or every retry would add one more leftover
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        _fsync_dir(os.path.dirname(dst))
        os.unlink(src)
    except BaseException:
        # the move failed: drop our verified copy, but only while the original is still there
        # with the same bytes (if it vanished meanwhile, our copy is the only one left: keep it)
        if _digest_or_none(src) == want:
            os.unlink(dst)
        raise
    _fsync_dir_after_move(os.path.dirname(src))


def _digest_or_none(path: str) -> bytes | None:
    try:
        return file_digest(path)
    except OSError:
        return None


def _fsync_dir_after_move(path: str) -> None:
    # the move itself is done: a failing directory fsync must not report the move as failed
    # (the manifest would then say "failed" for a file that is at its destination)
    try:
        _fsync_dir(path)
    except OSError as exc:
        logger.warning("could not fsync directory %s after a move: %s", path, exc)


class Quarantine:
    """Carries out quarantine decisions and restores, keeping the manifest in the store."""

    def __init__(self, config: Config, store: Store, *, on_event: Callable[..., None] = lambda *a, **k: None) -> None:
        self.config = config
        self.store = store
        self._event = on_event

    def destination(self, path: str) -> str:
        """``quarantine_dir/<root name>/<path relative to its root>`` (a free name)."""
        assert self.config.quarantine_dir is not None
        root = root_of(path, self.config)
        if root is None:
            rel = path.lstrip("/")
            name = "_outside"
        else:
            rel = os.path.relpath(path, root.path)
            name = os.path.basename(root.path.rstrip("/")) or "root"
            same = [r for r in self.config.roots if os.path.basename(r.path.rstrip("/")) == name]
            if len(same) > 1:
                name = f"{name}-{same.index(root) + 1}"
        dest = os.path.join(self.config.quarantine_dir, name, rel)
        base, ext = os.path.splitext(dest)
        n = 1
        while os.path.lexists(dest) or os.path.lexists(dest + PARTIAL):
            dest = f"{base}.{n}{ext}"
            n += 1
        return dest

    def exempt(self) -> set[tuple[str, bytes | None]]:
        """(origin, digest) of files a user restored: the policy leaves them alone."""
        return {(e.origin, e.digest) for e in self.store.iter_quarantine("restored")}

    def move(self, victim: str, keeper: str, digest: bytes | None, reason: str, *,
             retry_of: int | None = None) -> Outcome:
        """Quarantine ``victim`` (a direct duplicate of ``keeper``) after re-checking both on disk.

        ``retry_of``: the ``failed`` manifest entry of an earlier attempt for the same file; it is
        reused, so a victim that keeps failing has one entry, not one per attempt. A failed move
        leaves the victim in place and nothing in the quarantine folder; ``Outcome.errno`` tells
        why (``ENOSPC`` for a full quarantine filesystem).
        """
        rec = self.store.get_file(victim)
        if rec is None or rec.digest != digest:
            return Outcome(victim, False, "changed since it was indexed")
        try:
            st = os.stat(victim)
        except OSError:
            return Outcome(victim, False, "gone")
        if not rec.same_stat(st):
            return Outcome(victim, False, "changed since it was indexed")
        if not os.path.isfile(keeper):
            return Outcome(victim, False, f"kept copy {keeper} no longer exists")
        dest = self.destination(victim)
        assert self.config.quarantine_dir is not None
        if not resolves_below(os.path.dirname(dest), self.config.quarantine_dir):
            return Outcome(victim, False, f"a folder inside the quarantine folder is a symlink: refusing to move "
                                          f"{victim} through it (remove the link from {self.config.quarantine_dir})")
        now = time.time()
        if retry_of is not None and self._retryable(retry_of, victim, digest):
            qid = retry_of
            self.store.update_quarantine(qid, dest=dest, keeper=keeper, reason=reason, state="pending", updated_at=now)
        else:
            qid = self.store.add_quarantine(QuarantineEntry(victim, dest, keeper, digest, reason, "pending", now, now))
        try:
            safe_move(victim, dest, digest)
        except OSError as exc:
            self.store.update_quarantine(qid, state="failed", reason=f"{reason}; move failed: {exc}",
                                         updated_at=time.time())
            return Outcome(victim, False, f"move failed: {exc}", errno=exc.errno, id=qid)
        self.store.update_quarantine(qid, state="moved", updated_at=time.time())
        self.store.delete_file(victim)
        self._event("quarantined", path=victim, dest=dest, keeper=keeper, reason=reason, id=qid)
        logger.info("quarantined %s -> %s (kept %s: %s)", victim, dest, keeper, reason)
        return Outcome(victim, True, dest, id=qid)

    def _retryable(self, qid: int, victim: str, digest: bytes | None) -> bool:
        e = self.store.get_quarantine(qid)
        return e is not None and e.state == "failed" and e.origin == victim and e.digest == digest

    def failed(self) -> dict[tuple[str, bytes | None], int]:
        """``(origin, digest) → id`` of the manifest's ``failed`` entries (the latest per file)."""
        return {(e.origin, e.digest): e.id for e in self.store.iter_quarantine("failed")}

    def recover(self) -> int:
        """Finish or roll back moves a crash interrupted; returns how many entries were settled."""
        fixed = 0
        for e in self.store.iter_quarantine("pending"):
            origin_there, dest_there = os.path.lexists(e.origin), os.path.lexists(e.dest)
            partial = e.dest + PARTIAL
            if os.path.lexists(partial):
                os.unlink(partial)  # our unverified copy; the original is still in place
            if dest_there and not origin_there:
                state = "moved"
            elif dest_there and origin_there:
                # cross-filesystem move stopped after the verified copy: finish it
                if e.digest is not None and file_digest(e.dest) == e.digest == file_digest(e.origin):
                    os.unlink(e.origin)
                    state = "moved"
                else:
                    state = "failed"
            else:
                state = "failed"  # nothing was moved
            self.store.update_quarantine(e.id, state=state, updated_at=time.time())
            if state == "moved":
                self.store.delete_file(e.origin)
            fixed += 1
        # a restore moves the file back before it records "restored": a crash in between leaves a
        # "moved" entry whose file is back at its origin (and maybe our unverified partial copy)
        for e in list(self.store.iter_quarantine("moved")):
            if os.path.lexists(e.origin + PARTIAL):
                os.unlink(e.origin + PARTIAL)
            if os.path.lexists(e.dest) or not os.path.lexists(e.origin) or e.digest is None:
                continue
            try:
                back = file_digest(e.origin) == e.digest
            except OSError:
                back = False
            if back:
                self.store.update_quarantine(e.id, state="restored", updated_at=time.time())
                fixed += 1
        return fixed

    def restore(self, paths: Iterable[str] | None = None, *,
                should_stop: Callable[[], bool] = lambda: False) -> list[Outcome]:
        """Move quarantined files back (all when ``paths`` is None); never overwrites anything.

        ``paths`` may name the original location or the quarantined copy. ``should_stop`` is asked
        before each file: once it answers True, nothing more is moved (each move is complete).
        """
        wanted = None if paths is None else {os.path.abspath(p) for p in paths}
        matched: set[str] = set()
        out: list[Outcome] = []
        for e in list(self.store.iter_quarantine("moved")):
            if wanted is not None:
                hit = {e.origin, e.dest} & wanted
                if not hit:
                    continue
                matched |= hit
            if should_stop():
                return out
            out.append(self._restore_one(e))
        for p in sorted((wanted or set()) - matched):
            out.append(Outcome(p, False, "not in the quarantine manifest (or already restored)"))
        return out

    def _restore_one(self, e: QuarantineEntry) -> Outcome:
        if os.path.lexists(e.origin):
            return Outcome(e.origin, False, "refusing to overwrite: a file exists at the original path")
        root = root_of(e.origin, self.config)
        if not resolves_below(os.path.dirname(e.origin), root.path if root is not None else "/"):
            return Outcome(e.origin, False, "refusing to restore: a folder on the way to the original path is "
                                            "now a symlink (it could lead out of the watched folders)")
        if not os.path.lexists(e.dest):
            return Outcome(e.origin, False, f"quarantined copy {e.dest} is missing")
        try:
            safe_move(e.dest, e.origin, e.digest)
        except OSError as exc:
            return Outcome(e.origin, False, f"move failed: {exc}")
        self.store.update_quarantine(e.id, state="restored", updated_at=time.time())
        self._event("restored", path=e.origin, src=e.dest, id=e.id)
        logger.info("restored %s from %s", e.origin, e.dest)
        return Outcome(e.origin, True, "restored")
