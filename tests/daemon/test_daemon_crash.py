"""``kill -9`` at awkward moments, then restart: the store opens, nothing is lost or half-recorded,
reports match the disk, and work resumes where it stopped."""

from __future__ import annotations

import collections
import os
import shutil
from pathlib import Path

import pytest

from dedupd.daemon.store import Store
from dedupd.methods import PHash
from tests.daemon.helpers import as_sets, checksums, copy_tree_files, image_files, relative_map


def store_view(daemon) -> dict[str, str]:
    """``{path: state}`` of the (closed) store, read directly."""
    with Store.open(daemon.config["store_dir"], readonly=True) as store:
        return {p: rec.state for p, rec in store.iter_files()}


@pytest.mark.slow
def test_kill9_during_heavy_ingest(mixed400: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    watched.mkdir()
    names = sorted(os.path.relpath(p, mixed400) for p in image_files(mixed400))
    assert len(names) == 400
    daemon = daemon_factory([watched], methods={"phash": {"crop": False}})  # compared with the library: no crop hashes
    daemon.start()
    copy_tree_files(mixed400, watched, names)

    # three crashes at different depths of the ingest (the last two during the restart's
    # reconcile), each followed by a restart
    committed = 0
    loaded = 0
    for step in (60, 60, 60):
        target = min(400, loaded + step)
        daemon.wait_until(lambda n=target: daemon.status()["files"] >= n, 60, "files ingested")
        at_kill = daemon.status()
        left = daemon.kill9()
        assert not left, "decode workers must exit when the daemon is killed"
        print(f"\nkill -9 at {at_kill['files']} files, {at_kill['queued']} queued")
        recorded = store_view(daemon)  # the store opens after a kill -9
        assert len(recorded) >= at_kill["files"], "what the index had was committed before"
        assert set(recorded) <= {str(watched / n) for n in names}
        committed = at_kill["encoded"]
        daemon.start(wait=False)
        loaded = daemon.wait_until(lambda: daemon.try_status(), 30, "daemon answering")["files"]
        assert loaded >= at_kill["files"]
    s = daemon.wait_quiet(timeout=120)
    assert s["files"] == 400 and s["unreadable"] == 0
    # work resumed where it stopped: contents encoded before the last crash are not decoded again
    assert s["decoded"] <= s["encoded"] - committed, s

    # while stopped, files change: the restart's reconcile brings the reports in line with the disk
    daemon.kill9()
    removed = names[::37]
    for n in removed:
        os.remove(watched / n)
    daemon.start()
    s = daemon.wait_quiet(timeout=120)
    on_disk = {os.path.relpath(p, watched) for p in image_files(watched)}
    got = relative_map(daemon.duplicates(), watched)
    assert got.keys() == on_disk, "every image on disk is a key, and no key for a missing file"
    expected = as_sets(PHash(verbose=False).find_duplicates(image_dir=str(watched), recursive=True))
    assert got == expected
    assert s["files"] == len(on_disk) and s["decoded"] == 0
    daemon.stop()
    assert set(store_view(daemon)) == {str(watched / n) for n in on_disk}


def test_kill9_during_quarantine(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    (watched / "copies").mkdir()
    for p in image_files(mixed200)[:120]:  # byte copies: 120 more quarantine moves
        shutil.copyfile(p, watched / "copies" / os.path.relpath(p, mixed200).replace("/", "_"))
    qdir = tmp_path / "quarantine"
    before = checksums(watched)
    assert len(before) == 320
    daemon = daemon_factory([watched], policy="quarantine", quarantine_dir=str(qdir))
    daemon.start(wait=False)

    def everything_somewhere() -> None:
        """Every original byte sequence exists exactly as often as before (at origin or in quarantine)."""
        now = list(checksums(watched).values()) + list(checksums(qdir).values() if qdir.exists() else [])
        assert collections.Counter(now) == collections.Counter(before.values())

    crashes = 0
    done = 0
    for step in (3, 40, 40):
        try:
            daemon.wait_until(lambda n=step: (daemon.try_status() or {}).get("quarantined", 0) >= n, 60,
                              f"{step} more files quarantined")
        except AssertionError:
            break  # all moves already done: no later crash point
        left = daemon.kill9()
        assert not left, "decode workers must exit when the daemon is killed"
        crashes += 1
        with Store.open(daemon.config["store_dir"], readonly=True) as store:
            states = collections.Counter(e.state for e in store.iter_quarantine())
        print(f"\nkill -9 during quarantine: manifest {dict(states)}")
        everything_somewhere()
        daemon.start(wait=False)
        # after recovery no entry is pending, and each says where its file is
        daemon.wait_until(lambda: daemon.try_status() is not None, 30, "daemon answering")
        for e in daemon.manifest():
            assert e["state"] in ("moved", "failed"), e
            if e["state"] == "moved":
                assert os.path.exists(e["dest"]) and not os.path.exists(e["origin"]), e
        done = sum(e["state"] == "moved" for e in daemon.manifest())
    assert crashes >= 2, "the moves finished before the crashes: make more work"
    daemon.wait_quiet(timeout=120, stable=2)
    everything_somewhere()
    entries = daemon.manifest()
    moved = {e["origin"] for e in entries if e["state"] == "moved"}
    assert len(moved) >= max(120, done)
    in_root = set(image_files(watched))
    assert in_root | moved == set(before) and not in_root & moved, "the manifest explains every move"

    res = daemon.cli("restore", "--all")
    assert res.returncode == 0, res.stdout + res.stderr
    daemon.wait_quiet()
    assert checksums(watched) == before
    assert not image_files(qdir)
    assert not daemon.errors_in_log()
    daemon.stop()
