"""The compose file's sidecar flow without Docker: the example upload service
(docker/upload-example/upload.py) and a real dedupd daemon share a folder and a socket; each upload
is checked with the real ``dedupd query --fail-on-duplicate`` before it is accepted."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.daemon.helpers import REPO, DaemonProcess

SCRIPT = REPO / "docker" / "upload-example" / "upload.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Uploader:
    def __init__(self, uploads: Path, socket_path: str, **env: str) -> None:
        self.port = free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
        full.update(PYTHONPATH=str(REPO), UPLOAD_DIR=str(uploads), DEDUPD_SOCKET=socket_path, PORT=str(self.port),
                    DEDUPD_CLI=f"{sys.executable} -m dedupd", **env)
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT)], env=full, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "upload service did not start"
                time.sleep(0.1)

    def put(self, name: str, data: bytes) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request("PUT", f"/{name}", body=data)
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def sidecar(corpus_dir: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    daemon = DaemonProcess(tmp_path, [uploads], policy="report")
    uploader = None
    try:
        daemon.start()
        uploader = Uploader(uploads, daemon.socket_path)
        yield {"daemon": daemon, "uploader": uploader, "uploads": uploads,
               "photos": sorted((corpus_dir / "base").glob("b*.jpg"))[40:43], "tmp": tmp_path}
    finally:
        if uploader is not None:
            uploader.close()
        daemon.close()


def test_uploads_are_checked_and_duplicates_refused(sidecar):
    daemon, up, uploads = sidecar["daemon"], sidecar["uploader"], sidecar["uploads"]
    first, other = sidecar["photos"][0], sidecar["photos"][1]
    status, body = up.put("first.jpg", first.read_bytes())
    assert (status, body) == (201, {"name": "first.jpg", "checked": True})
    daemon.wait_until(lambda: daemon.status()["files"] == 1 and daemon.status()["queued"] == 0, 30, "indexed")
    # a smaller re-encode of the same photo: refused, and nothing is left in the upload folder
    smaller = sidecar["tmp"] / "smaller.jpg"
    with Image.open(first) as im:
        im.resize((im.width // 2, im.height // 2)).save(smaller, quality=85)
    status, body = up.put("again.jpg", smaller.read_bytes())
    assert status == 409 and body["duplicates"] == [str(uploads / "first.jpg")]
    assert sorted(p.name for p in uploads.iterdir()) == ["first.jpg"], "no temp file, no refused file"
    status, body = up.put("other.jpg", other.read_bytes())
    assert status == 201 and body["checked"] is True
    assert (uploads / "other.jpg").read_bytes() == other.read_bytes()


def test_daemon_down_accepts_or_rejects_as_configured(sidecar):
    daemon, uploads = sidecar["daemon"], sidecar["uploads"]
    daemon.stop()
    photo = sidecar["photos"][2].read_bytes()
    status, body = sidecar["uploader"].put("unchecked.jpg", photo)
    assert status == 201 and body["checked"] is False and "not running" in body["detail"]
    strict = Uploader(uploads, daemon.socket_path, ON_DEDUPD_ERROR="reject")
    try:
        status, body = strict.put("refused.jpg", photo)
        assert status == 503 and body["exit"] == 4
    finally:
        strict.close()
    assert sorted(p.name for p in uploads.iterdir()) == ["unchecked.jpg"]
