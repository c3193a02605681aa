"""HTTP/1.1 + JSON over the daemon's Unix socket (``curl --unix-socket SOCK http://localhost/v1/status``).

Transport only: the endpoints live in :mod:`.api`. Queries read the in-memory index and never
wait for a scan; every connection has its own thread, so a slow client only holds its own.

Security and robustness:

* The socket is bound, ``chmod``-ed to ``socket_mode`` (default 0660) and ``chown``-ed to
  ``socket_group`` *before* it listens, so nobody can connect through a wider mode in between.
* Ownership: an exclusive ``flock`` on ``<socket_path>.lock`` (holding the owner's pid) is taken
  before anything else; a second daemon on the same socket refuses to start, naming the owner.
  A socket file left by a crashed run (no lock holder, nothing answers) is replaced; a live one
  is never stolen; a path that exists but is not a socket is never deleted.
* The peer's pid/uid/gid (``SO_PEERCRED``) are logged for state-changing requests.
* Limits: request bodies at most ``DEDUPD_MAX_UPLOAD_BYTES`` (default 64 MiB, 413 above it, also
  answered to ``Expect: 100-continue`` before the body is sent); each request, from its first byte
  (or the end of the previous response on a kept-alive connection) until its body is read, must
  arrive within ``DEDUPD_REQUEST_TIMEOUT_S`` seconds (default 10), or the connection is closed;
  at most :data:`MAX_CONNECTIONS` connections at once (503 above it).
* Every error, including malformed HTTP, is JSON ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dedupd import __version__
from dedupd.daemon import pidlock
from dedupd.daemon.config import Config
from dedupd.errors import DedupdError

if TYPE_CHECKING:
    from dedupd.daemon.service import Daemon

logger = logging.getLogger(__name__)

MAX_UPLOAD_ENV = "DEDUPD_MAX_UPLOAD_BYTES"
REQUEST_TIMEOUT_ENV = "DEDUPD_REQUEST_TIMEOUT_S"
DEFAULT_MAX_UPLOAD = 64 << 20
DEFAULT_REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
#: After a 413, read and discard at most this much of the refused body so the client can finish
#: sending and read the answer (instead of getting EPIPE); beyond it the connection is just closed.
_DRAIN_LIMIT = 8 << 20
#: ``sockaddr_un.sun_path`` is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
LOCK_SUFFIX = ".lock"


class HttpError(Exception):
    """Raised by endpoints: becomes ``{"error": error, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, error: str, detail: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}


def peer_credentials(sock: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket, or None."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", raw)
    except OSError:
        return None


