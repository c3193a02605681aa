"""``dedupd scan`` as a one-shot tool: it prints the duplicate sets (kept file first), its counters
add up, ``--json`` carries the groups."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.helpers import REPO, checksums, image_files

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
    # the folder scanned is there (a scan looks at its roots as the daemon's loop does)
    assert [(r["path"], r["present"]) for r in first["roots"]] == [(str(mixed200), True)] and not first["missing_roots"]

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


@pytest.fixture
def small(tmp_path: Path, corpus_dir: Path) -> Path:
    """photos/: three originals, an exact copy, a near duplicate; archive/: an original of one of them."""
    from tests.daemon.socket_helpers import near_duplicate

    bases = corpus_dir / "base"
    photos, archive = tmp_path / "photos", tmp_path / "archive"
    (photos / "sub").mkdir(parents=True)
    archive.mkdir()
    for i in (40, 41, 42):
        shutil.copyfile(bases / f"b00{i}.jpg", photos / f"b00{i}.jpg")
    shutil.copyfile(bases / "b0040.jpg", photos / "sub" / "copy40.jpg")
    near_duplicate(bases / "b0041.jpg", photos / "near41.jpg")
    shutil.copyfile(bases / "b0042.jpg", archive / "orig42.jpg")
    return tmp_path


def test_scan_dry_run_moves_nothing_and_marks_what_quarantine_then_moves(small: Path) -> None:
    photos, qdir = small / "photos", small / "q"
    common = [str(photos), "--store-dir", str(small / "store"), "--report-dir", str(small / "reports")]
    before = checksums(photos)
    out = scan(*common, "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert checksums(photos) == before and not qdir.exists()
    marks = res["would_quarantine"]
    assert sorted(marks) == sorted(d["path"] for g in res["duplicate_groups"] for d in g["duplicates"] if d["move"])
    # only strong matches move: the exact copy, not the weak (beyond the strong bound) near duplicate
    dups = [d for g in res["duplicate_groups"] for d in g["duplicates"]]
    assert sorted(marks) == sorted(d["path"] for d in dups if d["direct"] and d["band"] == "strong")
    assert marks and any(d["band"] == "weak" for d in dups)
    assert res["would_free_bytes"] == sum(os.path.getsize(p) for p in marks)
    on_disk = json.loads((small / "reports" / "groups.json").read_text())
    assert on_disk["dry_run"] is True and on_disk["would_quarantine"] == marks
    assert "quarantine would move this file" in (small / "reports" / "report.html").read_text()

    human = scan(*common, "--dry-run")
    assert human.stdout.count("[would be quarantined]") == len(marks) and "nothing was moved" in human.stdout

    nul = scan(*common, "--dry-run", "--print0")
    assert nul.returncode == 0 and nul.stdout.split("\0")[:-1] == marks and nul.stdout.endswith("\0")
    lines = scan(*common, "--removable", "--fail-on-duplicate")
    assert lines.returncode == 3 and lines.stdout.splitlines() == marks  # report policy: what quarantine would move

    real = scan(*common, "--policy", "quarantine", "--quarantine-dir", str(qdir), "--json")
    assert real.returncode == 0, real.stderr
    moved = {str(photos / p) for p in before} - {str(photos / p) for p in checksums(photos)}
    assert moved == set(marks) and json.loads(real.stdout)["quarantined"] == len(marks)


def test_scan_one_shot_flags_method_threshold_exclude_and_fail_on_duplicate(small: Path) -> None:
    photos = small / "photos"
    common = [str(photos), "--store-dir", str(small / "store"), "--report-dir", str(small / "reports"), "--json"]
    base = json.loads(scan(*common).stdout)
    assert base["groups"] == 2
    strict = json.loads(scan(*common, "--method", "dhash", "--threshold", "0").stdout)
    assert strict["groups"] == 1  # only the exact copy is within distance 0
    methods = json.loads((small / "reports" / "groups.json").read_text())["methods"]
    assert methods == {"dhash": 0}
    no_sub = scan(*common, "--exclude", "sub", "--fail-on-duplicate")
    assert no_sub.returncode == 3 and json.loads(no_sub.stdout)["groups"] == 1  # copy40 is under sub/
    none = scan(*common, "--exclude", "sub", "--exclude", "near*", "--fail-on-duplicate")
    assert none.returncode == 0 and json.loads(none.stdout)["groups"] == 0
    bad = scan(*common, "--method", "phash", "--threshold", "99")
    assert bad.returncode == 1 and "methods.phash.threshold" in bad.stderr


def test_scan_reference_root_and_decisions_in_the_store(small: Path) -> None:
    photos, archive = small / "photos", small / "archive"
    common = [str(photos), "--reference", str(archive), "--store-dir", str(small / "store"),
              "--report-dir", str(small / "reports"), "--dry-run", "--json"]
    res = json.loads(scan(*common).stdout)
    g = next(g for g in res["duplicate_groups"] if g["keep"]["path"] == str(archive / "orig42.jpg"))
    assert g["kept_by"] == "in a reference root" and [d["path"] for d in g["duplicates"]] == [str(photos / "b0042.jpg")]
    assert str(archive / "orig42.jpg") not in res["would_quarantine"]  # across roots, the original stays

    store = ["--store-dir", str(small / "store")]
    out = dedupd("ignore", str(photos / "b0041.jpg"), str(photos / "near41.jpg"), *store)
    assert out.returncode == 0, out.stderr
    out = dedupd("keep", str(photos / "sub" / "copy40.jpg"), *store)
    assert out.returncode == 0, out.stderr
    res = json.loads(scan(*common).stdout)
    assert res["groups"] == 2  # the near41 pair is dismissed
    g40 = next(g for g in res["duplicate_groups"] if "40" in g["keep"]["path"])
    assert g40["keep"]["path"] == str(photos / "sub" / "copy40.jpg") and g40["kept_by"] == "kept by the user"
    assert str(photos / "b0040.jpg") in res["would_quarantine"]
    listed = json.loads(dedupd("ignore", "--list", "--json", *store).stdout)["sets"]
    assert len(listed) == 1 and set(listed[0]["current"]) == {str(photos / "b0041.jpg"), str(photos / "near41.jpg")}
    out = dedupd("ignore", "--remove", str(photos / "near41.jpg"), *store)
    assert out.returncode == 0 and "1 set(s) forgotten" in out.stdout
    out = dedupd("keep", "--remove", str(photos / "sub" / "copy40.jpg"), *store)
    assert out.returncode == 0 and "1 pin(s) removed" in out.stdout
    assert json.loads(scan(*common).stdout)["groups"] == 3
    bad = dedupd("ignore", str(photos / "b0040.jpg"), str(photos / "sub" / "copy40.jpg"), *store)
    assert bad.returncode == 1 and "byte-identical" in bad.stderr
    assert dedupd("ignore", *store).returncode == 2  # usage
    no_daemon = dedupd("keep", str(photos / "b0040.jpg"), "--socket", str(small / "none.sock"))
    assert no_daemon.returncode == 4 and "--store-dir" in no_daemon.stderr


def dedupd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dedupd", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
