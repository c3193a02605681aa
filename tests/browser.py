"""Headless Chromium for the tests that open pages in a real browser (report.html, the review page).

Debian's ``chromium`` (and ``chromium-driver`` for Selenium) must be installed: under ``CI=true`` a
missing one fails the test (``.ci/run`` installs both), elsewhere it skips with the command to run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage")


def _missing(msg: str) -> None:
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def _find(*names: str) -> str | None:
    for cand in (*(f"/usr/bin/{n}" for n in names), *(shutil.which(n) for n in names)):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def chromium() -> str:
    """Path of Chromium; fails under CI=true, skips elsewhere."""
    found = _find("chromium", "chromium-browser")
    if found is None:
        _missing("headless Chromium not found: install Debian's package with `apt-get install -y chromium`")
    assert found is not None
    return found


def webdriver(profile: Path) -> Any:
    """A Selenium WebDriver on headless Chromium through Debian's chromedriver (never downloaded)."""
    binary = chromium()
    driver_path = _find("chromedriver")
    if driver_path is None:
        _missing("chromedriver not found: install Debian's package with `apt-get install -y chromium-driver`")
    try:
        from selenium import webdriver as wd
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed: pip install -e '.[test]'")
    opts = wd.ChromeOptions()
    opts.binary_location = binary
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1400,1000"):
        opts.add_argument(flag)
    return wd.Chrome(service=Service(executable_path=driver_path), options=opts)
