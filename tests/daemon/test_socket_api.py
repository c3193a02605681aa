"""The socket API against a real ``dedupd run`` subprocess and its real socket.

Requests go through ``curl --unix-socket`` (skipped, with the reason, only when curl is missing),
the stdlib client (:mod:`dedupd.client`) and raw bytes on the socket. Every endpoint, every error
path, the socket's ownership and permissions, and slow or malformed clients.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
import types
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from dedupd.client import ApiError, Client
from dedupd.daemon.api.routes import _GroupsCache
from dedupd.daemon.config import KeepRule
from dedupd.daemon.index import FileInfo, MatchIndex, Matching
from tests.daemon.helpers import api
from tests.daemon.socket_helpers import (
    CURL,
    SocketDaemon,
    near_duplicate,
    needs_curl,
    parse_response,
    raw_exchange,
    timed_exchange,
    wait_for,
)

MAX_UPLOAD = 200_000
REQUEST_TIMEOUT = 2.0
STATUS_FIELDS = {"state", "files", "encoded", "decoded", "unreadable", "queued", "groups", "reconcile_progress",
                 "uptime_s", "store_bytes"}
URL = "http://localhost"


class Lib(types.SimpleNamespace):
    d: SocketDaemon
    root: Path
    outside: Path
    base: Path


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path):
    """A daemon over a small library with an exact copy, a near duplicate, symlinks out of the root,
    hidden and non-image files; new files are not picked up for a minute (settle_ms), so the
    library stays as started unless a test asks for a rescan."""
    base = tmp_path_factory.mktemp("sockapi")
    bases = corpus_dir / "base"
    root, outside = base / "photos", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for i in range(6):
        shutil.copyfile(bases / f"b000{i}.jpg", root / f"b000{i}.jpg")
    shutil.copyfile(bases / "b0000.jpg", root / "sub" / "copy.jpg")
    near_duplicate(bases / "b0001.jpg", root / "sub" / "near1.jpg")
    shutil.copyfile(bases / "b0002.jpg", outside / "secret.jpg")
    (root / "fake.jpg").write_bytes(b"this is not an image\n" * 10)
    (root / "notes.txt").write_text("not watched")
    shutil.copyfile(bases / "b0003.jpg", root / ".hidden.jpg")
    (root / "folder.jpg").mkdir()
    os.symlink(outside / "secret.jpg", root / "link_out.jpg")
    os.symlink(outside / "missing.jpg", root / "link_missing.jpg")
    os.symlink(outside, root / "linkdir")
    d = SocketDaemon(base, [root], name="api", settle_ms=60_000,
                     server_env={"DEDUPD_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
                                 "DEDUPD_REQUEST_TIMEOUT_S": str(REQUEST_TIMEOUT)})
    try:
        d.start()
        d.wait_quiet()
        yield Lib(d=d, root=root, outside=outside, base=base, bases=bases)
        d.stop()
        assert not d.errors_in_log(), d.log_tail()
    finally:
        d.close()


def _match(result: dict[str, Any], path: Path) -> dict[str, Any] | None:
    return next((m for m in result["duplicates"] if m["path"] == str(path)), None)


# -- status -------------------------------------------------------------------------------------


def test_status_has_the_documented_fields(lib: Lib) -> None:
    code, s = api(lib.d.socket_path, "GET", "/v1/status")
    assert code == 200
    assert STATUS_FIELDS <= set(s), STATUS_FIELDS - set(s)
    assert s["state"] == "watching"
    # b0000..b0005, sub/copy, sub/near1 and the symlink to a file (the walker follows file links)
    assert s["files"] >= 8 and s["unreadable"] >= 1 and s["queued"] == 0


@needs_curl
def test_status_through_curl_matches_cli_json(lib: Lib) -> None:
    code, s = lib.d.curl(f"{URL}/v1/status")
    assert code == 200 and STATUS_FIELDS <= set(s)
    out = lib.d.run_cli("status", "--json")
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    assert set(cli) == set(s)
    assert {k: cli[k] for k in ("state", "files", "encoded", "groups")} == \
           {k: s[k] for k in ("state", "files", "encoded", "groups")}


def test_socket_file_is_a_socket_with_default_mode(lib: Lib) -> None:
    st = os.lstat(lib.d.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert st.st_uid == os.geteuid()


# -- query by bytes -----------------------------------------------------------------------------


@needs_curl
def test_query_bytes_finds_near_duplicate_with_score_without_indexing_it(lib: Lib) -> None:
    near = near_duplicate(lib.bases / "b0004.jpg", lib.outside / "near4.jpg")
    before = lib.d.status()["files"]
    code, res = lib.d.curl("--data-binary", f"@{near}", "-H", "Content-Type: image/jpeg", f"{URL}/v1/query")
    assert code == 200, res
    m = _match(res, lib.root / "b0004.jpg")
    assert m is not None, res
    assert m["method"] == "phash" and 0 <= m["distance"] <= 10 and "phash" in m["scores"]
    assert res["indexed"] is False and len(res["hashes"]["phash"]) == 16
    assert lib.d.status()["files"] == before  # a query never adds to the index


def test_query_bytes_of_an_indexed_file_reports_exact_copies_first(lib: Lib) -> None:
    res = Client(lib.d.socket_path).query_bytes((lib.root / "b0000.jpg").read_bytes())
    first = res["duplicates"][:2]
    assert {m["path"] for m in first} == {str(lib.root / "b0000.jpg"), str(lib.root / "sub" / "copy.jpg")}
    assert all(m["method"] == "exact" and m["distance"] == 0 for m in first)


def test_query_bytes_of_an_unrelated_image_finds_nothing(lib: Lib) -> None:
    res = Client(lib.d.socket_path).query_bytes(near_duplicate(lib.bases / "b0150.jpg",
                                                               lib.outside / "n150.jpg").read_bytes())
    assert res["duplicates"] == []


def test_query_bytes_that_are_not_an_image_is_422(lib: Lib) -> None:
    with pytest.raises(ApiError) as e:
        Client(lib.d.socket_path).query_bytes(b"GIF89a but not really" * 20)
    assert e.value.status == 422 and e.value.error == "unreadable image"


# -- query by path ------------------------------------------------------------------------------


def test_query_by_path_of_an_indexed_file(lib: Lib) -> None:
    code, res = api(lib.d.socket_path, "POST", "/v1/query", {"path": str(lib.root / "b0000.jpg")})
    assert code == 200, res
    assert res["indexed"] is True
    assert [m["path"] for m in res["duplicates"]] == [str(lib.root / "sub" / "copy.jpg")]


def test_query_by_path_of_a_watched_file_not_indexed_yet(lib: Lib) -> None:
    fresh = near_duplicate(lib.bases / "b0005.jpg", lib.root / "fresh.jpg")  # settle_ms is 60 s: not indexed
    code, res = api(lib.d.socket_path, "POST", "/v1/query", {"path": str(fresh)})
    assert code == 200, res
    assert res["indexed"] is False and res["path"] == str(fresh)
    assert _match(res, lib.root / "b0005.jpg") is not None


@needs_curl
def test_query_by_path_through_curl_without_content_type(lib: Lib) -> None:
    # curl -d sends application/x-www-form-urlencoded; a JSON object body is still taken as JSON
    code, res = lib.d.curl("-d", json.dumps({"path": str(lib.root / "b0001.jpg")}), f"{URL}/v1/query")
    assert code == 200 and res["indexed"] is True
    assert _match(res, lib.root / "sub" / "near1.jpg") is not None


def test_query_by_path_outside_the_roots_is_403_and_leaks_nothing(lib: Lib) -> None:
    store, reports = lib.d.config["store_dir"], lib.d.config["report_dir"]
    refused = [
        lib.outside / "secret.jpg",  # exists, outside
        lib.outside / "missing.jpg",  # does not exist, outside
        Path("/etc/passwd"), Path("/etc/no-such-file.jpg"), Path("/proc/self/environ"),
        lib.root / "link_out.jpg",  # symlink inside a root to an existing file outside
        lib.root / "link_missing.jpg",  # dangling symlink inside a root pointing outside
        lib.root / "linkdir" / "secret.jpg",  # symlinked folder inside a root pointing outside
        lib.root / "linkdir" / "missing.jpg",
        Path(f"{lib.root}/../outside/secret.jpg"),  # traversal
        Path(f"{lib.root}/sub/../../outside/missing.jpg"),
        lib.root / ".hidden.jpg",  # excluded by the default patterns
        lib.root / "notes.txt",  # not an image name
        Path(store) / "data.mdb", Path(reports) / "groups.json",
        lib.root,  # the root folder itself
    ]
    bodies = set()
    for p in refused:
        code, res = api(lib.d.socket_path, "POST", "/v1/query", {"path": str(p)})
        assert code == 403, (p, res)
        bodies.add(json.dumps(res, sort_keys=True))
        code, res = api(lib.d.socket_path, "GET", f"/v1/duplicates?path={quote(str(p))}")
        assert code == 403, (p, res)
        bodies.add(json.dumps(res, sort_keys=True))
    assert len(bodies) == 1, bodies  # identical answers: existence is not revealed
    assert "secret" not in bodies.pop()


@needs_curl
def test_query_by_path_outside_through_curl(lib: Lib) -> None:
    for p in (lib.outside / "secret.jpg", lib.outside / "nothing-here.jpg"):
        code, res = lib.d.curl("-H", "Content-Type: application/json", "-d", json.dumps({"path": str(p)}),
                               f"{URL}/v1/query")
        assert code == 403 and res["error"] == "forbidden"


def test_query_by_path_errors(lib: Lib) -> None:
    cases = [
        ({"path": "photos/b0000.jpg"}, 400, "bad request"),  # relative
        ({"path": 5}, 400, "bad request"),
        ({"path": ""}, 400, "bad request"),
        ({"path": str(lib.root / "b0000.jpg"), "extra": 1}, 400, "bad request"),
        ({}, 400, "bad request"),
        ({"path": str(lib.root / "gone.jpg")}, 404, "not found"),
        ({"path": str(lib.root / "folder.jpg")}, 422, "not a regular file"),
        ({"path": str(lib.root / "fake.jpg")}, 422, "unreadable image"),
    ]
    for payload, status, error in cases:
        code, res = api(lib.d.socket_path, "POST", "/v1/query", payload)
        assert (code, res["error"]) == (status, error), (payload, res)
        assert set(res) == {"error", "detail"} and res["detail"]


@needs_curl
def test_bad_json_and_empty_bodies(lib: Lib) -> None:
    h = ("-H", "Content-Type: application/json")
    for body, error in (('{"path": ', "bad json"), ("[1, 2]", "bad json"), ('"x"', "bad json")):
        code, res = lib.d.curl(*h, "-d", body, f"{URL}/v1/query")
        assert (code, res["error"]) == (400, error), body
    code, res = lib.d.curl("-X", "POST", f"{URL}/v1/query")
    assert code == 400 and "image bytes" in res["detail"]
    code, res = lib.d.curl(*h, "-d", "{not json", f"{URL}/v1/restore")
    assert (code, res["error"]) == (400, "bad json")


def test_bad_json_without_curl(lib: Lib) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000  # deeper than Python's recursion limit: was a 500
    for endpoint, body in (("query", b'{"path": '), ("query", b"[]"), ("query", b"\xff\xfe{"), ("query", deep),
                           ("keep", deep), ("ignore/remove", b'{"ids": ' + deep + b"}")):
        raw = raw_exchange(lib.d.socket_path, b"POST /v1/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                           b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                           % (endpoint.encode(), len(body), body))
        code, _, res = parse_response(raw)
        assert code == 400 and res["error"] == "bad json", (endpoint, body[:20], res)


def test_out_of_range_ids_and_loose_integers_are_400(lib: Lib) -> None:
    """ids beyond the store's 64-bit keys (were a 500), and offset/limit in forms int() accepts
    but the API documents as integers ("1_0", " 1", "+1")."""
    for ids in ([-1], [2**64], [2**63]):
        code, res = lib.d.api("POST", "/v1/ignore/remove", {"ids": ids})
        assert code == 400 and res["error"] == "bad request", (ids, res)
    for query in ("offset=1_0", "limit=%201", "limit=+1", "offset=-0", "limit=1e2"):
        code, res = lib.d.api("GET", f"/v1/groups?{query}")
        assert code == 400 and "integers" in res["detail"], (query, res)
    code, _ = lib.d.api("GET", "/v1/groups?offset=0&limit=2")
    assert code == 200


# -- body limits --------------------------------------------------------------------------------


def _big_image(lib: Lib) -> Path:
    big = max(lib.bases.glob("b00*.jpg"), key=lambda p: p.stat().st_size)
    assert big.stat().st_size > MAX_UPLOAD
    return big


@needs_curl
def test_oversize_upload_is_413_through_curl(lib: Lib) -> None:
    code, res = lib.d.curl("--data-binary", f"@{_big_image(lib)}", f"{URL}/v1/query")
    assert code == 413 and res["error"] == "payload too large" and str(MAX_UPLOAD) in res["detail"]


def test_oversize_upload_is_413_through_the_client(lib: Lib) -> None:
    client = Client(lib.d.socket_path)
    for n in (MAX_UPLOAD + 1, 5 << 20, 40 << 20):  # the last one is cut off mid-body by the daemon
        with pytest.raises(ApiError) as e:
            client.query_bytes(b"\0" * n)
        assert e.value.status == 413, n
    assert client.get("/v1/status")["state"] == "watching"


def test_expect_100_continue_is_refused_before_the_body(lib: Lib) -> None:
    raw = raw_exchange(lib.d.socket_path, b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
                                          b"Expect: 100-continue\r\n\r\n")
    code, headers, res = parse_response(raw)
    assert code == 413 and headers["connection"] == "close" and res["error"] == "payload too large"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # an acceptable body: 100, then the answer
        s.settimeout(5)
        s.connect(lib.d.socket_path)
        s.sendall(b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n"
                  b"Connection: close\r\n\r\n")
        assert s.recv(1000).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"0123456789")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    code, _, res = parse_response(raw)
    assert code == 422 and res["error"] == "unreadable image"


@needs_curl
def test_chunked_body_is_411(lib: Lib) -> None:
    code, res = lib.d.curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" + str(lib.root / "b0000.jpg"),
                           f"{URL}/v1/query")
    assert code == 411 and res["error"] == "length required"


# -- routing and malformed HTTP --------------------------------------------------------------------


@needs_curl
def test_unknown_endpoint_404_wrong_method_405(lib: Lib) -> None:
    code, res = lib.d.curl(f"{URL}/v1/nope")
    assert code == 404 and "/v1/status" in res["detail"]
    code, res = lib.d.curl(f"{URL}/")
    assert code == 404
    for method, path in (("DELETE", "/v1/status"), ("GET", "/v1/query"), ("PUT", "/v1/groups"),
                         ("GET", "/v1/rescan"), ("PUT", "/v1/quarantine")):
        code, res = lib.d.curl("-X", method, f"{URL}{path}")
        assert code == 405 and res["error"] == "method not allowed", (method, path)
    out = subprocess.run([CURL, "-sS", "-I", "--unix-socket", lib.d.socket_path, f"{URL}/v1/status"],
                         check=False, capture_output=True, text=True, timeout=10)
    assert out.stdout.startswith("HTTP/1.1 200") and "application/json" in out.stdout


def test_405_names_the_allowed_method(lib: Lib) -> None:
    raw = raw_exchange(lib.d.socket_path, b"DELETE /v1/groups HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    code, headers, res = parse_response(raw)
    assert code == 405 and headers["allow"] == "GET" and set(res) == {"error", "detail"}


@pytest.mark.parametrize("request_bytes, status", [
    (b"hello\r\n\r\n", 400),
    (b"GET /v1/status\r\n\r\n", 400),  # HTTP/0.9
    (b"GET /v1/status HTTP/1.1 extra\r\n\r\n", 400),
    (b"GET /v1/status HTTP/x.y\r\n\r\n", 400),
    (b"POST /v1/query HTTP/1.1\r\nContent-Length: lots\r\n\r\n", 400),
    (b"POST /v1/query HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /v1/query HTTP/1.1\r\nContent-Length: 50\r\n\r\nshort", 400),  # body ends early (client closes)
    (b"GET /v1/groups?limit=%ff HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
    (b"GET /v1/" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"BREW /v1/status HTTP/1.1\r\n\r\n", 501),
    (b"GET /v1/status HTTP/2.0\r\n\r\n", 505),
])
def test_malformed_http_gets_a_json_error(lib: Lib, request_bytes: bytes, status: int) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(lib.d.socket_path)
        s.sendall(request_bytes)
        s.shutdown(socket.SHUT_WR)
        raw = b""
        try:
            while chunk := s.recv(65536):
                raw += chunk
        except ConnectionResetError:  # closed with part of our oversized request unread
            pass
    code, headers, res = parse_response(raw)
    assert code == status, raw[:300]
    assert headers["content-type"] == "application/json"
    assert set(res) == {"error", "detail"}


def _answer_without_half_close(socket_path: str, data: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send ``data`` and keep the connection open; what came back and when the server closed."""
    return timed_exchange(socket_path, data, wait)


