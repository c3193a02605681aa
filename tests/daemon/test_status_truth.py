"""``dedupd status`` tells the truth about the roots and the last walk (real daemon, real folders):
a root renamed away makes the state ``degraded`` with the reason; when it is back, status says it
vanished and when it came back; the last reconcile's outcome and counts are shown."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.daemon.socket_helpers import SocketDaemon

pytestmark = pytest.mark.slow


def test_a_root_renamed_away_and_back_and_the_last_walk(tmp_path: Path, corpus_dir: Path) -> None:
    photos, other = tmp_path / "photos", tmp_path / "other"
    photos.mkdir()
    other.mkdir()
    for i, dst in ((50, photos), (51, photos), (52, other)):
        shutil.copyfile(corpus_dir / "base" / f"b00{i}.jpg", dst / f"b00{i}.jpg")
    d = SocketDaemon(tmp_path, [photos, other], name="truth")
    try:
        d.start()
        s = d.wait_quiet()
        last = s["last_reconcile"]
        assert last["outcome"] == "complete" and last["walked"] == 3 and last["queued"] == 3 and last["run"] == 1
        assert last["finished_at"] >= last["started_at"] and last["unlistable"] == 0
        assert [(r["path"], r["present"], r["vanished"]) for r in s["roots"]] == [(str(photos), True, 0),
                                                                              (str(other), True, 0)]
        out = d.run_cli("status")
        assert out.returncode == 0 and "last walk" in out.stdout and "complete at" in out.stdout, out.stdout

        os.rename(photos, tmp_path / "photos-renamed")  # e.g. an unmounted share, a renamed folder
        s = d.wait_until(lambda: (st := d.status())["state"] == "degraded" and st["files"] == 1 and st, 15,
                         "the missing root noticed")
        assert s["missing_roots"] == [str(photos)] and str(photos) in s["problems"]["roots"]
        assert s["roots"][0]["present"] is False and s["roots"][0]["missing_since"]
        out = d.run_cli("status")
        assert "degraded" in out.stdout and "missing" in out.stdout and "problem" in out.stdout, out.stdout

        os.rename(tmp_path / "photos-renamed", photos)
        s = d.wait_until(lambda: (st := d.status())["state"] == "watching" and st["files"] == 3 and st, 15,
                         "the root back and walked")
        root = s["roots"][0]
        assert root["present"] and root["vanished"] == 1 and root["back_at"] and root["missing_since"] is None
        assert s["problems"] == {} and s["missing_roots"] == []
        out = d.run_cli("status")
        assert f"root back    {photos} (vanished 1 time(s)" in out.stdout, out.stdout

        out = d.run_cli("rescan", "--wait")
        assert out.returncode == 0, out.stderr
        last = json.loads(d.run_cli("status", "--json").stdout)["last_reconcile"]
        assert last["run"] == 2 and last["outcome"] == "complete" and last["walked"] == 3 and last["queued"] == 0
        d.stop()
        assert not d.errors_in_log(), d.log_tail()
    finally:
        d.close()
