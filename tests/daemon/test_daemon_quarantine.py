"""Quarantine policy and restore: nothing lost, every move explained, never through a chain."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance

from dedupd.core.policy import STRONG, Matching, pair_evidence
from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.config.model import DEFAULT_STRONG, DEFAULT_VARIANT_LIMITS
from dedupd.daemon.encoder import file_digest
from dedupd.daemon.quarantine import PARTIAL, Quarantine
from dedupd.daemon.store import EncodingRecord, FileRecord, QuarantineEntry, Store
from dedupd.encoding import encode_file
from dedupd.methods import PHash
from tests.daemon.helpers import checksums, image_files, sha256

THRESHOLD = 10
#: the daemon's rule for ``methods: {phash: 10}``: crop hashes on by default, bands on, the
#: framing check of weak matches on (at the threshold)
RULE = Matching({"phash": THRESHOLD}, strong={"phash": DEFAULT_STRONG["phash"]},
                options={"phash": {"crop": DEFAULT_VARIANT_LIMITS["crop"]}}, agree={"phash": THRESHOLD})
KEYS = ("phash", "phash@c90", "phash@c81")


def make_chain(corpus_dir: Path, out: Path, others: list[dict[str, int]]) -> tuple[Path, Path, Path]:
    """Three real images A ~ B ~ C under the daemon's rule, A ~ B strong, A and C not matching.

    Derived from a corpus photo by growing crops with slightly more brightness each; A (the
    uncropped photo) has the most pixels, so the keep-rule keeps it. ``others`` (hash maps of
    :data:`KEYS`) are the other files of the folder: no chain member may match any of them.
    """
    out.mkdir(parents=True)
    for base in sorted((corpus_dir / "base").glob("b02*.jpg")):
        photo = Image.open(base).convert("RGB")
        photo.thumbnail((640, 640))
        w, h = photo.size
        paths, hashes = [], []
        for k in range(8):
            f = 0.03 * k
            img = ImageEnhance.Brightness(photo.crop((int(w * f), int(h * f), w, h))).enhance(1 + 0.03 * k)
            p = out / f"{base.stem}-{k}.png"
            img.save(p)
            paths.append(p)
            hashes.append(encode_file(p, KEYS).hashes)
        if any(pair_evidence(RULE, x, o, None) for x in hashes for o in others):
            continue
        for b in range(1, 8):
            for c in range(b + 1, 8):
                ab = pair_evidence(RULE, hashes[0], hashes[b], None)
                if (ab is not None and ab.band == STRONG and pair_evidence(RULE, hashes[b], hashes[c], None)
                        and pair_evidence(RULE, hashes[0], hashes[c], None) is None):
                    chain = []
                    for name, k in (("A", 0), ("B", b), ("C", c)):
                        chain.append(paths[k].rename(out / f"{name}.png"))
                    for p in paths:
                        if p.exists():
                            p.unlink()
                    return chain[0], chain[1], chain[2]
        for p in paths:
            p.unlink()
    raise AssertionError("no corpus photo gave an A~B~C chain")


def test_quarantine_then_restore_all(mixed200: Path, corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    ph = PHash(verbose=False)
    mixed_hashes = ph.encode_images(image_dir=str(watched), recursive=True)
    others = [encode_file(watched / k, KEYS).hashes for k in mixed_hashes]
    a, b, c = make_chain(corpus_dir, watched / "chain", others)
    qdir = watched / "_quarantine"  # inside the root: must never be watched or scanned
    before = checksums(watched)
    assert len(before) == 203

    daemon = daemon_factory([watched], policy="quarantine", quarantine_dir=str(qdir), methods={"phash": THRESHOLD})
    daemon.start()
    daemon.wait_until(lambda: daemon.status()["quarantined"] > 0, 30, "quarantine moves")
    s = daemon.wait_quiet(stable=1.5)

    entries = daemon.manifest()
    moved = {e["origin"]: e for e in entries if e["state"] == "moved"}
    assert len(moved) == len(entries) == s["quarantined"] >= 20, entries
    now = checksums(watched)
    in_root = {p: h for p, h in now.items() if not p.startswith(str(qdir) + "/")}
    in_quarantine = {p: h for p, h in now.items() if p.startswith(str(qdir) + "/")}
    # nothing lost: the same bytes exist, each file either at its place or in the quarantine
    assert sorted(now.values()) == sorted(before.values())
    assert set(before) - set(in_root) == set(moved), "the manifest must explain every file that left"
    assert set(in_quarantine) == {e["dest"] for e in moved.values()}
    for origin, e in moved.items():
        assert e["dest"].startswith(str(qdir / "photos") + "/")
        assert sha256(e["dest"]) == before[origin]
        assert os.path.isfile(e["keeper"]) and e["keeper"] in in_root, f"kept copy of {origin} must stay"
        assert e["reason"] and ("distance" in e["reason"] or "similarity" in e["reason"])
        # a direct, strong match of the kept copy: byte-identical, or strong under the daemon's rule
        same = before[origin] == before[e["keeper"]]
        ev = pair_evidence(RULE, encode_file(e["dest"], KEYS).hashes, encode_file(e["keeper"], KEYS).hashes, None)
        assert same or (ev is not None and ev.band == STRONG), (e, ev)
    # the chain: B matches A directly (quarantined), C only through B (stays)
    assert str(b) in moved and moved[str(b)]["keeper"] == str(a)
    assert a.exists() and c.exists() and str(c) not in moved
    # the quarantine folder is never indexed, and reports no longer list moved files
    dups = daemon.duplicates()
    assert not any(k.startswith(str(qdir)) for k in dups)
    assert set(dups) == set(in_root)
    assert [e["path"] for e in daemon.events("quarantined")].count(str(b)) == 1

    # restore everything through the CLI against the running daemon
    res = daemon.cli("restore", "--all")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(moved)} file(s) restored" in res.stdout
    daemon.wait_until(lambda: daemon.status()["files"] == 203, 30, "restored files indexed again")
    s = daemon.wait_quiet(stable=1.5)
    assert checksums(watched) == before, "restore must give back every file byte for byte at its place"
    assert not image_files(qdir)
    assert all(e["state"] == "restored" for e in daemon.manifest())
    assert s["quarantined"] == len(moved) and s["restored"] == len(moved)
    assert len(daemon.events("restored")) == len(moved)
    # restored files are exempt: the policy does not move them again, not even after a restart
    daemon.stop()
    daemon.start()
    daemon.wait_quiet(stable=1.5)
    assert checksums(watched) == before
    assert all(e["state"] == "restored" for e in daemon.manifest())
    assert not daemon.errors_in_log()
    daemon.stop()


# -- crash recovery of single moves (deterministic: the states a kill -9 can leave) ------------


@pytest.fixture
def quarantine(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    cfg = config_from_mapping({"roots": [str(root)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "reports"), "policy": "quarantine",
                               "quarantine_dir": str(tmp_path / "q")}, env={"HOME": str(tmp_path)})
    with Store.open(cfg.store_dir) as store:
        yield root, Quarantine(cfg, store), store


def _pending(q: Quarantine, store: Store, origin: Path) -> QuarantineEntry:
    dest = q.destination(str(origin))
    qid = store.add_quarantine(QuarantineEntry(str(origin), dest, str(origin.parent / "keeper.jpg"),
                                               file_digest(str(origin)), "test", "pending"))
    return store.get_quarantine(qid)


@pytest.mark.parametrize("crash_point", ["before_move", "after_rename", "after_copy", "partial_copy"])
def test_recover_settles_every_interrupted_move(quarantine, crash_point: str) -> None:
    root, q, store = quarantine
    origin = root / "dup.jpg"
    origin.write_bytes(b"\xff\xd8 some image bytes " * 100)
    content = origin.read_bytes()
    e = _pending(q, store, origin)
    os.makedirs(os.path.dirname(e.dest), exist_ok=True)
    if crash_point == "after_rename":
        os.rename(origin, e.dest)
    elif crash_point == "after_copy":  # cross-filesystem move: verified copy in place, original not yet unlinked
        shutil.copyfile(origin, e.dest)
    elif crash_point == "partial_copy":
        Path(e.dest + PARTIAL).write_bytes(content[:10])
    assert q.recover() == 1
    entry = store.get_quarantine(e.id)
    here, there = origin.exists(), os.path.exists(e.dest)
    assert here != there, "exactly one copy must remain"
    assert (origin if here else Path(e.dest)).read_bytes() == content
    assert entry.state == ("failed" if here else "moved")
    assert not os.path.exists(e.dest + PARTIAL)
    assert q.recover() == 0  # nothing pending any more


def test_moves_never_go_through_a_folder_swapped_for_a_symlink(quarantine, tmp_path: Path) -> None:
    """A restore whose original folder became a symlink to outside the roots is refused (the file
    stays in quarantine); so is a quarantine move into a quarantine sub-folder that is a symlink."""
    root, q, store = quarantine
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "sub").mkdir()
    origin = root / "sub" / "dup.jpg"
    origin.write_bytes(b"\xff\xd8 some image bytes " * 100)
    keeper = root / "keeper.jpg"
    keeper.write_bytes(b"other")
    digest = file_digest(str(origin))
    store.put_file(str(origin), FileRecord.from_stat(os.stat(origin), digest),
                   EncodingRecord(8, 8, "JPEG", {"phash": 1}, "test", None, None))
    moved = q.move(str(origin), str(keeper), digest, "test")
    assert moved.ok and not origin.exists()
    os.rename(root / "sub", root / "sub-away")
    os.symlink(outside, root / "sub")  # someone with write access to the library swaps the folder
    (result,) = q.restore([str(origin)])
    assert not result.ok and "symlink" in result.detail, result
    assert not any(outside.iterdir()) and Path(moved.detail).exists()
    os.unlink(root / "sub")
    os.rename(root / "sub-away", root / "sub")
    (result,) = q.restore([str(origin)])
    assert result.ok and origin.exists()
    # a quarantine sub-folder that is a symlink (to outside): the move is refused, the file stays
    store.put_file(str(origin), FileRecord.from_stat(os.stat(origin), digest),
                   EncodingRecord(8, 8, "JPEG", {"phash": 1}, "test", None, None))
    target = os.path.dirname(q.destination(str(origin)))
    shutil.rmtree(target)
    os.symlink(outside, target)
    refused = q.move(str(origin), str(keeper), digest, "test")
    assert not refused.ok and "symlink" in refused.detail and origin.exists() and not any(outside.iterdir())


def test_recover_notices_an_interrupted_restore(quarantine) -> None:
    """A crash after a restore's move but before its manifest update leaves 'moved' with the file back."""
    root, q, store = quarantine
    origin = root / "dup.jpg"
    origin.write_bytes(b"\xff\xd8 image " * 50)
    e = _pending(q, store, origin)
    os.makedirs(os.path.dirname(e.dest), exist_ok=True)
    os.rename(origin, e.dest)
    store.update_quarantine(e.id, state="moved")
    os.rename(e.dest, origin)  # the restore's move; then the crash
    q.recover()
    assert store.get_quarantine(e.id).state == "restored"
    assert origin.exists()


