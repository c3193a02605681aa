"""HTTP/1.1 + JSON over the daemon's Unix socket (``curl --unix-socket SOCK http://localhost/v1/status``).

Transport only: it knows nothing of the endpoints or the daemon. The daemon hands :class:`ApiServer`
an *app*, any callable ``app(Request) -> (status, JSON body)`` (the router of :mod:`.routes`), and
it never imports the routes or the daemon service.

Robustness against any local client (each limit is in ``docs/api.md``):

* Request heads are read by the strict, incremental parser of :mod:`.wire`: garbage, HTTP/0.9, a
  header line without a colon are answered 400 at once; a long target 414; too many or too large
  headers 431; any doubt about where a body ends (``Content-Length: +5``, two lengths, a length
  with a transfer coding) 400. An error answer is followed by a lingering close (half-close, then
  read and discard for a moment), so the client reads it instead of a connection reset.
* Deadlines: the request head must arrive within ``DEDUPD_HEADER_TIMEOUT_S`` (default 5 s) of the
  connection (or of the previous answer on a kept-alive connection), the whole request within
  ``DEDUPD_REQUEST_TIMEOUT_S`` (default 10 s); a client that misses one is disconnected.
* Slots: each peer process and user (``SO_PEERCRED``) has a share of the connection slots, and a
  newcomer over a limit takes the place of an idle connection rather than being refused
  (:mod:`.admission`); only then 503 with ``Retry-After``. The listen backlog is
  ``min(4096, net.core.somaxconn)``, so a burst of connections waits instead of meeting EAGAIN.
* The socket is bound, ``chmod``-ed to ``socket_mode`` (default 0660) and ``chown``-ed to
  ``socket_group`` *before* it listens. Ownership: an exclusive ``flock`` on
  ``<socket_path>.lock`` (holding the owner's pid) is taken before anything else; a second daemon
  on the same socket refuses to start, naming the owner. A stale socket (no lock holder, nothing
  answers) is replaced; a live one is never stolen; a path that is not a socket is never deleted.

Why hand-written rather than uvicorn (which serves Unix sockets). Measured with uvicorn 0.54.0
(h11, trivial app) against the attacker of ``tests/daemon/test_socket_abuse.py``: an idle
connection and a head trickled at 1 byte/s were both still open after 15 s (``timeout_keep_alive``
is re-armed by every byte; encode/uvicorn#157 has left a request-start timeout open since 2018);
with ``--limit-concurrency 64`` one process hoarding idle connections made 8 of 8 status requests
503 (the limit is global, blind to ``SO_PEERCRED``); without it, 2000 hoarded connections ran a
1024-fd daemon into EMFILE and the next status request timed out (10 s). Each fix would mean
patching its protocol classes, behind an ASGI layer and two new dependencies. This server, same
attack plus trickling, garbage, endless bodies and 200-client bursts (2 shared cores): ``dedupd
status`` (new process each time) p50 0.2-0.4 s, p95 0.3-0.6 s, never refused; idle and trickling
connections cut at the head deadline. A thread per connection is fine at this size: at most
:data:`MAX_CONNECTIONS` threads, most of them parked, and refusals cost no thread.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import select
import selectors
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from dedupd import __version__
from dedupd.daemon import pidlock
from dedupd.daemon.api.admission import Admission, Slot
from dedupd.daemon.api.wire import METHODS, HeadReader, HttpError, RequestHead
from dedupd.daemon.config import Config
from dedupd.errors import DedupdError

__all__ = ["App", "ApiServer", "HttpError", "Limits", "Peer", "Request", "limits_from_env", "peer_credentials"]

logger = logging.getLogger(__name__)

MAX_UPLOAD_ENV = "DEDUPD_MAX_UPLOAD_BYTES"
REQUEST_TIMEOUT_ENV = "DEDUPD_REQUEST_TIMEOUT_S"
HEADER_TIMEOUT_ENV = "DEDUPD_HEADER_TIMEOUT_S"
DEFAULT_MAX_UPLOAD = 64 << 20
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_HEADER_TIMEOUT = 5.0
#: Connection slots: in all, per user (uid), per process (pid). See :mod:`.admission`.
#: request bodies held at once, all connections together (each is at most ``max_upload``): 32
#: connections each trickling a 64 MiB body took the daemon from 50 MiB to 2.1 GiB
BODY_BYTES_IN_FLIGHT = 256 << 20
MAX_CONNECTIONS = 256
MAX_PER_UID = 192
MAX_PER_PID = 32
#: Listen backlog ceiling (the kernel caps it at ``net.core.somaxconn``).
MAX_BACKLOG = 4096
#: After an error answer: read and discard at most this much, for at most this long, so the
#: client can finish sending and read the answer instead of a reset (a refused body: up to 8 MiB).
_LINGER_BYTES, _LINGER_S = 1 << 20, 1.0
_DRAIN_LIMIT = 8 << 20
#: ``sockaddr_un.sun_path`` is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
LOCK_SUFFIX = ".lock"
_SERVER = f"dedupd/{__version__}"


class Peer(NamedTuple):
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> Peer | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket, or None."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return Peer(*struct.unpack("3i", raw))
    except OSError:
        return None


@dataclass(frozen=True)
class Request:
    """One complete request, as the app sees it."""

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes
    head: RequestHead
    peer: Peer | None

    @property
    def headers(self) -> RequestHead:
        """Header lookup: ``request.headers.get("Content-Type")`` (case-insensitive)."""
        return self.head


#: What the transport serves: a request in, ``(status, JSON-serialisable body)`` out; raises
#: :class:`HttpError` for error answers.
App = Callable[[Request], tuple[int, Any]]


@dataclass(frozen=True)
class Limits:
    max_upload: int = DEFAULT_MAX_UPLOAD
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT


def _env_number(env: Mapping[str, str], name: str, default: float, ok: Callable[[float], bool],
                what: str, integer: bool = False) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(int(raw)) if integer else float(raw)
    except ValueError:
        value = float("nan")
    if not ok(value):
        raise DedupdError(f"{name}={raw!r} must be {what} (default {default:g}); fix or unset it")
    return value


def limits_from_env(env: Mapping[str, str] | None = None) -> Limits:
    """The server's limits from ``DEDUPD_MAX_UPLOAD_BYTES``, ``DEDUPD_REQUEST_TIMEOUT_S`` and
    ``DEDUPD_HEADER_TIMEOUT_S`` (the head deadline never exceeds the request deadline)."""
    env = os.environ if env is None else env
    max_upload = _env_number(env, MAX_UPLOAD_ENV, DEFAULT_MAX_UPLOAD, lambda v: v >= 1,
                             "a positive number of bytes", integer=True)
    request = _env_number(env, REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT, lambda v: 0 < v <= 3600,
                          "a number of seconds in (0, 3600]")
    header = _env_number(env, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT, lambda v: 0 < v <= 3600,
                         "a number of seconds in (0, 3600]")
    return Limits(int(max_upload), request, min(header, request))


def listen_backlog() -> int:
    """``min(4096, net.core.somaxconn)``: a burst of clients waits in the queue instead of EAGAIN."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(64, min(MAX_BACKLOG, int(f.read().strip())))
    except (OSError, ValueError):
        return socket.SOMAXCONN


