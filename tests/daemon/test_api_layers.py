"""The socket API's layers without a daemon: import direction, the strict head parser, slot admission."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from dedupd.daemon.api import admission, routes, transport, view, wire
from dedupd.daemon.api.wire import HeadReader, HttpError
from tests.daemon.helpers import REPO

API = REPO / "dedupd" / "daemon" / "api"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


@pytest.mark.parametrize("module", ["transport.py", "wire.py", "admission.py"])
def test_the_transport_imports_neither_routes_nor_the_daemon(module: str) -> None:
    bad = {m for m in _imports(API / module)
           if m.startswith(("dedupd.daemon.api.routes", "dedupd.daemon.service", "dedupd.daemon.api.view"))}
    assert not bad, f"{module} imports {sorted(bad)}: the router must be injected"


@pytest.mark.parametrize("module", ["routes.py", "view.py"])
def test_routes_see_the_daemon_only_through_the_view(module: str) -> None:
    bad = {m for m in _imports(API / module) if m.startswith("dedupd.daemon.service")}
    assert not bad, f"{module} imports {sorted(bad)}"


def test_importing_the_transport_loads_no_routes_or_service() -> None:
    code = ("import sys, dedupd.daemon.api.transport as t; "
            "print(sorted(m for m in sys.modules if m.endswith(('.routes', '.service', '.view'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout


def test_router_and_server_are_typed_without_any() -> None:
    hints = typing.get_type_hints(routes.Router.__init__)
    assert hints["daemon"] is view.DaemonView
    assert typing.get_type_hints(routes.Router.__call__)["request"] is transport.Request
    assert typing.get_type_hints(transport.ApiServer.__init__)["app"] == transport.App
    members = {n for n in dir(view.DaemonView) if not n.startswith("_")}
    assert {"status", "index", "config", "store", "request_reload", "request_rescan", "restore",
            "encode_upload"} <= members


# -- the head parser ------------------------------------------------------------------------------


def _parse(data: bytes, step: int | None = None) -> wire.RequestHead | None:
    reader = HeadReader()
    step = step or len(data)
    for i in range(0, len(data), step):
        head = reader.feed(data[i:i + step])
        if head is not None:
            return head
    return None


def test_a_request_fed_byte_by_byte_parses_like_one_fed_at_once() -> None:
    req = b"POST /v1/query?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length:  12 \r\nX-Many: a\r\nx-many: b\r\n\r\nbody"
    one, bytewise = _parse(req), _parse(req, 1)
    assert one == bytewise and one is not None
    assert (one.method, one.target, one.version) == ("POST", "/v1/query?x=1", (1, 1))
    assert one.content_length() == 12 and one.get("X-MANY") == "b" and one.get_all("x-many") == ["a", "b"]
    assert one.keep_alive


@pytest.mark.parametrize("prefix, status", [
    (b"\x16", 400),  # TLS: the first byte is enough
    (b"G\x00", 400),
    (b"GET /\xc3", 400),  # non-ASCII in the target, before the line ends
    (b"GET / HTTQ", 400),
    (b"GET / HTTP/1.1\r\nBad Header", 400),  # a space in a header name: not a header
    (b"GET / HTTP/1.1\r\n folded", 400),
    (b"GET /" + b"a" * (wire.MAX_REQUEST_LINE + 1), 414),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * (wire.MAX_HEADER_LINE + 1), 431),
])
def test_hopeless_prefixes_fail_before_the_line_ends(prefix: bytes, status: int) -> None:
    with pytest.raises(HttpError) as exc:
        _parse(prefix)
    assert exc.value.status == status


@pytest.mark.parametrize("value", ["1_0", "+5", "-5", " 5 5", "0x10", "5.0", "\u00b2", "١", "1e3",
                                   "9" * 19])
def test_content_length_is_a_plain_decimal_number(value: str) -> None:
    head = _parse(b"POST / HTTP/1.1\r\nContent-Length: " + value.encode("utf-8") + b"\r\n\r\n")
    assert head is not None
    with pytest.raises(HttpError) as exc:
        head.content_length()
    assert exc.value.status == 400


def test_http_10_closes_unless_asked_to_keep_alive() -> None:
    h10, h10ka = _parse(b"GET / HTTP/1.0\r\n\r\n"), _parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert h10 is not None and h10ka is not None and not h10.keep_alive and h10ka.keep_alive
    h11 = _parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert h11 is not None and not h11.keep_alive


# -- slot admission ---------------------------------------------------------------------------------


def test_a_process_at_its_limit_recycles_its_own_idle_connections() -> None:
    adm = admission.Admission(total=10, per_uid=8, per_pid=3)
    slots = [adm.admit(100, 1, t)[0] for t in range(3)]
    assert all(slots)
    slot, victim = adm.admit(100, 1, 5.0)
    assert slot is not None and victim is slots[0] and adm.by_pid[100] == 3
    for s in adm.slots:
        s.phase = "busy"
    assert adm.admit(100, 1, 6.0) == (None, None)  # all its connections work: 503, nobody is cut
    other, victim = adm.admit(200, 1, 7.0)
    assert other is not None and victim is None  # another process is not affected


def test_a_newcomer_takes_the_idle_slot_of_the_biggest_holder_never_a_busy_one() -> None:
    adm = admission.Admission(total=6, per_uid=6, per_pid=4)
    hog = [adm.admit(100, 1, t)[0] for t in range(4)]
    small = [adm.admit(200 + i, 2, 10 + i)[0] for i in range(2)]
    assert all(hog) and all(small) and len(adm) == 6
    cli, victim = adm.admit(300, 3, 20.0)
    assert cli is not None and victim is hog[0]  # the oldest idle one of the process holding most
    for s in hog:
        s.phase = "busy"
    cli2, victim = adm.admit(301, 3, 21.0)
    assert cli2 is not None and victim in small
    for s in adm.slots:
        s.phase = "busy"
    assert adm.admit(302, 3, 22.0) == (None, None)
    assert adm.evictions == 2 and adm.refusals == 1


def test_equal_holders_do_not_evict_each_other() -> None:
    adm = admission.Admission(total=2, per_uid=2, per_pid=2)
    assert adm.admit(1, 1, 0)[0] and adm.admit(2, 1, 1)[0]
    assert adm.admit(3, 1, 2) != (None, None)  # pid 3 holds nothing: takes an idle slot
    assert adm.admit(4, 1, 3)[1] is not None  # pid 4 holds nothing either
    slot, victim = adm.admit(4, 1, 4)  # now pid 4 holds one, as every other holder does
    assert slot is None and victim is None


def _outcome(data: bytes, step: int) -> tuple[str, object]:
    try:
        return "head", _parse(data, step)
    except HttpError as exc:
        return "error", exc.status


def test_mutated_requests_fail_only_with_http_errors_and_alike_however_they_are_split() -> None:
    """Fuzz: byte flips, cuts and insertions of valid requests. The parser raises nothing but
    HttpError, and feeding byte by byte or in odd pieces never changes the verdict."""
    rng = random.Random(1234)
    seeds = [b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
             b"POST /v1/query HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n",
             b"GET /v1/groups?offset=0&limit=5 HTTP/1.0\nConnection: keep-alive\n\n"]
    alphabet = b"\r\n :\t/\x00\x7f\xff" + bytes(range(32, 127))
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4 and i < len(data):
                data[i] = rng.choice(alphabet)
            elif op < 0.7:
                data[i:i] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            else:
                del data[i:i + rng.randint(1, 3)]
        whole = _outcome(bytes(data), len(data) or 1)
        for step in (1, 7):
            split = _outcome(bytes(data), step)
            if whole[0] == "head":  # a prefix check may refuse earlier, never accept what the whole refuses
                assert split == whole, (bytes(data), whole, split)
            else:
                assert split[0] == "error", (bytes(data), whole, split)


def test_a_connection_receiving_its_body_may_be_cut_for_a_newcomer() -> None:
    """Trickled bodies are bytes on their way, no work of the daemon: a user holding every slot
    with them no longer locks its own ``dedupd status`` out."""
    adm = admission.Admission(total=10, per_uid=4, per_pid=4)
    trickling = [adm.admit(100 + i, 1, float(i))[0] for i in range(4)]
    for s in trickling:
        assert s is not None
        s.phase = "body"
    cli, victim = adm.admit(200, 1, 10.0)
    assert cli is not None and victim in trickling
