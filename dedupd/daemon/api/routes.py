"""The ``/v1`` endpoints: request → daemon call → JSON. Transport lives in :mod:`.transport`;
the daemon is seen through :class:`.view.DaemonView`.

=======  ========================  ==========================================================
GET      /v1/status                state and counters (``dedupd status --json`` prints it)
POST     /v1/query                 image bytes in the body, or JSON ``{"path": ...}`` of a
                                   watched file: its duplicates among indexed files (the
                                   image is not added to the index)
GET      /v1/duplicates?path=P     duplicates of an indexed file
GET      /v1/groups?offset&limit   duplicate groups, paginated (cached per index generation)
POST     /v1/rescan                walk the roots again (202)
POST     /v1/reload                re-read the config, like SIGHUP; 200 with what changed, 422 if rejected
GET      /v1/quarantine[?state=]   the quarantine manifest
POST     /v1/restore               ``{"all": true}`` or ``{"paths": [...]}``
GET      /v1/ignore                the "not a duplicate" sets (by content; paths named, and now)
POST     /v1/ignore                ``{"paths": [...]}``: these files are not duplicates (by content)
POST     /v1/ignore/remove         ``{"ids": [...]}`` or ``{"paths": [...]}``: forget such sets
GET      /v1/keep                  the pinned copies ("keep this one")
POST     /v1/keep                  ``{"path": P}``: keep P's content whenever it is in a group
POST     /v1/keep/remove           ``{"paths": [...]}``: forget those pins
POST     /v1/quarantine            ``{"paths": [...]}``: quarantine these direct duplicates now
                                   (whatever the policy; needs ``quarantine_dir``)
=======  ========================  ==========================================================

A path given to the daemon (query by path, duplicates) must name a file the daemon watches: its
real path (symlinks resolved, then re-checked on the opened file descriptor) lies inside a root
and is not excluded. Anything else is 403 *before* the path is looked at, so the answer is the
same whether or not the file exists. Clients that want to ask about any other file send its bytes.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from dedupd.core.review import distinct_contents
from dedupd.daemon.api.transport import HttpError, Request, limits_from_env
from dedupd.daemon.api.view import DaemonView
from dedupd.daemon.config import Config
from dedupd.daemon.config.values import path_inside
from dedupd.daemon.encoder import EncodeResult, bytes_digest
from dedupd.daemon.policy import RestoreTimeout
from dedupd.daemon.store.manifest import QUARANTINE_STATES
from dedupd.daemon.workers import DecodeBusy
from dedupd.reports.groups import build_groups

if TYPE_CHECKING:
    from dedupd.core.review import Review
    from dedupd.daemon.api.view import QuarantineListing
    from dedupd.daemon.encoder import EncodeResult
    from dedupd.daemon.index import Evidence, MatchIndex

logger = logging.getLogger(__name__)

MAX_GROUPS_PAGE = 10000
RELOAD_WAIT_S = 30.0  # a reload is applied by the main loop; the request waits for its outcome
_PROC_FD = "/proc/self/fd"
_WATCHED_ONLY = "only files the daemon watches (inside its roots, not excluded) can be "
#: the 403s for a question about a file (query, duplicates) and for a decision (keep, ignore)
_FORBIDDEN = _WATCHED_ONLY + "named by path; send the image bytes instead (`dedupd query FILE` does)"
_FORBIDDEN_DECISION = _WATCHED_ONLY + "kept or marked not duplicates: name the copy inside a root"


def _matches(items: list[tuple[str, Evidence]]) -> list[dict[str, Any]]:
    return [{"path": p, **ev.as_dict()} for p, ev in items]


def _hex_hashes(hashes: dict[str, int] | None) -> dict[str, str]:
    return {k: f"{v:016x}" for k, v in (hashes or {}).items()}


def warm_up(daemon: DaemonView) -> None:
    """Start the thumbnail decoders and a query decoder (imports, codec set-up, the CNN model if any:
    0.5 s to several seconds) so neither the first report nor the first query pays for it. Nothing
    is decoded in this process: a small JPEG made here goes through :meth:`Daemon.encode_upload`."""
    from PIL import Image

    from dedupd.reports.thumbnails import start_workers as start_thumbnail_workers

    start_thumbnail_workers()
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 60, 30)).save(buf, "JPEG")
    try:
        res = daemon.encode_upload(buf.getvalue())
    except Exception:
        logger.debug("socket warm-up failed", exc_info=True)
        return
    if not res.ok:
        logger.debug("socket warm-up failed: %s", res.reason)


class _GroupsCache:
    """Built groups, rebuilt only when the index changed (its ``generation``) or the keep-rule did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._groups: list[dict[str, Any]] = []
        self.builds = 0

    def get(self, index: MatchIndex, config: Config, review: Review | None = None) -> tuple[list[dict[str, Any]], int]:
        with self._lock:  # one builder at a time; concurrent pages wait and reuse its result
            generation = getattr(index, "generation", None)
            roots = getattr(config, "roots", ())  # reference roots change the kept copies
            key = (id(index), generation, config.keep, roots, review)
            if generation is None or key != self._key:
                with index.lock:
                    generation = getattr(index, "generation", None)
                    groups = build_groups(index, config.keep, review, config if roots else None)
                self._key = (id(index), generation, config.keep, roots, review) \
                    if generation is not None else None
                self._groups = groups
                self.builds += 1
            return self._groups, -1 if generation is None else generation


