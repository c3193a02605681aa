"""The fixed costs of a one-shot ``dedupd scan`` (see bench/bench_encode.py, section a): it walks
while its decoders start (so the first batch holds every file, not the first one found), its decode
workers are gone before the report's thumbnail workers start (peak memory), and the reports are
written once (the shutdown does not write them again). Real photos, store and worker processes;
the spies only record and call the real code."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from dedupd.daemon import pipeline as pipeline_mod
from dedupd.daemon.config import load_config
from dedupd.daemon.service import Daemon
from dedupd.reports import html, thumbnails


@pytest.fixture
def folder(tmp_path: Path, corpus_dir: Path) -> Path:
    """Five photos and an exact copy of one (a duplicate group: the report has thumbnails)."""
    out = tmp_path / "photos"
    out.mkdir()
    bases = sorted((corpus_dir / "base").glob("*.jpg"))[:5]
    for b in bases:
        shutil.copy(b, out / b.name)
    shutil.copy(bases[0], out / "copy.jpg")
    return out


def test_scan_walks_while_decoders_start_and_writes_its_reports_once(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"roots: [{folder}]\nstore_dir: {tmp_path / 'store'}\nreport_dir: {tmp_path / 'r'}\n"
                   f"socket_path: {tmp_path / 's'}\nscan_workers: 2\n")
    daemon = Daemon(load_config(cfg), serve=False, watch=False)
    seen: dict[str, Any] = {"batches": [], "html_writes": 0}

    real_start_pool = pipeline_mod.Pipeline.start_pool

    def start_pool(self: pipeline_mod.Pipeline) -> None:
        seen["walk_started_before_pool"] = daemon.reconciler.runs
        real_start_pool(self)

    real_decode = pipeline_mod.Pipeline._decode

    def decode(self: pipeline_mod.Pipeline, jobs: dict, *args: Any) -> Any:
        seen["batches"].append(len(jobs))
        return real_decode(self, jobs, *args)

    real_thumbs = thumbnails.ensure_thumbnails

    def ensure_thumbnails(*args: Any, **kw: Any) -> Any:
        pipe = next(t for t in daemon._threads if t.name == "dedupd-pipeline")
        seen["decoders_gone"] = not pipe.is_alive() and daemon.pipeline._pool is None
        return real_thumbs(*args, **kw)

    real_write = html.write_atomic

    def write_atomic(path: str, *args: Any, **kw: Any) -> Any:
        seen["html_writes"] += path.endswith("report.html")
        return real_write(path, *args, **kw)

    monkeypatch.setattr(pipeline_mod.Pipeline, "start_pool", start_pool)
    monkeypatch.setattr(pipeline_mod.Pipeline, "_decode", decode)
    monkeypatch.setattr(thumbnails, "ensure_thumbnails", ensure_thumbnails)
    monkeypatch.setattr(html, "write_atomic", write_atomic)

    status = daemon.scan_once()

    assert status["state"] == "done" and status["files"] == 6 and status["groups"] == 1, status
    assert status["queued"] == 0
    assert seen["walk_started_before_pool"] == 1
    # the walk of six files ends long before the workers are up: one batch (the copy shares a decode)
    assert sum(seen["batches"]) == 5 and seen["batches"][0] == 5, seen["batches"]
    assert seen["decoders_gone"] is True
    assert seen["html_writes"] == 1
    assert len(list((tmp_path / "r" / "thumbs").glob("*.jpg"))) == 1  # one content in the group
