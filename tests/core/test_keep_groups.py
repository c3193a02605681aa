"""Keep-rules (which copy is the original) and grouping (components, direct victims only)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.core.groups import components
from dedupd.core.keep import RULES, Candidate, choose_keeper, rule_key


def c(path: str, pixels: int = 100, size: int = 1000, mtime: int = 5) -> Candidate:
    return Candidate(path, pixels, size, mtime)


@pytest.mark.parametrize("rule,winner", [
    ("largest_pixels", "/p/big.jpg"),
    ("largest_file", "/p/heavy.jpg"),
    ("oldest_mtime", "/p/old.jpg"),
    ("newest_mtime", "/p/new.jpg"),
    ("shortest_path", "/p/s.jpg"),
])
def test_each_rule(rule: str, winner: str) -> None:
    cands = [c("/p/big.jpg", pixels=900), c("/p/heavy.jpg", size=9000), c("/p/old.jpg", mtime=1),
             c("/p/new.jpg", mtime=9), c("/p/s.jpg"), c("/p/zzzz-plain.jpg")]
    assert choose_keeper(cands, [rule]).path == winner
    for order in itertools.permutations(cands):  # the input order never matters
        assert choose_keeper(list(order), [rule]).path == winner


def test_rules_apply_in_order_and_break_ties() -> None:
    a = c("/x/a.jpg", pixels=500, size=10, mtime=3)
    b = c("/x/b.jpg", pixels=500, size=20, mtime=9)
    d = c("/x/d.jpg", pixels=400, size=99, mtime=1)
    assert choose_keeper([a, b, d], ["largest_pixels", "largest_file"]).path == "/x/b.jpg"
    assert choose_keeper([a, b, d], ["largest_pixels", "oldest_mtime"]).path == "/x/a.jpg"
    assert choose_keeper([a, b, d], ["largest_file", "largest_pixels"]).path == "/x/d.jpg"
    assert choose_keeper([a, b, d], ["oldest_mtime"]).path == "/x/d.jpg"


def test_final_tie_break_is_alphabetical() -> None:
    same = [c("/b/2.jpg"), c("/a/9.jpg"), c("/b/1.jpg")]
    for rules in ([], ["largest_pixels", "largest_file", "oldest_mtime"], [{"prefer": "*/nowhere/*"}]):
        assert choose_keeper(same, rules).path == "/a/9.jpg"


@pytest.mark.parametrize("pattern", ["*/originals/*", "originals", "originals/", "/srv/photos/originals/*"])
def test_prefer_glob_or_folder_name(pattern: str) -> None:
    cands = [c("/srv/photos/a-copy.jpg", pixels=999), c("/srv/photos/originals/z.jpg"),
             c("/srv/photos/not-originals-here.jpg")]
    assert choose_keeper(cands, [{"prefer": pattern}, "largest_pixels"]).path == "/srv/photos/originals/z.jpg"
    # without a match, the next rule decides
    assert choose_keeper(cands[:1] + cands[2:], [{"prefer": pattern}, "largest_pixels"]).path == cands[0].path


def test_prefer_is_case_sensitive_and_whole_component() -> None:
    cands = [c("/p/Originals/a.jpg"), c("/p/originals-old/b.jpg"), c("/p/c.jpg", pixels=5000)]
    assert choose_keeper(cands, [{"prefer": "originals"}, "largest_pixels"]).path == "/p/c.jpg"


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown keep rule 'biggest'"):
        rule_key(["biggest"])
    with pytest.raises(ValueError):
        choose_keeper([], ["largest_pixels"])
    assert set(RULES) == {"largest_pixels", "largest_file", "oldest_mtime", "newest_mtime", "shortest_path"}


# -- groups ---------------------------------------------------------------------------------------


def test_components_chain_and_singletons() -> None:
    adj = {"A": ["B"], "B": ["A", "C"], "C": ["B"], "D": [], "E": ["F"], "F": ["E"]}
    assert components(adj) == [["A", "B", "C"], ["E", "F"]]
    assert components({}) == []
    assert components({"x": []}) == []


def test_components_ordering_largest_first_then_name() -> None:
    adj = {"z1": ["z2"], "z2": ["z1"], "a1": ["a2"], "a2": ["a1"], "m1": ["m2", "m3"], "m2": ["m1"], "m3": ["m1"]}
    assert components(adj) == [["m1", "m2", "m3"], ["a1", "a2"], ["z1", "z2"]]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 30))
def test_components_partition_matches_union_find(seed: int, n: int) -> None:
    rng = random.Random(seed)
    nodes = [f"n{i:02d}" for i in range(n)]
    edges = {(a, b) for a, b in itertools.combinations(nodes, 2) if rng.random() < 2 / n}
    adj: dict[str, list[str]] = {v: [] for v in nodes}
    for a, b in edges:
        adj[a].append(b)
        adj[b].append(a)
    parent = {v: v for v in nodes}

    def find(v: str) -> str:
        while parent[v] != v:
            v = parent[v]
        return v

    for a, b in edges:
        parent[find(a)] = find(b)
    expected: dict[str, list[str]] = {}
    for v in nodes:
        expected.setdefault(find(v), []).append(v)
    want = sorted((sorted(g) for g in expected.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    assert components(adj) == want
