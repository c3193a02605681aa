"""``duplicates.json`` and ``report.html`` written by the report child (:mod:`dedupd.reports.offline`):
the same bytes as an in-process write (real index, real LMDB quarantine manifest, a cached
thumbnail), and a child killed by ``kill -9`` mid-write leaves the previous reports intact."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dedupd.daemon.index import FileInfo, MatchIndex
from dedupd.daemon.loader import matching_of
from dedupd.daemon.store import Store
from dedupd.daemon.store.manifest import QuarantineEntry
from dedupd.reports.files import ReportWriter, duplicates_json
from dedupd.reports.offline import TMP_PREFIX, ChildFailed, ReportChild, job_frames
from dedupd.reports.thumbnails import stop_workers, thumb_name
from tests.daemon.test_graph_store import config, contents, phash_index


def without_stamp(page: bytes) -> bytes:
    """A report page without its generation time."""
    return re.sub(rb"generated 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", b"", page)


def test_child_writes_the_bytes_of_an_in_process_write(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    cfg = config(root, tmp_path, phash={"threshold": 10, "agree": False})
    index = MatchIndex(matching_of(cfg))
    items = list(contents(4, 60).items())
    for k, (d, h) in enumerate(items):
        index.add(f"{root}/{k:02d} é.jpg", FileInfo(d, 1000 + k, k * 10**9, 8 + k % 3, 8), {"phash": h["phash"]})
    groups = ReportWriter(str(tmp_path / "probe"))
    groups.write_groups(index, cfg)
    found = groups.groups()
    assert len(found) >= 3
    keeper, dup = found[0]["keep"]["path"], found[0]["duplicates"][0]["path"]
    lone = next(p for p in index.files if not index.duplicates_of(p))
    store = Store.open(str(tmp_path / "store"))
    try:
        # a moved file of a group, a moved file whose keeper is in no group, a restored duplicate
        store.add_quarantine(QuarantineEntry(f"{root}/gone.jpg", str(tmp_path / "q/gone.jpg"), keeper,
                                             digest=items[0][0], state="moved", reason="exact copy"))
        store.add_quarantine(QuarantineEntry(f"{root}/gone2.jpg", str(tmp_path / "q/gone2.jpg"), lone,
                                             digest=items[1][0], state="moved"))
        store.add_quarantine(QuarantineEntry(dup, str(tmp_path / "q/back.jpg"), keeper, state="restored"))
        pages = {}
        for name, child in (("here", None), ("child", ReportChild())):
            out = tmp_path / name
            (out / "thumbs").mkdir(parents=True)
            (out / "thumbs" / thumb_name(index.files[keeper].digest)).write_bytes(b"cached")
            writer = ReportWriter(str(out))
            writer.child = child
            writer.write(index, cfg, store, slow=True, on_thumbnails=lambda: None)
            pages[name] = (out / "duplicates.json").read_bytes(), (out / "report.html").read_bytes()
    finally:
        store.close()
        stop_workers()
    assert pages["child"][0] == pages["here"][0]
    assert without_stamp(pages["child"][1]) == without_stamp(pages["here"][1])
    page = pages["child"][1]
    assert b"gone2.jpg" in page and thumb_name(index.files[keeper].digest).encode() in page
    assert not list((tmp_path / "child").glob(TMP_PREFIX + "*"))


class _Many:
    """A snapshot of ``n`` indexed paths, no duplicates (what ``job_frames`` reads)."""

    def __init__(self, n: int) -> None:
        self.paths = [f"/library/{'deep/' * 12}{k:09d}.jpg" for k in range(n)]
        self.files: dict[str, Any] = {}

    def duplicate_lists(self) -> dict[str, list]:
        return {}


def test_a_child_killed_mid_write_leaves_the_previous_reports(tmp_path: Path) -> None:
    cfg = config(tmp_path, tmp_path)
    out = tmp_path / "r"
    out.mkdir()
    child = ReportChild()
    assert child.run(str(out), job_frames(_Many(3), [], [], cfg)) == []
    before = {n: (out / n).read_bytes() for n in ("duplicates.json", "report.html")}
    assert before["duplicates.json"].count(b"/library/") == 3
    failed: list[BaseException] = []

    def big() -> None:
        try:
            child.run(str(out), job_frames(_Many(400_000), [], [], cfg))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failed.append(exc)

    t = threading.Thread(target=big)
    t.start()
    deadline = time.monotonic() + 120
    while not list(out.glob(TMP_PREFIX + "*")) and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.002)
    pid = child.pid
    assert pid is not None and list(out.glob(TMP_PREFIX + "*")), "the child never started writing"
    os.kill(pid, signal.SIGKILL)
    t.join(60)
    assert len(failed) == 1 and isinstance(failed[0], ChildFailed) and "signal 9" in str(failed[0])
    assert {n: (out / n).read_bytes() for n in before} == before  # the previous reports, whole
    assert list(out.glob(TMP_PREFIX + "*"))  # its temp file is left behind ...
    assert child.run(str(out), job_frames(_Many(5), [], [], cfg)) == []
    assert not list(out.glob(TMP_PREFIX + "*"))  # ... and removed by the next child
    assert (out / "duplicates.json").read_bytes().count(b"/library/") == 5
    assert 0 < child.peak_rss_mb < 1000 and child.cpu_seconds > 0  # as the child measured them


def test_a_child_refused_after_the_daemon_stops_it(tmp_path: Path) -> None:
    child = ReportChild()
    child.kill(refuse=True)
    with pytest.raises(ChildFailed, match="stopping"):
        child.run(str(tmp_path), job_frames(_Many(1), [], [], config(tmp_path, tmp_path)))


def test_a_child_that_fails_by_itself_is_redone_in_the_daemon(tmp_path: Path, monkeypatch, caplog) -> None:
    """A child that exits with an error (here: no Python to run it) is logged with its command and
    the reports are written in the daemon that time; a killed one is not redone (see above)."""
    import sys

    root, cfg, index = phash_index(tmp_path, 5, 30, {"threshold": 10, "agree": False})
    writer = ReportWriter(str(tmp_path / "r"))
    writer.child, writer.child_min_files = ReportChild(), 0
    monkeypatch.setattr(sys, "executable", "/bin/false")
    try:
        writer.write(index, cfg, slow=True, on_thumbnails=lambda: None)
    finally:
        stop_workers()
    assert "/bin/false -m dedupd.reports.report_child) failed: exit status 1" in caplog.text
    assert "written in the daemon this time" in caplog.text
    assert (tmp_path / "r" / "duplicates.json").read_bytes() == b"".join(duplicates_json(index.snapshot()))