#: Requests that must be answered at once (the client keeps its end open and waits), each with
#: its status: strict Content-Length, no HTTP/0.9, garbage and broken header lines fail on the
#: spot, absurd heads are 414/431, transfer codings we do not support are 411/501.
STRICT_CASES = [
    ("cl-underscore", b"POST /v1/query HTTP/1.1\r\nContent-Length: 1_0\r\n\r\n0123456789", 400),
    ("cl-plus", b"POST /v1/query HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("cl-negative", b"POST /v1/query HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    ("cl-inner-space", b"POST /v1/query HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n0123456789", 400),
    ("cl-vertical-tab", b"POST /v1/query HTTP/1.1\r\nContent-Length: \x0b5\r\n\r\nhello", 400),
    ("cl-superscript", b"POST /v1/query HTTP/1.1\r\nContent-Length: \xb2\r\n\r\nhi", 400),
    ("cl-duplicate-equal", b"POST /v1/query HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("cl-list", b"POST /v1/query HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("cl-space-before-colon", b"POST /v1/query HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello", 400),
    ("te-and-cl", b"POST /v1/query HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("te-chunked", b"POST /v1/query HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    ("te-gzip", b"POST /v1/query HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("http09", b"GET /v1/status\r\n", 400),
    ("garbage-line", b"hello there, daemon\r\n", 400),
    ("tls-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("binary-no-newline", b"\x00\x01\x02\x03", 400),
    ("header-without-colon", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nbadheader\r\n", 400),
    ("header-obs-fold", b"GET /v1/status HTTP/1.1\r\nX-A: 1\r\n  folded\r\n", 400),
    ("header-control-char", b"GET /v1/status HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", 400),
    ("bare-cr", b"GET /v1/status HTTP/1.1\rHost: x\r\n\r\n", 400),
    ("non-ascii-target", "GET /v1/stätus HTTP/1.1\r\n\r\n".encode(), 400),
    ("non-ascii-method", "GÉT /v1/status HTTP/1.1\r\n\r\n".encode(), 400),
    ("not-origin-form", b"GET v1/status HTTP/1.1\r\n\r\n", 400),
    ("double-space", b"GET  /v1/status HTTP/1.1\r\n\r\n", 400),
    ("url-100k", b"GET /v1/" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("url-100k-unfinished", b"GET /v1/" + b"a" * 100_000, 414),
    ("header-70k", b"GET /v1/status HTTP/1.1\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n", 431),
    ("header-count", b"GET /v1/status HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500)) + b"\r\n",
     431),
    ("expect-other", b"POST /v1/query HTTP/1.1\r\nExpect: magic\r\nContent-Length: 5\r\n\r\n", 417),
    ("unknown-method", b"BREW /v1/status HTTP/1.1\r\n\r\n", 501),
    ("http2", b"GET /v1/status HTTP/2.0\r\n\r\n", 505),
    ("not-a-url", b"GET http://[/v1/status HTTP/1.1\r\n\r\n", 400),
]


@pytest.mark.parametrize("request_bytes, status", [c[1:] for c in STRICT_CASES], ids=[c[0] for c in STRICT_CASES])
def test_malformed_requests_are_answered_at_once_and_closed(lib: Lib, request_bytes: bytes, status: int) -> None:
    raw, took = _answer_without_half_close(lib.d.socket_path, request_bytes)
    assert raw, f"no answer at all within {took:.1f} s"
    code, headers, res = parse_response(raw)
    assert code == status, raw[:300]
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert set(res) == {"error", "detail"}
    assert took < 1.5, f"answered, but only after {took:.1f} s (the server waited for more)"


def test_a_strict_request_is_still_served(lib: Lib) -> None:
    """The strictness does not refuse valid variations: OWS around values, LF-only line ends, an
    empty line before the request, HTTP/1.0, absolute-form targets, case-insensitive names."""
    for req in (b"GET /v1/status HTTP/1.1\r\nhOsT:   x  \r\nConnection: close\r\n\r\n",
                b"GET /v1/status HTTP/1.1\nHost: x\nConnection: close\n\n",
                b"\r\nGET /v1/status HTTP/1.0\r\n\r\n",
                b"GET http://localhost/v1/status HTTP/1.1\r\nConnection: close\r\n\r\n",
                b"POST /v1/query HTTP/1.1\r\ncontent-length:  2 \r\nConnection: close\r\n\r\n{}"):
        raw, took = _answer_without_half_close(lib.d.socket_path, req)
        code, _, res = parse_response(raw)
        assert code in (200, 400) and took < 1.5, (req, raw[:200])
        if code == 400:  # the empty JSON object: a route-level answer, so the head was accepted
            assert res["error"] == "bad request" and "path" in res["detail"], res


def test_keep_alive_serves_several_requests_on_one_connection(lib: Lib) -> None:
    req = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(lib.d.socket_path)
        f = s.makefile("rb")
        for _ in range(3):
            s.sendall(req)
            assert f.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := f.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert json.loads(f.read(length))["state"] == "watching"
        f.close()


# -- duplicates, groups ---------------------------------------------------------------------------


@needs_curl
def test_duplicates_endpoint(lib: Lib) -> None:
    code, res = lib.d.curl("-G", "--data-urlencode", f"path={lib.root / 'sub' / 'copy.jpg'}", f"{URL}/v1/duplicates")
    assert code == 200 and [m["path"] for m in res["duplicates"]] == [str(lib.root / "b0000.jpg")]
    code, res = lib.d.curl(f"{URL}/v1/duplicates")
    assert code == 400
    code, res = lib.d.curl("-G", "--data-urlencode", f"path={lib.root / 'gone.jpg'}", f"{URL}/v1/duplicates")
    assert (code, res["error"]) == (404, "not indexed")
    code, res = lib.d.curl("-G", "--data-urlencode", f"path={lib.outside / 'secret.jpg'}", f"{URL}/v1/duplicates")
    assert code == 403


def test_duplicates_endpoint_without_curl(lib: Lib) -> None:
    code, res = api(lib.d.socket_path, "GET", f"/v1/duplicates?path={quote(str(lib.root / 'b0001.jpg'))}")
    assert code == 200 and _match(res, lib.root / "sub" / "near1.jpg")["method"] == "phash"
    assert api(lib.d.socket_path, "GET", "/v1/duplicates?path=relative.jpg")[0] == 400


def test_groups_pagination(lib: Lib) -> None:
    client = Client(lib.d.socket_path)
    full = client.get("/v1/groups")
    assert full["total"] >= 2 and len(full["groups"]) == full["total"]
    keepers = {g["keep"]["path"] for g in full["groups"]}
    assert str(lib.root / "b0001.jpg") in keepers or str(lib.root / "sub" / "near1.jpg") in keepers
    pages = [client.get("/v1/groups", offset=i, limit=1) for i in range(full["total"])]
    assert [p["groups"][0] for p in pages] == full["groups"]
    assert {p["generation"] for p in pages} == {full["generation"]}  # nothing changed: one cached build
    assert client.get("/v1/groups", offset=full["total"], limit=5)["groups"] == []
    for bad in ("offset=-1", "limit=0", "limit=10001", "limit=abc", "offset=1.5"):
        code, res = api(lib.d.socket_path, "GET", f"/v1/groups?{bad}")
        assert code == 400 and res["error"] == "bad request", bad


@needs_curl
def test_groups_through_curl(lib: Lib) -> None:
    code, res = lib.d.curl(f"{URL}/v1/groups?offset=0&limit=1")
    assert code == 200 and res["limit"] == 1 and len(res["groups"]) == 1


def test_groups_cache_rebuilds_only_when_the_index_changes() -> None:
    index = MatchIndex(Matching({"phash": 10}))
    config = types.SimpleNamespace(keep=(KeepRule("largest_pixels"),))
    n = 20_000
    index.bulk_load(  # 10k pairs of exact copies
        (f"/r/{i}.jpg", FileInfo((i // 2 + 1).to_bytes(16, "big"), 100 + i, i, 10, 10),
         {"phash": (i // 2) * 0x9E3779B97F4A7C15 % (1 << 64)}, None)
        for i in range(n))
    cache = _GroupsCache()
    t0 = time.perf_counter()
    first, gen = cache.get(index, config)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _offset in range(0, len(first), 100):  # page through everything
        groups, g = cache.get(index, config)
        assert g == gen and groups is first
    paging = time.perf_counter() - t0
    assert n // 2 - 10 <= len(first) <= n // 2 and cache.builds == 1
    assert paging < build, (paging, build)
    index.remove("/r/0.jpg")
    again, gen2 = cache.get(index, config)
    assert cache.builds == 2 and gen2 > gen
    assert not any(g["keep"]["path"] == "/r/0.jpg" or any(d["path"] == "/r/0.jpg" for d in g["duplicates"])
                   for g in again)
    cache.get(index, types.SimpleNamespace(keep=(KeepRule("largest_file"),)))
    assert cache.builds == 3  # a reloaded keep-rule changes the groups too


# -- quarantine, restore, rescan, reload -------------------------------------------------------------


@needs_curl
def test_quarantine_and_restore_through_curl(lib: Lib) -> None:
    code, res = lib.d.curl(f"{URL}/v1/quarantine")
    assert code == 200 and res["entries"] == []
    code, res = lib.d.curl(f"{URL}/v1/quarantine?state=bogus")
    assert code == 400
    h = ("-H", "Content-Type: application/json")
    for body in ("{}", '{"all": false}', '{"paths": []}', '{"paths": ["relative.jpg"]}', '{"paths": "x"}',
                 '{"all": true, "paths": ["/a.jpg"]}'):
        code, res = lib.d.curl(*h, "-d", body, f"{URL}/v1/restore")
        assert (code, res["error"]) == (400, "bad request"), body
    code, res = lib.d.curl(*h, "-d", json.dumps({"paths": [str(lib.root / "never.jpg")]}), f"{URL}/v1/restore")
    assert code == 200 and res["restored"] == 0 and res["failed"] == 1
    assert "not in the quarantine manifest" in res["results"][0]["detail"]
    code, res = lib.d.curl(*h, "-d", '{"all": true}', f"{URL}/v1/restore")
    assert code == 200 and res == {"results": [], "restored": 0, "failed": 0}


def test_restore_requires_a_body(lib: Lib) -> None:
    code, res = api(lib.d.socket_path, "POST", "/v1/restore")
    assert code == 400 and res["error"] == "bad request"


# -- slow and many clients --------------------------------------------------------------------------


def test_slow_clients_do_not_block_others_and_are_cut_off(lib: Lib) -> None:
    sock = lib.d.socket_path
    results: dict[str, float] = {}

    def stall(name: str) -> None:  # half a request, then nothing
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(REQUEST_TIMEOUT + 5)
            s.connect(sock)
            t0 = time.monotonic()
            s.sendall(b"POST /v1/query HTTP/1.1\r\nContent-Length: 1000\r\n\r\nhalf a bo")
            got = s.recv(100)
            results[name] = time.monotonic() - t0 if got == b"" else -1.0

    def trickle() -> None:  # one byte every 0.2 s: each recv is quick, the request never ends
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock)
            t0 = time.monotonic()
            try:
                for ch in b"GET /v1/status HTTP/1.1\r\nX-Slow: " + b"z" * 200:
                    s.sendall(bytes([ch]))
                    time.sleep(0.2)
                results["trickle"] = -1.0  # never cut off
            except OSError:
                results["trickle"] = time.monotonic() - t0

    threads = [threading.Thread(target=stall, args=(f"stall{i}",)) for i in range(8)]
    threads.append(threading.Thread(target=trickle))
    for t in threads:
        t.start()
    time.sleep(0.3)  # all of them are connected and stuck
    client = Client(lib.d.socket_path, timeout=10)
    latencies = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert client.get("/v1/status")["state"] == "watching"
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    res = client.query_bytes((lib.root / "b0002.jpg").read_bytes())
    latencies.append(time.perf_counter() - t0)
    assert _match(res, lib.root / "b0002.jpg") is not None
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT + 10)
    print(f"\nwith 9 stuck clients: status/query latency max {max(latencies) * 1000:.1f} ms; stuck clients cut "
          f"after {sorted(round(v, 2) for v in results.values())} s (timeout {REQUEST_TIMEOUT} s)")
    assert max(latencies) < REQUEST_TIMEOUT / 2  # answered while the others hang, not after
    assert len(results) == 9
    for name, after in results.items():
        assert REQUEST_TIMEOUT - 0.3 <= after <= REQUEST_TIMEOUT + 3, (name, after)


def test_state_changing_requests_log_the_peer(lib: Lib) -> None:
    client = Client(lib.d.socket_path)
    assert client.post("/v1/reload")["ok"] is True

    def logged(endpoint: str, pid: int) -> bool:
        return any(r.get("endpoint") == endpoint and r.get("peer_pid") == pid and r.get("peer_uid") == os.getuid()
                   and r.get("peer_gid") == os.getgid() for r in lib.d.log_records())

    wait_for(lambda: logged("/v1/reload", os.getpid()), what="peer credentials in the log")
    assert not any(r.get("endpoint") == "/v1/status" for r in lib.d.log_records())  # reads are not logged
    if CURL is not None:
        p = subprocess.Popen([CURL, "-sS", "-o", "/dev/null", "-X", "POST", "--unix-socket", lib.d.socket_path,
                              f"{URL}/v1/reload"])
        assert p.wait(timeout=10) == 0
        wait_for(lambda: logged("/v1/reload", p.pid), what="curl's pid in the log")


def test_rescan_picks_up_new_files(lib: Lib) -> None:
    """Last in this module: the rescan indexes files earlier tests wrote into the root."""
    fresh = lib.root / "fresh.jpg"
    assert fresh.exists()
    client = Client(lib.d.socket_path)
    if CURL is not None:
        code, res = lib.d.curl("-X", "POST", f"{URL}/v1/rescan")
    else:
        code, res = 202, client.post("/v1/rescan")
    assert code == 202 and res["ok"] is True
    lib.d.wait_until(lambda: api(lib.d.socket_path, "GET", f"/v1/duplicates?path={quote(str(fresh))}")[0] == 200,
                     30, "the rescan to index fresh.jpg")
    assert any(r.get("endpoint") == "/v1/rescan" for r in lib.d.log_records())


# -- ownership of the socket -------------------------------------------------------------------------


@pytest.fixture
def small_root(tmp_path: Path, corpus_dir: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i in range(3):
        shutil.copyfile(corpus_dir / "base" / f"b001{i}.jpg", root / f"b001{i}.jpg")
    return root


@pytest.fixture
def daemons():
    made: list[SocketDaemon] = []
    yield made
    for d in made:
        d.close()


def _refused(d: SocketDaemon) -> str:
    d.start(wait=False)
    assert d.proc is not None
    rc = d.proc.wait(timeout=60)
    assert rc != 0
    log = d.log_text()
    assert "Traceback" not in log, log
    return log


def test_second_daemon_on_the_same_socket_refuses_before_touching_its_store(
        tmp_path: Path, small_root: Path, daemons: list[SocketDaemon]) -> None:
    first = SocketDaemon(tmp_path, [small_root], name="first")
    daemons.append(first)
    first.start()
    # a different store: only the socket is shared
    second = SocketDaemon(tmp_path, [small_root], name="second", socket_path=first.socket_path)
    daemons.append(second)
    log = _refused(second)
    assert f"another dedupd (pid {first.pid}) is already serving the socket {first.socket_path}" in log
    assert not Path(second.config["store_dir"]).exists()  # refused before opening (creating) its store
    # the same store and socket: still the socket's message, first
    third = SocketDaemon(tmp_path, [small_root], name="third", socket_path=first.socket_path,
                         store_dir=first.config["store_dir"], report_dir=first.config["report_dir"])
    daemons.append(third)
    assert "already serving the socket" in _refused(third)
    # the first one is untouched and still serving
    assert first.status()["state"] == "watching"
    assert stat.S_ISSOCK(os.lstat(first.socket_path).st_mode)
    first.stop()
    assert not os.path.exists(first.socket_path)  # removed on a clean stop


def test_stale_socket_from_a_crash_is_replaced(tmp_path: Path, small_root: Path,
                                               daemons: list[SocketDaemon]) -> None:
    d = SocketDaemon(tmp_path, [small_root], name="crash")
    daemons.append(d)
    d.start()
    d.kill9()
    assert stat.S_ISSOCK(os.lstat(d.socket_path).st_mode)  # left behind by the crash
    out = d.run_cli("status")
    assert out.returncode == 4 and "not running" in out.stderr
    d.start()
    assert d.status()["files"] == 3
    assert "replaced a stale socket" in d.log_text()
    d.stop()


def test_a_file_that_is_not_a_socket_is_never_deleted(tmp_path: Path, small_root: Path,
                                                      daemons: list[SocketDaemon]) -> None:
    d = SocketDaemon(tmp_path, [small_root], name="notsock")
    daemons.append(d)
    Path(d.socket_path).write_text("precious")
    assert "exists and is not a socket" in _refused(d)
    assert Path(d.socket_path).read_text() == "precious"


def test_live_socket_of_another_program_is_not_stolen(tmp_path: Path, small_root: Path,
                                                      daemons: list[SocketDaemon]) -> None:
    d = SocketDaemon(tmp_path, [small_root], name="other")
    daemons.append(d)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(d.socket_path)
        other.listen(5)
        assert "already serving the socket" in _refused(d)
        assert os.path.exists(d.socket_path)


def _other_group() -> int:
    if os.geteuid() == 0:
        return next((g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid()), os.getgid())
    return next((g for g in os.getgroups() if g != os.getgid()), os.getgid())


def test_socket_mode_and_group_from_the_config(tmp_path: Path, small_root: Path,
                                               daemons: list[SocketDaemon]) -> None:
    gid = _other_group()
    d = SocketDaemon(tmp_path, [small_root], name="perm", socket_mode="0640", socket_group=gid)
    daemons.append(d)
    d.start()
    st = os.lstat(d.socket_path)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == gid
    d.stop()


def test_socket_group_that_does_not_exist_is_a_clear_error(tmp_path: Path, small_root: Path,
                                                           daemons: list[SocketDaemon]) -> None:
    d = SocketDaemon(tmp_path, [small_root], name="nogroup", socket_group="no-such-group-dedupd")
    daemons.append(d)
    assert "socket_group 'no-such-group-dedupd' does not exist" in _refused(d)


def test_socket_path_too_long_is_a_clear_error(tmp_path: Path, small_root: Path,
                                               daemons: list[SocketDaemon]) -> None:
    d = SocketDaemon(tmp_path, [small_root], name="long", socket_path="/tmp/" + "x" * 120 + "/s")
    daemons.append(d)
    assert "Unix sockets allow at most 107" in _refused(d)


def test_invalid_server_limits_are_a_clear_error(tmp_path: Path, small_root: Path,
                                                 daemons: list[SocketDaemon]) -> None:
    d = SocketDaemon(tmp_path, [small_root], name="limits", server_env={"DEDUPD_MAX_UPLOAD_BYTES": "lots"})
    daemons.append(d)
    assert "DEDUPD_MAX_UPLOAD_BYTES='lots' must be a positive number of bytes" in _refused(d)


def test_invalid_head_deadline_is_a_clear_error(tmp_path: Path, small_root: Path, daemons: list[SocketDaemon]) -> None:
    d = SocketDaemon(tmp_path, [small_root], name="limits", server_env={"DEDUPD_HEADER_TIMEOUT_S": "-1"})
    daemons.append(d)
    assert "DEDUPD_HEADER_TIMEOUT_S='-1' must be a number of seconds in (0, 3600]" in _refused(d)
