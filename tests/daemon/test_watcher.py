"""The watcher on its own (real inotify, no daemon): what reaches the sink."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.watcher import Watcher


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.cond = threading.Condition()

    def _add(self, *call: str) -> None:
        with self.cond:
            self.calls.append(call)
            self.cond.notify_all()

    def touched(self, path: str) -> None:
        self._add("touched", path)

    def deleted(self, path: str) -> None:
        self._add("deleted", path)

    def deleted_dir(self, path: str) -> None:
        self._add("deleted_dir", path)

    def moved(self, src: str, dst: str) -> None:
        self._add("moved", src, dst)

    def moved_dir(self, src: str, dst: str) -> None:
        self._add("moved_dir", src, dst)

    def arrived_dir(self, path: str) -> None:
        self._add("arrived_dir", path)

    def overflowed(self) -> None:
        self._add("overflowed")

    def wait_for(self, call: tuple[str, ...], timeout: float = 5.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: call in self.calls, timeout), self.calls


def _watcher(tmp_path: Path, sink: Sink) -> tuple[Watcher, Path]:
    root = tmp_path / "photos"
    root.mkdir()
    cfg = config_from_mapping({"roots": [str(root)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "reports")})
    return Watcher(cfg, sink), root


def test_a_kernel_queue_overflow_asks_for_a_rescan(tmp_path: Path) -> None:
    """watchdog only logs an overflow (events were lost); the sink must hear of it to rescan."""
    sink = Sink()
    watcher, root = _watcher(tmp_path, sink)
    watcher.start()
    try:
        observer = watcher._observer
        assert observer is not None
        (emitter,) = observer.emitters
        group = emitter._inotify  # type: ignore[attr-defined]
        group.on_queue_overflow()  # what watchdog calls when the kernel reports IN_Q_OVERFLOW
        sink.wait_for(("overflowed",))
        (root / "after.jpg").write_bytes(b"x")  # the rebuilt watches still report
        sink.wait_for(("touched", str(root / "after.jpg")))
    finally:
        watcher.stop()


def test_a_folder_from_an_excluded_folder_is_walked(tmp_path: Path) -> None:
    sink = Sink()
    watcher, root = _watcher(tmp_path, sink)
    (root / ".staging" / "batch").mkdir(parents=True)
    (root / ".staging" / "batch" / "a.jpg").write_bytes(b"x")
    watcher.start()
    try:
        time.sleep(0.2)
        (root / ".staging" / "batch").rename(root / "batch")
        sink.wait_for(("arrived_dir", str(root / "batch")))
    finally:
        watcher.stop()


def test_a_folder_moved_into_an_excluded_folder_is_gone(tmp_path: Path) -> None:
    sink = Sink()
    watcher, root = _watcher(tmp_path, sink)
    (root / "album").mkdir()
    (root / ".trash").mkdir()
    watcher.start()
    try:
        time.sleep(0.2)
        (root / "album").rename(root / ".trash" / "album")
        sink.wait_for(("deleted_dir", str(root / "album")))
        assert not [c for c in sink.calls if c[0] == "moved_dir"], sink.calls
    finally:
        watcher.stop()


def test_reads_of_watched_files_are_not_asked_of_the_kernel(tmp_path: Path) -> None:
    """Every read of a file raises IN_OPEN and IN_CLOSE_NOWRITE (the daemon's own digest, decode and
    thumbnail reads: six events a new file), which the handler only drops: the watch does not ask
    for them, while writes, moves and deletions still come."""
    sink = Sink()
    watcher, root = _watcher(tmp_path, sink)
    kinds: list[str] = []
    handle = watcher._handler.dispatch

    def recording(event):  # the raw events watchdog hands over
        kinds.append(event.event_type)
        handle(event)

    watcher._handler.dispatch = recording  # type: ignore[method-assign]
    watcher.start()
    try:
        (root / "a.jpg").write_bytes(b"x")
        sink.wait_for(("touched", str(root / "a.jpg")))
        for _ in range(5):
            (root / "a.jpg").read_bytes()
        (root / "a.jpg").rename(root / "b.jpg")
        sink.wait_for(("moved", str(root / "a.jpg"), str(root / "b.jpg")))
        (root / "b.jpg").unlink()
        sink.wait_for(("deleted", str(root / "b.jpg")))
    finally:
        watcher.stop()
    assert {"created", "modified", "closed", "moved", "deleted"} <= set(kinds), kinds
    assert not {"opened", "closed_no_write"} & set(kinds), kinds
