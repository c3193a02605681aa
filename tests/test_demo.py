"""``make run`` (``python -m dedupd.demo``): from a clean checkout without the photo corpus, in CI
(not a terminal: it must end) and in a terminal (the daemon stays up until Ctrl-C and the printed
commands work against it)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def clean_checkout(dest: Path) -> Path:
    """The files git tracks, copied to ``dest`` (what a clone has), with no ``../shared`` beside it."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc}): cannot tell what a clone contains")
    for rel in filter(None, listed.decode().split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    assert not (dest.parent / "shared").exists()
    return dest


def demo_env(checkout: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_") and k != "CI"}
    env.update(PYTHONPATH=str(checkout), **extra)
    return env


def test_demo_from_a_clean_checkout_ends_when_not_interactive(tmp_path: Path) -> None:
    checkout = clean_checkout(tmp_path / "clone")
    proc = subprocess.run([sys.executable, "-m", "dedupd.demo", "--dir", ".demo"], cwd=checkout,
                          env=demo_env(checkout, CI="true"), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "13 photos shipped with dedupd" in out, "no corpus beside the clone: the shipped photos are used"
    sections = [line for line in out.splitlines() if line.startswith("== ")]
    assert sections[2].startswith("== report: "), "the tour opens with the report's path"
    report = Path(sections[2].removeprefix("== report: "))
    assert report.is_file() and report.is_relative_to(checkout / ".demo")
    # counts: one snapshot each, equal to the reports the daemon wrote
    assert re.search(r"indexed 21 images in [\d.]+ s: 6 duplicate groups, 8 duplicates", out), out
    assert re.search(r"now 23 images, 7 duplicate groups", out), out
    groups = json.loads((report.parent / "groups.json").read_text())["groups"]
    assert len(groups) == 7 and sum(len(g["duplicates"]) for g in groups) == 10
    assert "new/panda_small.jpg ~ library/panda.jpg" in out
    # not interactive: no commands to try (the daemon is gone), and it is stopped cleanly
    assert " status --config" not in out and "daemon stopped (exit 0)" in out
    assert not (checkout / ".demo" / "state" / "dedupd.sock").exists()


def read_until(fd: int, marker: str, proc: subprocess.Popen, timeout: float = 240) -> str:
    out, deadline = b"", time.monotonic() + timeout
    while marker.encode() not in out:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"no {marker!r} in the demo's output:\n{out.decode(errors='replace')}")
        if select.select([fd], [], [], 0.2)[0]:
            try:
                out += os.read(fd, 65536)
            except OSError:  # the terminal closed
                break
    return out.decode(errors="replace").replace("\r\n", "\n")


@contextlib.contextmanager
def demo_in_a_terminal(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """``make run``'s demo on a pseudo-terminal: ``(process, terminal fd)``, killed at the end."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dedupd.demo", "--dir", str(tmp_path / "demo"), "--source",
                             "bundled"], cwd=tmp_path, env=demo_env(REPO), stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    try:
        yield proc, master
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_demo_in_a_terminal_runs_until_ctrl_c_and_its_commands_work(tmp_path: Path) -> None:
    env = demo_env(REPO)
    with demo_in_a_terminal(tmp_path) as (proc, master):
        out = read_until(master, "Ctrl-C stops the daemon.", proc)
        lines = out.split("try:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        commands = [shlex.split(line.split("#")[0]) for line in lines if line.startswith("  ")]
        assert [c[c.index("--config") - 1] for c in commands] == ["status", "groups", "query", "review"]
        time.sleep(1)
        assert proc.poll() is None, "the daemon's demo keeps running"
        for cmd in commands[:3]:
            res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert res.returncode == 0, f"{shlex.join(cmd)}: {res.stdout}{res.stderr}"
        status = subprocess.run(commands[0], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert re.search(r"state\s+watching", status.stdout) and re.search(r"files\s+23\b", status.stdout)
        query = subprocess.run(commands[2], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert "duplicate(s)" in query.stdout
        review = subprocess.Popen([*commands[3], "--no-browser"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            assert review.stdout is not None
            assert review.stdout.readline().startswith("dedupd review: the daemon at ")
            assert review.stdout.readline().startswith("open http://127.0.0.1:")
        finally:
            review.send_signal(signal.SIGINT)
            review.wait(timeout=20)
            if review.stdout is not None:
                review.stdout.close()
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
        rest = read_until(master, "daemon stopped", proc, timeout=60)
        assert proc.wait(timeout=60) == 0
        assert "daemon stopped (exit 0)" in rest
        after = subprocess.run(commands[0], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert after.returncode == 4, "the daemon is gone after Ctrl-C"


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_demo_stops_its_daemon_when_its_terminal_closes_or_it_is_killed(tmp_path: Path, signum: int) -> None:
    """The daemon runs in its own session (Ctrl-C reaches only the demo): a hang-up or a SIGTERM to
    the demo must stop it too, not leave it orphaned."""
    with demo_in_a_terminal(tmp_path) as (proc, master):
        read_until(master, "Ctrl-C stops the daemon.", proc)
        status = [sys.executable, "-m", "dedupd", "status", "--config", str(tmp_path / "demo" / "config.yaml")]
        assert subprocess.run(status, env=demo_env(REPO), capture_output=True, timeout=60).returncode == 0
        os.kill(proc.pid, signum)
        assert proc.wait(timeout=60) == 0
        after = subprocess.run(status, env=demo_env(REPO), capture_output=True, timeout=60)
        assert after.returncode == 4, "the daemon is gone with its demo"