def test_a_symlink_and_its_target_are_one_file_never_moved(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    """``alias.jpg -> photo.jpg``: indexed as identical copies, and the alias (first by name) is
    the kept copy. Moving photo.jpg would leave the kept copy dangling: it stays. A real copy of it
    is still quarantined, and so is everything by ``dedupd scan``'s policy."""
    watched = tmp_path / "photos"
    watched.mkdir()
    shutil.copyfile(image_files(mixed200)[0], watched / "photo.jpg")
    os.symlink("photo.jpg", watched / "alias.jpg")
    shutil.copyfile(watched / "photo.jpg", watched / "z-copy.jpg")
    qdir = tmp_path / "q"
    daemon = daemon_factory([watched], policy="quarantine", quarantine_dir=str(qdir))
    daemon.start()
    daemon.wait_until(lambda: daemon.status()["quarantined"] >= 1, 30, "the real copy quarantined")
    s = daemon.wait_quiet(stable=1.5)
    assert s["quarantined"] == 1, daemon.manifest()
    assert [e["origin"] for e in daemon.manifest()] == [str(watched / "z-copy.jpg")]
    assert (watched / "photo.jpg").is_file() and (watched / "alias.jpg").is_file()
    daemon.stop()
    assert (watched / "photo.jpg").is_file() and os.path.realpath(watched / "alias.jpg") == str(watched / "photo.jpg")


def test_quarantine_across_filesystems(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    """quarantine_dir on another filesystem: copy → fsync → verify → unlink, and back on restore."""
    other_fs = "/dev/shm"
    if not os.path.isdir(other_fs) or os.stat(other_fs).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip(f"needs {other_fs} on a filesystem other than {tmp_path}'s")
    qdir = Path(tempfile.mkdtemp(prefix="dedupd-q-", dir=other_fs))
    try:
        watched = tmp_path / "photos"
        (watched / "copies").mkdir(parents=True)
        files = sorted(image_files(mixed200))[:20]
        for i, p in enumerate(files):
            shutil.copyfile(p, watched / f"{i:02d}-{os.path.basename(p)}")
            if i < 8:
                shutil.copyfile(p, watched / "copies" / f"{i:02d}-{os.path.basename(p)}")
        before = checksums(watched)
        daemon = daemon_factory([watched], policy="quarantine", quarantine_dir=str(qdir))
        daemon.start()
        daemon.wait_until(lambda: daemon.status()["quarantined"] >= 8, 30, "quarantine moves")
        daemon.wait_quiet(stable=1.5)
        moved = [e for e in daemon.manifest() if e["state"] == "moved"]
        assert len(moved) >= 8
        for e in moved:
            assert e["dest"].startswith(str(qdir) + "/") and not os.path.exists(e["origin"])
            assert sha256(e["dest"]) == before[e["origin"]]
        assert not [p for p in image_files(qdir) + image_files(watched) if p.endswith(PARTIAL)]
        everything = list(checksums(watched).values()) + list(checksums(qdir).values())
        assert sorted(everything) == sorted(before.values())
        res = daemon.cli("restore", "--all")
        assert res.returncode == 0, res.stdout + res.stderr
        daemon.wait_quiet()
        assert checksums(watched) == before and not image_files(qdir)
        assert not daemon.errors_in_log()
        daemon.stop()
    finally:
        shutil.rmtree(qdir, ignore_errors=True)


def test_full_quarantine_filesystem(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    """quarantine_dir on a 2 MiB tmpfs that fills up: no partial copies, one manifest entry per
    victim (not per attempt), victims untouched in place, and the moves resume once there is room."""
    qfs = tmp_path / "qfs"
    qfs.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(qfs)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        watched = tmp_path / "photos"
        (watched / "copies").mkdir(parents=True)
        files = sorted(image_files(mixed200), key=lambda p: -os.path.getsize(p))[:30]
        for i, p in enumerate(files):
            shutil.copyfile(p, watched / f"{i:02d}-{os.path.basename(p)}")
            shutil.copyfile(p, watched / "copies" / f"{i:02d}-{os.path.basename(p)}")
        assert sum(map(os.path.getsize, files)) > 3 << 20, "the copies must not fit in 2 MiB"
        before = checksums(watched)
        daemon = daemon_factory([watched], policy="quarantine", quarantine_dir=str(qfs))
        daemon.start()
        daemon.wait_until(lambda: any(e["state"] == "failed" for e in daemon.manifest()), 60, "a failed move")
        daemon.wait_quiet(stable=1.5)
        time.sleep(8)  # several back-off rounds (2 s, 4 s, ...) with the filesystem still full

        entries = daemon.manifest()
        origins = [e["origin"] for e in entries]
        assert len(origins) == len(set(origins)), "one manifest entry per victim, not one per attempt"
        moved = {e["origin"] for e in entries if e["state"] == "moved"}
        assert moved and len(moved) < len(entries) <= len(files) + 2, "some moved, the rest waits"
        assert not [p for p in image_files(qfs) + image_files(watched) if p.endswith(PARTIAL)]
        assert not [n for _, _, names in os.walk(qfs) for n in names if n.endswith(PARTIAL)]
        now = checksums(watched)
        for path, digest in before.items():
            if path not in moved:
                assert now[path] == digest, f"{path} must stay untouched in place"
        failures = [r for r in daemon.log_records() if "could not quarantine" in r.get("message", r.get("event", ""))
                    and r.get("level") == "error"]
        assert len(failures) <= len([e for e in entries if e["state"] == "failed"]), failures

        # room again: the moves resume by themselves (nothing else happens in the folder)
        subprocess.run(["mount", "-o", "remount,size=64m", str(qfs)], check=True)
        daemon.wait_until(lambda: {e["state"] for e in daemon.manifest()} == {"moved"}, 90, "moves resumed")
        s = daemon.wait_quiet(stable=1.5)
        entries = daemon.manifest()
        assert len(entries) == s["quarantined"] >= len(files) and {e["state"] for e in entries} == {"moved"}
        assert s["groups"] == 0, "every duplicate is in the quarantine now"
        everything = list(checksums(watched).values()) + list(checksums(qfs).values())
        assert sorted(everything) == sorted(before.values())
        daemon.stop()
    finally:
        subprocess.run(["umount", "-l", str(qfs)], check=False)
