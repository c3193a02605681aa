"""Equivalence under fault injection: after a seeded sequence of config changes (new method, new
threshold, new root) and ``kill -9`` at random moments (during the start-up walk, re-encodes,
quarantine moves and store writes), the running daemon's reports equal a fresh ``dedupd scan`` of
the same folders with the same settings, every original file exists exactly once (in its folder
or in the quarantine, same bytes), and ``dedupd restore --all`` gives back the original tree.

The short version runs in ``make test``; ``make stress`` runs it with 36 kills.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon.helpers import REPO, DaemonProcess, as_sets, checksums, copy_tree_files, image_files

#: each phase changes the config, then starts and kills the daemon ``kills`` times at random moments
PHASES: list[dict[str, Any]] = [
    {},  # the first ingest (and quarantine moves)
    {"methods": {"phash": 10, "dhash": 12}},  # a new method: every file re-encoded
    {"methods": {"phash": 6, "dhash": 12}, "match": "all"},  # new thresholds and mode
    {"roots": "add"},  # a new root with copies of files already indexed
]


def fresh_scan(tmp: Path, config: dict[str, Any]) -> dict[str, list[str]]:
    """duplicates.json of a one-shot scan of the same roots with the same matching, report only."""
    out = tmp / f"fresh-{time.monotonic_ns()}"
    cfg = {**config, "store_dir": str(out / "store"), "report_dir": str(out / "reports"), "policy": "report",
           "socket_path": str(out / "s")}
    cfg.pop("quarantine_dir", None)
    path = out / "c.yaml"
    out.mkdir(parents=True)
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "dedupd", "scan", "--config", str(path)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "reports" / "duplicates.json").read_text())


def run_sequence(tmp_path: Path, mixed200: Path, daemon_factory, *, kills_per_phase: int, seed: int) -> None:
    rng = random.Random(seed)
    watched, extra, qdir = tmp_path / "photos", tmp_path / "more", tmp_path / "quarantine"
    shutil.copytree(mixed200, watched)
    names = sorted(os.path.relpath(p, mixed200) for p in image_files(mixed200))
    before = checksums(watched)
    d: DaemonProcess = daemon_factory([watched], policy="quarantine", quarantine_dir=str(qdir),
                                      methods={"phash": 10}, settle_ms=100)
    kills = 0
    for phase in PHASES:
        if phase.get("roots") == "add":
            extra.mkdir()
            added = copy_tree_files(mixed200, extra, rng.sample(names, 12))
            before.update({str(p): h for p, h in checksums(extra).items()})
            d.write_config(roots=[str(watched), str(extra)])
            assert added
        else:
            d.write_config(**phase)
        for _ in range(kills_per_phase):
            d.start(wait=False)
            d.wait_until(d.try_status, 60, "the socket to answer")
            time.sleep(rng.uniform(0.0, 1.5))
            left = d.kill9()
            assert not left, "decode workers must exit when the daemon is killed"
            kills += 1
    d.start()
    d.wait_quiet(timeout=180, stable=1.5)
    print(f"\n{kills} kill -9 across {len(PHASES)} config phases (seed {seed})")

    # 1. reports equal a fresh scan of the folders as they now are
    expected = fresh_scan(tmp_path, d.config)
    assert as_sets(d.duplicates()) == as_sets(expected)
    assert not d.errors_in_log()

    # 2. every original file exists exactly once, with its bytes: in place or in the quarantine
    entries = d.manifest()
    moved = {e["origin"]: e for e in entries if e["state"] == "moved"}
    assert all(e["state"] in ("moved", "failed") for e in entries), entries
    now = {**checksums(watched), **checksums(extra)}
    quarantined = checksums(qdir) if qdir.exists() else {}
    assert set(quarantined) == {e["dest"] for e in moved.values()}, "only manifest entries in the quarantine"
    for path, digest in before.items():
        if path in moved:
            assert path not in now and quarantined[moved[path]["dest"]] == digest
        else:
            assert now.get(path) == digest, f"{path} lost or changed"
    assert set(now) <= set(before), f"unexpected files: {set(now) - set(before)}"

    # 3. restore --all gives back the original tree byte for byte
    out = d.cli("restore", "--all")
    assert out.returncode == 0, out.stdout + out.stderr
    assert {**checksums(watched), **checksums(extra)} == before
    d.stop(timeout=15)


@pytest.mark.slow
def test_kill9_config_changes_and_restarts_equal_a_fresh_scan(tmp_path: Path, mixed200: Path,
                                                              daemon_factory) -> None:
    run_sequence(tmp_path, mixed200, daemon_factory, kills_per_phase=2, seed=7)


@pytest.mark.stress
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_stress_kill9_config_changes_and_restarts_equal_a_fresh_scan(tmp_path: Path, mixed200: Path,
                                                                     daemon_factory, seed: int) -> None:
    run_sequence(tmp_path, mixed200, daemon_factory, kills_per_phase=3, seed=seed)
