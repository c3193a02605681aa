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

from tests.daemon.helpers import drop_dac_capabilities, image_files
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
    daemon.stop()


def test_permission_denied_is_reported_once(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    """A file the daemon may not read. Root reads any file whatever its mode, so when the tests run
    as root the daemon runs without the capabilities that let it (CAP_DAC_OVERRIDE/READ_SEARCH)."""
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
        if not usable:
            pytest.skip("running as root, which reads any file whatever its mode, and the capabilities "
                        "that allow it cannot be dropped here (no CAP_SETPCAP?)")
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
    assert not daemon.errors_in_log()
    daemon.stop()
