"""Test helpers for the daemon integration tests: a real ``dedupd run`` subprocess and its files.

``DaemonProcess`` writes a config (short ``settle_ms``, periodic rescan off), starts
``python -m dedupd run --config FILE`` in its own session with stderr captured to a file, waits
until the socket answers and the state is ``watching``, and offers ``status()``, ``wait_until``,
``wait_quiet``, the report files, the CLI, ``stop()`` (SIGTERM, asserts exit 0 quickly) and
``kill9()``. Every failure message ends with the tail of the daemon's log.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.procs import live_processes

REPO = Path(__file__).resolve().parents[2]


def drop_dac_capabilities() -> None:
    """In a child before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set,
    so that even root is refused a file whose mode forbids reading it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


class UnixHTTP(http.client.HTTPConnection):
    """An HTTP connection to the daemon's Unix socket (kept alive between requests)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


def api(socket_path: str, method: str, path: str, payload: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One HTTP request over the daemon's Unix socket; returns (status, parsed JSON). ``payload``
    goes as JSON, or as it is when it is ``bytes`` (an image upload)."""
    conn = UnixHTTP(socket_path, timeout)
    try:
        if isinstance(payload, bytes):
            body: bytes | None = payload
            headers = {"Content-Type": "application/octet-stream"}
        else:
            body = None if payload is None else json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    return resp.status, (json.loads(raw) if raw else None)


def sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def image_files(folder: str | os.PathLike[str]) -> list[str]:
    """Every regular file under ``folder`` (absolute paths, sorted)."""
    out = []
    for dirpath, _dirs, files in os.walk(folder):
        out.extend(os.path.join(dirpath, f) for f in files)
    return sorted(out)


def checksums(folder: str | os.PathLike[str]) -> dict[str, str]:
    """``{absolute path: sha256}`` of every file under ``folder``."""
    return {p: sha256(p) for p in image_files(folder)}


def relative_map(dups: dict[str, list[str]], root: str | os.PathLike[str]) -> dict[str, set[str]]:
    """duplicates.json (absolute paths) → ``{relative name: {relative names}}`` like the library's."""
    base = os.fspath(root)
    return {os.path.relpath(k, base): {os.path.relpath(v, base) for v in vs} for k, vs in dups.items()}


def as_sets(dups: dict[str, Iterable[str]]) -> dict[str, set[str]]:
    return {k: set(v) for k, v in dups.items()}


def copy_tree_files(src: Path, dst: Path, names: Iterable[str]) -> list[Path]:
    """Copy ``names`` (relative to ``src``) into ``dst`` keeping sub-folders; returns the new paths."""
    out = []
    for name in names:
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, target)
        out.append(target)
    return out


