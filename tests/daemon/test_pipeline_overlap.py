"""The pipeline overlaps its batches: the next batch is stat'ed, digested and submitted to the
decode workers before the one in front of it is written, and a copy whose content the batch in
front is still decoding waits for that decode instead of a second one. Real photos, store and
worker processes (a one-shot scan, as ``dedupd scan``); the spies only record and call the real code."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from dedupd.daemon import pipeline as pipeline_mod
from dedupd.daemon.config import load_config
from dedupd.daemon.service import Daemon
from dedupd.daemon.store import Store


@pytest.fixture
def folder(tmp_path: Path, corpus_dir: Path) -> Path:
    """12 files f00..f11 (walked in name order, one way or the other): ten photos, f04 a copy of f03
    (in the next batch of 4) and f09 a copy of f01 (two batches away)."""
    out = tmp_path / "photos"
    out.mkdir()
    bases = sorted((corpus_dir / "base").glob("*.jpg"))[:10]
    order = [bases[0], bases[1], bases[2], bases[3], bases[3], bases[4], bases[5], bases[6], bases[7], bases[1],
             bases[8], bases[9]]
    for i, src in enumerate(order):
        shutil.copy(src, out / f"f{i:02d}.jpg")
    return out


def test_next_batch_decodes_while_the_one_before_is_written(folder: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"roots: [{folder}]\nstore_dir: {tmp_path / 'store'}\nreport_dir: {tmp_path / 'r'}\n"
                   f"socket_path: {tmp_path / 's'}\nscan_workers: 2\n")
    monkeypatch.setattr(pipeline_mod, "BATCH", 4)
    daemon = Daemon(load_config(cfg), serve=False, watch=False)
    events: list[tuple[str, Any]] = []
    real_submit, real_put = pipeline_mod.Pipeline._submit, Store.put_files

    def submit(self: pipeline_mod.Pipeline, jobs: dict) -> Any:
        events.append(("submit", sorted(p for files in jobs.values() for p, _ in files)))
        return real_submit(self, jobs)

    def put_files(self: Store, batch: Any, *args: Any, **kw: Any) -> Any:
        batch = list(batch)
        events.append(("put", sorted(str(p) for p, _, _ in batch)))
        return real_put(self, batch, *args, **kw)

    monkeypatch.setattr(pipeline_mod.Pipeline, "_submit", submit)
    monkeypatch.setattr(Store, "put_files", put_files)

    status = daemon.scan_once()

    assert status["state"] == "done" and status["files"] == 12, status
    # the walk ends before the workers are up: batches of 4 in walk order; the second is submitted
    # before the first is written
    assert [k for k, _ in events][:3] == ["submit", "submit", "put"], events
    assert [len(paths) for k, paths in events if k == "put"] == [4, 4, 4], events
    # one decode per content: f03 and f04 are in adjacent batches, yet one of them waited for the
    # other's decode; f01 and f09 are two batches apart (the second reuses the stored encoding)
    submitted = [p for k, paths in events if k == "submit" for p in paths]
    assert len(submitted) == len(set(submitted)) == 10, events
    assert status["decoded"] == 10 and status["reused"] == 2, status
    with Store.open(tmp_path / "store", readonly=True) as store:
        recs = dict(store.iter_files())
        assert len(recs) == 12 and all(r.state == "ok" for r in recs.values())
        assert all(store.get_encoding(r.digest) is not None for r in recs.values() if r.digest)
        assert recs[str(folder / "f04.jpg")].digest == recs[str(folder / "f03.jpg")].digest
    dups = daemon.index.duplicates_of(str(folder / "f04.jpg"))
    assert str(folder / "f03.jpg") in [p for p, _ in dups]
    assert str(folder / "f01.jpg") in [p for p, _ in daemon.index.duplicates_of(str(folder / "f09.jpg"))]


def test_a_batch_is_decoded_largest_file_first(tmp_path: Path, corpus_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The units of a batch hold its files by size, largest first (size standing for decode time):
    the guided units shrink towards the end, so the last ones are also the cheapest files."""
    photos = tmp_path / "photos"
    photos.mkdir()
    bases = sorted((corpus_dir / "base").glob("*.jpg"))[:12]
    for i, src in enumerate(bases):  # walked in name order, which is not size order
        shutil.copy(src, photos / f"f{i:02d}.jpg")
    sizes = {str(p): p.stat().st_size for p in photos.iterdir()}
    assert sorted(sizes, key=sizes.__getitem__) != sorted(sizes)  # the test means something
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"roots: [{photos}]\nstore_dir: {tmp_path / 'store'}\nreport_dir: {tmp_path / 'r'}\n"
                   f"socket_path: {tmp_path / 's'}\nscan_workers: 2\n")
    daemon = Daemon(load_config(cfg), serve=False, watch=False)
    units: list[list[str]] = []
    real_submit = pipeline_mod.Pipeline._submit

    def submit(self: pipeline_mod.Pipeline, jobs: dict) -> Any:
        decoding = real_submit(self, jobs)
        units.extend([jobs[d][0][0] for d in chunk] for chunk, _ in decoding.futures)
        return decoding

    monkeypatch.setattr(pipeline_mod.Pipeline, "_submit", submit)
    status = daemon.scan_once()

    assert status["state"] == "done" and status["files"] == 12 and status["decoded"] == 12, status
    order = [p for unit in units for p in unit]
    assert sorted(order) == sorted(sizes) and len(units) > 2, units
    assert [sizes[p] for p in order] == sorted(sizes.values(), reverse=True), units
    assert [len(u) for u in units] == sorted((len(u) for u in units), reverse=True), units


def test_a_content_dropped_and_re_added_in_one_batch_keeps_its_edges(tmp_path: Path, corpus_dir: Path) -> None:
    """One batch: a.jpg renamed to a2.jpg (a.jpg gone, a2.jpg the same content, reused) and c.jpg
    new, near a's content. Content A is dropped with its last path and re-added; it must come back
    with all its neighbours (b.jpg's content), not only the new content's edge to it (the planned
    edges of c.jpg used to stand for A's whole neighbourhood)."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    src = Image.open(sorted((corpus_dir / "base").glob("*.jpg"))[5]).convert("RGB")
    src.thumbnail((400, 400))
    src.save(photos / "a.jpg", quality=95)
    src.resize((src.width * 9 // 10, src.height * 9 // 10)).save(photos / "b.jpg", quality=95)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"roots: [{photos}]\nstore_dir: {tmp_path / 'store'}\nreport_dir: {tmp_path / 'r'}\n"
                   f"socket_path: {tmp_path / 's'}\nworkers: 1\n")
    daemon = Daemon(load_config(cfg), serve=False, watch=False)
    daemon.start()
    try:
        assert daemon.wait_idle(timeout=60)
        a, a2, b, c = (str(photos / n) for n in ("a.jpg", "a2.jpg", "b.jpg", "c.jpg"))
        assert b in [p for p, _ in daemon.index.duplicates_of(a)]
        os.rename(a, a2)
        src.save(c, quality=60)
        daemon.pipeline._upsert([a, a2, c])  # (the pipeline thread is idle)
        assert a not in daemon.index.files and {a2, c} <= set(daemon.index.files)
        assert {b, c} <= {p for p, _ in daemon.index.duplicates_of(a2)}
    finally:
        daemon.shutdown()
