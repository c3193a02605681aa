"""The benchmark scripts still run end to end (quick mode) and write their tables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench_library.py", "quality.py"])
def test_bench_quick(script, tmp_path, corpus_dir):
    out = tmp_path / "report.md"
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), "--quick", "--out", str(out),
         "--data-dir", str(tmp_path / "data"), "--corpus", str(corpus_dir)],
        capture_output=True, text=True, timeout=400,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    text = out.read_text()
    assert "| " in text and "dedupd" in text
    if script == "bench_library.py":
        assert "identical hashes" in text and "ratio" in text
    else:
        assert "precision" in text.lower() and "recall" in text.lower()


@pytest.mark.slow
def test_bench_encode_quick(tmp_path, corpus_dir):
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_encode.py"), "--quick", "--only", "ab",
         "--data-dir", str(tmp_path / "data"), "--corpus", str(corpus_dir)],
        capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| 12 MP")]
    crop = [r for r in rows if "crop hashes (default)" in r]  # the default config's extra hashes: timed only
    assert crop and all("8 hashes per file" in r for r in crop), res.stdout
    rows = [r for r in rows if r not in crop]
    assert rows and all("identical hashes" in r or "pair agreement" in r for r in rows), res.stdout
    exact = [r for r in rows if "exact" in r and "identical hashes" in r]
    for r in exact:  # every hash read back from the scan's store equals imagededup's
        counts = re.search(r"identical hashes (\d+)/(\d+)", r)
        assert counts and counts[1] == counts[2], r
    assert "files/s" in res.stdout


@pytest.mark.slow
def test_bench_search_reference_and_scale_tables_quick():
    """bench_search.py's library tables: the reference timed for real in its child (map identical
    to ours) and the big run in a child (spot check equal to the scan)."""
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_search.py"), "--quick", "--only", "34", "--ref-full",
         "--lib-sizes", "2000", "--million", "20000"],
        capture_output=True, text=True, timeout=400,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = [line for line in res.stdout.splitlines() if line.startswith("| 2,000 ") or line.startswith("| 20,000 ")]
    assert len(rows) == 2, res.stdout
    assert rows[0].endswith("| True |")  # 20k: the spot check equals the scan
    assert rows[1].endswith("| True | True |")  # same map as the reference, pairs = scan


@pytest.mark.slow
def test_bench_thumbnails_quick(tmp_path, corpus_dir):
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_thumbnails.py"), "--quick",
         "--data-dir", str(tmp_path / "data"), "--corpus", str(corpus_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    row = [line for line in res.stdout.splitlines() if line.startswith("| 64 px JPEGs")]
    assert len(row) == 1 and row[0].split("|")[-2].strip() == "60", res.stdout  # every thumbnail made


@pytest.mark.slow
def test_bench_scale_build_restart_and_crash_quick(tmp_path):
    """bench_scale.py on a small library: the build with stored edges, a kept library's restart with
    the SIGHUP and new-file rows, and a crash during activity (the journal replayed onto the
    snapshot, groups.json's groups taken: marked ``t``)."""
    def run(*args: str) -> str:
        res = subprocess.run([sys.executable, str(REPO / "bench" / "bench_scale.py"), *args],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        return res.stdout

    built = run("-n", "2000", "--keep", "--edges", "--base", str(tmp_path))
    assert re.search(r"\| restart: graph loaded, every group back \| [\d.]+ s / [\d.]+ s \|", built), built
    (work,) = tmp_path.glob("scale2000-*")
    restarted = run("--reuse", str(work), "--repeat", "1", "--full")
    assert re.search(r"restart: socket answers / every group back \(each run\) \| [\d.]+ s / [\d.]+ s \(", restarted), (
        restarted)
    assert "SIGHUP phash 10 → 8: new groups in groups.json" in restarted
    crashed = run("--reuse", str(work), "--crash", "busy", "--repeat", "1")
    assert re.search(r"every group back \(each run;.*\| [\d.]+ s / [\d.]+ s \([\d.]+/[\d.]+ts\)", crashed), crashed
    assert re.search(r"journal entries replayed / paths rebuilt .* \| [1-9]\d*/[1-9]\d*/", crashed), crashed
