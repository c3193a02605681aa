"""The seal of ``groups.json``: proof, kept next to it, that the file on disk is what a full write
would produce from the store as it is, so that a restart need not build it again.

At a million files the first ``groups.json`` of a start costs ~6-7 s of CPU (deciding ~100k
groups, encoding them), although after a clean stop nothing it depends on has changed. A clean
shutdown (pipeline and socket stopped: the store is quiescent) writes ``.groups.seal.json`` in
the report folder with:

- ``txnid``: the store's last committed LMDB transaction id (:meth:`Store.generation`): any commit
  since (a file, an edge, a decision, a crash between a commit and the report write) changes it;
- ``config``: a digest of the settings the index and the groups depend on (roots, rules,
  thresholds, policy, ...; not the socket, log or timing settings, see :data:`IRRELEVANT`);
- ``code``: a digest of dedupd's own source (another version may write other groups);
- ``file``: the identity of the ``groups.json`` it vouches for (inode, size, mtime): every write
  replaces the file (a new inode), so a later write or an edit voids the seal;
- ``review``: a digest of the user's decisions (ignore, keep) the groups were decided with;
- ``exact``: true for the seal of a clean stop or an idle seal;
- the counts for status.

At start-up the report writer adopts the file when all of these match (:func:`adoptable`): it
counts as the first write, and the writer builds its in-memory lines at its next write instead.

Each later write of ``groups.json`` replaces an exact seal (or a floor seal) of the file it
replaces by a *floor seal* of the new file: ``exact`` false, the same ``txnid``. It says the
file shows the store as of that txnid or later (the index only moves forward, and it follows the
store's commits). After a crash, when the index snapshot of a txnid at or before the floor was
adopted and the commits since it replayed from the journal, the file's groups are taken and only
the replayed paths' groups recomputed (:meth:`dedupd.reports.files.ReportWriter.write_groups`).
Nothing here is trusted beyond equality: a missing, unreadable or foreign seal means a full build.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dedupd.core.review import Review
from dedupd.daemon.config import Config
from dedupd.reports.atomic import write_atomic

SEAL_NAME = ".groups.seal.json"
FORMAT = 1
#: config fields that change neither the index loaded from the store nor the groups written
IRRELEVANT = frozenset({"socket_path", "socket_mode", "socket_group", "settle_ms", "workers", "scan_workers",
                        "rescan_interval_s", "report_interval_s", "log", "source"})


def config_digest(config: Config, also_irrelevant: frozenset[str] = frozenset()) -> str:
    """A digest of every setting of ``config`` but :data:`IRRELEVANT` ones (and ``also_irrelevant``)."""
    fields = [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)
              if f.name not in IRRELEVANT and f.name not in also_irrelevant]
    return hashlib.blake2b(repr(fields).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


@functools.cache
def code_digest() -> str:
    """A digest of dedupd's source files (read once per process)."""
    package = Path(__file__).resolve().parents[1]
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def file_identity(path: str) -> list[int] | None:
    """``[inode, size, mtime_ns]`` of ``path``, None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def review_digest(review: Review | None) -> str:
    """A digest of the user's decisions (None: none; the sets' order does not count)."""
    review = review or Review()
    distinct = sorted(sorted(map(repr, s)) for s in review.distinct)
    return hashlib.blake2b(repr((distinct, list(review.pins))).encode(), digest_size=16).hexdigest()


def seal_fields(store_path: str, txnid: int, config: Config, identity: list[int], counts: dict[str, int],
                review: Review | None = None, *, exact: bool = True) -> dict[str, Any]:
    """The seal of a ``groups.json`` of ``identity``, current for ``store_path`` at ``txnid``
    (``exact``), or showing it as of ``txnid`` or later (a floor seal)."""
    return {"format": FORMAT, "store": os.path.realpath(store_path), "txnid": txnid, "config": config_digest(config),
            "code": code_digest(), "file": identity, "review": review_digest(review), "exact": exact,
            "groups": counts["groups"], "duplicates": counts["duplicates"]}


def write_seal(report_dir: str, fields: dict[str, Any], mode: int) -> None:
    write_atomic(os.path.join(report_dir, SEAL_NAME), (json.dumps(fields) + "\n").encode(), mode)


def void_seal(report_dir: str) -> None:
    """Remove the seal (it would vouch for nothing once the file changes; removing it says so at once)."""
    try:
        os.unlink(os.path.join(report_dir, SEAL_NAME))
    except FileNotFoundError:
        pass


def read_seal(report_dir: str, store_path: str, config: Config, identity: list[int] | None,
              review: Review | None = None, *, any_review: bool = False) -> dict[str, Any] | None:
    """The seal in ``report_dir`` when it vouches (exactly or as a floor) for the ``groups.json`` of
    ``identity`` under ``store_path``, ``config``, this code and ``review`` (``any_review``: any);
    else None. Its ``txnid``, ``exact`` and counts are checked for type."""
    try:
        with open(os.path.join(report_dir, SEAL_NAME), encoding="utf-8") as f:
            seal = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(seal, dict) or identity is None:
        return None
    want = seal_fields(store_path, 0, config, identity, {"groups": 0, "duplicates": 0}, review)
    ignored = {"txnid", "exact", "groups", "duplicates"} | ({"review"} if any_review else set())
    if any(seal.get(k) != v for k, v in want.items() if k not in ignored):
        return None
    if not all(isinstance(seal.get(k), int) and not isinstance(seal.get(k), bool) and seal[k] >= 0
               for k in ("txnid", "groups", "duplicates")) or not isinstance(seal.get("exact"), bool):
        return None
    return seal


def adoptable(report_dir: str, store_path: str, txnid: int, config: Config, review: Review | None = None
              ) -> dict[str, int] | None:
    """The counts of the sealed ``groups.json`` in ``report_dir`` when its exact seal matches the
    store at ``txnid``, ``config``, this code, ``review`` and the file as it is; else None."""
    seal = read_seal(report_dir, store_path, config, file_identity(os.path.join(report_dir, "groups.json")), review)
    if seal is None or not seal["exact"] or seal["txnid"] != txnid:
        return None
    return {k: seal[k] for k in ("groups", "duplicates")}
