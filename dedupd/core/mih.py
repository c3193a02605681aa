"""Multi-index hashing (MIH): exact Hamming radius search on 64-bit hashes without a full scan.

Split the 64 bits into ``m`` substrings and give substring ``k`` a tolerance ``t_k`` with
``sum(t_k + 1) >= r + 1``. If two hashes differ in at most ``r`` bits, then (pigeonhole) some
substring differs in at most ``t_k`` bits. So every match within ``r`` is found by looking only at
hashes whose substring ``k`` lies within ``t_k`` flips of the query's, for some ``k``; each candidate
is then verified with one popcount. A substring with ``t_k = -1`` is never probed.

This module holds the plan (substrings, tolerances, cost model), the flip masks, and the two
searches built on them:

* :func:`self_join` — every pair within ``r`` of one array (``find_duplicates``): per substring,
  hashes are grouped by substring value (one stable sort); pairs come from each group and from
  each pair of groups whose values differ by a flip mask (value ``u`` paired only with ``u ^ p > u``,
  so each pair of groups is visited once). A pair found through substring ``k`` is kept only if no
  earlier substring already finds it, so no pair is reported twice and no result set is needed.
* :func:`self_join_compiled` — the same join with each substring's groups walked by one compiled
  loop (:mod:`dedupd.core.mih_kernels`, numba: the ``speed`` extra) instead of numpy passes over
  the candidates: 5-8x less CPU at radius 10 (50k random hashes: 50 ms against 290 ms; noisy
  copies of real photo hashes, ``bench_search.clustered_hashes``: 50k 0.06 s against 0.33 s,
  200k 0.59 s against 4.5 s). Used when numba is installed and the join is big enough to pay
  for loading it (:func:`use_compiled`); without numba the numpy join gives the same pairs.
* :class:`Tables` — the per-query form (the daemon's :class:`~dedupd.core.hashindex.HashIndex`):
  rows sorted per substring with a direct-address start table, probed with ``q_k ^ p``.

Which plan runs is chosen by a cost model fitted on ``bench/bench_search.py`` (see the figures in
:mod:`dedupd.core.hamming`); when no plan beats a popcount scan, the caller scans. For all pairs
the self-join beats one probe per hash: at 200k random hashes, radius 10, 2.7 s CPU against
12.4 s (4.6x; per-query probing finds every pair twice and pays numpy's per-call overhead n times).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from math import comb
from typing import Any

import numpy as np

BITS = 64

#: Work per chunk (elements of the temporaries): bounds memory at a few tens of MB.
CHUNK = 1 << 21

#: Direct-address tables are used for substrings up to this many bits (4 bytes x 2**bits each).
MAX_TABLE_BITS = 22

# Relative costs in scanned-pair units, fitted on bench/bench_search.py runs (numpy 2.4, one core):
# a candidate verified by the self-join, an (occupied value, flip mask) probe of the self-join (a
# random gather in a direct-address table: dearer than a candidate), one probe and one candidate
# of a single query, and the fixed numpy overhead of a single query (~20 calls).
_COST_SCAN = 1.0
_COST_CANDIDATE = 1.5
_COST_PROBE = 5.0
_COST_QUERY_PROBE = 4.0
_COST_QUERY_CANDIDATE = 15.0
_COST_QUERY_FIXED = 60_000.0


@dataclass(frozen=True)
class Plan:
    """Substrings as ``(shift, width)`` bit ranges and the tolerance of each (``-1`` = unused)."""

    ranges: tuple[tuple[int, int], ...]
    tolerances: tuple[int, ...]

    def masks(self) -> list[tuple[int, int, int]]:
        """``(shift, width, tolerance)`` of the substrings actually probed."""
        return [(s, w, t) for (s, w), t in zip(self.ranges, self.tolerances) if t >= 0]


def make_plan(m: int, radius: int) -> Plan:
    """``m`` near-equal contiguous substrings with tolerances summing to ``radius + 1 - m``.

    Wider substrings get the larger tolerances. With ``m > radius + 1`` only ``radius + 1``
    substrings are probed (each exactly), which still satisfies the pigeonhole bound.
    """
    widths = [BITS // m + (1 if k < BITS % m else 0) for k in range(m)]
    ranges, shift = [], 0
    for w in widths:
        ranges.append((shift, w))
        shift += w
    total = radius + 1 - m
    if total < 0:
        tol = [0 if k < radius + 1 else -1 for k in range(m)]
    else:
        q, extra = divmod(total, m)
        tol = [q + (1 if k < extra else 0) for k in range(m)]
    return Plan(tuple(ranges), tuple(tol))


def ball(width: int, t: int) -> int:
    """Number of ``width``-bit values within ``t`` flips of a given one."""
    return sum(comb(width, k) for k in range(max(-1, t) + 1))


def estimate(plan: Plan, n: int, queries: int | None = None) -> float:
    """Modelled cost of the plan, in scanned-pair units.

    ``queries`` None means a self-join of ``n`` hashes (pairs counted once); otherwise that many
    queries against ``n`` indexed hashes. Assumes uniformly spread substring values.
    """
    cost = 0.0
    for _, w, t in plan.masks():
        frac = ball(w, t) / 2.0**w
        if queries is None:
            occupied = min(n, 2.0**w)
            cost += _COST_PROBE * occupied * ball(w, t) / 2 + _COST_CANDIDATE * n * n / 2 * frac + 4 * n
        else:
            cost += queries * (_COST_QUERY_PROBE * ball(w, t) + _COST_QUERY_CANDIDATE * n * frac)
    return cost + (0 if queries is None else queries * _COST_QUERY_FIXED)


def best_plan(n: int, radius: int, queries: int | None = None, max_m: int = 8) -> Plan | None:
    """The cheapest plan for this size and radius, or None when the popcount scan is cheaper."""
    if n < 64 or radius >= BITS // 2:
        return None
    scan = _COST_SCAN * (n * n / 2 if queries is None else queries * n)
    best, best_cost = None, scan
    for m in range(2, max_m + 1):
        plan = make_plan(m, radius)
        if any(w > 32 for _, w, _ in plan.masks()) or any(ball(w, t) > 1 << 20 for _, w, t in plan.masks()):
            continue
        cost = estimate(plan, n, queries)
        if cost < best_cost:
            best, best_cost = plan, cost
    return best


@lru_cache(maxsize=64)
def flip_masks(width: int, t: int) -> np.ndarray:
    """All ``width``-bit masks with at most ``t`` set bits, by popcount (``0`` first), as uint32."""
    out = [np.zeros(1, dtype=np.uint32)]
    bits = np.left_shift(np.uint32(1), np.arange(width, dtype=np.uint32))
    level = out[0]
    for k in range(1, max(0, t) + 1):
        # extend each mask of popcount k-1 by one bit above its highest: every combination once
        high = np.zeros(len(level), dtype=np.int64) if k == 1 else np.floor(np.log2(level)).astype(np.int64) + 1
        reps = width - high
        ends = np.cumsum(reps)
        bit = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - reps - high, reps)
        level = np.repeat(level, reps) | bits[bit]
        out.append(level)
    result = np.concatenate(out)
    result.flags.writeable = False
    return result


def substrings(values: np.ndarray, shift: int, width: int) -> np.ndarray:
    """Bits ``shift .. shift + width`` of each hash, as uint32 (``width <= 32``)."""
    return ((values >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.uint32)


# -- self-join (all pairs) ------------------------------------------------------------------------

#: Rows per block of the self-join's verification (about 1 MB of temporaries: stays in L2).
_BLOCK_ROWS = 1 << 15

#: Runs longer than this (rows of huge groups) are verified fully materialised.
_MAX_RUN = 4096


def _runs(
    sv: np.ndarray, order: np.ndarray, pa: np.ndarray, pb0: np.ndarray, cnt: np.ndarray, radius: int,
    earlier: list[tuple[np.uint64, int]],
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Verify the pairs ``(pa[k], pb0[k] + s)`` for ``s < cnt[k]`` (positions in the sorted array
    ``sv``); yield the matches as original indices ``i < j``.

    Rows are ordered by ``cnt`` (descending, radix sort) and cut into cache-sized blocks; inside a
    block the rows still owing an ``s`` are a prefix, so each step is a few flat numpy passes
    over L2-resident data (no ``repeat`` of every candidate). Rows of huge groups go through
    :func:`_runs_expanded`. Only matches that no earlier substring finds are kept, so each pair
    comes out once overall.
    """
    big = cnt > _MAX_RUN
    if big.any():
        yield from _runs_expanded(sv, order, pa[big], pb0[big], cnt[big], radius, earlier)
        keep = ~big
        pa, pb0, cnt = pa[keep], pb0[keep], cnt[keep]
    if not len(cnt):
        return
    by = np.argsort((_MAX_RUN - cnt).astype(np.uint16), kind="stable")
    pa, pb0, cnt = pa[by], pb0[by], cnt[by]
    for r0 in range(0, len(cnt), _BLOCK_ROWS):
        c = cnt[r0 : r0 + _BLOCK_ROWS]
        a, b0 = pa[r0 : r0 + _BLOCK_ROWS], pb0[r0 : r0 + _BLOCK_ROWS]
        xa = sv[a]
        prefix = np.searchsorted(-c, -np.arange(int(c[0])), side="left").tolist()
        for s, rows in enumerate(prefix):
            b = b0[:rows] + s
            x = xa[:rows] ^ sv[b]
            hit = np.flatnonzero(np.bitwise_count(x) <= radius)
            if len(hit):
                yield _matches(x[hit], order[a[hit]], order[b[hit]], earlier)


