"""The review page's server: stdlib ``http.server`` on 127.0.0.1, a random port and a random token.

Two sources of groups:

* :class:`LiveSource`: a running daemon, through its Unix socket with the caller's own
  permissions (:class:`dedupd.client.Client`): whoever cannot use the socket cannot act here
  either. Decisions go to ``POST /v1/quarantine``, ``/v1/restore``, ``/v1/ignore`` and
  ``/v1/keep``; a route the daemon does not have (an older daemon) is shown as unavailable.
* :class:`StoreSource`: no daemon: the store opened read-only, for viewing only.

Security: the server binds 127.0.0.1 only and checks the ``Host`` header (no DNS rebinding).
The URL printed at start carries the token (as Jupyter does); the first visit trades it for an
``HttpOnly; SameSite=Strict`` cookie, which lets the browser load the page, its data and the
thumbnails. A state change needs the token in the ``X-Dedupd-Token`` header (never a cookie or
a query parameter), which another site's page cannot send, so there is no cross-site request
forgery. Every answer forbids framing and external resources (CSP). File names reach the page
only as JSON and are rendered with ``textContent``.
"""

from __future__ import annotations

import hmac
import http.server
import json
import logging
import mimetypes
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dedupd.client import ApiError, Client, DaemonNotRunning

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Dedupd-Token"
COOKIE = "dedupd_review"
MAX_BODY = 1 << 20
#: actions of the page → (daemon route, how the page's JSON becomes the daemon's)
ACTIONS: dict[str, str] = {
    "quarantine": "/v1/quarantine",  # {"paths": [...]}
    "restore": "/v1/restore",  # {"paths": [...]}
    "ignore": "/v1/ignore",  # {"paths": [...]}: these files are not duplicates of each other
    "keep": "/v1/keep",  # {"path": ...}: keep this copy of its group
}
#: served as they are (package data); nothing else is a static file
STATIC = {"/page.js": "application/javascript", "/page.css": "text/css"}
#: originals shown inline; anything else is offered as a download
INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp"})
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _package_file(name: str) -> bytes:
    return resources.files("dedupd.review").joinpath(name).read_bytes()


class ReadOnly(Exception):
    """The source cannot change anything (no daemon)."""


