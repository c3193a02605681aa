"""Lifecycle: SIGHUP reloads thresholds, SIGTERM stops promptly, and the systemd notify protocol."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

from dedupd.methods import PHash
from tests.daemon.helpers import as_sets, copy_tree_files, image_files, relative_map


def test_sighup_changes_threshold_of_next_reports(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    encodings = PHash(verbose=False).encode_images(image_dir=str(watched), recursive=True)

    def library(threshold: int) -> dict[str, set[str]]:
        return as_sets(PHash(verbose=False).find_duplicates(encoding_map=encodings, max_distance_threshold=threshold))

    daemon = daemon_factory([watched], methods={"phash": {"threshold": 10, "crop": False}})  # as the library
    daemon.start()
    first = daemon.wait_quiet()
    assert relative_map(daemon.duplicates(), watched) == library(10)
    for threshold in (2, 20):
        assert library(threshold) != library(10)
        daemon.write_config(methods={"phash": {"threshold": threshold, "crop": False}})
        os.kill(daemon.pid, signal.SIGHUP)
        daemon.wait_until(lambda t=threshold: relative_map(daemon.duplicates(), watched) == library(t)
                          and daemon.groups()["methods"] == {"phash": t}, 15,
                          f"reports at threshold {threshold} after SIGHUP")
    s = daemon.wait_quiet()
    assert s["decoded"] == first["decoded"] and s["files"] == 200, "a threshold change re-uses the stored hashes"

    # a broken config on SIGHUP: the daemon says why and keeps running with the previous one
    daemon.config_path.write_text("roots: [/nonexistent/folder]\nsettle_ms: -1\n")
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_until(lambda: "reload failed" in daemon.log_text(), 10, "the reload error logged")
    assert daemon.status()["state"] == "watching"
    assert relative_map(daemon.duplicates(), watched) == library(20)
    assert daemon.stop() < 5


def test_sighup_adds_and_removes_a_root(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    files = sorted(image_files(mixed200))
    for p in files[:10]:
        shutil.copyfile(p, a / os.path.basename(p))
    for p in files[:3] + files[100:102]:  # three byte copies of a's files, two new ones
        shutil.copyfile(p, b / os.path.basename(p))
    daemon = daemon_factory([a])
    daemon.start()
    first = daemon.wait_quiet()
    assert set(daemon.duplicates()) == {str(a / os.path.basename(p)) for p in files[:10]}

    daemon.write_config(roots=[str(a), str(b)])
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_until(lambda: len(daemon.duplicates()) == 15, 20, "the new root indexed")
    s = daemon.wait_quiet()
    dups = daemon.duplicates()
    for p in files[:3]:
        assert str(a / os.path.basename(p)) in dups[str(b / os.path.basename(p))]
    assert s["decoded"] - first["decoded"] == 2 and s["reused"] - first["reused"] >= 3, s
    (b / "late.jpg").write_bytes(Path(files[0]).read_bytes())  # the new root is watched too
    daemon.wait_until(lambda: str(b / "late.jpg") in daemon.duplicates(), 10, "a file in the new root")

    daemon.write_config(roots=[str(a)])
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.wait_until(lambda: set(daemon.duplicates()) == {str(a / os.path.basename(p)) for p in files[:10]}, 20,
                      "the removed root forgotten")
    assert not any(str(b) in q for v in daemon.duplicates().values() for q in v)
    daemon.stop()


def test_sigterm_during_ingest_exits_promptly_and_cleanly(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    watched.mkdir()
    daemon = daemon_factory([watched])
    daemon.start()
    names = [os.path.relpath(p, mixed200) for p in image_files(mixed200)]
    copy_tree_files(mixed200, watched, names)
    daemon.wait_until(lambda: daemon.status()["files"] >= 20, 20, "ingest under way")
    elapsed = daemon.stop(timeout=5)
    print(f"\nSIGTERM during an ingest: exited 0 after {elapsed:.2f} s")
    assert not os.path.exists(daemon.socket_path), "the socket is removed on a clean stop"
    # what was committed is kept; the rest is picked up by the next start
    daemon.start()
    s = daemon.wait_quiet()
    assert s["files"] == 200
    assert relative_map(daemon.duplicates(), watched).keys() == {os.path.relpath(p, watched) for p in image_files(watched)}
    elapsed = daemon.stop(timeout=5)
    print(f"SIGTERM when idle: exited 0 after {elapsed:.2f} s")


class NotifyListener:
    """A SOCK_DGRAM socket playing systemd's part of the notify protocol."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="dd-notify-", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in self.messages if key in m]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_systemd_notify_ready_status_watchdog(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    listener = NotifyListener()
    try:
        daemon = daemon_factory([watched])
        daemon.start(env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "500000"}, wait=False)
        daemon.wait_until(lambda: listener.with_key("READY"), 30, "READY=1")
        t_ready = listener.with_key("READY")[0][0]
        assert listener.with_key("READY")[0][1]["READY"] == "1"
        assert daemon.try_status() is not None, "READY=1 only once the socket answers"
        daemon.wait_ready()
        daemon.wait_until(lambda: len([t for t, _ in listener.with_key("WATCHDOG") if t > t_ready]) >= 4, 10,
                          "WATCHDOG=1 pings")
        pings = [t for t, m in listener.with_key("WATCHDOG") if m["WATCHDOG"] == "1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps) < 0.5, f"pings must come more often than WATCHDOG_USEC (0.5 s): {gaps}"
        print(f"\nWATCHDOG=1 every {sum(gaps) / len(gaps):.3f} s on average (max gap {max(gaps):.3f} s)")
        daemon.wait_until(lambda: any("files" in m["STATUS"] for _, m in listener.with_key("STATUS")), 10,
                          "STATUS= with progress")
        daemon.stop()
        assert listener.with_key("STOPPING"), "STOPPING=1 on a clean stop"
    finally:
        listener.close()


def test_sigterm_while_decoding_large_photos(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """Camera-sized photos and one worker (the default): a stop must not wait for a whole batch."""
    from PIL import Image

    with Image.open(corpus_dir / "base" / "b0010.jpg") as im:
        big = im.convert("RGB").resize((4000, 3000), Image.BICUBIC)
    src = tmp_path / "big.jpg"
    big.save(src, quality=90)
    data = src.read_bytes()
    watched = tmp_path / "photos"
    watched.mkdir()
    daemon = daemon_factory([watched], workers=1)
    daemon.start()
    for i in range(24):  # distinct bytes after the JPEG end marker: 24 different digests, 24 decodes
        (watched / f"IMG_{i:04d}.jpg").write_bytes(data + f"dedupd-test-{i}".encode())
    daemon.wait_until(lambda: daemon.status()["decoded"] >= 1, 30, "decoding under way")
    elapsed = daemon.stop(timeout=5)
    print(f"\nSIGTERM while decoding 12 MP photos with one worker: exited 0 after {elapsed:.2f} s")
    daemon.start()
    s = daemon.wait_quiet(timeout=120)
    assert s["files"] == 24
    assert len(daemon.duplicates()) == 24
    daemon.stop()