def _matches(
    x: np.ndarray, i: np.ndarray, j: np.ndarray, earlier: list[tuple[np.uint64, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matches ``(i, j)`` with xor ``x``, less those an earlier substring finds; ``i < j``."""
    keep = np.ones(len(x), dtype=bool)
    for mask, tol in earlier:
        keep &= np.bitwise_count(x & mask) > tol
    i, j = i[keep], j[keep]
    return np.minimum(i, j), np.maximum(i, j), np.bitwise_count(x[keep]).astype(np.int64)


def _runs_expanded(
    sv: np.ndarray, order: np.ndarray, pa: np.ndarray, pb0: np.ndarray, cnt: np.ndarray, radius: int,
    earlier: list[tuple[np.uint64, int]],
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`_runs` for rows with long runs: every pair materialised, in chunks of :data:`CHUNK`."""
    ends = np.cumsum(cnt)
    a, base = 0, 0
    while a < len(cnt):
        b = max(a + 1, int(np.searchsorted(ends, base + CHUNK, side="right")))
        c = cnt[a:b]
        t = int(ends[b - 1]) - base
        xa = np.repeat(sv[pa[a:b]], c)
        pb = np.repeat(pb0[a:b] - (ends[a:b] - c - base), c) + np.arange(t, dtype=np.int64)
        xa ^= sv[pb]
        hit = np.flatnonzero(np.bitwise_count(xa) <= radius)
        if len(hit):
            k = np.searchsorted(ends[a:b] - base, hit, side="right")
            yield _matches(xa[hit], order[pa[a + k]], order[pb[hit]], earlier)
        base += t
        a = b


def _groups(values: np.ndarray, shift: int, width: int) -> tuple[np.ndarray, ...]:
    """Hashes grouped by one substring: ``(order, sorted hashes, starts, counts, unique values)``."""
    sub = substrings(values, shift, width)
    order = np.argsort(sub.astype(np.uint16) if width <= 16 else sub, kind="stable")
    sorted_sub = sub[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_sub[1:] != sorted_sub[:-1])))
    counts = np.diff(np.append(starts, len(values)))
    return order, values[order], starts, counts, sorted_sub[starts]


def self_join(values: np.ndarray, radius: int, plan: Plan) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every pair ``i < j`` with ``hamming(values[i], values[j]) <= radius``, each exactly once.

    Yields ``(i, j, distance)`` int64 arrays in chunks, in no particular order.
    """
    values = np.ascontiguousarray(values, dtype=np.uint64)
    n = len(values)
    if n < 2:
        return
    earlier: list[tuple[np.uint64, int]] = []
    for shift, width, t in plan.masks():
        order, sv, starts, counts, uniq = _groups(values, shift, width)
        # pairs inside a group: each position with the positions after it in its group
        after = np.repeat(starts + counts, counts) - np.arange(n) - 1
        pos = np.flatnonzero(after)
        yield from _runs(sv, order, pos, pos + 1, after[pos], radius, earlier)
        del after, pos
        masks = flip_masks(width, t)[1:]
        if len(masks):
            lookup = _GroupLookup(uniq, width)
            high = np.floor(np.log2(masks)).astype(np.int64)  # u ^ p > u iff bit high(p) of u is 0
            for h in np.unique(high).tolist():
                ga_all = np.flatnonzero(((uniq >> np.uint32(h)) & np.uint32(1)) == 0)
                mh = masks[high == h]
                per = max(1, CHUNK // max(1, len(ga_all)))
                for m0 in range(0, len(mh), per):
                    gb2 = lookup.find(uniq[ga_all][:, None] ^ mh[None, m0 : m0 + per])
                    row, col = np.nonzero(gb2 >= 0)
                    ga, gb = ga_all[row], gb2[row, col]
                    del gb2, row, col
                    # every member of group ga against the whole group gb
                    ca = counts[ga]
                    ends = np.cumsum(ca)
                    pa = np.repeat(starts[ga] - (ends - ca), ca) + np.arange(int(ends[-1]) if len(ends) else 0)
                    owner = np.repeat(gb, ca)
                    yield from _runs(sv, order, pa, starts[owner], counts[owner], radius, earlier)
        earlier.append((np.uint64(((1 << width) - 1) << shift), t))


_compiled: dict[str, object] = {"checked": False, "kernel": None, "error": None}

#: Modelled self-join cost (scanned-pair units, :func:`estimate`) from which :func:`use_compiled`
#: loads the compiled join in a process that has not loaded it yet: about 1 s of numpy work (~130k
#: random hashes at radius 10), which pays numba's import and cache load (0.5-1.5 s, once).
COMPILED_MIN_COST = 1.5e8


def compiled_available() -> bool:
    """True when numba is installed (the ``speed`` extra) and :func:`self_join_compiled` is
    ready; the first call loads it (numba's import and the kernel from numba's on-disk cache:
    0.5-1.5 s; a few seconds more the very first time, to compile). ``compiled_error()`` says
    why not."""
    if not _compiled["checked"]:
        _compiled["checked"] = True
        try:
            from dedupd.core import mih_kernels

            kernel = mih_kernels.join_substring
            list(_run_kernel(kernel, np.arange(4, dtype=np.uint64), 1, make_plan(2, 1)))  # load it now
        except ImportError as exc:
            _compiled["error"] = f"numba is not installed ({exc})"
        except Exception as exc:  # noqa: BLE001 - a numba/LLVM problem: the numpy join gives the same pairs
            _compiled["error"] = f"{type(exc).__name__}: {exc}"
        else:
            _compiled["kernel"] = kernel
    return _compiled["kernel"] is not None


def use_compiled(n: int, plan: Plan) -> bool:
    """Whether the all-pairs search of ``n`` hashes with ``plan`` should run compiled: when the
    compiled join is loaded already, or the join is big enough (:data:`COMPILED_MIN_COST`) to
    pay for loading it, and numba is installed."""
    if _compiled["kernel"] is not None:
        return True
    return estimate(plan, n) >= COMPILED_MIN_COST and compiled_available()


def compiled_error() -> str | None:
    """Why :func:`compiled_available` is False (None when it is True or was not asked yet)."""
    return _compiled["error"]  # type: ignore[return-value]


def self_join_compiled(
    values: np.ndarray, radius: int, plan: Plan
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`self_join` with the per-candidate work in one compiled loop per substring
    (:mod:`dedupd.core.mih_kernels`): the same pairs, each exactly once, one chunk per substring.

    Raises:
        RuntimeError: numba is missing (check :func:`compiled_available` first).
    """
    if not compiled_available():
        raise RuntimeError(f"the compiled self-join is unavailable: {compiled_error()}")
    yield from _run_kernel(_compiled["kernel"], values, radius, plan)


#: Smallest output buffer of the compiled join (pairs; it doubles when full).
_MIN_OUT = 1024


def _run_kernel(
    kernel: Any, values: np.ndarray, radius: int, plan: Plan
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    values = np.ascontiguousarray(values, dtype=np.uint64)
    n = len(values)
    if n < 2:
        return
    emask: list[int] = []
    etol: list[int] = []
    cap = max(_MIN_OUT, n // 4)
    for shift, width, t in plan.masks():
        order, sv, starts, counts, uniq = _groups(values, shift, width)
        table = np.empty(0, dtype=np.int32)
        if width <= MAX_TABLE_BITS:
            table = np.full(1 << width, -1, dtype=np.int32)
            table[uniq] = np.arange(len(uniq), dtype=np.int32)
        args = (sv, order.astype(np.int64), starts.astype(np.int64), counts.astype(np.int64), uniq, table,
                flip_masks(width, t)[1:].copy(), radius, np.array(emask, dtype=np.uint64),
                np.array(etol, dtype=np.int64))
        out = [np.empty(cap, dtype=np.int64) for _ in range(3)]
        g, nout = 0, 0
        while True:
            g, nout = kernel(*args, g, *out, nout)
            if g == len(starts):
                break
            cap *= 2  # full: grow and go on from the group that did not fit
            out = [np.concatenate([o[:nout], np.empty(cap - nout, dtype=np.int64)]) for o in out]
        if nout:
            yield out[0][:nout].copy(), out[1][:nout].copy(), out[2][:nout].copy()
        emask.append(((1 << width) - 1) << shift)
        etol.append(t)


class _GroupLookup:
    """Value -> group number among sorted unique substring values (-1 when absent)."""

    def __init__(self, uniq: np.ndarray, width: int) -> None:
        self.uniq = uniq
        self.table: np.ndarray | None = None
        if width <= MAX_TABLE_BITS:
            self.table = np.full(1 << width, -1, dtype=np.int32)
            self.table[uniq] = np.arange(len(uniq), dtype=np.int32)

    def find(self, probe: np.ndarray) -> np.ndarray:
        if self.table is not None:
            return self.table[probe]
        pos = np.searchsorted(self.uniq, probe)
        pos[pos == len(self.uniq)] = 0
        return np.where(self.uniq[pos] == probe, pos, -1)


# -- per-query tables -----------------------------------------------------------------------------


class Tables:
    """Rows of a fixed hash array indexed by ``m`` substrings, for single radius queries.

    Per substring: the row numbers sorted by substring value and a start table (direct address)
    so the rows whose substring equals ``v`` are ``rows[start[v]:start[v + 1]]``. All substrings
    share one rows array and one start array (offset per substring), so a query costs a fixed
    number of numpy calls whatever ``m``. Memory: ``m`` x (4n + 4 x 2**width) bytes.
    """

    def __init__(self, values: np.ndarray, m: int) -> None:
        values = np.ascontiguousarray(values, dtype=np.uint64)
        self.n = n = len(values)
        self.m = m
        self.ranges = make_plan(m, 0).ranges
        rows, starts, self._offsets = [], [], []
        base = 0
        for k, (shift, width) in enumerate(self.ranges):
            sub = substrings(values, shift, width)
            # 16-bit keys sort by radix (O(n)); the order within a value does not matter
            rows.append(np.argsort(sub.astype(np.uint16) if width <= 16 else sub, kind="stable").astype(np.int32))
            start = np.empty(1 << width, dtype=np.int64)
            start[0] = 0
            np.cumsum(np.bincount(sub, minlength=1 << width)[:-1], out=start[1:])
            starts.append(start + k * n)
            self._offsets.append(base)
            base += 1 << width
        starts.append(np.array([m * n], dtype=np.int64))  # the end of the last value
        self._rows = np.concatenate(rows)
        self._start = np.concatenate(starts)
        self._probe_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    @staticmethod
    def size_for(n: int) -> int:
        """Substring count for ``n`` rows: about log2(n) bits each, at most 16 bits (tables stay small)."""
        bits = max(8, min(16, int(np.log2(max(2, n)))))
        return max(2, -(-BITS // bits))

    def _probes(self, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per probe (all substrings concatenated): flip mask, substring shift, substring bit mask
        and the substring's offset in the start table."""
        if radius not in self._probe_cache:
            plan = make_plan(self.m, radius)
            parts: list[tuple[np.ndarray, ...]] = []
            for k, (shift, width) in enumerate(self.ranges):
                if plan.tolerances[k] >= 0:
                    fm = flip_masks(width, plan.tolerances[k]).astype(np.int64)
                    parts.append((
                        fm,
                        np.full(len(fm), shift, dtype=np.uint64),
                        np.full(len(fm), (1 << width) - 1, dtype=np.uint64),
                        np.full(len(fm), self._offsets[k], dtype=np.int64),
                    ))
            a, b, c, d = (np.concatenate([p[col] for p in parts]) for col in range(4))
            self._probe_cache[radius] = (a, b, c, d)
        return self._probe_cache[radius]

    def candidates(self, query: int, radius: int) -> np.ndarray | None:
        """Rows that may lie within ``radius`` of ``query`` (a superset, possibly repeated), or None
        when probing would cost more than scanning every row."""
        if estimate(make_plan(self.m, radius), self.n, queries=1) >= _COST_SCAN * self.n:
            return None
        masks, shifts, bits, offsets = self._probes(radius)
        # the query's substring value per probe, xor the mask, plus the substring's table offset
        slot = (((np.uint64(query) >> shifts) & bits).astype(np.int64) ^ masks) + offsets
        lo, hi = self._start[slot], self._start[slot + 1]
        cnt = hi - lo
        nz = np.flatnonzero(cnt)
        if not len(nz):
            return np.empty(0, dtype=np.int64)
        lo, cnt = lo[nz], cnt[nz]
        ends = np.cumsum(cnt)
        idx = np.repeat(lo - (ends - cnt), cnt) + np.arange(int(ends[-1]), dtype=np.int64)
        return self._rows[idx]
