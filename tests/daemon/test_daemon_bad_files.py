"""Bad input never stops the daemon: each bad file is reported once as unreadable, and skipped."""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon.helpers import REPO, drop_dac_capabilities, image_files
from tests.methods.odd_images import _png_header_only


def unreadable_counts(daemon) -> collections.Counter[str]:
    return collections.Counter(e["path"] for e in daemon.events("unreadable"))


def write_slowly(path: Path, data: bytes, chunks: int = 10, pause: float = 0.1) -> None:
    """An upload arriving in pieces over about ``chunks * pause`` seconds."""
    step = -(-len(data) // chunks)
    with open(path, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            time.sleep(pause)


def test_bad_files_are_reported_once_and_skipped(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    (watched / "ok").mkdir(parents=True)
    good = sorted(image_files(mixed200))[:10]
    for p in good:
        shutil.copyfile(p, watched / "ok" / os.path.basename(p))
    jpeg = Path(next(p for p in good if p.endswith(".jpg"))).read_bytes()
    known = {Path(p).read_bytes() for p in good}
    fresh = [d for p in sorted(image_files(mixed200))[10:] if (d := Path(p).read_bytes()) not in known]
    upload, renamed_upload = fresh[0], next(d for d in fresh if d != fresh[0])
    # settle_ms (400) is well above the slow upload's pauses (100 ms), as in production (1000)
    daemon = daemon_factory([watched], settle_ms=400)
    daemon.start()
    daemon.wait_quiet()
    base = daemon.status()
    assert base["files"] == 10 and base["unreadable"] == 0

    bad = watched / "incoming"
    bad.mkdir()
    expected: dict[str, str] = {}  # path → a word the reason must contain

    def drop(name: str | bytes, data: bytes, why: str) -> None:
        path = os.path.join(os.fsencode(bad), os.fsencode(name))
        with open(path, "wb") as f:
            f.write(data)
        expected[os.fsdecode(path)] = why

    drop("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    drop("corrupt.jpg", jpeg[:200] + b"\x00garbage" * 200, "")
    drop("empty.jpg", b"", "empty")
    drop("not_an_image.png", b"hello, I am not a PNG\n" * 20, "not an image")
    drop("bomb.png", _png_header_only(30000, 30000), "bomb")
    drop(b"bad\xff\xfename.jpg", jpeg, "UTF-8")  # a valid image whose name is not valid UTF-8
    loop = bad / "loop.jpg"
    os.symlink("loop.jpg", loop)
    expected[str(loop)] = "symlink loop"
    vanishing = bad / "vanishing.jpg"
    vanishing.write_bytes(jpeg[::-1])
    vanishing.unlink()  # deleted right after its events

    slow = bad / "slow upload.jpg"
    t0 = time.monotonic()
    write_slowly(slow, upload)
    upload_s = time.monotonic() - t0
    # an upload under a temporary name (ignored), renamed once complete
    part = bad / "via-temp-name.jpg.part"
    write_slowly(part, renamed_upload, chunks=4, pause=0.05)
    os.rename(part, bad / "via-temp-name.jpg")

    daemon.wait_until(lambda: set(unreadable_counts(daemon)) >= set(expected), 20, "every bad file reported")
    s = daemon.wait_quiet()
    assert daemon.alive()
    counts = unreadable_counts(daemon)
    assert counts == collections.Counter(set(expected)), "each bad file exactly once, nothing else"
    reasons = {e["path"]: e["reason"] for e in daemon.events("unreadable")}
    for path, word in expected.items():
        assert word.lower() in reasons[path].lower(), (path, reasons[path])
    assert s["unreadable"] == len(expected)
    # the slow upload is one good file: encoded once it was complete, decoded exactly once
    dups = daemon.duplicates()
    assert str(slow) in dups and str(slow) not in counts
    assert str(bad / "via-temp-name.jpg") in dups and str(part) not in dups
    assert s["decoded"] - base["decoded"] == 2 + sum(1 for p in expected if "loop" not in p
                                                     and "UTF" not in expected[p]), s
    assert not any(p in dups for p in expected) and str(vanishing) not in dups
    assert s["files"] == 12
    print(f"\nslow upload written over {upload_s:.2f} s, decoded once")

    # a rescan, and a restart, report none of them again (the store remembers why they were skipped)
    code, _ = daemon.api("POST", "/v1/rescan")
    assert code == 202
    daemon.wait_quiet()
    assert unreadable_counts(daemon) == counts
    daemon.stop()
    daemon.start()
    s = daemon.wait_quiet()
    assert unreadable_counts(daemon) == counts
    assert (s["decoded"], s["unreadable"], s["files"]) == (0, 0, 12), s
    assert not daemon.errors_in_log()

    # once fixed (replaced by a good image), a bad file is indexed
    fixed = bad / "truncated.jpg"
    tmp = bad / ".truncated.jpg.tmp"
    tmp.write_bytes(jpeg)
    os.replace(tmp, fixed)
    daemon.wait_until(lambda: str(fixed) in daemon.duplicates(), 10, "the repaired file indexed")
    # renamed to a UTF-8 name as its warning says, the file is indexed (its record moved with it);
    # so is a file in a folder renamed the same way
    os.rename(os.path.join(os.fsencode(bad), b"bad\xff\xfename.jpg"), bad / "good-name.jpg")
    daemon.wait_until(lambda: str(bad / "good-name.jpg") in daemon.duplicates(), 15, "the renamed file indexed")
    odd = os.path.join(os.fsencode(watched), b"dir\xfe")
    os.mkdir(odd)
    (Path(os.fsdecode(odd)) / "a.jpg").write_bytes(jpeg)
    daemon.wait_until(lambda: os.fsdecode(os.path.join(odd, b"a.jpg")) in unreadable_counts(daemon), 15,
                      "the file in a folder with a non-UTF-8 name reported")
    os.rename(odd, watched / "dir-ok")
    daemon.wait_until(lambda: str(watched / "dir-ok" / "a.jpg") in daemon.duplicates(), 15,
                      "the file of the renamed folder indexed")
    daemon.stop()


def _modes_apply(tmp_path: Path) -> bool:
    """Whether file modes can refuse this test's daemon: not root, or root whose children can drop
    the capabilities that bypass them (CAP_DAC_OVERRIDE/READ_SEARCH); skips the test otherwise."""
    as_root = os.geteuid() == 0
    if as_root:
        probe_file = tmp_path / "probe"
        probe_file.write_text("x")
        probe_file.chmod(0)
        try:
            probe = subprocess.run([sys.executable, "-c", f"open({str(probe_file)!r}).read()"],
                                   preexec_fn=drop_dac_capabilities, capture_output=True, check=False)
            usable = probe.returncode != 0 and b"PermissionError" in probe.stderr
        except (OSError, subprocess.SubprocessError):
            usable = False
        probe_file.unlink()
        if not usable:
            pytest.skip("running as root, which reads any file whatever its mode, and the capabilities "
                        "that allow it cannot be dropped here (no CAP_SETPCAP?)")
    return as_root


def test_a_root_that_cannot_be_listed_is_a_problem_until_it_can(mixed200: Path, tmp_path: Path,
                                                                 daemon_factory) -> None:
    """A watched folder the daemon may not list is reported like a missing one (state degraded,
    the reason named); made readable, it is watched and walked. ``dedupd scan`` of it fails."""
    as_root = _modes_apply(tmp_path)
    locked, ok = tmp_path / "locked", tmp_path / "ok"
    files = sorted(image_files(mixed200))
    for folder, chosen in ((locked, files[:3]), (ok, files[3:5])):
        folder.mkdir()
        for p in chosen:
            shutil.copyfile(p, folder / os.path.basename(p))
    os.chmod(locked, 0)
    try:
        scanned = subprocess.run([sys.executable, "-m", "dedupd", "scan", str(locked), str(ok), "--store-dir",
                                  str(tmp_path / "scan-store"), "--report-dir", str(tmp_path / "scan-reports")],
                                 capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
                                 preexec_fn=drop_dac_capabilities if as_root else None, check=False)
        assert scanned.returncode == 1, scanned.stderr[-2000:]
        assert scanned.stderr.strip().splitlines()[-1] == (
            f"dedupd: could not scan {locked} (cannot be listed: Permission denied): make it readable by the user "
            "running dedupd (the reports cover the other folders)")
        assert (tmp_path / "scan-reports" / "groups.json").exists()

        daemon = daemon_factory([locked, ok], without_dac_override=as_root)
        daemon.start(wait=False)  # (it will not be "watching": degraded)
        s = daemon.wait_until(lambda: (st := daemon.try_status()) and st["files"] == 2 and st, 30, "the readable root")
        assert s["state"] == "degraded" and s["missing_roots"] == [str(locked)], s
        assert f"{locked} (cannot be listed: Permission denied)" in s["problems"]["roots"]
    finally:
        os.chmod(locked, 0o755)
    s = daemon.wait_until(lambda: (st := daemon.try_status()) and st["state"] == "watching" and st["files"] == 5
                          and st, 30, "the root readable, then walked")
    assert s["problems"] == {} and s["roots"][0]["back_at"]
    shutil.copyfile(files[6], locked / "late.jpg")  # and watched
    daemon.wait_until(lambda: daemon.status()["files"] == 6, 30, "a new file in the root indexed")
    daemon.stop()


def test_permission_denied_is_reported_once(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    """A file the daemon may not read. Root reads any file whatever its mode, so when the tests run
    as root the daemon runs without the capabilities that let it (CAP_DAC_OVERRIDE/READ_SEARCH)."""
    as_root = _modes_apply(tmp_path)
    watched = tmp_path / "photos"
    watched.mkdir()
    good = sorted(image_files(mixed200))[:3]
    for p in good:
        shutil.copyfile(p, watched / os.path.basename(p))
    daemon = daemon_factory([watched], without_dac_override=as_root)
    daemon.start()
    assert daemon.wait_quiet()["files"] == 3
    secret = watched / "secret.jpg"
    secret.write_bytes(Path(good[0]).read_bytes()[::-1])
    os.chmod(secret, 0)
    daemon.wait_until(lambda: str(secret) in unreadable_counts(daemon), 15, "the unreadable file reported")
    s = daemon.wait_quiet()
    (event,) = daemon.events("unreadable")
    assert event["path"] == str(secret) and "permission denied" in event["reason"]
    assert s["unreadable"] == 1 and s["files"] == 3 and str(secret) not in daemon.duplicates()
    code, _ = daemon.api("POST", "/v1/rescan")
    assert code == 202
    daemon.wait_quiet()
    daemon.stop()
    daemon.start()
    daemon.wait_quiet()
    assert len(daemon.events("unreadable")) == 1, "reported once, not again after a rescan or a restart"
    # made readable (a chmod changes neither size nor mtime), a file is indexed
    late = watched / "late.jpg"
    shutil.copyfile(good[1], late)
    os.chmod(late, 0)
    daemon.wait_until(lambda: str(late) in unreadable_counts(daemon), 15, "the unreadable copy reported")
    daemon.wait_quiet()
    os.chmod(late, 0o644)
    daemon.wait_until(lambda: str(late) in daemon.duplicates(), 15, "the copy indexed once readable")
    assert not daemon.errors_in_log()
    daemon.stop()
