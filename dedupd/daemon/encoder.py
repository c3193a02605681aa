"""Content digests and the decode-once encode job run in worker processes.

The job is a module-level function so a ``forkserver`` pool can run it: the daemon's threads are
never forked. Each worker keeps its CNN model (if any) for its lifetime.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from dedupd.encoding import hashes_of
from dedupd.errors import DedupdError, ImageDecodeError
from dedupd.imaging import decode_file

DIGEST_SIZE = 16
_CHUNK = 1 << 20


def file_digest(path: str) -> bytes:
    """BLAKE2b-128 of the file's bytes (raises OSError when it cannot be read)."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def bytes_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


@dataclass(frozen=True)
class EncodeSpec:
    """What to compute for each file (picklable: sent to the worker processes)."""

    methods: tuple[str, ...]
    fast: bool = False
    exif_transpose: bool = False
    cnn_model: str | None = None
    cnn_weights: str | None = None


@dataclass(frozen=True)
class EncodeResult:
    """A worker's answer: the encodings, or the reason the file cannot be decoded."""

    ok: bool
    width: int = 0
    height: int = 0
    format: str | None = None
    hashes: dict[str, int] | None = None
    vector: bytes | None = None
    reason: str | None = None


_extractor = None  # per worker process: (model key, extractor)


def _cnn_vector(spec: EncodeSpec, image) -> bytes:
    global _extractor
    key = (spec.cnn_model, spec.cnn_weights)
    if _extractor is None or _extractor[0] != key:
        from dedupd.cnn_models import daemon_extractor

        _extractor = (key, daemon_extractor(spec.cnn_model, spec.cnn_weights))
    vec = _extractor[1].encode([image], normalize=True)[0]
    return np.asarray(vec, dtype=np.float32).tobytes()


def encode_job(path: str, spec: EncodeSpec) -> EncodeResult:
    """Decode ``path`` once and compute every configured encoding. Never raises for bad files."""
    try:
        image = decode_file(path, exif_transpose=spec.exif_transpose, fast=spec.fast)
        hashes = hashes_of(image, spec.methods)
        vector = _cnn_vector(spec, image) if spec.cnn_model else None
    except ImageDecodeError as exc:
        return EncodeResult(ok=False, reason=exc.reason)
    except DedupdError:
        raise  # model unavailable: a configuration problem, not a bad file
    except MemoryError:
        return EncodeResult(ok=False, reason="out of memory while decoding (image too large?)")
    except Exception as exc:  # a codec bug must not stop the daemon: record it for this file
        return EncodeResult(ok=False, reason=f"decoder failed ({type(exc).__name__}: {exc})")
    return EncodeResult(True, image.width, image.height, image.format, hashes, vector)


def warm_up() -> int:
    """No-op job used to start the pool's workers early; returns the worker's pid."""
    return os.getpid()