class LiveSource:
    """Groups and decisions from a running daemon, over its socket."""

    live = True
    #: how long the answer of :meth:`features` is reused
    FEATURES_TTL_S = 60.0

    def __init__(self, client: Client, report_dir: str | None = None) -> None:
        self.client = client
        self._report_dir = report_dir  # the daemon's, when the caller's config names it
        self._features: tuple[float, dict[str, bool]] | None = None

    def describe(self) -> str:
        return f"the daemon at {self.client.socket_path}"

    def groups(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        from dedupd.reports.html import attach_quarantine

        groups: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.client.get("/v1/groups", offset=offset, limit=10000)
            groups.extend(page["groups"])
            offset += len(page["groups"])
            if not page["groups"] or offset >= page["total"]:
                break
        entries = self.client.get("/v1/quarantine")["entries"]
        status = self.client.get("/v1/status")
        return attach_quarantine(groups, entries), {"files": status.get("files"), "policy": status.get("policy"),
                                                   "state": status.get("state")}

    def version(self) -> list[Any]:
        """Changes whenever the groups or the quarantine change (cheap: the page polls it)."""
        status = self.client.get("/v1/status")
        generation = self.client.get("/v1/groups", limit=1).get("generation")
        return [generation, status.get("files"), status.get("groups"), status.get("quarantined"),
                status.get("restored"), status.get("state")]

    def features(self) -> dict[str, bool]:
        """Which decisions the daemon supports: a POST-only route answers GET with 405, a missing one 404."""
        now = time.monotonic()
        if self._features is not None and now - self._features[0] < self.FEATURES_TTL_S:
            return self._features[1]
        out = {}
        for action, route in ACTIONS.items():
            try:
                self.client.get(route, state="pending") if action == "quarantine" else self.client.get(route)
                out[action] = True
            except ApiError as exc:
                out[action] = exc.status == 405
        self._features = (now, out)
        return out

    def act(self, action: str, payload: dict[str, Any]) -> Any:
        return self.client.post(ACTIONS[action], payload)

    def report_dir(self) -> str | None:
        return self._report_dir


class StoreSource:
    """Groups from the store, read-only, when no daemon runs (the store is opened per request)."""

    live = False

    def __init__(self, config: Any) -> None:
        self.config = config

    def describe(self) -> str:
        return f"the store {self.config.store_dir} (read-only: no daemon answers)"

    def groups(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        from dedupd.daemon.loader import load_index
        from dedupd.daemon.store import Store
        from dedupd.reports.groups import build_groups
        from dedupd.reports.html import attach_quarantine

        store = Store.open(self.config.store_dir, readonly=True, lock=False)
        try:
            index = load_index(store, self.config)
            groups = attach_quarantine(build_groups(index, self.config.keep, store.review(), self.config),
                                       list(store.iter_quarantine()))
            return groups, {"files": len(index.files), "policy": self.config.policy, "state": "not running"}
        finally:
            store.close()

    def version(self) -> list[Any]:
        try:
            return [os.stat(os.path.join(self.config.store_dir, "data.mdb")).st_mtime_ns]
        except OSError:
            return [None]

    def features(self) -> dict[str, bool]:
        return dict.fromkeys(ACTIONS, False)

    def act(self, action: str, payload: dict[str, Any]) -> Any:
        raise ReadOnly("no daemon is running: the page is read-only; start the daemon (`dedupd run`) to act")

    def report_dir(self) -> str | None:
        return self.config.report_dir


class Review:
    """State shared by the request handlers: the source, the token, the members' files, thumbnails."""

    def __init__(self, source: LiveSource | StoreSource, token: str | None = None,
                 thumbs_dir: str | None = None, max_pixels: int | None = None) -> None:
        self.source = source
        self.token = token or secrets.token_urlsafe(32)
        self._own_thumbs = thumbs_dir is None
        self.thumbs_dir = thumbs_dir or tempfile.mkdtemp(prefix="dedupd-review-")
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._files: dict[str, str] = {}  # member path → the file holding its bytes now (dest when quarantined)
        self._digests: dict[tuple[str, int, int, int], str] = {}

    def state(self) -> dict[str, Any]:
        groups, info = self.source.groups()
        files = {}
        for g in groups:
            for f in (g["keep"], *g.get("duplicates", ())):
                files[f["path"]] = f.get("dest") if f.get("state") == "quarantined" and f.get("dest") else f["path"]
            for f in g.get("duplicates", ()):
                f.pop("digest", None)
        with self._lock:
            self._files = files
        return {"live": self.source.live, "source": self.source.describe(), "features": self.source.features(),
                **info, "groups": groups}

    def file_of(self, path: str) -> str | None:
        """The file to read for a member ``path`` shown on the page (None: not shown, not served)."""
        with self._lock:
            return self._files.get(path)

    def thumbnail(self, path: str) -> str | None:
        """Path of a JPEG thumbnail of member ``path`` (decoded in a worker process), or None."""
        from dedupd.daemon.config.model import DEFAULT_MAX_PIXELS
        from dedupd.daemon.encoder import file_digest
        from dedupd.reports.thumbnails import ensure_thumbnail, thumb_name

        src = self.file_of(path)
        if src is None:
            return None
        try:
            st = os.stat(src)
            key = (src, st.st_ino, st.st_size, st.st_mtime_ns)
            with self._lock:
                digest = self._digests.get(key)
            if digest is None:
                digest = file_digest(src).hex()
                with self._lock:
                    self._digests[key] = digest
        except OSError:
            return None
        reports = self.source.report_dir()
        if reports:  # the daemon's own thumbnail of this content, if it made one
            made = os.path.join(reports, "thumbs", thumb_name(digest))
            if os.access(made, os.R_OK):
                return made
        name = ensure_thumbnail(src, digest, self.thumbs_dir, max_pixels=self.max_pixels or DEFAULT_MAX_PIXELS,
                                mode=0o600)
        return os.path.join(self.thumbs_dir, name) if name else None

    def close(self) -> None:
        if self._own_thumbs:
            shutil.rmtree(self.thumbs_dir, ignore_errors=True)


def _paths(payload: dict[str, Any], key: str = "paths") -> list[str]:
    value = payload.get(key)
    if not (isinstance(value, list) and value and all(isinstance(p, str) and p for p in value)):
        raise ValueError(f"'{key}' must be a non-empty list of paths")
    return value


#: the page's request → the daemon's request body (validated here; the daemon checks again)
SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "quarantine": lambda p: {"paths": _paths(p)},
    "restore": lambda p: {"paths": _paths(p)},
    "ignore": lambda p: {"paths": _paths(p)},
    "keep": lambda p: {"path": _paths({"paths": [p.get("path")]})[0]},
}


class Handler(http.server.BaseHTTPRequestHandler):
    """One request of the review page (``server.review`` holds the shared state)."""

    server_version = "dedupd-review"
    protocol_version = "HTTP/1.1"
    timeout = 30  # seconds a connection may sit without sending (an idle keep-alive one too)

    @property
    def review(self) -> Review:
        return self.server.review  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logger.debug("review: " + format, *args)

    # -- answers -------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _error(self, status: int, error: str, detail: str) -> None:
        self._json(status, {"error": error, "detail": detail})

    # -- checks --------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        """Only our own address: a page of another name resolving to 127.0.0.1 is refused."""
        port = self.server.server_address[1]  # type: ignore[index]
        return self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}")

    def _cookie_token(self) -> str:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return value
        return ""

    def _is(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.review.token.encode())

    # -- methods -------------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if not self._host_ok():
            return self._error(403, "forbidden", "open the page at the address `dedupd review` printed")
        try:
            url = urlsplit(self.path)
        except ValueError:  # e.g. "http://[/": not a URL
            return self._error(400, "bad request", "the request target is not a valid path")
        query = parse_qs(url.query)
        if url.path in STATIC:
            return self._send(200, _package_file(url.path[1:]), STATIC[url.path] + "; charset=utf-8")
        if url.path == "/" and self._is((query.get("token") or [""])[0]):
            # trade the token in the URL for a cookie, and drop it from the address bar and history
            return self._send(303, b"", "text/plain", {
                "Location": "/", "Set-Cookie": f"{COOKIE}={self.review.token}; HttpOnly; SameSite=Strict; Path=/"})
        if not (self._is(self._cookie_token()) or self._is(self.headers.get(TOKEN_HEADER, ""))):
            return self._error(403, "forbidden", "this page needs the token: open the full address "
                                                 "`dedupd review` printed (http://127.0.0.1:PORT/?token=...)")
        if url.path == "/":
            page = _package_file("page.html").replace(b"%%TOKEN%%", self.review.token.encode())
            return self._send(200, page, "text/html; charset=utf-8")
        if url.path in ("/api/state", "/api/version"):
            try:
                if url.path == "/api/version":
                    return self._json(200, {"version": self.review.source.version()})
                return self._json(200, self.review.state())
            except (ApiError, DaemonNotRunning, OSError) as exc:
                return self._error(502, "source unavailable", str(exc))
        if url.path in ("/thumb", "/original"):
            path = (query.get("path") or [""])[0]
            return self._thumb(path) if url.path == "/thumb" else self._original(path)
        return self._error(404, "not found", f"no page {url.path}")

    do_HEAD = do_GET

    def _thumb(self, path: str) -> None:
        thumb = self.review.thumbnail(path)
        if thumb is None:
            return self._error(404, "no preview", "not a member of a shown group, or it cannot be decoded")
        with open(thumb, "rb") as f:
            return self._send(200, f.read(), "image/jpeg", {"Cache-Control": "private, max-age=300"})

    def _original(self, path: str) -> None:
        src = self.review.file_of(path)
        if src is None:
            return self._error(404, "not found", "not a member of a shown group")
        ctype = mimetypes.guess_type(src)[0] or "application/octet-stream"
        try:
            with open(src, "rb") as f:
                data = f.read()
        except OSError as exc:
            return self._error(404, "unreadable", f"cannot read {src}: {exc.strerror}")
        extra = {"Content-Disposition": "inline" if ctype in INLINE_TYPES else "attachment"}
        return self._send(200, data, ctype if ctype in INLINE_TYPES else "application/octet-stream", extra)

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        if not self._host_ok():
            return self._error(403, "forbidden", "open the page at the address `dedupd review` printed")
        if not self._is(self.headers.get(TOKEN_HEADER, "")):
            return self._error(403, "forbidden", f"a change needs the token in the {TOKEN_HEADER} header")
        try:
            action = urlsplit(self.path).path.removeprefix("/api/")
        except ValueError:
            return self._error(400, "bad request", "the request target is not a valid path")
        if action not in SHAPES:
            return self._error(404, "not found", f"no action {action}; the page has: {', '.join(SHAPES)}")
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            return self._error(415, "unsupported media type", "send JSON (Content-Type: application/json)")
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            return self._error(400, "bad request", f"send a JSON body of at most {MAX_BODY} bytes")
        try:
            payload = json.loads(self.rfile.read(length))
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            body = SHAPES[action](payload)
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            return self._error(400, "bad request", str(exc)[:200] or type(exc).__name__)
        try:
            result = self.review.source.act(action, body)
        except ReadOnly as exc:
            return self._error(409, "read-only", str(exc))
        except DaemonNotRunning as exc:
            return self._error(502, "daemon not running", str(exc))
        except ApiError as exc:
            return self._error(exc.status if 400 <= exc.status < 600 else 502, exc.error, exc.detail)
        logger.info("review: %s %s", action, body)
        return self._json(200, result)


