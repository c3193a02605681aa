"""64-bit perceptual hashes as Python ints / numpy uint64, with imagededup's hex encoding."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

HASH_BITS = 64


def bits_to_int(bits: np.ndarray) -> int:
    """Pack a boolean matrix (row-major, first element = most significant bit) into an int."""
    return int.from_bytes(np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes(), "big")


def int_to_hex(value: int) -> str:
    """16 lowercase hex characters, zero-padded: the string imagededup returns for a 64-bit hash."""
    return f"{value:016x}"


def hex_to_int(text: str) -> int:
    """Parse a hex hash string (any case, no prefix needed)."""
    return int(text, 16)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def hex_hamming(hash1: str, hash2: str) -> int:
    """Hamming distance of two hex hashes, as ``Hashing.hamming_distance`` defines it.

    Both are read as binary strings left-padded to 64 bits and compared position by position
    from the most significant bit (so hashes longer than 64 bits compare over the shorter length).
    """
    a, b = int(hash1, 16), int(hash2, 16)
    la, lb = max(a.bit_length(), HASH_BITS), max(b.bit_length(), HASH_BITS)
    if la == lb:
        return (a ^ b).bit_count()
    n = min(la, lb)
    return ((a >> (la - n)) ^ (b >> (lb - n))).bit_count()


def hexes_to_array(hashes: Iterable[str]) -> np.ndarray:
    """Hex strings to a uint64 array (the search structures' input)."""
    return np.fromiter((int(h, 16) for h in hashes), dtype=np.uint64)