class Router:
    """Maps (method, path) to handlers; each returns ``(status, json body)``."""

    STATE_CHANGING = frozenset({"/v1/rescan", "/v1/reload", "/v1/restore", "/v1/quarantine", "/v1/ignore",
                                "/v1/ignore/remove", "/v1/keep", "/v1/keep/remove"})

    def __init__(self, daemon: DaemonView, max_upload: int | None = None) -> None:
        self.daemon = daemon
        self.max_upload = limits_from_env().max_upload if max_upload is None else max_upload
        self.routes: dict[tuple[str, str], Callable[[Request], tuple[int, Any]]] = {
            ("GET", "/v1/status"): self.status,
            ("POST", "/v1/query"): self.query,
            ("GET", "/v1/duplicates"): self.duplicates,
            ("GET", "/v1/groups"): self.groups,
            ("POST", "/v1/rescan"): self.rescan,
            ("POST", "/v1/reload"): self.reload,
            ("GET", "/v1/quarantine"): self.quarantine,
            ("POST", "/v1/restore"): self.restore,
            ("GET", "/v1/ignore"): self.ignored,
            ("POST", "/v1/ignore"): self.ignore,
            ("POST", "/v1/ignore/remove"): self.unignore,
            ("GET", "/v1/keep"): self.kept,
            ("POST", "/v1/keep"): self.keep,
            ("POST", "/v1/keep/remove"): self.unkeep,
            ("POST", "/v1/quarantine"): self.quarantine_selected,
        }
        self._groups_cache = _GroupsCache()

    def __call__(self, request: Request) -> tuple[int, Any]:
        method = request.method
        path = request.path.rstrip("/") or "/"
        fn = self.routes.get(("GET" if method == "HEAD" else method, path))  # HEAD: GET without the body
        if fn is None:
            allowed = sorted(m for m, p in self.routes if p == path)
            if allowed:
                raise HttpError(405, "method not allowed", f"{method} is not supported on {path}; use "
                                f"{' or '.join(allowed)}", headers={"Allow": ", ".join(allowed)})
            endpoints = ", ".join(f"{m} {p}" for m, p in self.routes)
            raise HttpError(404, "not found", f"no endpoint {path}; the API has: {endpoints}")
        if path in self.STATE_CHANGING and method == "POST":
            pid, uid, gid = request.peer if request.peer else (None, None, None)
            logger.info("socket request %s %s from pid=%s uid=%s gid=%s", method, path, pid, uid, gid,
                        extra={"endpoint": path, "peer_pid": pid, "peer_uid": uid, "peer_gid": gid})
        return fn(request)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _json(body: bytes, *, required: bool = False) -> dict[str, Any]:
        if not body.strip():
            if required:
                raise HttpError(400, "bad request", "this endpoint needs a JSON object in the body")
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise HttpError(400, "bad json", f"the request body is not valid JSON ({type(exc).__name__}: "
                                             f"{str(exc)[:200]})") from None
        if not isinstance(data, dict):
            raise HttpError(400, "bad json", "the request body must be a JSON object")
        return data

    def _watched(self, real: str) -> bool:
        """True when the resolved path ``real`` is a file the daemon watches (no I/O on ``real``)."""
        cfg = self.daemon.config
        if not cfg.wants_file(real):
            return False
        if any(path_inside(os.path.realpath(d), real) for d in cfg.excluded_dirs()):
            return False
        for root in cfg.roots:
            base = os.path.realpath(root.path)
            if real == base or not path_inside(base, real):
                continue
            rel = real[len(base.rstrip("/")) + 1:]
            if not root.recursive and "/" in rel:
                continue
            parent = os.path.dirname(real)
            while len(parent) > len(base):
                if cfg.skips_dir(parent):
                    break
                parent = os.path.dirname(parent)
            else:
                return True
        return False

    def _resolve(self, raw: object, forbidden: str = _FORBIDDEN) -> tuple[str, str]:
        """``(normalised path, real path)`` of a watched file named by a client; 400/403 (``forbidden``) otherwise."""
        if not isinstance(raw, str) or not raw:
            raise HttpError(400, "bad request", "'path' must be a non-empty string")
        if "\0" in raw or not os.path.isabs(raw):
            raise HttpError(400, "bad request", "'path' must be an absolute path (the daemon has no "
                                                "working directory of yours)")
        norm = os.path.normpath(raw)
        try:
            real = os.path.realpath(norm)
        except OSError:  # a link along the path changed while it was resolved
            raise HttpError(404, "not found", f"no file {norm} (a folder on its path is changing)") from None
        if not self._watched(real):
            raise HttpError(403, "forbidden", forbidden)
        return norm, real

    def _indexed_key(self, norm: str, real: str) -> str | None:
        files = self.daemon.index.files
        return norm if norm in files else real if real in files else None

    def _open_watched(self, real: str) -> tuple[int, os.stat_result]:
        """Open ``real`` read-only without following a last-moment symlink, and re-check where it is."""
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(real, flags)
        except (FileNotFoundError, NotADirectoryError):
            raise HttpError(404, "not found", f"no file {real}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise HttpError(403, "forbidden", _FORBIDDEN) from None
            raise HttpError(422, "unreadable", f"the daemon cannot open {real}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            try:  # where the opened file really is (a folder may have been swapped for a symlink)
                actual = os.readlink(f"{_PROC_FD}/{fd}")
            except OSError:
                actual = real
            if actual != real and not self._watched(actual):
                raise HttpError(403, "forbidden", _FORBIDDEN)
            if not stat.S_ISREG(st.st_mode):
                raise HttpError(422, "not a regular file", f"{real} is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    # -- endpoints -----------------------------------------------------------------------------

    def status(self, _request: Request) -> tuple[int, Any]:
        return 200, self.daemon.status()

    def query(self, request: Request) -> tuple[int, Any]:
        body = request.body
        ctype = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/json" or body[:64].lstrip()[:1] == b"{":  # no image format starts with '{'
            return self._query_path(self._json(body, required=True), self.max_upload)
        if not body:
            raise HttpError(400, "bad request", "send the image bytes as the body (curl --data-binary @FILE), "
                                                'or JSON {"path": "/watched/file"} with Content-Type: '
                                                "application/json")
        return 200, {"indexed": False, **self._found(self._encode(body), bytes_digest(body))}

    def _query_path(self, data: dict[str, Any], max_bytes: int | None) -> tuple[int, Any]:
        unknown = set(data) - {"path"}
        if unknown:
            raise HttpError(400, "bad request", f"unknown field(s) {sorted(unknown)}; send {{\"path\": ...}}")
        norm, real = self._resolve(data.get("path"))
        fd, st = self._open_watched(real)
        try:
            key = self._indexed_key(norm, real)
            info = self.daemon.index.files.get(key) if key else None
            if key is not None and info is not None and (info.size, info.mtime_ns) == (st.st_size, st.st_mtime_ns):
                return 200, {"path": key, "indexed": True,
                             "duplicates": _matches(self.daemon.index.duplicates_of(key))}
            if max_bytes is not None and st.st_size > max_bytes:
                raise HttpError(413, "file too large", f"{real} has {st.st_size} bytes; files named by path are "
                                f"decoded like uploads, at most {max_bytes} bytes (DEDUPD_MAX_UPLOAD_BYTES)")
            content = self._fd_read(fd, real)  # from the checked descriptor: the worker gets these bytes
        finally:
            os.close(fd)
        return 200, {"path": real, "indexed": False, **self._found(self._encode(content), bytes_digest(content))}

    @staticmethod
    def _fd_read(fd: int, name: str) -> bytes:
        chunks = []
        offset = 0
        try:
            while chunk := os.pread(fd, 1 << 20, offset):
                chunks.append(chunk)
                offset += len(chunk)
        except OSError as exc:
            raise HttpError(422, "unreadable", f"cannot read {name}: {exc.strerror}") from None
        return b"".join(chunks)

    def _encode(self, data: bytes) -> EncodeResult:
        """Decode in a query worker process (the daemon process never decodes client input)."""
        try:
            return self.daemon.encode_upload(data)
        except DecodeBusy as exc:
            raise HttpError(503, "busy", str(exc), headers={"Retry-After": "5"}) from None

    def _found(self, res: EncodeResult, digest: bytes) -> dict[str, Any]:
        if res.too_large:
            raise HttpError(413, "image too large", res.reason or "the image has too many pixels")
        if not res.ok:
            raise HttpError(422, "unreadable image", res.reason or "cannot decode")
        vec = np.frombuffer(res.vector, dtype=np.float32) if res.vector else None
        found = self.daemon.index.query(res.hashes or {}, vec, digest)
        return {"width": res.width, "height": res.height, "format": res.format,
                "hashes": _hex_hashes(res.hashes), "duplicates": _matches(found)}

    def duplicates(self, request: Request) -> tuple[int, Any]:
        query = request.query
        if "path" not in query:
            raise HttpError(400, "bad request", "give the file as ?path=/absolute/path (URL-encoded)")
        norm, real = self._resolve(query["path"])
        key = self._indexed_key(norm, real)
        if key is None:
            raise self._not_indexed(norm)
        return 200, {"path": key, "duplicates": _matches(self.daemon.index.duplicates_of(key))}

    def groups(self, request: Request) -> tuple[int, Any]:
        query = request.query
        raw = (query.get("offset", "0"), query.get("limit", "100"))
        if not all(v.isascii() and v.isdigit() for v in raw):  # int() would take " 1", "1_0", "+1"
            raise HttpError(400, "bad request", "offset and limit must be integers")
        offset, limit = (int(v) for v in raw)
        if offset < 0 or not 1 <= limit <= MAX_GROUPS_PAGE:
            raise HttpError(400, "bad request", f"need offset >= 0 and 1 <= limit <= {MAX_GROUPS_PAGE}")
        store = self.daemon.store
        review = store.review() if store is not None else None
        groups, generation = self._groups_cache.get(self.daemon.index, self.daemon.config, review)
        return 200, {"total": len(groups), "offset": offset, "limit": limit, "generation": generation,
                     "groups": groups[offset:offset + limit]}

    def rescan(self, _request: Request) -> tuple[int, Any]:
        self.daemon.request_rescan()
        return 202, {"ok": True, "detail": "rescan started"}

    def reload(self, _request: Request) -> tuple[int, Any]:
        outcome = self.daemon.request_reload(wait=RELOAD_WAIT_S) or {}
        if not outcome.get("ok"):
            return 422, {"ok": False, "error": "reload rejected", "detail": outcome.get("error", "")}
        changed, restart = outcome.get("changed", []), outcome.get("restart_needed", [])
        detail = "reloaded: " + (", ".join(changed) + " changed" if changed else "nothing changed")
        if restart:
            detail += f"; {', '.join(restart)} take(s) effect after a restart"
        return 200, {"ok": True, "detail": detail, "changed": changed, "restart_needed": restart}

    def quarantine(self, request: Request) -> tuple[int, Any]:
        state = request.query.get("state")
        if state is not None and state not in QUARANTINE_STATES:
            raise HttpError(400, "bad request", f"state must be one of {', '.join(QUARANTINE_STATES)}")
        store = self.daemon.store
        if store is None:
            raise HttpError(503, "unavailable", "the daemon is shutting down")
        entries = [e.as_dict() for e in store.iter_quarantine(state)]
        return 200, {"entries": entries, "total": len(entries)}

    def restore(self, request: Request) -> tuple[int, Any]:
        data = self._json(request.body, required=True)
        paths = data.get("paths")
        if data.get("all") is True and paths is None:
            wanted = None
        elif (data.get("all") in (None, False) and isinstance(paths, list) and paths
              and all(isinstance(p, str) and os.path.isabs(p) and "\0" not in p for p in paths)):
            wanted = [os.path.normpath(p) for p in paths]
        else:
            raise HttpError(400, "bad request", 'send {"all": true} or {"paths": ["/absolute/path", ...]}')
        try:
            results = self.daemon.restore(wanted)
        except RestoreTimeout as exc:
            raise HttpError(503, "restore timed out", str(exc)) from None
        restored = sum(1 for r in results if r["ok"])
        logger.info("restore via socket: %d restored, %d failed", restored, len(results) - restored)
        return 200, {"results": results, "restored": restored, "failed": len(results) - restored}

    # -- the user's decisions ------------------------------------------------------------------

    def _store(self) -> QuarantineListing:
        store = self.daemon.store
        if store is None:
            raise HttpError(503, "unavailable", "the daemon is shutting down")
        return store

    def _paths(self, data: dict[str, Any], *, allowed: frozenset[str] = frozenset({"paths"})) -> list[str]:
        unknown = set(data) - allowed
        paths = data.get("paths")
        if unknown or not isinstance(paths, list) or not paths:
            raise HttpError(400, "bad request", 'send {"paths": ["/absolute/path", ...]}'
                            + (f"; unknown field(s) {sorted(unknown)}" if unknown else ""))
        return paths

    def _content_of(self, raw: object) -> tuple[str, bytes]:
        """``(indexed path, digest)`` of a watched, indexed file named by a client (400/403/404)."""
        norm, real = self._resolve(raw, _FORBIDDEN_DECISION)
        index = self.daemon.index
        with index.lock:
            key = self._indexed_key(norm, real)
            info = index.files.get(key) if key is not None else None
        if key is None or info is None:
            raise self._not_indexed(norm, "; decisions are recorded for indexed files")
        return key, info.digest

    def _not_indexed(self, norm: str, why: str = "") -> HttpError:
        """404 for a file the index does not have, or 409 naming the way back when it is in quarantine."""
        store = self.daemon.store
        moved = None if store is None else next(
            (e for e in store.iter_quarantine("moved") if e.origin == norm), None)
        if moved is not None:
            return HttpError(409, "quarantined", f"{norm} was moved to the quarantine ({moved.dest}) as a duplicate "
                                                 f"of {moved.keeper}; restore it first (`dedupd restore {norm}`), "
                                                 "then ask again")
        return HttpError(404, "not indexed", f"{norm} is not in the index (missing, not an image, unreadable, "
                                             f"or not processed yet){why}")

    def _current(self, digests: Any) -> list[str]:
        """The indexed paths that have one of ``digests`` now (a decision follows renames)."""
        index = self.daemon.index
        wanted = set(digests)
        with index.lock:
            return sorted(p for p, info in index.files.items() if info.digest in wanted)

    def ignored(self, _request: Request) -> tuple[int, Any]:
        sets = [{"id": d.id, "paths": list(d.paths), "current": self._current(d.digests),
                 "digests": sorted(x.hex() for x in d.digests), "created_at": d.created_at}
                for d in self._store().distinct_sets()]
        return 200, {"sets": sets, "total": len(sets)}

    def ignore(self, request: Request) -> tuple[int, Any]:
        named = [self._content_of(p) for p in self._paths(self._json(request.body, required=True))]
        try:
            by_digest = distinct_contents(named)
        except ValueError as exc:
            raise HttpError(422, "not distinct", str(exc)) from None
        sid = self._store().add_distinct(by_digest, [p for p, _ in named])
        self.daemon.decisions_changed()
        logger.info("not duplicates (set %d): %s", sid, ", ".join(p for p, _ in named))
        return 200, {"ok": True, "id": sid, "paths": [p for p, _ in named],
                     "detail": f"recorded: {len(named)} files are not duplicates of each other (set {sid})"}

    def unignore(self, request: Request) -> tuple[int, Any]:
        data = self._json(request.body, required=True)
        store = self._store()
        ids = data.get("ids")
        if "ids" in data:
            if set(data) != {"ids"} or not isinstance(ids, list) or not ids or not all(
                    isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**63 for i in ids):
                raise HttpError(400, "bad request", 'send {"ids": [1, ...]} or {"paths": ["/absolute/path", ...]}')
            wanted = list(ids)
        else:
            digests = {self._content_of(p)[1] for p in self._paths(data)}
            wanted = [d.id for d in store.distinct_sets() if d.digests & digests]
        removed = store.remove_distinct(wanted)
        if removed:
            self.daemon.decisions_changed()
        return 200, {"ok": True, "removed": removed,
                     "detail": f"{len(removed)} set(s) forgotten" if removed else "no such set"}

    def kept(self, _request: Request) -> tuple[int, Any]:
        pins = [{"path": p.path, "current": self._current([p.digest]), "digest": p.digest.hex(),
                 "pinned_at": p.pinned_at} for p in self._store().pins()]
        return 200, {"pins": pins, "total": len(pins)}

    def keep(self, request: Request) -> tuple[int, Any]:
        data = self._json(request.body, required=True)
        if set(data) != {"path"}:
            raise HttpError(400, "bad request", 'send {"path": "/absolute/path"}')
        path, digest = self._content_of(data["path"])
        self._store().pin(digest, path)
        self.daemon.decisions_changed()
        logger.info("keep %s (pinned by a user)", path)
        return 200, {"ok": True, "path": path, "detail": f"{path} is kept whenever it is in a group"}

    def unkeep(self, request: Request) -> tuple[int, Any]:
        digests = [self._content_of(p)[1] for p in self._paths(self._json(request.body, required=True))]
        removed = self._store().unpin(digests)
        if removed:
            self.daemon.decisions_changed()
        return 200, {"ok": True, "removed": len(removed),
                     "detail": f"{len(removed)} pin(s) removed" if removed else "not pinned"}
    def quarantine_selected(self, request: Request) -> tuple[int, Any]:
        data = self._json(request.body, required=True)
        paths = data.get("paths")
        if set(data) != {"paths"} or not (isinstance(paths, list) and paths and all(
                isinstance(p, str) and os.path.isabs(p) and "\0" not in p for p in paths)):
            raise HttpError(400, "bad request", 'send {"paths": ["/absolute/path", ...]}')
        if self.daemon.config.quarantine_dir is None:
            raise HttpError(409, "no quarantine folder", "set quarantine_dir in the config (on the same "
                                                          "filesystem as the photos), then `dedupd reload`")
        try:
            results = self.daemon.quarantine_selected([os.path.normpath(p) for p in paths])
        except RestoreTimeout as exc:
            raise HttpError(503, "quarantine timed out", str(exc)) from None
        moved = sum(1 for r in results if r["ok"])
        logger.info("quarantine via socket: %d quarantined, %d refused", moved, len(results) - moved)
        return 200, {"results": results, "quarantined": moved, "failed": len(results) - moved}
