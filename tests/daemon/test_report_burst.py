"""The reports a running daemon keeps up to date change by change (``groups.json``'s rows inserted
and deleted in place, the slow reports giving way to it) equal a one-shot ``dedupd scan`` of the
same folder after a burst of adds, copies, removes and renames: a real daemon subprocess, real
corpus images, real LMDB and inotify."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dedupd.reports.offline import CHILD_MIN_FILES_ENV
from tests.daemon.helpers import REPO, DaemonProcess, image_files


def scan_reports(tmp: Path, config: dict[str, Any]) -> Path:
    """The report folder of a one-shot ``dedupd scan`` of the same roots with the same settings."""
    out = tmp / "fresh"
    cfg = {**config, "store_dir": str(out / "store"), "report_dir": str(out / "reports"), "socket_path": str(out / "s")}
    out.mkdir(parents=True)
    (out / "c.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "dedupd", "scan", "--config", str(out / "c.yaml")],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    return out / "reports"


def without_time(groups_json: bytes) -> bytes:
    """``groups.json`` without its ``generated_at`` (the only field a rewrite of the same state changes)."""
    head, sep, rest = groups_json.partition(b', "policy"')
    assert head.startswith(b'{"generated_at": ') and sep
    return sep + rest


def without_stamp(page: bytes) -> bytes:
    """A report page without its generation time."""
    return re.sub(rb"generated 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", b"", page)


def test_reports_after_a_burst_equal_a_fresh_scan(mixed200: Path, daemon_factory, tmp_path: Path) -> None:
    rng = random.Random(7)
    watched = tmp_path / "photos"
    files = image_files(mixed200)
    rel = [os.path.relpath(p, mixed200) for p in files]
    first, rest = rel[:70], rel[70:150]
    for r in first:
        (watched / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(mixed200 / r, watched / r)
    d: DaemonProcess = daemon_factory([watched], methods={"phash": 10}, settle_ms=100,
                                      log={"format": "json", "level": "debug"})
    d.start(env={**os.environ, CHILD_MIN_FILES_ENV: "0"})  # the report child at any size
    d.wait_quiet(timeout=120)
    assert d.groups()["groups"]
    # the burst: new files, byte copies of indexed ones, removes and a rename, all at once
    for r in rest:
        (watched / r).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(mixed200 / r, watched / r)
    for k, r in enumerate(rng.sample(first, 6)):
        shutil.copyfile(watched / r, watched / f"copy{k}{Path(r).suffix}")
    for r in rng.sample(first[:35], 5):
        os.unlink(watched / r)
    moved = rng.choice(first[35:])
    os.rename(watched / moved, watched / f"renamed{Path(moved).suffix}")
    s = d.wait_quiet(timeout=180, stable=1.5)
    assert s["files"] == len(image_files(watched))
    got, want = d.report_dir, scan_reports(tmp_path, d.config)
    assert without_time((got / "groups.json").read_bytes()) == without_time((want / "groups.json").read_bytes())
    # the slow reports follow groups.json by up to ~3x their cost (a child's CPU time)
    d.wait_until(lambda: (got / "duplicates.json").read_bytes() == (want / "duplicates.json").read_bytes()
                 and without_stamp((got / "report.html").read_bytes()) == without_stamp((want / "report.html").read_bytes()),
                 30, "duplicates.json and report.html equal to the scan's")
    # written by the report child (dedupd.reports.offline), none failed
    slow = [r for r in d.log_records() if r.get("event") == "duplicates.json and report.html written"]
    assert slow and all(r["child"] for r in slow)
    assert d.errors_in_log() == []
    groups = json.loads((got / "groups.json").read_text())["groups"]
    assert len(groups) >= 5 and any(g["keep"]["path"].startswith(str(watched / "copy")) or any(
        m["path"].startswith(str(watched / "copy")) for m in g["duplicates"]) for g in groups)
    d.stop()
