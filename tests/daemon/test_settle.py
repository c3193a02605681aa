"""The settle stage: a path is emitted once, only after its size and mtime stopped changing."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from dedupd.daemon.settle import Settler

SETTLE = 0.08


class FakeFS:
    """``stat`` over a dict: path → (size, mtime_ns); a missing path raises FileNotFoundError."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def write(self, path: str, size: int) -> None:
        with self.lock:
            self.files[path] = (size, time.monotonic_ns())

    def remove(self, path: str) -> None:
        with self.lock:
            del self.files[path]

    def stat(self, path: str) -> os.stat_result:
        with self.lock:
            if path not in self.files:
                raise FileNotFoundError(2, "No such file", path)
            size, mtime = self.files[path]
        return os.stat_result((0o100644, 1, 1, 1, 0, 0, size, 0, 0, 0, 0, 0, 0, mtime // 10**9, mtime))


class Recorder:
    def __init__(self) -> None:
        self.emitted: list[tuple[float, str]] = []
        self.cond = threading.Condition()

    def __call__(self, path: str) -> None:
        with self.cond:
            self.emitted.append((time.monotonic(), path))
            self.cond.notify_all()

    def paths(self) -> list[str]:
        return [p for _, p in self.emitted]

    def wait_for(self, n: int, timeout: float = 2.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.emitted) >= n, timeout), self.emitted


@pytest.fixture
def settler() -> Iterator[tuple[Settler, FakeFS, Recorder]]:
    fs, rec = FakeFS(), Recorder()
    s = Settler(SETTLE, rec, stat=fs.stat)
    t = threading.Thread(target=s.run, daemon=True)
    t.start()
    yield s, fs, rec
    s.stop()
    t.join(2)
    assert not t.is_alive(), "stop() must end run()"


def test_emits_once_after_settle_time(settler) -> None:
    s, fs, rec = settler
    fs.write("/a.jpg", 10)
    t0 = time.monotonic()
    s.touch("/a.jpg")
    assert s.pending() == 1
    rec.wait_for(1)
    assert rec.emitted[0][0] - t0 >= SETTLE
    time.sleep(3 * SETTLE)
    assert rec.paths() == ["/a.jpg"] and s.pending() == 0


def test_events_rearm_the_timer(settler) -> None:
    s, fs, rec = settler
    t_last = 0.0
    for size in range(1, 11):  # an upload in pieces, an event per piece, faster than settle_s
        fs.write("/up.jpg", size * 100)
        s.touch("/up.jpg")
        t_last = time.monotonic()
        time.sleep(SETTLE / 4)
    rec.wait_for(1)
    assert rec.emitted[0][0] - t_last >= SETTLE * 0.9
    time.sleep(3 * SETTLE)
    assert rec.paths() == ["/up.jpg"]


def test_growing_file_without_events_is_held_back(settler) -> None:
    """The size changed since the last event (writes whose events were lost): look again later."""
    s, fs, rec = settler
    fs.write("/g.jpg", 1)
    s.touch("/g.jpg")
    stop = threading.Event()

    def grow() -> None:
        n = 2
        while not stop.is_set():
            fs.write("/g.jpg", n)
            n += 1
            time.sleep(SETTLE / 3)

    t = threading.Thread(target=grow)
    t.start()
    time.sleep(5 * SETTLE)
    assert rec.paths() == [], "a file still growing must not be emitted"
    stop.set()
    t.join()
    t_stable = time.monotonic()
    rec.wait_for(1, timeout=5 * SETTLE + 1)
    assert rec.paths() == ["/g.jpg"]
    assert rec.emitted[0][0] - t_stable <= 3 * SETTLE + 0.5


def test_cancel_and_cancel_prefix(settler) -> None:
    s, fs, rec = settler
    for p in ("/d/x.jpg", "/d/sub/y.jpg", "/d2/z.jpg", "/e.jpg"):
        fs.write(p, 5)
        s.touch(p)
    assert s.cancel("/e.jpg") is True
    assert s.cancel("/e.jpg") is False
    assert s.cancel("/never.jpg") is False
    assert sorted(s.cancel_prefix("/d/")) == ["/d/sub/y.jpg", "/d/x.jpg"]
    assert s.pending() == 1
    rec.wait_for(1)
    time.sleep(3 * SETTLE)
    assert rec.paths() == ["/d2/z.jpg"], "a sibling folder sharing the name prefix is not cancelled"


def test_a_vanished_path_is_emitted_for_the_consumer_to_forget(settler) -> None:
    s, fs, rec = settler
    fs.write("/v.jpg", 3)
    s.touch("/v.jpg")
    fs.remove("/v.jpg")
    s.touch("/never-existed.jpg")
    rec.wait_for(2)
    assert sorted(rec.paths()) == ["/never-existed.jpg", "/v.jpg"]


def test_many_paths_each_emitted_exactly_once(settler) -> None:
    s, fs, rec = settler
    paths = [f"/many/{i}.jpg" for i in range(300)]
    for p in paths:
        fs.write(p, 1)
    for _ in range(3):
        for p in paths:
            s.touch(p)
    rec.wait_for(300)
    time.sleep(3 * SETTLE)
    assert sorted(rec.paths()) == sorted(paths)
    assert s.pending() == 0


def test_stop_is_prompt_with_work_pending() -> None:
    fs, rec = FakeFS(), Recorder()
    s = Settler(60.0, rec, stat=fs.stat)
    t = threading.Thread(target=s.run, daemon=True)
    t.start()
    s.touch("/slow.jpg")
    time.sleep(0.05)
    t0 = time.monotonic()
    s.stop()
    t.join(2)
    assert not t.is_alive() and time.monotonic() - t0 < 1.5
    assert rec.paths() == []


class SlowFS(FakeFS):
    """``stat`` of one path blocks until released (a hung network mount)."""

    def __init__(self, slow: str) -> None:
        super().__init__()
        self.slow = slow
        self.entered = threading.Event()
        self.release = threading.Event()

    def stat(self, path: str) -> os.stat_result:
        if path == self.slow:
            self.entered.set()
            self.release.wait(10)
        return super().stat(path)


def _timed(fn: object, *args: str) -> float:
    t0 = time.monotonic()
    assert callable(fn)
    fn(*args)
    return time.monotonic() - t0


def test_no_stat_under_the_lock_when_a_timer_fires() -> None:
    """The settle thread blocked in ``stat`` must not block the watcher's touch/cancel/pending."""
    fs, rec = SlowFS("/slow/a.jpg"), Recorder()
    fs.write("/slow/a.jpg", 1)
    fs.write("/b.jpg", 1)
    s = Settler(SETTLE, rec, stat=fs.stat)
    fs.release.set()  # the first look (in touch) is quick
    s.touch("/slow/a.jpg")
    fs.release.clear()
    fs.entered.clear()
    t = threading.Thread(target=s.run, daemon=True)
    t.start()
    try:
        assert fs.entered.wait(2), "the timer should fire and stat the path"
        took = [_timed(s.touch, "/b.jpg"), _timed(s.cancel, "/nothing.jpg"), _timed(s.pending)]
        assert max(took) < 0.5, f"watcher calls waited for a blocked stat: {took}"
        assert s.pending() == 2
    finally:
        fs.release.set()
        rec.wait_for(2)
        s.stop()
        t.join(2)
    assert sorted(rec.paths()) == ["/b.jpg", "/slow/a.jpg"]


def test_no_stat_under_the_lock_in_touch() -> None:
    """A touch whose stat hangs must not block another thread's touch of another path."""
    fs, rec = SlowFS("/slow/a.jpg"), Recorder()
    fs.write("/slow/a.jpg", 1)
    fs.write("/b.jpg", 1)
    s = Settler(SETTLE, rec, stat=fs.stat)
    t = threading.Thread(target=s.run, daemon=True)
    t.start()
    toucher = threading.Thread(target=s.touch, args=("/slow/a.jpg",), daemon=True)
    toucher.start()
    try:
        assert fs.entered.wait(2)
        took = [_timed(s.touch, "/b.jpg"), _timed(s.pending)]
        assert max(took) < 0.5, f"a touch waited for another path's blocked stat: {took}"
    finally:
        fs.release.set()
        toucher.join(2)
        rec.wait_for(2)
        s.stop()
        t.join(2)
    assert sorted(rec.paths()) == ["/b.jpg", "/slow/a.jpg"]


def test_a_timer_rearmed_while_being_looked_at_is_not_emitted_early() -> None:
    """The outcome of a look made outside the lock is dropped when a touch re-armed the path."""
    fs, rec = SlowFS("/a.jpg"), Recorder()
    fs.write("/a.jpg", 1)
    s = Settler(SETTLE, rec, stat=fs.stat)
    fs.release.set()
    s.touch("/a.jpg")
    fs.release.clear()
    fs.entered.clear()
    t = threading.Thread(target=s.run, daemon=True)
    t.start()
    try:
        assert fs.entered.wait(2)
        fs.write("/a.jpg", 2)
        t_touch = time.monotonic()
        threading.Thread(target=s.touch, args=("/a.jpg",), daemon=True).start()  # its stat waits too
        time.sleep(0.05)
        fs.release.set()
        rec.wait_for(1)
        assert rec.emitted[0][0] - t_touch >= SETTLE * 0.9, "emitted on the stale look"
    finally:
        fs.release.set()
        s.stop()
        t.join(2)
    time.sleep(3 * SETTLE)
    assert rec.paths() == ["/a.jpg"]
