"""The ``/v1`` endpoints: request → daemon call → JSON. Transport lives in :mod:`.server`."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from dedupd.daemon.encoder import bytes_digest, encode_job, file_digest
from dedupd.daemon.pipeline import encode_spec
from dedupd.daemon.reports import build_groups
from dedupd.daemon.server import HttpError, peer_credentials
from dedupd.daemon.walk import root_of

if TYPE_CHECKING:
    from dedupd.daemon.service import Daemon

logger = logging.getLogger(__name__)


def _matches(items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [{"path": p, **ev.as_dict()} for p, ev in items]


class Router:
    """Maps (method, path) to handlers; each returns ``(status, json body)``."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.routes = {
            ("GET", "/v1/status"): self.status,
            ("POST", "/v1/query"): self.query,
            ("GET", "/v1/duplicates"): self.duplicates,
            ("GET", "/v1/groups"): self.groups,
            ("POST", "/v1/rescan"): self.rescan,
            ("POST", "/v1/reload"): self.reload,
            ("GET", "/v1/quarantine"): self.quarantine,
            ("POST", "/v1/restore"): self.restore,
        }

    def __call__(self, method: str, path: str, query: dict[str, str], body: bytes, handler: Any) -> tuple[int, Any]:
        fn = self.routes.get((method, path.rstrip("/") or "/"))
        if fn is None:
            if any(p == path for _, p in self.routes):
                raise HttpError(405, "method not allowed", f"{method} is not supported on {path}")
            raise HttpError(404, "not found", f"no endpoint {path}; see `dedupd --help` for the API")
        if method == "POST" and path not in ("/v1/query",):
            cred = peer_credentials(handler.connection)
            logger.info("socket request %s %s from pid=%s uid=%s", method, path,
                        cred[0] if cred else "?", cred[1] if cred else "?")
        return fn(query=query, body=body, handler=handler)

    # -- endpoints -----------------------------------------------------------------------------

    def status(self, **_: Any) -> tuple[int, Any]:
        return 200, self.daemon.status()

    def _inside_roots(self, path: str) -> str:
        """Resolved path when it lies inside a watched root; 403 otherwise (no existence leak)."""
        if not isinstance(path, str) or not path:
            raise HttpError(400, "bad request", "'path' must be a non-empty string")
        real = os.path.realpath(path)
        if root_of(real, self.daemon.config) is None or self.daemon.config.in_excluded_dir(real):
            raise HttpError(403, "forbidden", "only files inside the watched roots can be queried by path; "
                                              "send the image bytes instead (dedupd query does)")
        return real

    def query(self, body: bytes, handler: Any, **_: Any) -> tuple[int, Any]:
        ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/json":
            data = handler._json(body)
            path = self._inside_roots(data.get("path"))
            if path in self.daemon.index.files:
                return 200, {"path": path, "indexed": True, "duplicates": _matches(self.daemon.index.duplicates_of(path))}
            if not os.path.isfile(path):
                raise HttpError(404, "not found", f"no file {path}")
            try:
                digest = file_digest(path)
            except OSError as exc:
                raise HttpError(422, "unreadable", f"cannot read {path}: {exc.strerror}") from None
            return 200, {"path": path, "indexed": False, **self._query_file(path, digest)}
        if not body:
            raise HttpError(400, "bad request", "send image bytes, or JSON {\"path\": ...} with "
                                                "Content-Type: application/json")
        store_tmp = os.path.join(self.daemon.config.store_dir, "tmp")
        os.makedirs(store_tmp, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=store_tmp, prefix="query-") as f:
            f.write(body)
            f.flush()
            return 200, {"indexed": False, **self._query_file(f.name, bytes_digest(body))}

    def _query_file(self, path: str, digest: bytes) -> dict[str, Any]:
        res = encode_job(path, encode_spec(self.daemon.config))
        if not res.ok:
            raise HttpError(422, "unreadable image", res.reason or "cannot decode")
        vec = np.frombuffer(res.vector, dtype=np.float32) if res.vector else None
        found = self.daemon.index.query(res.hashes or {}, vec, digest)
        return {"width": res.width, "height": res.height, "format": res.format,
                "hashes": {k: f"{v:016x}" for k, v in (res.hashes or {}).items()},
                "duplicates": _matches(found)}

    def duplicates(self, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        path = self._inside_roots(query.get("path", ""))
        if path not in self.daemon.index.files:
            raise HttpError(404, "not indexed", f"{path} is not in the index (not an image, unreadable, "
                                                "excluded, or not processed yet)")
        return 200, {"path": path, "duplicates": _matches(self.daemon.index.duplicates_of(path))}

    def groups(self, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        try:
            offset = int(query.get("offset", 0))
            limit = int(query.get("limit", 100))
        except ValueError:
            raise HttpError(400, "bad request", "offset and limit must be integers") from None
        if offset < 0 or not 1 <= limit <= 10000:
            raise HttpError(400, "bad request", "offset >= 0 and 1 <= limit <= 10000")
        groups = build_groups(self.daemon.index, self.daemon.config.keep)
        return 200, {"total": len(groups), "offset": offset, "limit": limit, "groups": groups[offset:offset + limit]}

    def rescan(self, **_: Any) -> tuple[int, Any]:
        self.daemon.request_rescan()
        return 202, {"ok": True, "detail": "rescan started"}

    def reload(self, **_: Any) -> tuple[int, Any]:
        self.daemon.request_reload()
        return 202, {"ok": True, "detail": "reload requested"}

    def quarantine(self, **_: Any) -> tuple[int, Any]:
        assert self.daemon.store is not None
        entries = [
            {"id": e.id, "origin": e.origin, "dest": e.dest, "keeper": e.keeper, "reason": e.reason,
             "state": e.state, "created_at": e.created_at, "updated_at": e.updated_at}
            for e in self.daemon.store.iter_quarantine()
        ]
        return 200, {"entries": entries}

    def restore(self, body: bytes, handler: Any, **_: Any) -> tuple[int, Any]:
        data = handler._json(body)
        if data.get("all") is True:
            paths = None
        elif isinstance(data.get("paths"), list) and data["paths"] and all(isinstance(p, str) for p in data["paths"]):
            paths = data["paths"]
        else:
            raise HttpError(400, "bad request", 'send {"all": true} or {"paths": ["/path", ...]}')
        results = self.daemon.restore(paths)
        return 200, {"results": results, "restored": sum(r["ok"] for r in results)}
