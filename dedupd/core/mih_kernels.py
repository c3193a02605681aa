"""The compiled loop of :func:`dedupd.core.mih.self_join_compiled` (imported only when numba is
installed: the ``speed`` extra).

A module-level function, so numba's on-disk cache finds it again in every new process.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _popcount(x: np.uint64) -> np.int64:
    # the SWAR popcount (LLVM turns it into one popcnt instruction where the CPU has one)
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return np.int64((x * _H01) >> np.uint64(56))


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _fresh(x: np.uint64, emask: np.ndarray, etol: np.ndarray) -> bool:
    # no earlier substring finds this pair (its xor there exceeds that substring's tolerance)
    for k in range(len(emask)):
        if _popcount(x & emask[k]) <= etol[k]:
            return False
    return True


@njit(cache=True, nogil=True, boundscheck=False)
def join_substring(
    sv: np.ndarray, oi: np.ndarray, starts: np.ndarray, counts: np.ndarray, uniq: np.ndarray,
    table: np.ndarray, masks: np.ndarray, radius: int, emask: np.ndarray, etol: np.ndarray, g0: int,
    out_i: np.ndarray, out_j: np.ndarray, out_d: np.ndarray, nout: int,
) -> tuple[int, int]:
    """Pairs of one substring, groups ``g0`` on, appended to ``out_*`` from ``nout``.

    ``sv``: hashes sorted by substring value, ``oi`` their original indices; group ``g`` (value
    ``uniq[g]``) is ``sv[starts[g]:starts[g] + counts[g]]``; ``table`` maps a value to its group
    (-1: none; empty: binary search in ``uniq``). Returns ``(next group, pairs so far)``; when the
    output fills up, the group being joined is dropped whole and returned as the next one.
    """
    cap = len(out_i)
    n_groups = len(starts)
    use_table = len(table) > 0
    for g in range(g0, n_groups):
        mark = nout
        s0 = starts[g]
        e0 = s0 + counts[g]
        u = uniq[g]
        for a in range(s0, e0):
            xa = sv[a]
            for b in range(a + 1, e0):
                x = xa ^ sv[b]
                c = _popcount(x)
                if c <= radius and _fresh(x, emask, etol):
                    if nout == cap:
                        return g, mark
                    out_i[nout] = min(oi[a], oi[b])
                    out_j[nout] = max(oi[a], oi[b])
                    out_d[nout] = c
                    nout += 1
        for k in range(len(masks)):
            v = u ^ masks[k]
            if v < u:  # each pair of groups once: from the lower value
                continue
            if use_table:
                h = np.int64(table[v])
            else:
                h = np.int64(np.searchsorted(uniq, v))
                if h == n_groups or uniq[h] != v:
                    h = np.int64(-1)
            if h < 0:
                continue
            s1 = starts[h]
            e1 = s1 + counts[h]
            for a in range(s0, e0):
                xa = sv[a]
                for b in range(s1, e1):
                    x = xa ^ sv[b]
                    c = _popcount(x)
                    if c <= radius and _fresh(x, emask, etol):
                        if nout == cap:
                            return g, mark
                        out_i[nout] = min(oi[a], oi[b])
                        out_j[nout] = max(oi[a], oi[b])
                        out_d[nout] = c
                        nout += 1
    return n_groups, nout
