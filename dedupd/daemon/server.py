"""HTTP/1.1 + JSON over the daemon's Unix socket (``curl --unix-socket SOCK http://localhost/v1/status``).

Queries read the in-memory index and never wait for a scan. Requests that change state are logged
with the peer's uid/pid (SO_PEERCRED).
"""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import socketserver
import struct
import threading
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dedupd.daemon.config import Config
from dedupd.errors import DedupdError

if TYPE_CHECKING:
    from dedupd.daemon.service import Daemon

logger = logging.getLogger(__name__)

MAX_BODY = 64 << 20  # uploaded image bytes for /v1/query
REQUEST_TIMEOUT = 10.0


class HttpError(Exception):
    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def peer_credentials(sock: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket, or None."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", raw)
    except OSError:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dedupd"
    daemon: Daemon

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(REQUEST_TIMEOUT)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("socket request: " + format, *args)

    def address_string(self) -> str:
        return "unix"

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                raise HttpError(411, "length required", "send a Content-Length header (no chunked bodies)")
            return b""
        try:
            n = int(length)
        except ValueError:
            raise HttpError(400, "bad request", "Content-Length is not a number") from None
        if n > MAX_BODY:
            raise HttpError(413, "payload too large", f"bodies are limited to {MAX_BODY} bytes")
        return self.rfile.read(n)

    def _json(self, body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "bad json", "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HttpError(400, "bad json", "the request body must be a JSON object")
        return data

    def _dispatch(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            body = self._body() if method == "POST" else b""
            status, payload = self.server.router(method, url.path, query, body, self)  # type: ignore[attr-defined]
            self._send(status, payload)
        except HttpError as exc:
            self._send(exc.status, {"error": exc.error, "detail": exc.detail})
        except (DedupdError, ValueError) as exc:
            self._send(400, {"error": "bad request", "detail": str(exc)})
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            logger.exception("socket request failed")
            self._send(500, {"error": "internal error", "detail": f"{type(exc).__name__}: {exc}"})

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False


class ApiServer:
    """Binds the socket (refusing to steal a live one), serves in a thread, removes it on stop."""

    def __init__(self, daemon: Daemon, config: Config) -> None:
        self.daemon = daemon
        self.config = config
        self.path = config.socket_path
        self._server: _UnixHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from dedupd.daemon.api import Router

        path = self.path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            if _socket_alive(path):
                raise DedupdError(f"another dedupd is already serving {path}; stop it first or set a different "
                                  "socket_path")
            os.unlink(path)  # stale socket from a crashed run
        old_umask = os.umask(0o177)
        try:
            server = _UnixHTTPServer(path, _Handler, bind_and_activate=True)
        finally:
            os.umask(old_umask)
        os.chmod(path, self.config.socket_mode)
        if self.config.socket_group is not None:
            gid = self.config.socket_group
            if isinstance(gid, str):
                gid = grp.getgrnam(gid).gr_gid
            os.chown(path, -1, gid)
        server.router = Router(self.daemon)  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="dedupd-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _socket_alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