class DaemonProcess:
    """A ``dedupd run`` subprocess with its own config, store, reports and socket."""

    def __init__(self, base: Path, roots: Iterable[Path], *, name: str = "daemon",
                 without_dac_override: bool = False, **config: Any) -> None:
        self.base = Path(base)
        self.dir = self.base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        # AF_UNIX paths are limited to 107 bytes: keep the socket in a short folder of its own
        self._sockdir = tempfile.mkdtemp(prefix="dd-", dir="/tmp")
        # root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH: file modes apply to it too
        self.without_dac_override = without_dac_override
        self.socket_path = os.path.join(self._sockdir, "s")
        self.config_path = self.dir / "dedupd.yaml"
        self.log_path = self.dir / "daemon.log"
        self.config: dict[str, Any] = {
            "roots": [str(r) for r in roots],
            "store_dir": str(self.dir / "store"),
            "report_dir": str(self.dir / "reports"),
            "socket_path": self.socket_path,
            "settle_ms": 150,
            "workers": 2,
            "rescan_interval_s": 0,
            # these tests compare the daemon with the imagededup library, which ignores EXIF
            # orientation; the daemon's default (applied) is tested in test_scan_encoding.py
            "exif_transpose": False,
            "log": {"format": "json", "level": "info"},
        }
        self.config.update(config)
        self.write_config()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- config -----------------------------------------------------------------------------

    def write_config(self, **changes: Any) -> None:
        self.config.update(changes)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.config, sort_keys=False))
        os.replace(tmp, self.config_path)

    @property
    def report_dir(self) -> Path:
        return Path(self.config["report_dir"])

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout: float = 60.0, env: dict[str, str] | None = None,
              main_module: str = "dedupd") -> DaemonProcess:
        """Start ``python -m MAIN_MODULE run --config FILE`` (``main_module``: a wrapper of dedupd's
        command line, such as :mod:`tests.daemon.exit_probe`)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- start #{self.starts} ----\n".encode())
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        for k in [k for k in full_env if k.startswith("DEDUPD_") and k not in (env or {})]:  # the test's own stay
            del full_env[k]
        extra: dict[str, Any] = {"preexec_fn": drop_dac_capabilities} if self.without_dac_override else {}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", main_module, "run", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.dir), env=full_env,
                start_new_session=True,  # its own process group: the decode workers can be cleaned up by pgid
                **extra,
            )
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the socket to answer and the state to be ``watching`` (start-up reconcile done)."""
        return self.wait_until(lambda: (s := self.try_status()) is not None and s["state"] == "watching" and s,
                               timeout, "daemon ready (state watching)")

    def stop(self, timeout: float = 5.0) -> float:
        """SIGTERM; asserts exit status 0 within ``timeout`` seconds and no process left behind;
        returns the time it took."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"daemon did not exit within {timeout} s of SIGTERM" + self.log_tail()) from None
        elapsed = time.monotonic() - t0
        assert rc == 0, f"daemon exited with {rc} after SIGTERM" + self.log_tail()
        deadline = time.monotonic() + 3
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            self._kill_group()
            raise AssertionError(f"processes left behind after a clean stop: {left}" + self.log_tail())
        return elapsed

    def kill9(self, grace: float = 3.0) -> list[int]:
        """``kill -9`` the daemon; its decode workers should notice and exit within ``grace`` seconds.
        Whatever is left then is killed (as systemd kills a service's cgroup) and returned."""
        assert self.proc is not None
        try:
            self.proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + grace
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._kill_group()
        return left

    def leftovers(self) -> list[int]:
        """Live processes of the daemon's process group (its decode workers), zombies excluded."""
        if self.proc is None:
            return []
        return sorted(live_processes(group=self.proc.pid))

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        deadline = time.monotonic() + 5
        while self.leftovers() and time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def close(self) -> None:
        """Teardown: whatever state it is in, leave no process behind."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._kill_group()
        shutil.rmtree(self._sockdir, ignore_errors=True)

    # -- socket -----------------------------------------------------------------------------

    def api(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        return api(self.socket_path, method, path, payload)

    def try_status(self) -> dict[str, Any] | None:
        try:
            code, data = self.api("GET", "/v1/status")
        except (OSError, http.client.HTTPException):
            return None
        return data if code == 200 else None

    def status(self) -> dict[str, Any]:
        s = self.try_status()
        assert s is not None, "daemon does not answer on its socket" + self.log_tail()
        return s

    def manifest(self) -> list[dict[str, Any]]:
        code, data = self.api("GET", "/v1/quarantine")
        assert code == 200, data
        return data["entries"]

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run([sys.executable, "-m", "dedupd", *args, "--config", str(self.config_path)],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=str(self.dir),
                              check=False)

    # -- waiting ------------------------------------------------------------------------------

    def wait_until(self, pred: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
                   interval: float = 0.05) -> Any:
        """Poll ``pred`` until truthy (returned); fails if the daemon dies or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) while waiting for {what}"
                                     + self.log_tail())
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; status "
                                     f"{self.try_status()}" + self.log_tail())
            time.sleep(interval)

    def wait_quiet(self, timeout: float = 60.0, stable: float = 0.8) -> dict[str, Any]:
        """Wait until nothing is queued, the state is ``watching``, and counters and reports have
        not changed for ``stable`` seconds (the reporter has written the final state)."""
        last: list[Any] = [None, 0.0]

        def quiet() -> dict[str, Any] | None:
            s = self.try_status()
            if s is None or s["state"] != "watching" or s["queued"] != 0:
                last[0] = None
                return None
            sig = (s["files"], s["decoded"], s["reused"], s["unreadable"], s["quarantined"], s["restored"],
                   s["groups"], self._report_mtime())
            now = time.monotonic()
            if sig != last[0]:
                last[0], last[1] = sig, now
                return None
            return s if now - last[1] >= stable else None

        return self.wait_until(quiet, timeout, "the daemon to be quiet")

    def _report_mtime(self) -> int:
        try:
            return os.stat(self.report_dir / "duplicates.json").st_mtime_ns
        except OSError:
            return 0

    # -- reports ------------------------------------------------------------------------------

    def duplicates(self) -> dict[str, list[str]]:
        try:
            return json.loads((self.report_dir / "duplicates.json").read_text())
        except FileNotFoundError:
            return {}

    def groups(self) -> dict[str, Any]:
        return json.loads((self.report_dir / "groups.json").read_text())

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = (self.report_dir / "events.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        evs = [json.loads(line) for line in lines if line.strip()]
        return [e for e in evs if kind is None or e["event"] == kind]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()[-n:]
        return "\n---- daemon log (tail) ----\n" + "\n".join(lines)

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def errors_in_log(self) -> list[str]:
        """Log lines at error level or with a traceback (a daemon bug, never an expected outcome).

        One traceback is not the daemon's: multiprocessing's forkserver raising EOFError when the
        daemon it serves was killed (``kill -9``) in the middle of a fork request -- in ``recvfds``
        (the server reading the request) or in the forked child reading its preparation data.
        """
        bad = []
        lines = self.log_text().splitlines()
        for i, line in enumerate(lines):
            if '"level": "error"' in line or '"level": "critical"' in line:
                bad.append(line)
            elif "Traceback" in line and not _orphaned_forkserver(lines, i):
                bad.append(line)
        return bad


def _orphaned_forkserver(lines: list[str], start: int) -> bool:
    """Whether the traceback starting at ``lines[start]`` is the forkserver, or a child it forked,
    losing the killed daemon: EOFError while reading the daemon's fork request or the child's
    preparation data (``Ran out of input``)."""
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    frames = "\n".join(lines[start:end])
    last = lines[end].strip() if end < len(lines) else ""
    reading = "recvfds" in frames or ("multiprocessing/spawn.py" in frames and "from_parent" in frames)
    return "multiprocessing/forkserver.py" in frames and reading and last.split(":")[0] == "EOFError"