def limits_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> tuple[int, float]:
    """``(max upload bytes, request timeout s)`` from ``DEDUPD_MAX_UPLOAD_BYTES`` / ``DEDUPD_REQUEST_TIMEOUT_S``."""
    env = os.environ if env is None else env
    max_upload, timeout = DEFAULT_MAX_UPLOAD, DEFAULT_REQUEST_TIMEOUT
    raw = env.get(MAX_UPLOAD_ENV, "").strip()
    if raw:
        try:
            max_upload = int(raw)
        except ValueError:
            max_upload = -1
        if max_upload < 1:
            raise DedupdError(f"{MAX_UPLOAD_ENV}={raw!r} must be a positive number of bytes (default "
                              f"{DEFAULT_MAX_UPLOAD}); fix or unset it")
    raw = env.get(REQUEST_TIMEOUT_ENV, "").strip()
    if raw:
        try:
            timeout = float(raw)
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 3600:
            raise DedupdError(f"{REQUEST_TIMEOUT_ENV}={raw!r} must be a number of seconds in (0, 3600] "
                              f"(default {DEFAULT_REQUEST_TIMEOUT:g}); fix or unset it")
    return max_upload, timeout


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"dedupd/{__version__}"
    server: _UnixHTTPServer
    #: monotonic time by which the current request must be fully received (None: being processed)
    deadline: float | None = None
    _body_left = 0

    def version_string(self) -> str:
        return self.server_version

    # -- connection life ------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)
        self.peer = peer_credentials(self.connection)
        self.server.track(self)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.untrack(self)

    def handle_one_request(self) -> None:
        self.deadline = time.monotonic() + self.server.request_timeout
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            self.deadline = None

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "Bad request syntax", "HTTP/0.9 requests are not supported; send "
                                                       "'METHOD /v1/... HTTP/1.1'")
            return False
        return True

    def handle_expect_100(self) -> bool:
        """Answer ``Expect: 100-continue`` with 413/411/400 right away when the body would be refused."""
        try:
            self._content_length()
        except HttpError as exc:
            self.close_connection = True
            self._send(exc.status, {"error": exc.error, "detail": exc.detail})
            return False
        return super().handle_expect_100()

    # -- logging --------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("socket: " + format, *args)

    def log_error(self, format: str, *args: Any) -> None:
        logger.info("socket: " + format, *args)

    def address_string(self) -> str:
        return f"pid={self.peer[0]}" if self.peer else "unix"

    # -- responses ------------------------------------------------------------------------------

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.1"  # always answer with a status line and headers
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (and unsupported methods) → JSON error; the connection is closed."""
        short, long = self.responses.get(code, ("error", ""))
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        detail = message or long
        if explain and explain != long:
            detail = f"{detail}: {explain}" if detail else explain
        try:
            self._send(code, {"error": short.lower(), "detail": detail})
        except OSError:
            pass

    # -- request bodies -------------------------------------------------------------------------

    def _content_length(self) -> int:
        """Declared body length (0 when absent); raises 400/411/413 for bodies we refuse."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(411, "length required", "chunked request bodies are not supported; send a "
                                                    "Content-Length header (curl --data-binary @FILE does)")
        if length is None:
            return 0
        try:
            n = int(length.strip())
        except ValueError:
            n = -1
        if n < 0 or len(self.headers.get_all("Content-Length") or ()) > 1:
            raise HttpError(400, "bad request", "invalid Content-Length header")
        limit = self.server.max_upload
        if n > limit:
            self._body_left = n
            raise HttpError(413, "payload too large", f"request bodies are limited to {limit} bytes "
                                                      f"({MAX_UPLOAD_ENV}); this one has {n}")
        return n

    def _read_body(self) -> bytes:
        n = self._content_length()
        if n == 0:
            return b""
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            raise HttpError(400, "bad request", f"the body ended after {len(data)} of {n} bytes")
        return data

    def _drain(self) -> None:
        """Discard a refused body (bounded in size and time) so the client can read our answer."""
        left = min(self._body_left, _DRAIN_LIMIT)
        self._body_left = 0
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 1 << 16)) if hasattr(self.rfile, "read1") else b""
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    # -- dispatch -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        method = self.command
        try:
            try:
                body = self._read_body()
            except HttpError as exc:
                self.close_connection = True  # the rest of the stream is not a request boundary
                if exc.status == 413:
                    self._drain()
                raise
            self.deadline = None  # the request is in: processing has no receive deadline
            url = urlsplit(self.path)
            try:
                query = {k: v[-1] for k, v in parse_qs(url.query, strict_parsing=False,
                                                       errors="strict").items()}
            except UnicodeDecodeError:
                raise HttpError(400, "bad request", "the query string is not valid UTF-8") from None
            status, payload = self.server.router(method, url.path, query, body, self)
            self._send(status, payload)
        except HttpError as exc:
            self._send(exc.status, {"error": exc.error, "detail": exc.detail}, exc.headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            logger.exception("socket request %s %s failed", method, self.path)
            self.close_connection = True
            try:
                self._send(500, {"error": "internal error", "detail": f"{type(exc).__name__}: {exc}"})
            except OSError:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _dispatch


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 64

    def __init__(self, path: str, router: Any, max_upload: int, request_timeout: float) -> None:
        super().__init__(path, _Handler, bind_and_activate=False)
        self.router = router
        self.max_upload = max_upload
        self.request_timeout = request_timeout
        self._active: set[_Handler] = set()
        self._active_lock = threading.Lock()
        self._count = 0  # accepted connections not finished yet (admission control)

    # -- admission control and slow-client reaper -------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            full = self._count >= MAX_CONNECTIONS
            if not full:
                self._count += 1
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            with self._active_lock:
                self._count -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._count -= 1

    def _refuse(self, request: socket.socket) -> None:
        body = json.dumps({"error": "service unavailable",
                           "detail": f"more than {MAX_CONNECTIONS} connections at once; retry later"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n").encode()
        try:
            request.settimeout(0.5)
            request.sendall(head + body)
        except OSError:
            pass
        self.shutdown_request(request)
        logger.warning("socket: refused a connection, %d already open", MAX_CONNECTIONS)

    def track(self, handler: _Handler) -> None:
        with self._active_lock:
            self._active.add(handler)

    def untrack(self, handler: _Handler) -> None:
        with self._active_lock:
            self._active.discard(handler)

    def reap(self, now: float) -> int:
        """Cut connections whose request did not arrive in time; returns how many."""
        with self._active_lock:
            late = [h for h in self._active if h.deadline is not None and now > h.deadline]
        for h in late:
            h.deadline = None
            _shutdown(h.connection)
        return len(late)

    def close_all(self) -> None:
        with self._active_lock:
            handlers = list(self._active)
        for h in handlers:
            _shutdown(h.connection)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class ApiServer:
    """Owns the socket: :meth:`claim` (refuse to steal), :meth:`start` (bind, serve), :meth:`stop`."""

    def __init__(self, daemon: Daemon, config: Config) -> None:
        self.daemon = daemon
        self.config = config
        self.path = config.socket_path
        self.max_upload, self.request_timeout = limits_from_env()
        self._lock_fd: int | None = None
        self._server: _UnixHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._inode: tuple[int, int] | None = None

    # -- ownership ------------------------------------------------------------------------------

    def claim(self) -> None:
        """Take ownership of ``socket_path`` or raise a clear :class:`DedupdError` (idempotent).

        Called by the daemon before it opens its store, so a second daemon touches nothing.
        """
        if self._lock_fd is not None:
            return
        path = self.path
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise DedupdError(f"socket_path {path} is {len(os.fsencode(path))} bytes long; Unix sockets allow "
                              f"at most {MAX_SOCKET_PATH}: choose a shorter socket_path")
        folder = os.path.dirname(path) or "."
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise DedupdError(f"cannot create the socket's folder {folder}: {exc.strerror}; create it or "
                              "choose another socket_path") from exc
        lock_path = path + LOCK_SUFFIX
        try:
            fd = pidlock.acquire(lock_path, 0o600)
        except pidlock.LockHeld as held:
            who = f"(pid {held.pid}) " if held.pid else ""
            raise DedupdError(f"another dedupd {who}is already serving the socket {path}; stop it first "
                              "(systemctl stop dedupd, or kill that pid), or give this one a different "
                              "socket_path") from None
        except OSError as exc:
            raise DedupdError(f"cannot create or lock {lock_path}: {exc.strerror}; check the permissions of "
                              f"{folder}") from exc
        try:
            self._check_existing(path)
        except BaseException:
            os.close(fd)
            raise
        pidlock.write_pid(fd)
        self._lock_fd = fd
        # while the store opens and the index loads: get the query path's imports done
        from dedupd.daemon.api.routes import warm_up

        threading.Thread(target=warm_up, args=(self.daemon,), name="dedupd-server-warm-up", daemon=True).start()

    @staticmethod
    def _check_existing(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise DedupdError(f"socket_path {path} exists and is not a socket; it was left alone: move it away "
                              "or choose another socket_path")
        if _socket_alive(path):
            raise DedupdError(f"another process is already serving the socket {path} (it answers connections); "
                              "stop it first or give this dedupd a different socket_path")
        os.unlink(path)  # stale socket from a crashed run
        logger.info("replaced a stale socket left by a previous run", extra={"socket": path})

    # -- serving --------------------------------------------------------------------------------

    def start(self) -> None:
        from dedupd.daemon.api.routes import Router

        self.claim()
        path = self.path
        server = _UnixHTTPServer(path, Router(self.daemon), self.max_upload, self.request_timeout)
        try:
            server.server_bind()  # not listening yet: connections are refused until the mode is right
            os.chmod(path, self.config.socket_mode)
            if self.config.socket_group is not None:
                gid = _group_id(self.config.socket_group)
                try:
                    os.chown(path, -1, gid)
                except PermissionError:
                    raise DedupdError(f"cannot give the socket {path} to socket_group "
                                      f"{self.config.socket_group!r}: the daemon's user must be a member of "
                                      "that group (or run as root)") from None
            server.server_activate()
        except BaseException:
            server.server_close()
            try:
                os.unlink(path)
            except OSError:
                pass
            self._release_lock()
            raise
        st = os.lstat(path)
        self._inode = (st.st_dev, st.st_ino)
        self._server = server
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                             name="dedupd-server", daemon=True),
            threading.Thread(target=self._reaper, name="dedupd-server-reaper", daemon=True),
        ]
        for t in self._threads:
            t.start()
        logger.info("socket API listening", extra={"socket": path, "mode": oct(self.config.socket_mode),
                                                   "group": self.config.socket_group,
                                                   "max_upload": self.max_upload})

    def _reaper(self) -> None:
        step = min(0.5, self.request_timeout / 4)
        while not self._stopping.wait(step):
            server = self._server
            if server is not None:
                server.reap(time.monotonic())

    def stop(self) -> None:
        server, self._server = self._server, None
        self._stopping.set()
        if server is not None:
            server.shutdown()
            server.close_all()
            server.server_close()
            try:  # only our own socket: never a file someone put there since
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []
        self._release_lock()

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)


def _group_id(group: str | int) -> int:
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise DedupdError(f"socket_group {group!r} does not exist; create it (groupadd) or fix the config") \
            from None


def _socket_alive(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
            return True
        except OSError:
            return False
