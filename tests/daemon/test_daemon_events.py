"""After any sequence of file events the daemon's index equals the disk (a fresh ``dedupd scan``).

Each test drives a real ``dedupd run`` with real inotify events, in the orders that used to leave the
index wrong: work queued for names that a later move changed, edits overtaken by renames, and so on.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.daemon.events_helpers import compare, image_variants, scan_duplicates, wait_reported
from tests.daemon.helpers import image_files


def _fill(folder: Path, images: list[bytes], prefix: str = "f") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, data in enumerate(images):
        p = folder / f"{prefix}{i:03d}.jpg"
        p.write_bytes(data)
        out.append(p)
    return out


def test_files_queued_in_the_pipeline_survive_their_folder_move(mixed400: Path, corpus_dir: Path, tmp_path: Path,
                                                                  daemon_factory) -> None:
    """40 new files settle and wait in the pipeline's queue (it is busy decoding), then their folder
    is renamed: every one of them is indexed under the new name, without a rescan."""
    watched = tmp_path / "photos"
    watched.mkdir()
    daemon = daemon_factory([watched], settle_ms=100, workers=1)
    daemon.start()
    daemon.wait_quiet()
    new = image_variants(corpus_dir, 40, size=200)
    # ~600 files to decode (the full-size corpus photos among them): the queue fills
    shutil.copytree(corpus_dir / "base", watched / "busy" / "base")
    shutil.copytree(mixed400, watched / "busy" / "mixed")
    busy = len(image_files(watched / "busy"))
    time.sleep(0.3)  # they settle and queue up first
    _fill(watched / "incoming", new)
    time.sleep(0.5)  # these settle too: their upserts wait behind the busy ones
    s = daemon.status()
    assert s["files"] < busy - 40 and s["queued"] >= 40, \
        f"precondition: the pipeline must still be busy when the folder moves: {s}"
    os.rename(watched / "incoming", watched / "sorted")
    dups = wait_reported(daemon)
    moved = [str(watched / "sorted" / f"f{i:03d}.jpg") for i in range(40)]
    missing = [p for p in moved if p not in dups]
    assert not missing, f"{len(missing)} files in the moved folder not indexed: {missing[:5]}" + daemon.log_tail()
    assert not [p for p in dups if "/incoming/" in p]
    code, _ = daemon.api("GET", f"/v1/duplicates?path={moved[0]}")
    assert code == 200
    assert daemon.status()["files"] == busy + 40
    assert not daemon.errors_in_log()
    daemon.stop()


def test_a_file_edited_then_renamed_before_it_settles(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """An indexed ``a.jpg`` is rewritten and renamed to ``b.jpg`` within the settle time: only ``b.jpg``
    is indexed, with its new content; likewise when the rename replaces another indexed file."""
    imgs = image_variants(corpus_dir, 40)
    watched = tmp_path / "photos"
    watched.mkdir()
    # content: imgs[0] ~ imgs[1] (near duplicates), imgs[4] ~ imgs[5], imgs[8] ~ imgs[9]
    (watched / "a.jpg").write_bytes(imgs[0])
    (watched / "twin-a.jpg").write_bytes(imgs[1])
    (watched / "twin-new.jpg").write_bytes(imgs[5])
    (watched / "c.jpg").write_bytes(imgs[8])
    (watched / "twin-c.jpg").write_bytes(imgs[9])
    (watched / "d.jpg").write_bytes(imgs[12])
    daemon = daemon_factory([watched], settle_ms=600)
    daemon.start()
    daemon.wait_quiet()
    before = daemon.duplicates()
    assert str(watched / "twin-a.jpg") in before[str(watched / "a.jpg")]

    (watched / "a.jpg").write_bytes(imgs[4])  # edited in place ...
    os.rename(watched / "a.jpg", watched / "b.jpg")  # ... and renamed before it settled
    (watched / "c.jpg").write_bytes(imgs[16])  # edited, then renamed over another indexed file
    os.replace(watched / "c.jpg", watched / "d.jpg")
    dups = wait_reported(daemon)
    assert str(watched / "a.jpg") not in dups and str(watched / "c.jpg") not in dups, dups
    assert set(dups[str(watched / "b.jpg")]) == {str(watched / "twin-new.jpg")}, dups
    assert dups[str(watched / "twin-a.jpg")] == [] and dups[str(watched / "twin-c.jpg")] == []
    assert str(watched / "d.jpg") not in dups[str(watched / "twin-c.jpg")]
    assert daemon.status()["files"] == 5
    assert not compare(dups, scan_duplicates(daemon, watched, tmp_path / "scan")).count
    daemon.stop()


def test_the_event_family_leaves_the_index_equal_to_a_scan(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """Rename chains in one settle window, delete right after create, rename over an indexed file,
    a file and a folder moved in from outside, a folder moved out and back, a folder renamed while
    its files are still settling, a folder moved into an excluded folder and back."""
    imgs = image_variants(corpus_dir, 120)
    watched, outside = tmp_path / "photos", tmp_path / "outside"
    watched.mkdir()
    outside.mkdir()
    _fill(watched / "keep", imgs[:16:2])
    _fill(watched / "out-and-back" / "sub", imgs[16:24])
    daemon = daemon_factory([watched], settle_ms=400)
    daemon.start()
    daemon.wait_quiet()
    w = watched

    # a rename chain a → b → c within one settle window, for a new and for an indexed file
    (w / "chain-a.jpg").write_bytes(imgs[30])
    os.rename(w / "chain-a.jpg", w / "chain-b.jpg")
    os.rename(w / "chain-b.jpg", w / "chain-c.jpg")
    os.rename(w / "keep" / "f000.jpg", w / "keep" / "x.jpg")
    os.rename(w / "keep" / "x.jpg", w / "keep" / "y.jpg")
    (w / "keep" / "y.jpg").write_bytes(imgs[31])
    os.rename(w / "keep" / "y.jpg", w / "keep" / "z.jpg")
    # delete right after create; create, delete, create again with other content
    (w / "flash.jpg").write_bytes(imgs[32])
    os.remove(w / "flash.jpg")
    (w / "again.jpg").write_bytes(imgs[33])
    os.remove(w / "again.jpg")
    (w / "again.jpg").write_bytes(imgs[35])
    # rename over an indexed file: with an indexed source, and with a new (settling) source
    os.replace(w / "keep" / "f001.jpg", w / "keep" / "f002.jpg")
    (w / "fresh.jpg").write_bytes(imgs[36])
    os.replace(w / "fresh.jpg", w / "keep" / "f003.jpg")
    # a file and a folder moved in from outside the roots
    (outside / "in.jpg").write_bytes(imgs[40])
    os.rename(outside / "in.jpg", w / "in.jpg")
    _fill(outside / "folder-in" / "deep", imgs[44:52])
    os.rename(outside / "folder-in", w / "folder-in")
    # a folder renamed while its files are still settling, then renamed again
    _fill(w / "settling", imgs[60:70])
    os.rename(w / "settling", w / "settled")
    os.rename(w / "settled", w / "keep" / "settled-here")
    # a folder moved out of the roots and back (with an edit while away)
    os.rename(w / "out-and-back", outside / "away")
    time.sleep(0.2)
    (outside / "away" / "sub" / "f000.jpg").write_bytes(imgs[72])
    os.rename(outside / "away", w / "out-and-back")
    # a folder moved into an excluded (hidden) folder and back out under another name
    _fill(w / "hide-me", imgs[80:84])
    _fill(w / "trash-me", imgs[90:93])
    daemon.wait_quiet()
    (w / ".hidden").mkdir()
    os.rename(w / "hide-me", w / ".hidden" / "hide-me")
    os.rename(w / "trash-me", w / ".hidden" / "trash-me")  # and left there: forgotten
    time.sleep(0.3)
    os.rename(w / ".hidden" / "hide-me", w / "unhidden")

    dups = wait_reported(daemon)
    diff = compare(dups, scan_duplicates(daemon, watched, tmp_path / "scan"))
    assert not diff.count, str(diff) + daemon.log_tail()
    on_disk = {p for p in image_files(watched) if "/.hidden/" not in p}
    assert set(dups) == on_disk
    assert not daemon.errors_in_log()
    daemon.stop()


def test_a_symlink_follows_its_targets_changes(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """``link.jpg -> target.jpg`` is indexed with its target's bytes; the kernel reports changes of
    the target only. Rewritten, replaced by a rename, moved away and deleted, the target takes the
    link along, as a fresh scan sees it, without waiting for the next walk."""
    imgs = image_variants(corpus_dir, 8)
    w = tmp_path / "photos"
    (w / "sub").mkdir(parents=True)
    (w / "sub" / "target.jpg").write_bytes(imgs[0])
    (w / "other.jpg").write_bytes(imgs[4])
    os.symlink("sub/target.jpg", w / "link.jpg")
    daemon = daemon_factory([w], settle_ms=300)
    daemon.start()

    def agree(what: str) -> dict[str, list[str]]:
        dups = wait_reported(daemon)
        diff = compare(dups, scan_duplicates(daemon, w, tmp_path / f"scan-{what}"))
        assert not diff.count, f"{what}: {diff}" + daemon.log_tail()
        return dups

    assert agree("start")[str(w / "link.jpg")] == [str(w / "sub" / "target.jpg")]
    (w / "sub" / "target.jpg").write_bytes(imgs[4])  # rewritten in place: now a copy of other.jpg
    assert str(w / "link.jpg") in agree("rewritten")[str(w / "other.jpg")]
    (w / "sub" / "new.tmp").write_bytes(imgs[0])
    os.replace(w / "sub" / "new.tmp", w / "sub" / "target.jpg")  # replaced by a rename (a new inode)
    assert str(w / "link.jpg") not in agree("replaced")[str(w / "other.jpg")]
    os.rename(w / "sub", tmp_path / "away")  # the target's folder moved out of the roots: the link dangles
    assert str(w / "link.jpg") not in agree("folder away")
    os.rename(tmp_path / "away", w / "sub")
    assert str(w / "link.jpg") in agree("folder back")
    os.remove(w / "sub" / "target.jpg")
    assert str(w / "link.jpg") not in agree("deleted")
    assert not daemon.errors_in_log()
    daemon.stop()


def test_a_deleted_and_recreated_root_is_watched_again(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """The root vanishes: a warning, ``missing_roots`` in status, its files forgotten. It comes back:
    watched again and walked, so files already there and later arrivals are indexed. The same when it
    is deleted and recreated faster than the daemon looks."""
    imgs = image_variants(corpus_dir, 20)
    watched, other = tmp_path / "photos", tmp_path / "other"
    _fill(watched / "sub", imgs[:5])
    _fill(other, imgs[5:7])
    daemon = daemon_factory([watched, other], settle_ms=100)
    daemon.start()
    assert daemon.wait_quiet()["files"] == 7

    shutil.rmtree(watched)
    s = daemon.wait_until(lambda: (s := daemon.status()).get("missing_roots") == [str(watched)] and s["files"] == 2
                          and s, 10, "the vanished root noticed and its files forgotten")
    assert s["missing_roots"] == [str(watched)]
    assert any(r.get("level") == "warning" and str(watched) in r["event"] for r in daemon.log_records())
    out = daemon.cli("status")
    assert out.returncode == 0 and str(watched) in out.stdout, out.stdout

    _fill(watched / "new", imgs[8:11])  # recreated with files already in it
    daemon.wait_until(lambda: daemon.status()["missing_roots"] == [] and len(daemon.duplicates()) == 5, 15,
                      "the recreated root walked")
    (watched / "later.jpg").write_bytes(imgs[12])  # and a later arrival: the watch is back
    (other / "later.jpg").write_bytes(imgs[13])
    daemon.wait_until(lambda: str(watched / "later.jpg") in daemon.duplicates(), 10, "a later arrival indexed")

    # deleted and recreated between two looks of the daemon: the new folder is watched too
    shutil.rmtree(watched)
    _fill(watched, imgs[14:16])
    daemon.wait_until(lambda: set(wait_reported(daemon)) == set(image_files(watched)) | set(image_files(other)), 20,
                      "the replaced root's files, and only those")
    (watched / "latest.jpg").write_bytes(imgs[17])
    daemon.wait_until(lambda: str(watched / "latest.jpg") in daemon.duplicates(), 10, "an arrival in the new root")
    dups = wait_reported(daemon)
    diff = compare(dups, scan_duplicates(daemon, [watched, other], tmp_path / "scan"))
    assert not diff.count, str(diff)
    assert set(dups) == set(image_files(watched)) | set(image_files(other))
    assert not daemon.errors_in_log()
    daemon.stop()


def test_contents_swapped_by_renames_while_stopped(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """Files trade contents in a cycle while the daemon is stopped: the restart's reconcile re-records
    them in one batch, each reusing another's old encoding (which the store must not prune in between)."""
    imgs = image_variants(corpus_dir, 32)
    watched = tmp_path / "photos"
    watched.mkdir()
    n = 8
    for i in range(n):
        (watched / f"f{i}.jpg").write_bytes(imgs[4 * i])
        (watched / f"twin{i}.jpg").write_bytes(imgs[4 * i + 1])
    daemon = daemon_factory([watched], settle_ms=100)
    daemon.start()
    before = wait_reported(daemon)
    assert all(set(before[str(watched / f"f{i}.jpg")]) == {str(watched / f"twin{i}.jpg")} for i in range(n)), before
    daemon.stop()
    os.rename(watched / "f0.jpg", watched / "tmp.jpg")
    for i in range(1, n):  # f{i} → f{i-1}: each name now holds the next one's content
        os.rename(watched / f"f{i}.jpg", watched / f"f{i - 1}.jpg")
    os.rename(watched / "tmp.jpg", watched / f"f{n - 1}.jpg")
    daemon.start()
    dups = wait_reported(daemon)
    for i in range(n):
        assert set(dups[str(watched / f"f{i}.jpg")]) == {str(watched / f"twin{(i + 1) % n}.jpg")}, dups
    assert not daemon.errors_in_log(), daemon.log_tail()
    daemon.stop()


