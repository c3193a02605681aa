"""Helpers for the socket API and CLI tests: a daemon with server limits, curl, raw HTTP, test images.

:class:`SocketDaemon` is the shared :class:`tests.daemon.helpers.DaemonProcess` plus environment
variables for the daemon (``DEDUPD_MAX_UPLOAD_BYTES``, ``DEDUPD_REQUEST_TIMEOUT_S``), which the
shared ``start()`` strips along with every other ``DEDUPD_*`` variable of the test process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageEnhance

from tests.daemon.helpers import REPO, DaemonProcess

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed (.ci/run installs it); the same "
                                                     "requests are also made through the dedupd CLI and raw sockets")


class SocketDaemon(DaemonProcess):
    """A ``dedupd run`` subprocess whose environment carries server settings."""

    def __init__(self, base: Path, roots: list[Path], *, server_env: dict[str, str] | None = None,
                 name: str = "daemon", **config: Any) -> None:
        super().__init__(base, roots, name=name, **config)
        self.server_env = dict(server_env or {})

    def start(self, *, wait: bool = True, timeout: float = 60.0, env: dict[str, str] | None = None) -> SocketDaemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
        full_env.update({"PYTHONPATH": str(REPO), **self.server_env, **(env or {})})
        with open(self.log_path, "ab") as log:
            log.write(f"---- start #{self.starts} ----\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dedupd", "run", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.dir), env=full_env,
                start_new_session=True,
            )
        if wait:
            self.wait_ready(timeout)
        return self

    def run_cli(self, *args: str, timeout: float = 60.0, socket_path: str | None = None,
                cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        """``dedupd ARGS --socket SOCK`` (no config: exercises --socket) with a clean environment."""
        return dedupd_cli(*args, "--socket", socket_path or self.socket_path, timeout=timeout, cwd=cwd)

    def curl(self, *args: str, timeout: float = 30.0) -> tuple[int, Any]:
        return curl(self.socket_path, *args, timeout=timeout)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def dedupd_cli(*args: str, timeout: float = 60.0, cwd: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dedupd", *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env={**clean_env(), **(env or {})}, cwd=cwd)


def curl(socket_path: str, *args: str, timeout: float = 30.0) -> tuple[int, Any]:
    """``curl --unix-socket SOCK ARGS``; returns (HTTP status, parsed JSON body or None)."""
    assert CURL is not None
    out = subprocess.run([CURL, "-sS", "--unix-socket", socket_path, "-w", "\n%{http_code}", *args],
                         check=False, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"curl failed ({out.returncode}): {out.stderr}"
    body, _, code = out.stdout.rpartition("\n")
    return int(code), (json.loads(body) if body.strip() else None)


def raw_exchange(socket_path: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``); returns what came back."""
    return timed_exchange(socket_path, data, timeout)[0]


def timed_exchange(socket_path: str, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send raw bytes keeping our end open (as a real client does), read until the server closes
    (or ``timeout``); returns what came back and the seconds until then."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket_path)
        t0 = time.monotonic()
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except TimeoutError:
            pass
        return got, time.monotonic() - t0


def parse_response(raw: bytes) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", len(body)))
    return status, headers, json.loads(body[:length]) if length else None


def near_duplicate(src: Path, dst: Path) -> Path:
    """A re-encoded, slightly cropped, brightened and downscaled copy of ``src`` (a near duplicate)."""
    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        im = im.crop((w // 40, h // 40, w - w // 40, h - h // 40))
        im = ImageEnhance.Brightness(im).enhance(1.1)
        im = im.resize((int(im.width * 0.6), int(im.height * 0.6)))
        dst.parent.mkdir(parents=True, exist_ok=True)
        im.save(dst, quality=55)
    return dst


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition", interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
