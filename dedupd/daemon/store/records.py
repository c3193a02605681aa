"""Records kept in the store, their msgpack encoding, and the LMDB key layout.

Values are msgpack arrays whose first item is the record layout version (never pickle: loading
the store must not run code). Strings are packed with ``surrogateescape`` so error texts that
quote non-UTF-8 file names survive; paths are stored as the bytes ``os.fsencode`` gives.

Keys:

* ``files``: the absolute path as bytes. LMDB keys are at most 511 bytes, and the ``digests``
  index prepends up to 65 bytes, so a path longer than :data:`MAX_PATH_KEY` bytes is keyed by
  ``b"\\0" + blake2b(path)`` instead (no real path starts with NUL) and its record carries the
  full path. Such keys sort before every real path.
* ``digests``: ``len(digest) byte + digest + files key`` → empty value (a reverse index).
* ``encodings``: the content digest. ``quarantine``: see :mod:`.store_manifest`.
* ``edges`` (the persisted duplicate graph): ``digest_prefix(a) + b`` for both directions of a
  pair of contents; the key with ``a < b`` holds the pair's scores (a msgpack list in the order of
  :attr:`GraphStamp.names`), the reverse key an empty value (so that every edge of a digest is
  one prefix range, for pruning). Which pairs are kept and in which units is the ``graph`` stamp
  in ``meta`` (:class:`GraphStamp`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

FILE_STATES: tuple[str, ...] = ("ok", "unreadable")
MAX_DIGEST = 64
#: LMDB's 511-byte key limit, minus the longest ``digests`` prefix (1 length byte + 64-byte digest).
MAX_PATH_KEY = 511 - 1 - MAX_DIGEST
_HASHED = b"\0"
_U64 = 1 << 64

StrPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]


@dataclass(frozen=True)
class FileRecord:
    """What the store knows about one path.

    Attributes:
        size, mtime_ns, dev, inode: the ``stat`` seen when the file was processed.
        digest: content digest, or None when the bytes could not be read.
        state: ``"ok"`` (its encoding is in the store) or ``"unreadable"`` (``error`` says why).
        error: the reason for ``"unreadable"``, else None.
        encoded_at: ``time.time()`` when the record was made.
    """

    size: int
    mtime_ns: int
    dev: int
    inode: int
    digest: bytes | None = None
    state: str = "ok"
    error: str | None = None
    encoded_at: float = 0.0

    def __post_init__(self) -> None:
        if self.state not in FILE_STATES:
            raise ValueError(f"FileRecord.state must be one of {FILE_STATES}, got {self.state!r}")
        if self.state == "ok" and self.digest is None:
            raise ValueError("a FileRecord in state 'ok' needs its content digest")
        if self.digest is not None and not 0 < len(self.digest) <= MAX_DIGEST:
            raise ValueError(f"digest must be 1..{MAX_DIGEST} bytes, got {len(self.digest)}")

    @classmethod
    def from_stat(
        cls,
        st: os.stat_result,
        digest: bytes | None,
        *,
        state: str = "ok",
        error: str | None = None,
        encoded_at: float | None = None,
    ) -> FileRecord:
        """A record for a file with ``os.stat`` result ``st`` (``encoded_at`` defaults to now)."""
        return cls(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, digest, state, error,
                   time.time() if encoded_at is None else encoded_at)

    def same_stat(self, st: os.stat_result) -> bool:
        """True when ``st`` shows the same file unchanged (dev, inode, size and mtime_ns all equal)."""
        return (self.dev, self.inode, self.size, self.mtime_ns) == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class EncodingRecord:
    """Everything computed from one decode of some content digest.

    Attributes:
        width, height, format: the decoded image's size and PIL format name.
        hashes: method name → 64-bit hash as an unsigned int.
        hash_params: the identity of the hash computation (``Config.hash_params_id()``).
        cnn_vector: the CNN feature vector as float32 bytes, or None.
        cnn_model: identity of the model that produced ``cnn_vector`` (``Config.cnn_model_id()``).
    """

    width: int
    height: int
    format: str | None
    hashes: Mapping[str, int] = field(default_factory=dict)
    hash_params: str = ""
    cnn_vector: bytes | None = None
    cnn_model: str | None = None

    def __post_init__(self) -> None:
        for name, value in self.hashes.items():
            if not isinstance(value, int) or not 0 <= value < _U64:
                raise ValueError(f"hash {name} must be an unsigned 64-bit int, got {value!r}")
        if (self.cnn_vector is None) != (self.cnn_model is None):
            raise ValueError("cnn_vector and cnn_model must be given together")
        if self.cnn_vector is not None and len(self.cnn_vector) % 4:
            raise ValueError("cnn_vector must be float32 bytes (a multiple of 4 bytes long)")

    def stale(
        self, methods: Iterable[str], hash_params: str, cnn_model_id: str | None
    ) -> tuple[frozenset[str], bool]:
        """What must be recomputed to serve a config: (hash methods missing or stale, CNN stale?)."""
        wanted = frozenset(methods)
        stale = wanted if hash_params != self.hash_params else wanted - self.hashes.keys()
        return stale, cnn_model_id is not None and cnn_model_id != self.cnn_model


@dataclass(frozen=True)
class GraphStamp:
    """What the persisted edges are: the settings that produced them and how far they reach.

    An edge is stored for every pair of contents within ``radii`` on some hash method (Hamming
    distance ``<=`` its radius) or with CNN similarity ``>= cnn`` (when ``cnn`` is not None),
    whatever the configured match mode: thresholds up to the radii, and any/all, are then filters
    of the stored edges. ``complete`` is False while a derivation runs; ``cursor`` is the last
    digest (in byte order) whose edges it has written, so that it resumes after a crash.
    """

    radii: tuple[tuple[str, int], ...]
    cnn: float | None
    hash_params: str
    cnn_model: str | None
    complete: bool = False
    cursor: bytes | None = None

    @property
    def names(self) -> list[str]:
        """The score order of an edge value: the hash methods (sorted), then ``"cnn"``."""
        return [m for m, _ in self.radii] + (["cnn"] if self.cnn is not None else [])

    def same_settings(self, other: GraphStamp) -> bool:
        """True when ``other`` describes the same edges (progress aside)."""
        return (self.radii, self.cnn, self.hash_params, self.cnn_model) == (
            other.radii, other.cnn, other.hash_params, other.cnn_model)


@dataclass(frozen=True)
class StoreStats:
    """Entry counts and sizes (``disk_bytes`` = size of ``data.mdb``; ``map_size`` = current limit)."""

    files: int
    encodings: int
    quarantine: int
    disk_bytes: int
    map_size: int
    edges: int = 0


@dataclass(frozen=True)
class EncoderMismatch:
    """What the store's recorded encoder settings lack compared with a config.

    ``hash_methods``: configured methods to recompute (all of them when the hash parameters
    changed); ``cnn``: CNN vectors to recompute. ``encodings`` is how many encodings exist; with
    none, nothing is stale. Per-record truth is :meth:`EncodingRecord.stale`.
    """

    hash_methods: frozenset[str]
    cnn: bool
    encodings: int

    @property
    def any(self) -> bool:
        """True when some stored encoding must be recomputed."""
        return self.encodings > 0 and (bool(self.hash_methods) or self.cnn)


def fs_bytes(path: StrPath) -> bytes:
    """``path`` as bytes (``os.fsencode``); it must be absolute."""
    raw = os.fsencode(path)
    if not raw.startswith(b"/"):
        raise ValueError(f"store paths must be absolute, got {raw!r}")
    return raw


def file_key(raw: bytes) -> bytes:
    """The ``files`` key of absolute path bytes ``raw`` (hashed when too long; see module doc)."""
    if len(raw) <= MAX_PATH_KEY:
        return raw
    return _HASHED + hashlib.blake2b(raw, digest_size=32).digest()


def is_hashed_key(key: bytes) -> bool:
    """True for a ``files`` key that stands for a long path (the path is in the record)."""
    return key.startswith(_HASHED)


def digest_prefix(digest: bytes) -> bytes:
    """Prefix of every ``digests`` key of ``digest`` (length byte first, so no digest prefixes another)."""
    return bytes([len(digest)]) + digest


def edge_key(a: bytes, b: bytes) -> bytes:
    """The ``edges`` key of the pair ``(a, b)`` seen from ``a`` (see the module doc)."""
    return digest_prefix(a) + b


_OPTS: dict[str, Any] = {"use_bin_type": True, "unicode_errors": "surrogateescape"}
_UNOPTS: dict[str, Any] = {"raw": False, "unicode_errors": "surrogateescape"}


def pack(value: Any) -> bytes:
    """msgpack bytes of plain data (ints, floats, str, bytes, lists, dicts)."""
    return msgpack.packb(value, **_OPTS)


def unpack(data: bytes | memoryview) -> Any:
    """Inverse of :func:`pack`."""
    return msgpack.unpackb(data, **_UNOPTS)


def pack_file(rec: FileRecord, long_path: bytes | None) -> bytes:
    """Encode ``rec``; ``long_path`` is the full path when the key is hashed, else None."""
    return pack([1, rec.size, rec.mtime_ns, rec.dev, rec.inode, rec.digest, rec.state, rec.error,
                 rec.encoded_at, long_path])


def unpack_file(data: bytes | memoryview) -> tuple[FileRecord, bytes | None]:
    """Decode a ``files`` value into the record and the stored long path (or None)."""
    _v, size, mtime_ns, dev, inode, digest, state, error, encoded_at, long_path = unpack(data)
    return FileRecord(size, mtime_ns, dev, inode, digest, state, error, encoded_at), long_path


def pack_encoding(rec: EncodingRecord) -> bytes:
    """Encode an :class:`EncodingRecord`."""
    return pack([1, rec.width, rec.height, rec.format, dict(rec.hashes), rec.hash_params,
                 rec.cnn_vector, rec.cnn_model])


def unpack_encoding(data: bytes | memoryview) -> EncodingRecord:
    """Decode an ``encodings`` value."""
    _v, width, height, fmt, hashes, hash_params, vector, model = unpack(data)
    return EncodingRecord(width, height, fmt, hashes, hash_params, vector, model)


def pack_stamp(stamp: GraphStamp) -> bytes:
    """Encode a :class:`GraphStamp` (a msgpack map, so that fields can be added later)."""
    return pack({"v": 1, "radii": [list(x) for x in stamp.radii], "cnn": stamp.cnn, "hash_params": stamp.hash_params,
                 "cnn_model": stamp.cnn_model, "complete": stamp.complete, "cursor": stamp.cursor})


def unpack_stamp(data: bytes | memoryview) -> GraphStamp:
    """Decode a ``graph`` stamp."""
    d = unpack(data)
    return GraphStamp(tuple((str(m), int(r)) for m, r in d["radii"]), d["cnn"], d["hash_params"], d["cnn_model"],
                      bool(d["complete"]), d["cursor"])