# -- one connection ---------------------------------------------------------------------------------


class _Closed(Exception):
    """The connection ended (EOF, reset, deadline, or cut): nothing more to say on it."""


def _response(status: int, body: bytes, headers: Mapping[str, str], close: bool) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", f"Server: {_SERVER}", f"Date: {formatdate(usegmt=True)}",
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _error_body(exc: HttpError) -> bytes:
    return json.dumps({"error": exc.error, "detail": exc.detail}).encode()


class _Connection:
    """Serves the requests of one accepted socket on its own thread."""

    def __init__(self, server: _Server, sock: socket.socket, peer: Peer | None, slot: Slot) -> None:
        self.server, self.sock, self.peer, self.slot = server, sock, peer, slot
        self.limits = server.limits
        self._pending = b""  # bytes after the previous request (pipelining)
        self._reserved = 0  # of the server's body budget, for the request being served

    def run(self) -> None:
        try:
            while True:
                try:
                    if not self._one_request():
                        break
                finally:
                    self.server.release_body(self._reserved)
                    self._reserved = 0
        except _Closed:
            pass
        except Exception:
            logger.exception("socket connection failed")
        finally:
            self.server.release(self)
            _shutdown(self.sock)
            self.sock.close()

    def _phase(self, phase: str) -> None:
        self.server.set_phase(self.slot, phase)

    # -- receiving ------------------------------------------------------------------------------

    def _recv(self, deadline: float, size: int = 65536) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0 or self.slot.evicted:
            raise _Closed
        self.sock.settimeout(left)
        try:
            return self.sock.recv(size)
        except OSError:  # TimeoutError, ConnectionResetError, a cut connection
            raise _Closed from None

    def _read_head(self, head_deadline: float) -> RequestHead | None:
        reader = HeadReader()
        data, self._pending = self._pending, b""
        while True:
            head = reader.feed(data) if data else None
            if head is not None:
                self._pending = reader.rest
                return head
            if reader.started:
                self._phase("head")
            data = self._recv(head_deadline)
            if not data:
                return None  # the client closed (between requests: the normal end)

    def _read_body(self, head: RequestHead, deadline: float) -> bytes:
        n = head.content_length()
        if n > self.limits.max_upload:
            raise HttpError(413, "payload too large", f"request bodies are limited to {self.limits.max_upload} "
                                                      f"bytes ({MAX_UPLOAD_ENV}); this one has {n}")
        if n and not self.server.reserve_body(n):
            raise HttpError(503, "busy", f"too many request bodies are being received at once "
                                         f"({self.server.body_limit >> 20} MiB together); retry in a moment",
                            {"Retry-After": "1"})
        self._reserved = n
        expect = (head.get("expect") or "").lower()
        if expect:
            if expect != "100-continue" or head.version < (1, 1):
                raise HttpError(417, "expectation failed", "only 'Expect: 100-continue' is supported")
            if n > len(self._pending):
                self._send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        body, self._pending = bytearray(self._pending[:n]), self._pending[n:]
        while len(body) < n:
            chunk = self._recv(deadline, min(1 << 20, n - len(body)))
            if not chunk:
                raise HttpError(400, "bad request", f"the body ended after {len(body)} of {n} bytes")
            body += chunk
        return bytes(body)

    # -- one exchange ---------------------------------------------------------------------------

    def _one_request(self) -> bool:
        """Serve one request; True when the connection stays open for another."""
        start = time.monotonic()
        self._phase("idle")
        deadline = start + self.limits.request_timeout
        head: RequestHead | None = None
        try:
            head = self._read_head(start + self.limits.header_timeout)
            if head is None:
                return False
            self._phase("body")
            if head.method not in METHODS:
                raise HttpError(501, "not implemented", f"unsupported method {head.method}")
            body = self._read_body(head, deadline)
            self._phase("busy")
            try:
                url = urlsplit(head.target)
            except ValueError:  # e.g. "http://[/v1/status": not a URL
                raise HttpError(400, "bad request", "the request target is not a valid path") from None
            try:
                query = {k: v[-1] for k, v in parse_qs(url.query, errors="strict").items()}
            except UnicodeDecodeError:
                raise HttpError(400, "bad request", "the query string is not valid UTF-8") from None
        except HttpError as exc:  # the request itself is wrong: answer, then close
            self._fail(exc, head)
            return False
        request = Request(head.method, url.path, query, body, head, self.peer)
        close = not head.keep_alive
        try:
            status, payload = self.server.app(request)
            data = json.dumps(payload, default=str).encode()
            headers: Mapping[str, str] = {}
        except HttpError as exc:
            status, data, headers = exc.status, _error_body(exc), exc.headers
        except Exception as exc:
            logger.exception("socket request %s %s failed", head.method, url.path)
            status, close, headers = 500, True, {}
            data = json.dumps({"error": "internal error", "detail": f"{type(exc).__name__}: {exc}"}).encode()
        self._send_raw(_response(status, data, headers, close) + (b"" if head.method == "HEAD" else data))
        return not close

    def _fail(self, exc: HttpError, head: RequestHead | None) -> None:
        self._phase("closing")
        if exc.status >= 500 or exc.status in (400, 414, 431):
            logger.info("socket: %d %s (%s) from pid=%s", exc.status, exc.error, exc.detail,
                        self.peer.pid if self.peer else "?")
        data = _error_body(exc)
        try:
            self._send_raw(_response(exc.status, data, exc.headers, True)
                           + (b"" if head is not None and head.method == "HEAD" else data))
        except _Closed:
            return
        self._linger(_DRAIN_LIMIT if exc.status == 413 else _LINGER_BYTES)

    def _send_raw(self, data: bytes) -> None:
        if self.slot.evicted:
            raise _Closed
        self.sock.settimeout(self.limits.request_timeout)  # a client that does not read is cut off
        try:
            self.sock.sendall(data)
        except OSError:
            raise _Closed from None

    def _linger(self, limit: int) -> None:
        """Half-close, then discard what the client still sends (bounded), so it reads our answer."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + _LINGER_S
        while limit > 0:
            try:
                chunk = self._recv(deadline, min(limit, 1 << 16))
            except _Closed:
                return
            if not chunk:
                return
            limit -= len(chunk)


# -- the listening socket ---------------------------------------------------------------------------


class _Server:
    """The listening socket, its accept loop, and the admitted connections."""

    def __init__(self, path: str, app: App, limits: Limits) -> None:
        self.path, self.app, self.limits = path, app, limits
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.admission = Admission(MAX_CONNECTIONS, MAX_PER_UID, MAX_PER_PID)
        self._conns: dict[Slot, _Connection] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._last_warning = 0.0
        self._suppressed = 0
        self.body_limit = max(BODY_BYTES_IN_FLIGHT, limits.max_upload)
        self._body_bytes = 0

    def reserve_body(self, n: int) -> bool:
        """Count ``n`` body bytes against :attr:`body_limit`; False (nothing counted) when they do not fit."""
        with self._lock:
            if self._body_bytes + n > self.body_limit:
                return False
            self._body_bytes += n
            return True

    def release_body(self, n: int) -> None:
        with self._lock:
            self._body_bytes -= n

    def bind(self) -> None:
        self.sock.bind(self.path)

    def listen(self) -> None:
        self.sock.listen(listen_backlog())
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- accepting ------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                if any(key.fileobj is self.sock for key, _ in sel.select()):
                    self._accept_all()

    def _accept_all(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._warn("socket: cannot accept connections: %s", exc.strerror)
                    time.sleep(0.05)  # let connections finish instead of spinning
                    return
                if self._stopping.is_set():
                    return
                raise
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        peer = peer_credentials(sock)
        pid, uid = (peer.pid, peer.uid) if peer else (-1, -1)
        with self._lock:
            slot, victim = self.admission.admit(pid, uid, time.monotonic(), self._quiet)
            cut = self._conns.get(victim) if victim is not None else None
            if slot is not None:
                conn = _Connection(self, sock, peer, slot)
                self._conns[slot] = conn
        if cut is not None:
            _shutdown(cut.sock)
        if slot is None:
            self._refuse(sock, pid)
            return
        try:
            threading.Thread(target=conn.run, name="dedupd-conn", daemon=True).start()
        except RuntimeError:  # cannot start a thread: treat as full
            self.release(conn)
            self._refuse(sock, pid)

    def _quiet(self, slot: Slot) -> bool:
        """No request bytes wait unread on this connection (called with the lock held)."""
        conn = self._conns.get(slot)
        if conn is None:
            return False
        poller = select.poll()  # not sock.recv(MSG_PEEK): with a timeout set, it would wait for data
        try:
            poller.register(conn.sock, select.POLLIN)
        except (OSError, ValueError):
            return False
        return not poller.poll(0)

    def _refuse(self, sock: socket.socket, pid: int) -> None:
        body = json.dumps({"error": "too many connections",
                           "detail": f"this client (pid {pid}) or all clients together hold the most connections "
                                     "the daemon allows; retry later"}).encode()
        head = _response(503, body, {"Retry-After": "1"}, True)
        try:
            sock.setblocking(False)
            sock.send(head + body)
            sock.recv(65536)  # what already came (a request head): closing on unread data would reset
        except OSError:
            pass
        _shutdown(sock)
        sock.close()
        self._warn("socket: refused a connection of pid %s: no free slot (%d connections open)", pid,
                   len(self.admission))

    def _warn(self, msg: str, *args: Any) -> None:
        """At most one such warning per 10 s, so a flood of refusals cannot flood the log."""
        now = time.monotonic()
        if now - self._last_warning < 10:
            self._suppressed += 1
            return
        if self._suppressed:
            msg += f" ({self._suppressed} more since the last warning)"
        self._last_warning, self._suppressed = now, 0
        logger.warning(msg, *args)

    # -- bookkeeping ----------------------------------------------------------------------------

    def set_phase(self, slot: Slot, phase: str) -> None:
        with self._lock:
            slot.phase = phase
            slot.since = time.monotonic()

    def release(self, conn: _Connection) -> None:
        with self._lock:
            self.admission.release(conn.slot)
            self._conns.pop(conn.slot, None)

    def stop(self) -> None:
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close_all(self) -> None:
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            _shutdown(c.sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# -- ownership and life cycle -----------------------------------------------------------------------


class ApiServer:
    """Owns the socket: :meth:`claim` (refuse to steal), :meth:`start` (bind, serve), :meth:`stop`.

    Args:
        config: the daemon's config (``socket_path``, ``socket_mode``, ``socket_group``).
        app: what answers the requests (the daemon passes its router).
        warm_up: run once in the background after the claim (e.g. the decode path's imports).
    """

    def __init__(self, config: Config, app: App, *, warm_up: Callable[[], None] | None = None) -> None:
        self.config = config
        self.app = app
        self.path = config.socket_path
        self.limits = limits_from_env()
        self._warm_up = warm_up
        self._lock_fd: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
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
        if self._warm_up is not None:  # while the store opens and the index loads
            threading.Thread(target=self._warm_up, name="dedupd-server-warm-up", daemon=True).start()

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
        self.claim()
        path = self.path
        server = _Server(path, self.app, self.limits)
        try:
            server.bind()  # not listening yet: connections are refused until the mode is right
            os.chmod(path, self.config.socket_mode)
            if self.config.socket_group is not None:
                gid = _group_id(self.config.socket_group)
                try:
                    os.chown(path, -1, gid)
                except PermissionError:
                    raise DedupdError(f"cannot give the socket {path} to socket_group "
                                      f"{self.config.socket_group!r}: the daemon's user must be a member of "
                                      "that group (or run as root)") from None
            server.listen()
        except BaseException:
            server.close()
            try:
                os.unlink(path)
            except OSError:
                pass
            self._release_lock()
            raise
        st = os.lstat(path)
        self._inode = (st.st_dev, st.st_ino)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="dedupd-server", daemon=True)
        self._thread.start()
        logger.info("socket API listening", extra={"socket": path, "mode": oct(self.config.socket_mode),
                                                   "group": self.config.socket_group,
                                                   "max_upload": self.limits.max_upload})

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
            if self._thread is not None:
                self._thread.join(timeout=2)
            server.close_all()
            server.close()
            try:  # only our own socket: never a file someone put there since
                st = os.lstat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
        self._thread = None
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
