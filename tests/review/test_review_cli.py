"""``dedupd review`` without a daemon and without a store: exit 4 and say how to view a store read-only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_no_daemon_no_store_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "dedupd", "review", "--no-browser", "--socket", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 4
    assert "not running" in proc.stderr and "--config FILE or --store-dir DIR" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dedupd", "review", "--no-browser", "--socket", str(tmp_path / "s"),
                           "--store-dir", str(tmp_path / "nostore")], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 4 and f"no store at {tmp_path / 'nostore'}" in proc.stderr


def test_missing_chromedriver_fails_under_ci(monkeypatch, tmp_path: Path) -> None:
    """The browser test cannot quietly skip in CI: a missing chromedriver is a failure there."""
    import pytest

    from tests import browser

    real_find = browser._find
    monkeypatch.setattr(browser, "_find", lambda *names: None if "chromedriver" in names else real_find(*names))
    monkeypatch.setattr(browser, "chromium", lambda: "/usr/bin/chromium")
    monkeypatch.setattr(browser, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium-driver"):
        browser.webdriver(tmp_path)
    monkeypatch.setattr(browser, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception):
        browser.webdriver(tmp_path)


def test_the_browser_gets_the_token_through_a_private_file_not_its_command_line(tmp_path: Path,
                                                                              corpus_dir: Path) -> None:
    """A browser's command line is readable by every local user (/proc/PID/cmdline): the review
    URL with its token reaches the browser in a 0600 page in a 0700 folder, removed at the end."""
    import shutil
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
    env["PYTHONPATH"] = str(REPO)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copyfile(sorted((corpus_dir / "base").glob("*.jpg"))[0], photos / name)
    subprocess.run([sys.executable, "-m", "dedupd", "scan", str(photos), "--store-dir", str(tmp_path / "store"),
                    "--report-dir", str(tmp_path / "reports")], env=env, check=True, capture_output=True, timeout=120)
    record = tmp_path / "browser.txt"
    fake = tmp_path / "browser.sh"  # records what a browser would be given, and what it could read
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}.tmp\nf="${{1#file://}}"\n'
                    f'stat -c "%a" "$f" "$(dirname "$f")" >> {record}.tmp\ncat "$f" >> {record}.tmp\n'
                    f'mv {record}.tmp {record}\n')
    fake.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "dedupd", "review", "--store-dir", str(tmp_path / "store"),
                             "--port", "0"], env={**env, "BROWSER": f"{fake} %s"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        url = proc.stdout.readline().split()[-1]
        token = url.split("token=")[1]
        deadline = time.monotonic() + 30
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = record.read_text().split("\n", 3)
        argv, modes, page = lines[0], lines[1:3], lines[3]
        assert token not in argv and argv.startswith("file://"), argv
        assert modes == ["600", "700"], modes
        assert url.replace("&", "&amp;") in page
        folder = Path(argv[len("file://"):]).parent
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert not folder.exists(), "the page with the token is removed when the review ends"


def test_another_local_user_is_not_served(tmp_path: Path, corpus_dir: Path) -> None:
    """The page is the starting user's: another uid's connection is closed unanswered (it could
    otherwise hold the server's connections, or use a leaked token); the owner's is answered."""
    import shutil
    import signal

    import pytest

    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or system_python is None:
        pytest.skip("connecting as another user needs root and a python3 every user may run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
    env["PYTHONPATH"] = str(REPO)
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(sorted((corpus_dir / "base").glob("*.jpg"))[0], photos / "a.jpg")
    subprocess.run([sys.executable, "-m", "dedupd", "scan", str(photos), "--store-dir", str(tmp_path / "store"),
                    "--report-dir", str(tmp_path / "reports")], env=env, check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([sys.executable, "-m", "dedupd", "review", "--no-browser", "--store-dir",
                             str(tmp_path / "store"), "--port", "0"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    probe = ("import socket, sys\n"
             "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
             "s.sendall(b'GET /api/version HTTP/1.1\\r\\nHost: 127.0.0.1:' + sys.argv[1].encode() + b'\\r\\n\\r\\n')\n"
             "print(s.recv(100).decode(errors='replace').split('\\r\\n')[0] or 'closed')\n")
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        port = proc.stdout.readline().split("127.0.0.1:")[1].split("/")[0]
        mine = subprocess.run([sys.executable, "-c", probe, port], capture_output=True, text=True, timeout=30)
        assert mine.stdout.strip() == "HTTP/1.1 403 Forbidden", mine  # answered (no token)
        other = subprocess.run([system_python, "-c", probe, port], capture_output=True, text=True, timeout=30,
                               user=65534, group=65534, extra_groups=[])
        assert other.stdout.strip() == "closed" or "ConnectionResetError" in other.stderr, other
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "refused a connection of uid 65534" in err
