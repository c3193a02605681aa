"""Report files: ``duplicates.json``, ``groups.json`` (atomic rewrites) and ``events.jsonl`` (append).

``duplicates.json`` is imagededup's ``find_duplicates`` format with absolute paths: every readable
indexed image is a key, lists are symmetric. ``groups.json`` lists each duplicate group with the
copy the keep-rule keeps and how every other member matched it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

from dedupd.daemon.config import DEFAULT_REPORT_MODE, Config
from dedupd.daemon.index import MatchIndex
from dedupd.reports.atomic import file_mode, write_atomic
from dedupd.reports.groups import build_groups, would_quarantine

logger = logging.getLogger(__name__)


def write_json_atomic(path: str, data: Any, mode: int = DEFAULT_REPORT_MODE) -> None:
    """Write ``data`` as JSON to ``path`` at once (temp file, fsync, rename), as ``mode`` less the umask."""
    write_atomic(path, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode(), mode)


class EventLog:
    """Append-only ``events.jsonl``: one JSON object per line (found, quarantined, restored, ...).

    A failed append (full disk, report folder gone) never fails the caller's work: it is logged once
    per run of failures and counted in :attr:`dropped`; appends resume when writing works again.
    """

    def __init__(self, path: str, mode: int = DEFAULT_REPORT_MODE) -> None:
        self.path = path
        self.mode = file_mode(mode)
        if os.path.exists(path):  # written under another report_mode before
            os.chmod(path, self.mode)
        self.dropped = 0
        self.failing: str | None = None  # the error while appends fail
        self._lock = threading.Lock()
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def append(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": round(time.time(), 3), "event": event, **fields}, default=str)
        with self._lock:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
                with os.fdopen(fd, "a") as f:
                    f.write(line + "\n")
            except OSError as exc:
                self.dropped += 1
                if self.failing is None:
                    logger.error("cannot append to %s: %s; events are dropped until it works again",
                                 self.path, exc, extra={"path": self.path})
                self.failing = f"cannot append to {self.path}: {exc}"
                return
            if self.failing is not None:
                logger.warning("appending to %s works again after %d dropped events", self.path, self.dropped)
                self.failing = None


def write_reports(report_dir: str, index: MatchIndex, config: Config, store: Any = None) -> dict[str, int]:
    """Rewrite ``duplicates.json``, ``groups.json`` and ``report.html``; returns counts for status."""
    from dedupd.reports.html import write_html_report

    review = store.review() if store is not None and hasattr(store, "review") else None
    groups = build_groups(index, config.keep, review, config)
    write_html_report(os.path.join(report_dir, "report.html"), index, config, store, groups=groups)
    write_json_atomic(os.path.join(report_dir, "duplicates.json"), index.adjacency(), config.report_mode)
    write_json_atomic(
        os.path.join(report_dir, "groups.json"),
        {"generated_at": round(time.time(), 3), "policy": config.policy, "match": config.match,
         "methods": {**config.hash_methods(), **({"cnn": config.cnn.threshold} if config.cnn else {})},
         "dry_run": config.dry_run, **would_quarantine(groups),
         "groups": groups},
        config.report_mode,
    )
    return {"groups": len(groups), "duplicates": sum(g["size"] - 1 for g in groups)}
