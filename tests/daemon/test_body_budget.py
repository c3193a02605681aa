"""Request bodies held at once are capped across connections: one client trickling many large
bodies cannot make the daemon buffer gigabytes (each body alone is capped by max_upload)."""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import pytest

from dedupd.daemon.api import transport
from dedupd.daemon.config import config_from_mapping


def _head(n: int) -> bytes:
    return b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n


def _status(sock: socket.socket) -> int:
    return int(sock.recv(4096).split(b" ", 2)[1])


def test_bodies_in_flight_share_one_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "BODY_BYTES_IN_FLIGHT", 1000)
    monkeypatch.setenv(transport.MAX_UPLOAD_ENV, "800")
    sockdir = tempfile.mkdtemp(prefix="bb-", dir="/tmp")  # (a short socket path)
    config = config_from_mapping({"roots": [str(tmp_path)], "store_dir": str(tmp_path / "store"),
                                  "report_dir": str(tmp_path / "reports"), "socket_path": f"{sockdir}/s"})
    server = transport.ApiServer(config, lambda request: (200, {"bytes": len(request.body)}))
    server.start()
    try:
        first = socket.socket(socket.AF_UNIX)
        first.connect(config.socket_path)
        first.sendall(_head(700) + b"x" * 10)  # a body being received: 700 bytes of the budget held
        time.sleep(0.3)
        with socket.socket(socket.AF_UNIX) as second:
            second.connect(config.socket_path)
            second.sendall(_head(700))
            assert _status(second) == 503  # would hold 1400 of 1000
        with socket.socket(socket.AF_UNIX) as small:
            small.connect(config.socket_path)
            small.sendall(_head(200) + b"y" * 200)
            assert _status(small) == 200  # fits beside the first
        first.sendall(b"x" * 690)
        assert _status(first) == 200
        first.close()
        with socket.socket(socket.AF_UNIX) as third:  # the first's share was given back
            third.connect(config.socket_path)
            third.sendall(_head(700) + b"z" * 700)
            assert _status(third) == 200
    finally:
        server.stop()
