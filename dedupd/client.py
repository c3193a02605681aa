"""A small HTTP-over-Unix-socket client for the daemon (standard library only: fast to import)."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlencode

DEFAULT_SOCKET = "/run/dedupd/dedupd.sock"


class DaemonNotRunning(Exception):
    """No daemon answers at the socket path."""


class ApiError(Exception):
    """The daemon answered with an error status."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.status, self.error, self.detail = status, error, detail


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """``Client(socket_path).get('/v1/status')`` → parsed JSON; raises on errors."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 60.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", params: dict[str, Any] | None = None) -> Any:
        if params:
            path = f"{path}?{urlencode(params)}"
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            headers = {"Content-Type": content_type} if body is not None else {}
            try:
                conn.request(method, path, body=body, headers=headers)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonNotRunning(
                    f"dedupd is not running (nothing answers at {self.socket_path}); start it with "
                    "`dedupd run --config FILE` or pass --socket PATH"
                ) from exc
            except PermissionError as exc:
                raise DaemonNotRunning(
                    f"permission denied on {self.socket_path}: add your user to the socket's group "
                    "(socket_group in the config) or run as the daemon's user"
                ) from exc
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(resp.status, "bad response", raw[:200].decode("utf-8", "replace")) from None
        if resp.status >= 400:
            raise ApiError(resp.status, data.get("error", "error"), data.get("detail", ""))
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body=json.dumps(payload or {}).encode())

    def query_bytes(self, data: bytes) -> Any:
        return self.request("POST", "/v1/query", body=data, content_type="application/octet-stream")
