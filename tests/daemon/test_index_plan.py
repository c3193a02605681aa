"""The index's vectorised edge scoring (``MatchIndex._plan_arrays``) against the per-pair one
(``_plan_pairs``, one ``_scores`` call per pair): the same edges with the same scores in the same
order, on random hashes under many rules and on the hashes of real tiny photos under the default rule."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.calibrate import encode_dir
from dedupd.core.policy import Matching
from dedupd.core.variants import variant_keys
from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.index import FileInfo, MatchIndex, Reach
from dedupd.daemon.loader import matching_of, reach_of

RULES = [
    # the default's shape: pHash + dHash, crop variants, the framing check
    Matching({"phash": 10, "dhash": 10}, strong={"phash": 4, "dhash": 4},
             options={"phash": {"crop": 2}, "dhash": {"crop": 2}}, agree={"phash": 10, "dhash": 10}),
    Matching({"phash": 8}, options={"phash": {"dihedral": 3}}),
    Matching({"dhash": 12, "ahash": 6}, mode="all"),
    Matching({"whash": 0}),
    Matching({"phash": 10}, options={"phash": {"crop": 3, "dihedral": 1}}, agree={"phash": 12}),
]


def keys_of(rule: Matching) -> list[str]:
    return [k for m in rule.hashes for k in (m, *variant_keys(m, rule.options.get(m, ())))]


def flip(value: int, bits: int, rng: random.Random) -> int:
    for b in rng.sample(range(64), bits):
        value ^= 1 << b
    return value


def random_contents(rng: random.Random, keys: list[str], n: int) -> list[dict[str, int]]:
    """Clusters of near copies (each key a few bits off the original's, independently), some
    contents without their variant keys (encoded before an option was turned on)."""
    out: list[dict[str, int]] = []
    for _ in range(n):
        if out and rng.random() < 0.6:
            base = rng.choice(out)
            h = {k: flip(v, rng.randrange(0, 16), rng) for k, v in base.items()}
        else:
            h = {k: rng.getrandbits(64) for k in keys}
        if rng.random() < 0.15:
            h = {k: v for k, v in h.items() if "@" not in k}
        if len(h) > 1 and rng.random() < 0.05:  # a content with one key only
            h = dict([rng.choice(list(h.items()))])
        out.append(h)
    return out


def digest(i: int) -> bytes:
    return i.to_bytes(16, "big")


def assert_plans_agree(index: MatchIndex, new: dict[bytes, dict[str, int]]) -> list:
    batch = {d: (h, None) for d, h in new.items()}
    arrays = index._plan_arrays(batch)
    assert arrays == index._plan_pairs(batch)
    assert index.plan(batch) == arrays  # a hash-only reach takes the array path
    return arrays


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rule=st.sampled_from(RULES), margin=st.integers(0, 4),
       batch=st.integers(1, 40))
def test_array_plan_equals_pair_plan_on_random_hashes(seed: int, rule: Matching, margin: int, batch: int) -> None:
    rng = random.Random(seed)
    hashes = random_contents(rng, keys_of(rule), 150)
    index = MatchIndex(rule, Reach.of(rule, margin))
    edges_seen = 0
    for start in range(0, len(hashes), batch):
        new = {digest(start + k): h for k, h in enumerate(hashes[start:start + batch])}
        if start and rng.random() < 0.3:  # an indexed content comes back with other values (re-encoded)
            old = rng.randrange(start)
            new[digest(old)] = {k: flip(v, 1, rng) for k, v in hashes[old].items()}
        edges = assert_plans_agree(index, new)
        edges_seen += len(edges)
        for d, h in new.items():
            index.add(f"/r/{d.hex()}.jpg", FileInfo(d, 1, 1, 8, 8), h, None, [e for e in edges if d in e[:2]])
    assert_plans_agree(index, {})
    assert edges_seen > 0 or rule.hashes == {"whash": 0}


def test_array_plan_equals_pair_plan_on_real_tiny_photos(dataset, tmp_path: Path) -> None:
    """Hashes of 400 real 64 px photos (near copies among them), the default config's rule and
    reach, indexed in batches of 128 as the pipeline does: same edges, and some of them."""
    cfg = config_from_mapping({"roots": [str(tmp_path)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "r"), "socket_path": str(tmp_path / "s.sock")})
    rule, reach = matching_of(cfg), reach_of(cfg)
    names, cols, bad = encode_dir(dataset("mixed", "--count", "400", "--side", "64", "--seed", "7") / "images",
                                  cfg.hash_keys(), workers=2)
    assert not bad and len(names) == 400
    hashes = [{k: int(cols[k][i]) for k in cols} for i in range(len(names))]
    index = MatchIndex(rule, reach)
    total = 0
    for start in range(0, len(hashes), 128):
        new = {digest(start + k): h for k, h in enumerate(hashes[start:start + 128])}
        edges = assert_plans_agree(index, new)
        total += len(edges)
        for d, h in new.items():
            index.add(f"/r/{d.hex()}.jpg", FileInfo(d, 1, 1, 64, 64), h, None, [e for e in edges if d in e[:2]])
    assert total >= 50, total
