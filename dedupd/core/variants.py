"""Extra hashes of one image that make a hash method robust to crops and to flips/rotations.

A hash method compares one 64-bit hash per image. Two options add *variant* hashes, stored beside
the plain one in the same ``{key: int}`` map under method-like keys ``"<method>@<variant>"``:

* **crop** (``c90``, ``c81``): the hash of the centred sub-region keeping 90 % / 81 % of each
  side. A copy with a 5 % border cropped away on every side *is* the centred 90 % of its
  original, so ``original@c90`` ≈ ``copy``; a 10 % border is matched through ``c81``. Pairs are
  compared across scales: ``a ~ b``, ``a@c ~ b`` and ``a ~ b@c`` for each scale ``c``.
* **dihedral** (``d1`` … ``d7``): the hash of the image flipped or rotated by each non-identity
  symmetry of the square (the dihedral group of order 8): a mirrored or 90°-rotated copy then
  matches its original through ``a ~ b@dk``.

The distance of a pair under a method is the smallest over these comparisons, and which one won
is named, so reports can say "phash 3 via c90". Pure: the pixel work is the caller's (see
:func:`dedupd.encoding.hashes_of`), this module only names keys, says which pixels a variant
hashes, and compares hash maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache

import numpy as np

SEP = "@"
#: Centred sub-region kept by each crop variant, as a fraction of each side.
CROP_SCALES: dict[str, float] = {"c90": 0.90, "c81": 0.81}
#: The 7 non-identity symmetries of the square, as numpy operations on a (rows, cols) array.
DIHEDRAL: dict[str, str] = {
    "d1": "hflip", "d2": "vflip", "d3": "rot180", "d4": "transpose",
    "d5": "antitranspose", "d6": "rot90", "d7": "rot270",
}
OPTIONS: tuple[str, ...] = ("crop", "dihedral")


def key(method: str, variant: str) -> str:
    return f"{method}{SEP}{variant}"


def split_key(name: str) -> tuple[str, str | None]:
    """``"phash@c90"`` → ``("phash", "c90")``; a plain method name → ``(name, None)``."""
    method, _, variant = name.partition(SEP)
    if variant and variant not in CROP_SCALES and variant not in DIHEDRAL:
        raise ValueError(f"unknown hash variant {variant!r} in {name!r}; expected one of "
                         f"{', '.join([*CROP_SCALES, *DIHEDRAL])}")
    return method, variant or None


def variant_keys(method: str, options: Iterable[str]) -> tuple[str, ...]:
    """The extra keys that ``options`` (a subset of :data:`OPTIONS`) store for ``method``."""
    opts = set(options)
    bad = opts - set(OPTIONS)
    if bad:
        raise ValueError(f"unknown hash option(s) {', '.join(sorted(bad))}; expected {', '.join(OPTIONS)}")
    out = [key(method, v) for v in CROP_SCALES] if "crop" in opts else []
    out += [key(method, v) for v in DIHEDRAL] if "dihedral" in opts else []
    return tuple(out)


def crop_box(width: int, height: int, variant: str) -> tuple[float, float, float, float]:
    """The centred region ``(left, top, right, bottom)`` that crop ``variant`` hashes."""
    s = CROP_SCALES[variant]
    dx, dy = width * (1 - s) / 2, height * (1 - s) / 2
    return (dx, dy, width - dx, height - dy)


def transposes(variant: str) -> bool:
    """True when dihedral ``variant`` swaps width and height (the caller resizes to (h, w) first)."""
    return DIHEDRAL[variant] in ("transpose", "antitranspose", "rot90", "rot270")


def apply_dihedral(array: np.ndarray, variant: str) -> np.ndarray:
    """``array`` (rows, cols) under dihedral ``variant``. For a transposing variant pass the array
    resized to the swapped size, so the result has the method's usual shape."""
    op = DIHEDRAL[variant]
    ops = {
        "hflip": lambda a: a[:, ::-1],
        "vflip": lambda a: a[::-1, :],
        "rot180": lambda a: a[::-1, ::-1],
        "transpose": lambda a: a.T,
        "antitranspose": lambda a: a[::-1, ::-1].T,
        "rot90": lambda a: np.rot90(a, 1),
        "rot270": lambda a: np.rot90(a, -1),
    }
    return np.ascontiguousarray(ops[op](array))


def family(variant: str) -> str:
    """The option a variant belongs to: ``"crop"`` or ``"dihedral"``."""
    return "crop" if variant in CROP_SCALES else "dihedral"


def comparisons(method: str, options: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """Pairs of keys ``(key of a, key of b)`` whose Hamming distance may decide ``a ~ b``: the plain
    pair first, then each variant against the plain hash, both ways (so the set is symmetric)."""
    return tuple((ka, kb) for ka, kb, _, _ in _table(method, options if isinstance(options, tuple) else tuple(options)))


@lru_cache(maxsize=1024)
def _table(method: str, options: tuple[str, ...]) -> tuple[tuple[str, str, str, str], ...]:
    """:func:`comparisons` with each one's family and variant: ``(key of a, key of b, family, variant)``,
    built once per (method, options): a daemon scores every candidate pair with it (per-pair
    rebuilding was most of the index's ``plan`` time on small files)."""
    out = [(method, method, "", "")]
    for v in variant_keys(method, options):
        variant = split_key(v)[1] or ""
        out += [(v, method, family(variant), variant), (method, v, family(variant), variant)]
    return tuple(out)


def option_comparisons(method: str, option: str) -> tuple[tuple[str, str], ...]:
    """The comparisons one option adds (:func:`comparisons` without the plain pair)."""
    return comparisons(method, (option,))[1:]


def distances(method: str, options: Iterable[str], a: Mapping[str, int], b: Mapping[str, int]
              ) -> dict[str, tuple[int, str]]:
    """Smallest Hamming distance of ``a`` and ``b`` per comparison family, with the variant that
    reached it: ``{"": (d, ""), "crop": (d, "c90"), "dihedral": (d, "d1")}``. A family is absent
    when a side lacks its hashes (stored before the option was turned on, or ``method`` missing)."""
    out: dict[str, tuple[int, str]] = {}
    for ka, kb, fam, variant in _table(method, options if isinstance(options, tuple) else tuple(options)):
        if ka in a and kb in b:
            d = (a[ka] ^ b[kb]).bit_count()
            best = out.get(fam)
            if best is None or d < best[0]:
                out[fam] = (d, variant)
    return out


def option_distance(method: str, option: str, a: Mapping[str, int], b: Mapping[str, int]) -> int | None:
    """``distances(method, (option,), a, b)[option][0]`` without the plain comparison and the dict:
    the smallest Hamming distance through ``option``'s comparisons alone (None: none possible). A
    daemon scores every candidate pair with it (2.6 -> ~1 us a call: at 20,000 small files the
    pair scores were ~30 % of the pipeline thread)."""
    best: int | None = None
    for ka, kb in _option_table(method, option):
        x = a.get(ka)
        if x is not None:
            y = b.get(kb)
            if y is not None:
                d = (x ^ y).bit_count()
                if best is None or d < best:
                    best = d
    return best


@lru_cache(maxsize=1024)
def _option_table(method: str, option: str) -> tuple[tuple[str, str], ...]:
    return option_comparisons(method, option)


def distance(method: str, options: Iterable[str], a: Mapping[str, int], b: Mapping[str, int]
             ) -> tuple[int, str] | None:
    """Smallest Hamming distance over every comparison of :func:`distances` (None: none possible)."""
    best = distances(method, options, a, b)
    return min(best.values()) if best else None
