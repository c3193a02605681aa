"""Temp files of report writes cut short by ``kill -9``: the next daemon start removes them, and
nothing else (a live writer's temp file, a user's file, a symlink)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dedupd.reports.atomic import LEGACY_STALE_S, TMP_PREFIX, sweep_stale_temps
from tests.daemon.helpers import REPO

#: a writer that writes half of ``argv[1]`` through write_atomic, says so, then waits for stdin
WRITER = """
import sys
from dedupd.reports.atomic import write_atomic

def pieces():
    yield b"x" * 100_000
    print("half", flush=True)
    sys.stdin.readline()
    yield b"y" * 100_000

write_atomic(sys.argv[1], pieces(), 0o644)
"""


def start_writer(target: Path) -> subprocess.Popen[bytes]:
    """A real process stopped mid-way through an atomic write of ``target`` (its temp file exists)."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline() == b"half\n"
    return proc


def killed_writer(target: Path) -> Path:
    """The temp file an atomic write of ``target`` leaves when its process is killed mid-way."""
    proc = start_writer(target)
    temps = [p for p in target.parent.iterdir() if p.name.startswith(f"{TMP_PREFIX}{proc.pid}-")]
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert len(temps) == 1 and temps[0].stat().st_size == 100_000 and not target.exists()
    return temps[0]


def test_sweep_removes_dead_writers_temps_only(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    dead = killed_writer(folder / "groups.json")
    mine = folder / f"{TMP_PREFIX}{os.getpid()}-abcdefgh"  # an earlier life of this pid (a container's pid 1)
    mine.write_bytes(b"1")
    old_legacy, new_legacy = folder / ".tmp-ab_cd012", folder / ".tmp-zz99yy88"  # mkstemp names of older dedupd
    old_legacy.write_bytes(b"22")
    new_legacy.write_bytes(b"333")
    past = time.time() - LEGACY_STALE_S - 60
    os.utime(old_legacy, (past, past))
    kept = [folder / ".tmp-notes.txt", folder / f"{TMP_PREFIX}notes", folder / "report.html", new_legacy]
    for p in kept[:3]:
        p.write_bytes(b"user")
    link_target = tmp_path / "precious.jpg"
    link_target.write_bytes(b"jpeg")
    link = folder / f"{TMP_PREFIX}999999999-link"
    link.symlink_to(link_target)
    subdir = folder / f"{TMP_PREFIX}999999999-dir"
    subdir.mkdir()
    live = start_writer(folder / "duplicates.json")  # a write in flight in another process
    try:
        removed, size = sweep_stale_temps(str(folder))
        assert (removed, size) == (3, 100_000 + 1 + 2)
        assert not dead.exists() and not mine.exists() and not old_legacy.exists()
        assert all(p.exists() for p in kept) and link.is_symlink() and link_target.exists() and subdir.is_dir()
        live.communicate(b"\n", timeout=30)
        assert live.returncode == 0  # the live write was not disturbed
        assert (folder / "duplicates.json").read_bytes() == b"x" * 100_000 + b"y" * 100_000
    finally:
        if live.returncode is None:
            live.kill()
            live.communicate()
    assert sweep_stale_temps(str(tmp_path / "missing")) == (0, 0)


def test_daemon_start_removes_what_killed_writes_left(tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    watched.mkdir()
    daemon = daemon_factory([watched])
    thumbs = daemon.report_dir / "thumbs"
    thumbs.mkdir(parents=True)
    in_reports = killed_writer(daemon.report_dir / "groups.json")
    in_thumbs = killed_writer(thumbs / ("ab" * 32 + ".jpg"))
    daemon.start()
    assert not in_reports.exists(), "swept before the first report write"
    daemon.wait_until(lambda: not in_thumbs.exists(), 30, "the thumbnail folder swept")
    log = daemon.log_path.read_text()
    assert log.count("temp files left by report writes cut short") == 2
    daemon.stop()
