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
