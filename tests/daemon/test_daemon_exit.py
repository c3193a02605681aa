"""A clean stop ends every process pool before the interpreter exits.

Python 3.11's exit hook writes to the wake-up pipe of every process pool whose manager thread it
knows, without the pool's lock; a manager thread still winding its workers down at that moment
closes the pipe in between: "OSError: [Errno 9] Bad file descriptor" on stderr after "dedupd
stopped". Pools shut down without waiting (the query and thumbnail decoders) left theirs running,
unseen by the join of non-daemon threads (started from daemon threads, they are daemon threads).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from dedupd.daemon.workers import DecodePool, join_process_pools
from tests.daemon.events_helpers import image_variants
from tests.daemon.helpers import DaemonProcess

PROBE = "tests.daemon.exit_probe"


def _photos(corpus_dir: Path, tmp_path: Path) -> tuple[Path, list[bytes]]:
    imgs = image_variants(corpus_dir, 8)
    watched = tmp_path / "photos"
    watched.mkdir()
    for i, data in enumerate(imgs[:4]):  # near duplicates: groups, a report with thumbnails
        (watched / f"a{i}.jpg").write_bytes(data)
    return watched, imgs


def _start_stop(daemon: DaemonProcess, watched: Path, data: bytes, name: str, *, main_module: str = "dedupd") -> None:
    """Start, let a change reach the reports (thumbnail and ingest decoders busy), query, stop."""
    daemon.start(timeout=60, main_module=main_module)
    (watched / name).write_bytes(data)
    code, _ = daemon.api("POST", "/v1/query", data)  # the query decoders too
    assert code == 200
    daemon.wait_until(lambda: str(watched / name) in daemon.duplicates(), 30, f"{name} reported")
    daemon.stop(timeout=20)


def _exit_lines(daemon: DaemonProcess) -> list[str]:
    return [ln for ln in daemon.log_text().splitlines() if ln.startswith("exit-probe:")]


def test_no_pool_thread_is_running_when_the_exit_hook_runs(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """The exit hook's main thread is made to pause between its check and its write (as on a loaded
    machine): a pool manager thread still ending then would close the pipe in between."""
    watched, imgs = _photos(corpus_dir, tmp_path)
    daemon = daemon_factory([watched], settle_ms=100)
    for i in range(2):
        _start_stop(daemon, watched, imgs[4 + i], f"n{i}.jpg", main_module=PROBE)
    assert _exit_lines(daemon) == ["exit-probe: 0 pool manager threads running at exit []"] * 2, daemon.log_tail()
    assert daemon.errors_in_log() == [], daemon.log_tail()
    assert "Traceback" not in daemon.log_text(), daemon.log_tail()


@pytest.mark.stress
def test_repeated_clean_stops_print_no_traceback(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """``dedupd run`` itself (no probe), started and stopped again and again while it decodes: no
    traceback, no warning about threads at the stop. Load the machine (``stress-ng -c 2``) to see
    what it guards against; the probe test above makes it certain."""
    watched, imgs = _photos(corpus_dir, tmp_path)
    daemon = daemon_factory([watched], settle_ms=100)
    for i in range(int(os.environ.get("DEDUPD_EXIT_CYCLES", "25"))):
        _start_stop(daemon, watched, imgs[4 + i % 4], f"n{i}.jpg")
        assert daemon.errors_in_log() == [], f"cycle {i}" + daemon.log_tail()
    assert "Traceback" not in daemon.log_text(), daemon.log_tail()
    assert "still running" not in daemon.log_text(), daemon.log_tail()


def _pool_on_a_daemon_thread() -> tuple[DecodePool, list[int]]:
    """A started DecodePool whose executor was made on a daemon thread (as the daemon's socket
    warm-up and report threads do): its manager thread is a daemon thread too."""
    pool = DecodePool("probe", 2, task_timeout_s=60)
    pids: list[int] = []

    def start() -> None:
        pool.start()
        pids.extend(pool.run(os.getpid) for _ in range(2))

    t = threading.Thread(target=start, daemon=True)
    t.start()
    t.join(60)
    assert pids, "the pool did not start"
    return pool, pids


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_decode_pool_shutdown_waits_for_its_manager_thread_and_workers() -> None:
    pool, pids = _pool_on_a_daemon_thread()
    manager = pool._pool._executor_manager_thread  # type: ignore[union-attr]
    assert manager is not None and manager.daemon and manager.is_alive()
    pool.shutdown(join_s=5.0)
    assert not manager.is_alive()
    assert join_process_pools(0.0) == []  # nothing of it still ending
    assert all(_gone(pid) for pid in pids), pids


def test_a_discarded_pool_is_waited_for_at_shutdown() -> None:
    """A pool dropped after a crash ends on its own; the shutdown still waits for it."""
    pool, pids = _pool_on_a_daemon_thread()
    executor = pool._executor()
    pool._discard(executor, kill=True)  # as after a hung decode: workers killed, nothing waited for
    pool.shutdown(join_s=5.0)
    assert join_process_pools(0.0) == []
    deadline = time.monotonic() + 5
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in pids), pids