class ReviewServer(http.server.ThreadingHTTPServer):
    """The review page on 127.0.0.1, for the user who started it: a connection from another local
    user is closed unanswered (its uid read from /proc/net/tcp), so no other user can hold the
    server's connections or file descriptors, whatever they know of the token."""

    daemon_threads = True

    def __init__(self, review: Review, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.review = review
        self.owner = os.getuid()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        uid = loopback_peer_uid(request)
        if uid is None or uid in (self.owner, 0):
            return True
        logger.warning("review: refused a connection of uid %d (the page is for uid %d)", uid, self.owner)
        return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/?token={self.review.token}"


def loopback_peer_uid(sock: socket.socket) -> int | None:
    """The uid that owns the other end of a loopback TCP connection (Linux: /proc/net/tcp), or
    None when it cannot be told."""
    try:
        host, port = sock.getpeername()[:2]
        want = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if fields[1] == want:  # the client's own socket: its local address is our peer's
                    return int(fields[7])
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return None


def open_source(socket_path: str, config: Any | None) -> LiveSource | StoreSource:
    """The daemon at ``socket_path`` when it answers, else the store of ``config`` (read-only).

    Raises:
        DaemonNotRunning: no daemon answers and there is no config to find the store.
    """
    client = Client(socket_path, timeout=120.0)
    try:
        client.get("/v1/status")
        return LiveSource(client, config.report_dir if config is not None else None)
    except DaemonNotRunning as exc:
        if config is None:
            raise DaemonNotRunning(f"{exc}; to look at a store without a daemon (read-only), pass --config "
                                   "FILE or --store-dir DIR") from None
        if not os.path.isfile(os.path.join(config.store_dir, "data.mdb")):
            raise DaemonNotRunning(f"no daemon answers at {socket_path} and there is no store at "
                                   f"{config.store_dir}: start the daemon or pass --config/--store-dir") from None
        return StoreSource(config)
