"""Helpers for the event tests: small distinct test images, and the daemon compared with ``dedupd scan``.

The daemon must mirror the disk (DESIGN.md): once idle, its indexed files and duplicate lists equal
what a fresh one-shot ``dedupd scan`` of the same folders with the same config finds.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance

from tests.daemon.helpers import REPO, DaemonProcess, UnixHTTP


def image_variants(corpus_dir: Path, count: int, size: int = 160) -> list[bytes]:
    """``count`` JPEG byte strings made from corpus photos: each photo shrunk to ``size`` px, then
    as is, re-saved at another quality, resized, and brightened (near duplicates of each other)."""
    out: list[bytes] = []
    for src in sorted((corpus_dir / "base").glob("*.jpg")):
        with Image.open(src) as im:
            base = im.convert("RGB")
            base.thumbnail((size, size))
        variants = [
            (base, 90),
            (base, 55),
            (base.resize((max(8, base.width * 3 // 4), max(8, base.height * 3 // 4))), 85),
            (ImageEnhance.Brightness(base).enhance(1.15), 88),
        ]
        for im, quality in variants:
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality)
            out.append(buf.getvalue())
            if len(out) >= count:
                return out
    return out


def scan_duplicates(daemon: DaemonProcess, roots: Path | list[Path], work: Path) -> dict[str, list[str]]:
    """``dedupd scan ROOT...`` with the daemon's config file (own store and report folder): its duplicates.json."""
    dirs = [str(r) for r in (roots if isinstance(roots, list) else [roots])]
    work.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "dedupd", "scan", *dirs, "--config", str(daemon.config_path),
         "--store-dir", str(work / "store"), "--report-dir", str(work / "reports"), "--json"],
        capture_output=True, text=True, timeout=600, env=env, cwd=str(work), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, list[str]] = json.loads((work / "reports" / "duplicates.json").read_text())
    return data


def group_sets(groups_json: dict[str, Any]) -> set[frozenset[str]]:
    """groups.json → its groups as sets of paths (the kept copy and its duplicates)."""
    return {frozenset([g["keep"]["path"], *(d["path"] for d in g["duplicates"])]) for g in groups_json["groups"]}


@dataclass
class Diff:
    """How the daemon's duplicates.json differs from a fresh scan's."""

    leftover: list[str] = field(default_factory=list)  # indexed by the daemon, not by the scan
    missed: list[str] = field(default_factory=list)  # indexed by the scan, not by the daemon
    wrong_lists: list[str] = field(default_factory=list)  # both index it, different duplicate lists

    @property
    def count(self) -> int:
        return len(self.leftover) + len(self.missed) + len(self.wrong_lists)

    def __str__(self) -> str:
        return (f"{len(self.leftover)} leftover paths {self.leftover[:5]}, {len(self.missed)} missed files "
                f"{self.missed[:5]}, {len(self.wrong_lists)} wrong duplicate lists {self.wrong_lists[:5]}")


def compare(daemon_dups: dict[str, list[str]], scan_dups: dict[str, list[str]]) -> Diff:
    d = Diff()
    d.leftover = sorted(set(daemon_dups) - set(scan_dups))
    d.missed = sorted(set(scan_dups) - set(daemon_dups))
    d.wrong_lists = sorted(p for p in set(daemon_dups) & set(scan_dups)
                           if set(daemon_dups[p]) != set(scan_dups[p]))
    return d


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def report_lag(daemon: DaemonProcess) -> list[str]:
    """Paths whose list in duplicates.json differs from the daemon's index now (``/v1/duplicates``,
    answered from the index itself), and indexed files it does not list yet."""
    report = daemon.duplicates()
    lag = []
    conn = UnixHTTP(daemon.socket_path, 30.0)  # one kept-alive connection: hundreds of requests
    try:
        for path, listed in report.items():
            conn.request("GET", "/v1/duplicates?path=" + urllib.parse.quote(path))
            resp = conn.getresponse()
            data = json.loads(resp.read())
            if resp.status != 200 or {m["path"] for m in data["duplicates"]} != set(listed):
                lag.append(path)
    finally:
        conn.close()
    if len(report) != daemon.status()["files"]:
        lag.append(f"<{daemon.status()['files'] - len(report)} indexed files not listed>")
    return lag


def wait_reported(daemon: DaemonProcess, timeout: float = 120.0) -> dict[str, list[str]]:
    """Wait until the daemon is quiet and duplicates.json shows its final state: the same lists as
    its index. (Quiet for a while is not enough: duplicates.json is written at most every 3 x its
    last write time, which on a loaded machine is longer than any fixed stable time.)"""
    daemon.wait_quiet(timeout=timeout)
    daemon.wait_until(lambda: len(daemon.duplicates()) == daemon.status()["files"], timeout,
                      "duplicates.json to list every indexed file")
    daemon.wait_quiet(timeout=timeout, stable=2.5)
    lag: list[str] = []

    def current() -> bool:
        lag[:] = report_lag(daemon)
        return not lag

    try:
        daemon.wait_until(current, timeout, "duplicates.json to equal the daemon's index", interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nduplicates.json differs from the index for {len(lag)} paths: "
                             f"{lag[:5]}") from None
    return daemon.duplicates()
