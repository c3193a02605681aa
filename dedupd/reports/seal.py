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
- the counts for status.

At start-up the report writer adopts the file when all of these match (:func:`adoptable`): it
counts as the first write, and the writer builds its in-memory lines at its next write instead.
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


def seal_fields(store_path: str, txnid: int, config: Config, identity: list[int], counts: dict[str, int]
                ) -> dict[str, Any]:
    """The seal of a ``groups.json`` of ``identity``, current for ``store_path`` at ``txnid``."""
    return {"format": FORMAT, "store": os.path.realpath(store_path), "txnid": txnid, "config": config_digest(config),
            "code": code_digest(), "file": identity, "groups": counts["groups"], "duplicates": counts["duplicates"]}


def write_seal(report_dir: str, fields: dict[str, Any], mode: int) -> None:
    write_atomic(os.path.join(report_dir, SEAL_NAME), (json.dumps(fields) + "\n").encode(), mode)


def void_seal(report_dir: str) -> None:
    """Remove the seal (it would vouch for nothing once the file changes; removing it says so at once)."""
    try:
        os.unlink(os.path.join(report_dir, SEAL_NAME))
    except FileNotFoundError:
        pass


def adoptable(report_dir: str, store_path: str, txnid: int, config: Config) -> dict[str, int] | None:
    """The counts of the sealed ``groups.json`` in ``report_dir`` when the seal matches the store
    at ``txnid``, ``config``, this code and the file as it is; else None."""
    try:
        with open(os.path.join(report_dir, SEAL_NAME), encoding="utf-8") as f:
            seal = json.load(f)
    except (OSError, ValueError):
        return None
    identity = file_identity(os.path.join(report_dir, "groups.json"))
    if not isinstance(seal, dict) or identity is None:
        return None
    want = seal_fields(store_path, txnid, config, identity, {"groups": 0, "duplicates": 0})
    if any(seal.get(k) != v for k, v in want.items() if k not in ("groups", "duplicates")):
        return None
    counts = {k: seal.get(k) for k in ("groups", "duplicates")}
    if not all(isinstance(v, int) and v >= 0 for v in counts.values()):
        return None
    return counts  # type: ignore[return-value]
