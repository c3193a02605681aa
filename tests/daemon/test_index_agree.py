"""The daemon's index under the framing check: the same pairs as the rule, and a reload that moves
``agree`` is a filter of the stored edges (their check score), equal to a rebuild."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from dedupd.core.policy import Matching, pair_evidence
from dedupd.daemon.index import CHECK, FileInfo, MatchIndex, Reach

RULE = Matching({"phash": 10}, strong={"phash": 4}, options={"phash": {"crop": 2}}, agree={"phash": 10})
KEYS = ("phash", "phash@c90", "phash@c81")


def flip(value: int, bits: int, rng: random.Random) -> int:
    for b in rng.sample(range(64), bits):
        value ^= 1 << b
    return value


def contents(seed: int, n: int) -> list[dict[str, int]]:
    """Clusters of near copies: each hash of a copy a few bits off its original's, independently
    per framing (so some weak pairs agree at every framing and some do not)."""
    rng = random.Random(seed)
    out: list[dict[str, int]] = []
    for _ in range(n):
        if out and rng.random() < 0.6:
            base = rng.choice(out)
            out.append({k: flip(v, rng.randrange(0, 14), rng) for k, v in base.items()})
        else:
            out.append({k: rng.getrandbits(64) for k in KEYS})
    return out


def graph(index: MatchIndex) -> set[frozenset[str]]:
    return {frozenset((p, q)) for p in index.files for q, _ in index.duplicates_of(p)}


def brute(rule: Matching, hashes: list[dict[str, int]]) -> set[frozenset[str]]:
    return {frozenset((f"/r/{i}.jpg", f"/r/{j}.jpg")) for i, j in itertools.combinations(range(len(hashes)), 2)
            if pair_evidence(rule, hashes[i], hashes[j], None) is not None}


def build(rule: Matching, hashes: list[dict[str, int]], reach: Reach | None = None) -> MatchIndex:
    index = MatchIndex(rule, reach)
    for i, h in enumerate(hashes):
        index.add(f"/r/{i}.jpg", FileInfo(i.to_bytes(8, "big"), 1, 1, 8, 8), h)
    return index


@pytest.mark.parametrize("seed", [1, 2])
def test_index_decides_as_the_rule_and_an_agree_change_is_a_filter(seed: int) -> None:
    hashes = contents(seed, 160)
    index = build(RULE, hashes, Reach.of(RULE, 2))
    assert dict(index.reach.radii)["phash@agree"] == CHECK
    want = brute(RULE, hashes)
    assert graph(index) == want
    without = brute(replace(RULE, agree={}), hashes)
    assert want < without, "the set must hold weak pairs the check rejects"
    for agree in (6, 14, 10):
        tighter = replace(RULE, agree={"phash": agree})
        assert index.retune(tighter) is True  # within the reach: a refilter of the stored edges
        assert index.build_graph()
        assert graph(index) == brute(tighter, hashes) == graph(build(tighter, hashes))
    # turning the check off changes the scores the edges carry: re-derived, still the rule's pairs
    assert index.retune(replace(RULE, agree={})) is False
    assert index.build_graph() and graph(index) == without
