"""``dedupd scan`` as a one-shot tool: it prints the duplicate sets (kept file first), its counters
add up, ``--json`` carries the groups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.helpers import REPO, image_files

pytestmark = pytest.mark.slow


def scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dedupd", "scan", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def test_scan_prints_the_sets_and_counts_that_add_up(tmp_path: Path, mixed200: Path) -> None:
    store, reports = tmp_path / "store", tmp_path / "reports"
    common = [str(mixed200), "--store-dir", str(store), "--report-dir", str(reports)]
    out = scan(*common, "--json")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    files = len(image_files(mixed200))
    assert first["files"] + first["unreadable"] == files
    assert first["decoded"] + first["reused"] + first["unchanged"] == files and first["unchanged"] == 0, first
    on_disk = json.loads((reports / "groups.json").read_text())["groups"]
    assert first["duplicate_groups"] == on_disk and first["groups"] == len(on_disk)
    assert first["reclaimable_bytes"] == sum(d["bytes"] for g in on_disk for d in g["duplicates"]) > 0

    again = scan(*common)  # human output, nothing changed since
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    keeps = [line for line in lines if line.startswith("keep ")]
    dups = [line for line in lines if line.startswith("  dup ")]
    assert len(keeps) == len(on_disk) and len(dups) == sum(len(g["duplicates"]) for g in on_disk)
    assert lines.index(keeps[0]) == 0 and f"keep {on_disk[0]['keep']['path']}  (" in keeps[0]
    summary = next(line for line in lines if "images indexed" in line)
    assert f"0 decoded, 0 reused, {files} unchanged since the last scan" in summary, summary
    assert "reclaimable" in again.stdout
