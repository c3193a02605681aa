"""Faults the daemon must survive: the pipeline thread keeps going (or the daemon exits non-zero),
full disks under the store and the reports recover once space returns, a stopped scan neither
hangs nor writes half reports, a crash during a re-encode is redone, reloads are not dropped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.daemon.helpers import REPO, DaemonProcess, as_sets, copy_tree_files, image_files

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def small_fs(path: Path, size: str = "6m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path) -> Path:
    """Use up every free byte of ``fs`` with one file; returns it (delete it to free the space)."""
    filler = fs / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush (and fail) at close
        with contextlib.suppress(OSError):
            while True:
                f.write(block)  # a partial write fills the last bytes; the next one raises ENOSPC
    return filler


def test_content_handed_over_in_one_settle_window_keeps_the_pipeline_alive(
        daemon_factory, tmp_path: Path, mixed200: Path) -> None:
    """a.jpg (the only file with content D) is overwritten with E while a new b.jpg gets D."""
    watched = tmp_path / "w"
    watched.mkdir()
    first, second = image_files(mixed200)[:2]
    shutil.copyfile(first, watched / "a.jpg")
    d: DaemonProcess = daemon_factory([watched], settle_ms=600).start()
    d.wait_quiet()
    shutil.copyfile(first, watched / "b.jpg")
    shutil.copyfile(second, watched / "a.jpg")
    s = d.wait_quiet()
    assert s["files"] == 2 and not s["problems"], s
    for name in ("a.jpg", "b.jpg"):
        code, body = d.api("POST", "/v1/query", {"path": str(watched / name)})
        assert code == 200, body
    shutil.copyfile(first, watched / "c.jpg")  # the pipeline still works afterwards
    assert d.wait_quiet()["files"] == 3
    assert not d.errors_in_log()


def test_store_disk_full_degrades_then_recovers(daemon_factory, tmp_path: Path, mixed200: Path) -> None:
    watched = tmp_path / "w"
    watched.mkdir()
    with small_fs(tmp_path / "fs") as fs:
        d: DaemonProcess = daemon_factory([watched], store_dir=str(fs / "store")).start()
        filler = fill(fs)
        names = [os.path.relpath(p, mixed200) for p in image_files(mixed200)[:30]]
        copy_tree_files(mixed200, watched, names)
        s = d.wait_until(lambda: (st := d.try_status()) and st["state"] == "degraded" and st, 60,
                         "the daemon to report the full store")
        assert "free space" in s["problems"]["pipeline"]["error"] and s["problems"]["pipeline"]["retrying"]
        out = d.cli("status")
        assert "degraded" in out.stdout and "problem" in out.stdout and "free space" in out.stdout, out.stdout
        t0 = time.monotonic()
        assert d.status()["files"] == 0 and time.monotonic() - t0 < 2  # queries keep answering
        filler.unlink()
        s = d.wait_quiet(timeout=90)
        assert s["files"] == 30 and not s["problems"], s
        assert s["decoded"] + s["reused"] <= 30, s  # each file counted once, not once per retry
        d.stop()
    assert any("pipeline recovered" in line for line in d.log_text().splitlines())


def test_report_disk_full_degrades_then_recovers(daemon_factory, tmp_path: Path, mixed200: Path) -> None:
    watched = tmp_path / "w"
    watched.mkdir()
    names = [os.path.relpath(p, mixed200) for p in image_files(mixed200)]
    with small_fs(tmp_path / "fs", "1m") as fs:
        d: DaemonProcess = daemon_factory([watched], report_dir=str(fs / "reports")).start()
        filler = fill(fs)
        copy_tree_files(mixed200, watched, names[:40])
        s = d.wait_until(lambda: (st := d.try_status()) and st["state"] == "degraded" and st["queued"] == 0 and st,
                         60, "the daemon to report the full report folder")
        assert s["files"] == 40 and ("reports" in s["problems"] or "events" in s["problems"]), s
        filler.unlink()
        copy_tree_files(mixed200, watched, names[40:60])
        s = d.wait_quiet(timeout=90)
        assert s["files"] == 60 and not s["problems"], s
        # the reports catch up: duplicates.json follows groups.json by its spacing (3x its last write
        # time, which a loaded machine stretches past wait_quiet's 0.8 s of stillness)
        d.wait_until(lambda: len(d.duplicates()) == 60, 30, "duplicates.json to list the 60 files")
        d.stop()


def test_a_dead_daemon_thread_stops_the_daemon_with_an_error(tmp_path: Path, mixed200: Path) -> None:
    """Supervision, in-process: a thread that dies is logged, starves the watchdog, fails run()."""
    from dedupd.daemon.config import config_from_mapping
    from dedupd.daemon.service import Daemon, DaemonFailed

    cfg = config_from_mapping({"roots": [str(mixed200)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "reports"), "settle_ms": 100, "workers": 1},
                              env={"HOME": str(tmp_path)})
    daemon = Daemon(cfg, serve=False)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            daemon.run()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while getattr(daemon, "state", "") != "watching" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.healthy()
        daemon.pipeline.heartbeat -= 10_000  # a step stuck for hours: the watchdog starves
        assert not daemon.healthy()
        daemon.pipeline.heartbeat += 10_000
        daemon._reporting_since = time.monotonic() - 10_000  # a report write hung that long: likewise
        assert not daemon.healthy()
        daemon._reporting_since = None

        def broken(*_a: object, **_k: object) -> None:
            raise RuntimeError("injected: the pipeline loop itself broke")

        daemon.pipeline.queue.get = broken  # type: ignore[method-assign]
        runner.join(20)
        assert not runner.is_alive(), "the daemon did not stop after its pipeline thread died"
    finally:
        daemon.stop_event.set()
        runner.join(20)
    assert isinstance(outcome[0], DaemonFailed) and "pipeline" in str(outcome[0])
    assert daemon.dead_threads == ["pipeline"] and not daemon.healthy()


def scan(config_path: Path, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dedupd", "scan", "--config", str(config_path)],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)},
                          check=False)


def write_config(path: Path, **config: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"log": {"format": "json"}, "workers": 1, **config}))
    return path


def test_a_scan_stopped_early_exits_promptly_without_half_reports(tmp_path: Path, mixed400: Path) -> None:
    reports = tmp_path / "reports"
    cfg = write_config(tmp_path / "c.yaml", roots=[str(mixed400)], store_dir=str(tmp_path / "store"),
                       report_dir=str(reports), policy="quarantine", quarantine_dir=str(tmp_path / "q"))
    proc = subprocess.Popen([sys.executable, "-m", "dedupd", "scan", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not (tmp_path / "store" / "data.mdb").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("dedupd scan hung after SIGINT") from None
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not (reports / "duplicates.json").exists() and not (reports / "groups.json").exists()
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").rglob("*.*"))
    # a second run finishes the job
    done = scan(cfg)
    assert done.returncode == 0, done.stderr
    assert (reports / "duplicates.json").exists()


def test_a_scan_on_a_full_store_disk_stops_with_the_reason(tmp_path: Path, mixed200: Path) -> None:
    """The daemon waits out a full disk (above); a one-shot scan gives up after a few attempts,
    says why, and writes no report. Once space returns the same scan completes."""
    photos = tmp_path / "photos"
    copy_tree_files(mixed200, photos, [os.path.relpath(p, mixed200) for p in image_files(mixed200)[:30]])
    (tmp_path / "empty").mkdir()
    reports = tmp_path / "reports"
    with small_fs(tmp_path / "fs") as fs:
        made = write_config(tmp_path / "made.yaml", roots=[str(tmp_path / "empty")], store_dir=str(fs / "store"),
                            report_dir=str(tmp_path / "r0"))
        assert scan(made).returncode == 0  # the store exists; its disk fills up afterwards
        cfg = write_config(tmp_path / "c.yaml", roots=[str(photos)], store_dir=str(fs / "store"),
                           report_dir=str(reports))
        filler = fill(fs)
        locked = scan(cfg, timeout=60)  # not even the lock file's pid fits: refused at the start
        assert locked.returncode == 1, locked.stderr[-2000:]
        assert locked.stderr.strip().splitlines()[-1] == (
            f"dedupd: cannot write the lock file {fs / 'store' / 'dedupd.lock'}: No space left on device; "
            "free space on its filesystem")
        os.truncate(filler, filler.stat().st_size - 16384)  # 16 KiB free: the scan starts, its writes fail
        t0 = time.monotonic()
        full = scan(cfg, timeout=120)
        assert full.returncode == 1, full.stderr[-2000:]
        assert time.monotonic() - t0 < 60
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("dedupd: scan stopped") and "free space" in last and str(fs / "store") in last, last
        assert not (reports / "duplicates.json").exists() and not (reports / "groups.json").exists()
        filler.unlink()
        done = scan(cfg)
        assert done.returncode == 0, done.stderr[-2000:]
        assert (reports / "groups.json").exists()


def test_a_crash_during_a_re_encode_is_redone(daemon_factory, tmp_path: Path, mixed200: Path) -> None:
    """phash → phash + dhash, kill -9 before the re-encode is through: the restart redoes it."""
    d: DaemonProcess = daemon_factory([mixed200], methods={"phash": 10}).start()
    d.wait_quiet()
    d.stop()
    d.write_config(methods={"phash": 6, "dhash": 12}, match="all")
    for _ in range(2):
        d.start(wait=False)
        d.wait_until(d.try_status, 60, "the socket to answer")
        d.kill9()
    d.start()
    d.wait_quiet()
    fresh = write_config(tmp_path / "fresh" / "c.yaml", roots=[str(mixed200)], methods={"phash": 6, "dhash": 12},
                         match="all", exif_transpose=False,  # as the daemon under test (tests/daemon/helpers.py)
                         store_dir=str(tmp_path / "fresh" / "store"),
                         report_dir=str(tmp_path / "fresh" / "reports"))
    assert scan(fresh).returncode == 0
    import json

    expected = json.loads((tmp_path / "fresh" / "reports" / "duplicates.json").read_text())
    assert as_sets(d.duplicates()) == as_sets(expected)
    assert sum(map(len, expected.values())) > 0  # the comparison has pairs in it


def test_a_reload_during_a_reconcile_is_not_dropped(daemon_factory, tmp_path: Path, mixed400: Path) -> None:
    """A root added while the start-up walk runs is walked too (it was silently ignored)."""
    extra = tmp_path / "extra"
    extra.mkdir()
    names = [os.path.relpath(p, mixed400) for p in image_files(mixed400)[:5]]
    copy_tree_files(mixed400, extra, names)
    d: DaemonProcess = daemon_factory([mixed400], workers=1)
    d.start(wait=False)
    d.wait_until(lambda: (s := d.try_status()) and s["state"] == "reconciling" and s, 60, "reconciling")
    d.write_config(roots=[str(mixed400), str(extra)])
    os.kill(d.pid, signal.SIGHUP)
    s = d.wait_quiet(timeout=180)
    assert s["files"] == len(image_files(mixed400)) + 5, s


def test_reload_says_what_changed_what_needs_a_restart_and_why_it_was_rejected(
        daemon_factory, tmp_path: Path, mixed200: Path) -> None:
    d: DaemonProcess = daemon_factory([mixed200], methods={"phash": 10})
    d.start()
    d.wait_quiet()
    store_dir = d.config["store_dir"]
    d.write_config(methods={"phash": 8}, store_dir=str(tmp_path / "elsewhere"))
    out = d.cli("reload")
    assert out.returncode == 0, out.stderr
    assert "methods changed" in out.stdout and "store_dir" in out.stdout
    assert "restart" in out.stdout
    assert not (tmp_path / "elsewhere").exists() and d.wait_quiet()["state"] == "watching"
    # an invalid config is rejected with its reason; the running config stays
    d.write_config(methods={"phash": "ten"}, store_dir=store_dir)
    out = d.cli("reload")
    assert out.returncode == 1 and "methods.phash" in out.stderr and "running config is kept" in out.stderr, out
    os.kill(d.pid, signal.SIGHUP)
    d.wait_until(lambda: any("reload failed" in line for line in d.log_text().splitlines()), 10, "the log to say why")
    assert d.status()["state"] == "watching"
    d.stop()


def test_a_failed_start_releases_the_socket_and_the_store(tmp_path: Path, mixed200: Path) -> None:
    """Start-up fails after the socket and the store were claimed (CNN weights missing): both are
    released, the error is one clear line, the exit status is non-zero."""
    sock = tmp_path / "s.sock"
    cfg = write_config(tmp_path / "c.yaml", roots=[str(mixed200)], store_dir=str(tmp_path / "store"),
                       report_dir=str(tmp_path / "reports"), socket_path=str(sock),
                       methods={"cnn": {"model": "mobilenet_v3_small"}})
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORCH_HOME": str(tmp_path / "no-weights")}
    env.pop("DEDUPD_MOBILENET_WEIGHTS", None)
    done = subprocess.run([sys.executable, "-m", "dedupd", "run", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=120, env=env, check=False)
    assert done.returncode != 0
    assert "weights" in done.stderr.lower(), done.stderr
    assert not sock.exists(), "the socket of a daemon that failed to start must be removed"
    from dedupd.daemon.store import Store

    with Store.open(tmp_path / "store", lock=True):  # the writer lock was released
        pass


def test_a_hung_decoder_is_stopped_and_its_file_recorded_once(tmp_path: Path, mixed200: Path) -> None:
    """A decode that never returns: its worker is killed after the unit time limit, the file is
    recorded unreadable with that reason, and the pipeline goes on (in-process daemon: the worker
    function is swapped for one that hangs on ``*hang*`` files)."""
    from dedupd.daemon.config import config_from_mapping
    from dedupd.daemon.service import Daemon
    from tests.daemon.hang_worker import hang_on_marked

    watched = tmp_path / "w"
    watched.mkdir()
    cfg = config_from_mapping({"roots": [str(watched)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "reports"), "settle_ms": 100, "workers": 1},
                              env={"HOME": str(tmp_path)})
    daemon = Daemon(cfg, serve=False)
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while getattr(daemon, "state", "") != "watching" and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.pipeline.encode_fn = hang_on_marked
        daemon.pipeline.unit_timeout_s = 2.0
        first, second, third = image_files(mixed200)[:3]
        shutil.copyfile(first, watched / "a.jpg")
        shutil.copyfile(second, watched / "hang.jpg")
        deadline = time.monotonic() + 60
        while len(daemon.index.files) < 1 or daemon.pipeline.pending() or daemon.settler.pending():
            assert time.monotonic() < deadline, daemon.status()
            time.sleep(0.1)
        assert daemon.store is not None
        rec = daemon.store.get_file(str(watched / "hang.jpg"))
        assert rec is not None and rec.state == "unreadable" and "longer than 2 s" in (rec.error or ""), rec
        assert set(daemon.index.files) == {str(watched / "a.jpg")} and daemon.healthy()
        shutil.copyfile(third, watched / "c.jpg")  # a new pool serves the next file
        deadline = time.monotonic() + 60
        while str(watched / "c.jpg") not in daemon.index.files:
            assert time.monotonic() < deadline, daemon.status()
            time.sleep(0.1)
    finally:
        daemon.stop_event.set()
        runner.join(30)
    assert not runner.is_alive()