def test_fifos_folders_and_dangling_links_are_reported_once(corpus_dir: Path, tmp_path: Path,
                                                            daemon_factory) -> None:
    """A FIFO, a folder named ``x.jpg`` and a dangling symlink, found by the start-up walk and by the
    watcher: each recorded once as unreadable with its reason, never opened (a FIFO would block), and
    the files inside such a folder are indexed as usual."""
    imgs = image_variants(corpus_dir, 8)
    watched = tmp_path / "photos"
    watched.mkdir()
    expected: dict[str, str] = {}

    def specials(prefix: str) -> None:
        os.mkfifo(watched / f"{prefix}-fifo.jpg")
        expected[str(watched / f"{prefix}-fifo.jpg")] = "FIFO"
        (watched / f"{prefix}-dir.jpg").mkdir()
        expected[str(watched / f"{prefix}-dir.jpg")] = "folder"
        os.symlink("nowhere.jpg", watched / f"{prefix}-link.jpg")
        expected[str(watched / f"{prefix}-link.jpg")] = "dangling"

    specials("pre")
    (watched / "pre-dir.jpg" / "inside.jpg").write_bytes(imgs[0])
    daemon = daemon_factory([watched], settle_ms=100)
    daemon.start(timeout=30)
    daemon.wait_quiet(timeout=30)
    specials("live")
    (watched / "live-dir.jpg" / "inside.jpg").write_bytes(imgs[4])
    (watched / "after.jpg").write_bytes(imgs[5])  # processed after the FIFO: nothing hangs

    def reported() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in daemon.events("unreadable"):
            out.setdefault(e["path"], []).append(e["reason"])
        return out

    daemon.wait_until(lambda: set(reported()) >= set(expected), 15, "every special file reported")
    dups = wait_reported(daemon)
    got = reported()
    assert set(got) == set(expected), got
    for path, word in expected.items():
        assert len(got[path]) == 1 and word.lower() in got[path][0].lower(), (path, got[path])
    assert set(dups) == {str(watched / "pre-dir.jpg" / "inside.jpg"), str(watched / "live-dir.jpg" / "inside.jpg"),
                         str(watched / "after.jpg")}
    assert daemon.status()["unreadable"] == len(expected)

    # a rescan and a restart report none of them again; a change to a folder's content neither
    code, _ = daemon.api("POST", "/v1/rescan")
    assert code == 202
    (watched / "live-dir.jpg" / "more.jpg").write_bytes(imgs[6])
    wait_reported(daemon)
    daemon.stop()
    daemon.start(timeout=30)
    dups = wait_reported(daemon)
    assert {p: len(r) for p, r in reported().items()} == dict.fromkeys(expected, 1)
    diff = compare(dups, scan_duplicates(daemon, watched, tmp_path / "scan"))
    assert not diff.count, str(diff)
    # removed: forgotten (a folder with its content)
    shutil.rmtree(watched / "live-dir.jpg")
    os.remove(watched / "pre-fifo.jpg")
    daemon.wait_until(lambda: str(watched / "live-dir.jpg" / "inside.jpg") not in daemon.duplicates(), 10,
                      "a removed folder named like an image forgotten")
    assert not daemon.errors_in_log()
    daemon.stop()


