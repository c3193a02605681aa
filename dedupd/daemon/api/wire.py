"""HTTP/1.1 request heads, read strictly and incrementally (RFC 9112), with no I/O of its own.

:class:`HeadReader` is fed the bytes of a connection as they arrive and either finishes a
:class:`RequestHead` or raises :class:`HttpError` *as soon as* the bytes cannot start a valid
request: a TLS hello or other garbage fails on its first byte, an HTTP/0.9 request line or a header
line without a colon fails when its line ends, an overlong target fails at the limit (414), too
many or too large headers at theirs (431). Nothing waits for a line that can only be wrong.

Deliberately stricter than :mod:`http.server` (which accepts ``Content-Length: +5`` or ``1_0``
through ``int()``, answers HTTP/0.9, waits for the end of headers after a malformed line, and
resets the connection on a long URL): every ambiguity that could make two parsers disagree about
where a request ends is a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: Longest request line (method, target, version) accepted; a longer target is 414.
MAX_REQUEST_LINE = 8192
#: Longest header line, most header lines, and the largest head as a whole; above them 431.
MAX_HEADER_LINE = 8192
MAX_HEADERS = 64
MAX_HEAD = 32768
#: Methods the router can answer; any other valid token is 501.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: Empty lines tolerated before a request line (RFC 9112 2.2: "SHOULD ignore at least one").
_MAX_LEADING_EMPTY = 4

_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VISIBLE = re.compile(rb"[\x21-\x7e]+")
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
_VERSION_PREFIX = re.compile(rb"H?T?T?P?/?[0-9]?\.?[0-9]?")
#: field-value: visible ASCII, SP/HTAB, obs-text; no other control characters (NUL, CR, ...).
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_DIGITS = re.compile(r"[0-9]{1,18}")


class HttpError(Exception):
    """An error answer: becomes ``{"error": error, "detail": detail}`` with ``status``."""

    def __init__(self, status: int, error: str, detail: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status, self.error, self.detail = status, error, detail
        self.headers = headers or {}


def _bad(detail: str) -> HttpError:
    return HttpError(400, "bad request", detail)


@dataclass(frozen=True)
class RequestHead:
    """A parsed request head. Header names are lower-case; values are latin-1 text without OWS."""

    method: str
    target: str
    version: tuple[int, int]
    fields: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The last value of header ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for key, value in reversed(self.fields):
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.fields if k == name]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for v in self.get_all("connection") for t in v.split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens

    def content_length(self) -> int:
        """Declared body length (0 without one). 400 for anything but one plain decimal number,
        411 for a chunked body (not supported), 501 for another transfer coding."""
        codings = self.get_all("transfer-encoding")
        lengths = self.get_all("content-length")
        if codings:
            if lengths:
                raise _bad("both Transfer-Encoding and Content-Length: the end of the body is ambiguous")
            if any("chunked" in v.lower() for v in codings):
                raise HttpError(411, "length required", "chunked request bodies are not supported; send a "
                                                        "Content-Length header (curl --data-binary @FILE does)")
            raise HttpError(501, "not implemented", f"unsupported Transfer-Encoding {codings[0]!r}")
        if not lengths:
            return 0
        if len(lengths) > 1:
            raise _bad("more than one Content-Length header")
        if not _DIGITS.fullmatch(lengths[0]):
            raise _bad(f"invalid Content-Length {lengths[0][:40]!r}: it must be a decimal number of bytes")
        return int(lengths[0])


class HeadReader:
    """Feed bytes with :meth:`feed` until it returns a :class:`RequestHead` (then :attr:`rest`
    holds the bytes after the head: the start of the body). Raises :class:`HttpError` early."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first line not parsed yet
        self._line: tuple[bytes, bytes, tuple[int, int]] | None = None
        self._fields: list[tuple[str, str]] = []
        self._leading = 0
        self.rest = b""

    @property
    def started(self) -> bool:
        """True once any byte of a request has arrived (empty lines before it do not count)."""
        return len(self._buf) > self._pos or self._line is not None

    def feed(self, data: bytes) -> RequestHead | None:
        self._buf += data
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end < 0:
                self._check_partial(bytes(self._buf[self._pos:]))
                return None
            if end >= MAX_HEAD and self._line is not None:
                raise HttpError(431, "request header fields too large",
                                f"the request head exceeds {MAX_HEAD} bytes")
            line = bytes(self._buf[self._pos:end])
            self._pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if b"\r" in line:
                raise _bad("a bare CR inside a line")
            if self._line is None:
                if not line:
                    self._leading += 1
                    if self._leading > _MAX_LEADING_EMPTY:
                        raise _bad("empty lines instead of a request line")
                    continue
                self._line = self._request_line(line)
                continue
            if not line:
                method, target, version = self._line
                self.rest = bytes(self._buf[self._pos:])
                return RequestHead(method.decode("ascii"), target.decode("ascii"), version,
                                   tuple(self._fields))
            self._field(line)

    # -- checks ---------------------------------------------------------------------------------

    def _check_partial(self, part: bytes) -> None:
        """Fail on an unfinished line that can no longer become valid, or is already too long."""
        if self._line is not None:
            if self._pos + len(part) > MAX_HEAD:
                raise HttpError(431, "request header fields too large",
                                f"the request head exceeds {MAX_HEAD} bytes")
            if len(part) > MAX_HEADER_LINE:
                raise HttpError(431, "request header fields too large",
                                f"a header line exceeds {MAX_HEADER_LINE} bytes")
            if part[:1] in (b" ", b"\t"):
                raise _bad("folded header lines (obs-fold) are not accepted")
            name = part.rstrip(b"\r").split(b":", 1)[0]
            if name and not _TOKEN.fullmatch(name):
                raise _bad("a header name with characters that are not allowed")
            return
        words = part.split(b" ")
        if not words[0] and part:
            raise _bad("the request line starts with a space")
        if words[0] and (len(words[0]) > 32 or not set(words[0]) <= _TCHAR):
            raise _bad("not an HTTP request (send 'METHOD /v1/... HTTP/1.1')")
        if len(words) >= 2:
            if words[1] and not _VISIBLE.fullmatch(words[1].rstrip(b"\r")):
                raise _bad("the request target must be printable ASCII (percent-encode anything else)")
            if len(part) > MAX_REQUEST_LINE:
                raise HttpError(414, "uri too long", f"the request line exceeds {MAX_REQUEST_LINE} bytes")
        if len(words) >= 3 and not _VERSION_PREFIX.fullmatch(words[2].rstrip(b"\r")):
            raise _bad("the request line must end with HTTP/1.1")
        if len(words) > 3:
            raise _bad("the request line must be 'METHOD TARGET HTTP/1.1' (single spaces)")
        if len(part) > MAX_REQUEST_LINE:
            raise _bad(f"the request line exceeds {MAX_REQUEST_LINE} bytes")

    def _request_line(self, line: bytes) -> tuple[bytes, bytes, tuple[int, int]]:
        words = line.split(b" ")
        if len(line) > MAX_REQUEST_LINE:
            status = 414 if len(words) >= 2 else 400
            raise HttpError(status, "uri too long" if status == 414 else "bad request",
                            f"the request line exceeds {MAX_REQUEST_LINE} bytes")
        if len(words) == 2 and _TOKEN.fullmatch(words[0]):
            raise _bad("HTTP/0.9 requests are not supported; send 'METHOD /v1/... HTTP/1.1'")
        if len(words) != 3:
            raise _bad("the request line must be 'METHOD TARGET HTTP/1.1' (single spaces)")
        method, target, version = words
        if not _TOKEN.fullmatch(method):
            raise _bad("not an HTTP request (send 'METHOD /v1/... HTTP/1.1')")
        if not _VISIBLE.fullmatch(target):
            raise _bad("the request target must be printable ASCII (percent-encode anything else)")
        m = _VERSION.fullmatch(version)
        if m is None:
            if re.fullmatch(rb"HTTP/[2-9](\.[0-9])?", version):
                raise HttpError(505, "http version not supported", "this server speaks HTTP/1.1")
            raise _bad(f"invalid HTTP version {version[:20].decode('latin-1')!r}")
        major, minor = int(m.group(1)), int(m.group(2))
        if major != 1:
            raise HttpError(505 if major > 1 else 400, "http version not supported",
                            "this server speaks HTTP/1.1")
        if not (target.startswith(b"/") or target.startswith((b"http://", b"https://"))):
            raise _bad("the request target must be a path starting with '/'")
        return method, target, (major, minor)

    def _field(self, line: bytes) -> None:
        if len(line) > MAX_HEADER_LINE:
            raise HttpError(431, "request header fields too large", f"a header line exceeds {MAX_HEADER_LINE} bytes")
        if len(self._fields) >= MAX_HEADERS:
            raise HttpError(431, "request header fields too large", f"more than {MAX_HEADERS} header lines")
        if line[:1] in (b" ", b"\t"):
            raise _bad("folded header lines (obs-fold) are not accepted")
        name, colon, value = line.partition(b":")
        if not colon:
            raise _bad("a header line without a colon")
        if not _TOKEN.fullmatch(name):
            raise _bad("a header name with characters that are not allowed (or space before the colon)")
        value = value.strip(b" \t")
        if not _FIELD_VALUE.fullmatch(value):
            raise _bad(f"control characters in the value of header {name.decode('ascii')!r}")
        self._fields.append((name.decode("ascii").lower(), value.decode("latin-1")))
