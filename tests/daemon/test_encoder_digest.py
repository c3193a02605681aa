"""The content digest the pipeline keys encodings by: the BLAKE2b-128 of every byte, whatever the size."""

from __future__ import annotations

import hashlib
import os

import pytest

from dedupd.daemon.encoder import _CHUNK, bytes_digest, file_digest


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 70_000, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK + 5])
def test_digest_is_of_every_byte(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "f.jpg"
    path.write_bytes(data)
    want = hashlib.blake2b(data, digest_size=16).digest()
    assert file_digest(str(path)) == want == bytes_digest(data)


def test_fifo_and_folder_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # nobody writes: a blocking open or read would hang here
    with pytest.raises(OSError, match="not a regular file"):
        file_digest(str(fifo))
    with pytest.raises(OSError):
        file_digest(str(tmp_path))
