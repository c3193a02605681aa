"""A small HTTP-over-Unix-socket client for the daemon (standard library only: fast to import).

``http.client`` (with the ``email`` parser: ~50 ms) is imported on the first request, not with this
module: ``dedupd scan`` imports it through the CLI and never connects.
"""

from __future__ import annotations

import functools
import json
import random
import socket
import time
from typing import Any
from urllib.parse import urlencode

DEFAULT_SOCKET = "/run/dedupd/dedupd.sock"


class DaemonNotRunning(Exception):
    """No daemon answers at the socket path (or the caller may not connect to it)."""


class ApiError(Exception):
    """The daemon answered with an error status (``status`` 0: the exchange itself failed)."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.status, self.error, self.detail = status, error, detail


@functools.cache
def _unix_connection() -> type:
    """``http.client.HTTPConnection`` over a Unix socket (the class is made on first use)."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
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

    return UnixConnection


#: The daemon's answer when it has no free connection slot (503 with ``Retry-After``).
_BUSY = "too many connections"


class _Busy(Exception):
    """The daemon has no slot for us right now (listen queue full, or a 503 ``too many connections``)."""


class Client:
    """``Client(socket_path).get('/v1/status')`` → parsed JSON; raises on errors.

    While the daemon is busy (its listen queue is full: ``EAGAIN``; or it answers 503 "too many
    connections") the request is retried with a growing pause for up to ``retry_s`` seconds: the
    daemon cuts idle connections for newcomers, so a retry gets through.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float = 60.0, retry_s: float = 15.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.retry_s = retry_s

    def _connect(self, conn: Any) -> None:
        where = self.socket_path
        try:
            conn.connect()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(
                f"dedupd is not running (nothing answers at {where}); start it (`dedupd run --config FILE` "
                "or `systemctl start dedupd`) or pass --socket PATH"
            ) from exc
        except PermissionError as exc:
            raise DaemonNotRunning(
                f"permission denied on {where}: add your user to the socket's group (socket_group in the "
                "config) or run as the daemon's user"
            ) from exc
        except TimeoutError as exc:
            raise DaemonNotRunning(f"dedupd at {where} does not accept connections (timed out)") from exc
        except BlockingIOError as exc:  # EAGAIN: the listen queue is full
            raise _Busy(f"dedupd at {where} is not accepting connections fast enough (its queue is full)") \
                from exc
        except OSError as exc:
            raise DaemonNotRunning(f"cannot connect to dedupd at {where}: {exc.strerror or exc}") from exc

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json", params: dict[str, Any] | None = None) -> Any:
        if params:
            path = f"{path}?{urlencode(params)}"
        give_up = time.monotonic() + self.retry_s
        pause = 0.02
        while True:
            try:
                return self._request_once(method, path, body, content_type)
            except _Busy as exc:
                if time.monotonic() + pause > give_up:
                    raise ApiError(503, _BUSY, f"{exc}; gave up after {self.retry_s:g} s") from None
            time.sleep(pause * (0.5 + random.random()))  # jitter: retrying clients do not arrive in step
            pause = min(pause * 2, 1.0)

    def _request_once(self, method: str, path: str, body: bytes | None, content_type: str) -> Any:
        import http.client

        conn = _unix_connection()(self.socket_path, self.timeout)
        try:
            self._connect(conn)
            headers = {"Content-Type": content_type} if body is not None else {}
            try:
                conn.request(method, path, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon answered before reading the whole body (e.g. 413): read its answer
            try:
                resp = conn.getresponse()
                raw = resp.read()
            except TimeoutError:
                raise ApiError(0, "timeout", f"dedupd did not answer within {self.timeout:g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(0, "connection lost", f"dedupd closed the connection ({exc or type(exc).__name__})") \
                    from None
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(resp.status, "bad response", raw[:200].decode("utf-8", "replace")) from None
        if resp.status >= 400:
            if not isinstance(data, dict):
                data = {}
            if resp.status == 503 and data.get("error") == _BUSY:
                raise _Busy(data.get("detail", _BUSY))
            raise ApiError(resp.status, data.get("error", f"HTTP {resp.status}"), data.get("detail", ""))
        return data

    def get(self, endpoint: str, /, **params: Any) -> Any:
        """GET ``endpoint`` with query parameters (``None`` values are left out)."""
        return self.request("GET", endpoint, params={k: v for k, v in params.items() if v is not None} or None)

    def duplicates(self, path: str) -> Any:
        return self.get("/v1/duplicates", path=path)

    def post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, body=json.dumps(payload or {}).encode())

    def query_bytes(self, data: bytes) -> Any:
        return self.request("POST", "/v1/query", body=data, content_type="application/octet-stream")

    def query_path(self, path: str) -> Any:
        return self.post("/v1/query", {"path": path})