def test_a_folder_back_from_outside_keeps_its_own_paths(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """A folder moved out of the roots, back in under another name, then its old parent renamed:
    events inside it still carry its real path (watchdog kept the old path of its watch and moved it
    with the old parent, so new files were missed and deleted ones stayed indexed)."""
    imgs = image_variants(corpus_dir, 12)
    watched, outside = tmp_path / "photos", tmp_path / "outside"
    outside.mkdir()
    _fill(watched / "a" / "b" / "c", imgs[:3])
    daemon = daemon_factory([watched], settle_ms=100)
    daemon.start()
    daemon.wait_quiet()
    os.rename(watched / "a" / "b", outside / "b")
    time.sleep(0.5)
    os.rename(outside / "b", watched / "back")
    time.sleep(0.5)
    os.rename(watched / "a", watched / "a2")
    time.sleep(0.5)
    (watched / "back" / "new.jpg").write_bytes(imgs[5])
    (watched / "back" / "c" / "new.jpg").write_bytes(imgs[6])
    os.remove(watched / "back" / "c" / "f000.jpg")
    dups = wait_reported(daemon)
    assert set(dups) == set(image_files(watched)), daemon.log_tail()
    assert not compare(dups, scan_duplicates(daemon, watched, tmp_path / "scan")).count
    daemon.stop()


def test_a_folder_created_just_before_its_parent_is_renamed_is_watched(corpus_dir: Path, tmp_path: Path,
                                                                        daemon_factory) -> None:
    """``mkdir p/sub; mv p q`` faster than watchdog handles the mkdir: ``q/sub`` is watched all the same
    (files written there later are indexed)."""
    imgs = image_variants(corpus_dir, 12)
    watched = tmp_path / "photos"
    watched.mkdir()
    daemon = daemon_factory([watched], settle_ms=100)
    daemon.start()
    daemon.wait_quiet()
    for i in range(5):
        (watched / f"p{i}").mkdir()
    time.sleep(0.5)  # the parents are watched
    for i in range(5):
        (watched / f"p{i}" / "sub").mkdir()
        os.rename(watched / f"p{i}", watched / f"q{i}")
    time.sleep(0.5)
    for i in range(5):
        (watched / f"q{i}" / "sub" / "later.jpg").write_bytes(imgs[2 * i])
    dups = wait_reported(daemon)
    assert set(dups) == set(image_files(watched)), f"missed: {set(image_files(watched)) - set(dups)}"
    daemon.stop()
