"""The keep/quarantine decision (dedupd.core.policy): pure, no files."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.core.keep import Candidate, choose_keeper
from dedupd.core.policy import (
    EXACT_EVIDENCE,
    Evidence,
    Matching,
    decide_group,
    decide_groups,
    pair_evidence,
)


def ev(d: int) -> Evidence:
    return Evidence("phash", d, {"phash": d})


def graph(pairs: dict[tuple[str, str], Evidence]) -> dict[str, dict[str, Evidence]]:
    out: dict[str, dict[str, Evidence]] = {}
    for (a, b), e in pairs.items():
        out.setdefault(a, {})[b] = e
        out.setdefault(b, {})[a] = e
    return out


def facts(*names: str, pixels: dict[str, int] | None = None) -> dict[str, Candidate]:
    return {n: Candidate(n, (pixels or {}).get(n, 100), 1000, 5) for n in names}


def test_chain_moves_only_the_direct_match() -> None:
    edges = graph({("/A", "/B"): ev(4), ("/B", "/C"): ev(5)})
    (g,) = decide_groups(facts("/A", "/B", "/C", pixels={"/A": 900}), edges, ["largest_pixels"])
    assert g.keep == "/A" and g.members == ("/A", "/B", "/C")
    assert [(d.path, d.direct) for d in g.duplicates] == [("/B", True), ("/C", False)]
    assert [d.path for d in g.moves] == ["/B"]
    assert g.moves[0].evidence == ev(4) and g.moves[0].evidence.reason == "phash distance 4 to kept copy"
    assert g.duplicates[1].via == "/B" and g.duplicates[1].evidence is None


def test_via_is_the_closest_direct_neighbour_and_none_beyond_two_steps() -> None:
    # K ~ X (2), K ~ Y (1); Z ~ X (exact), Z ~ Y (3): Z goes via X (exact copies first); W ~ Z only
    edges = graph({("/K", "/X"): ev(2), ("/K", "/Y"): ev(1), ("/Z", "/X"): EXACT_EVIDENCE,
                   ("/Z", "/Y"): ev(3), ("/W", "/Z"): ev(1)})
    g = decide_group(list(facts("/K", "/W", "/X", "/Y", "/Z", pixels={"/K": 999}).values()), edges,
                     ["largest_pixels"])
    by = {d.path: d for d in g.duplicates}
    assert by["/Z"].via == "/X" and by["/W"].via is None
    assert {d.path for d in g.moves} == {"/X", "/Y"}


def test_exempt_members_stay_but_are_still_reported_direct() -> None:
    edges = graph({("/A", "/B"): ev(1), ("/A", "/C"): ev(2)})
    (g,) = decide_groups(facts("/A", "/B", "/C", pixels={"/A": 900}), edges, ["largest_pixels"], exempt={"/B"})
    assert [d.path for d in g.moves] == ["/C"]
    assert all(d.direct for d in g.duplicates) and g.duplicates[0].exempt


def test_pair_evidence_thresholds_and_modes() -> None:
    a, b = {"phash": 0b1111, "dhash": 0}, {"phash": 0, "dhash": 0b11}
    assert pair_evidence(Matching({"phash": 4}), a, b, None) == Evidence("phash", 4, {"phash": 4})
    assert pair_evidence(Matching({"phash": 3}), a, b, None) is None  # a lowered threshold
    assert pair_evidence(Matching({"phash": 3, "dhash": 2}), a, b, None) == Evidence("dhash", 2, {"phash": 4, "dhash": 2})
    assert pair_evidence(Matching({"phash": 4, "dhash": 1}, mode="all"), a, b, None) is None
    assert pair_evidence(Matching({"phash": 3}, cnn=0.9), a, b, 0.95).method == "cnn"
    assert pair_evidence(Matching({"phash": 3}, cnn=0.9), a, b, 0.85) is None
    assert pair_evidence(Matching({"whash": 0}), a, b, None) is None  # a method neither side has


@st.composite
def groups_and_edges(draw: st.DrawFn) -> tuple[dict[str, Candidate], dict[str, dict[str, Evidence]], int]:
    n = draw(st.integers(2, 12))
    names = [f"/p/{i:02d}.jpg" for i in range(n)]
    fs = {p: Candidate(p, draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))) for p in names}
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    pairs = {(a, b): ev(rng.randint(0, 10)) for a, b in itertools.combinations(names, 2) if rng.random() < 0.3}
    return fs, graph(pairs), seed


@settings(max_examples=200, deadline=None)
@given(groups_and_edges(), st.sampled_from([["largest_pixels"], ["oldest_mtime", "largest_file"], []]))
def test_decision_properties(case, rules) -> None:
    fs, edges, _ = case
    decisions = decide_groups(fs, edges, rules)
    seen: set[str] = set()
    for g in decisions:
        assert not seen & set(g.members), "groups are disjoint"
        seen |= set(g.members)
        assert g.keep == choose_keeper([fs[p] for p in g.members], rules).path
        assert {d.path for d in g.duplicates} == set(g.members) - {g.keep}
        for d in g.duplicates:
            # moved ⇔ an edge to the kept copy itself, with that edge's evidence: never through a chain
            assert d.direct == (d.path in edges.get(g.keep, {}))
            if d.direct:
                assert d.evidence == edges[g.keep][d.path]
            elif d.via is not None:
                assert d.via in edges[d.path] and d.via in edges[g.keep]
            else:
                assert not set(edges[d.path]) & set(edges[g.keep])
        assert g.keep not in {d.path for d in g.moves}
    assert seen == {p for p, near in edges.items() if near}
    # the decision does not depend on the order facts and edges are given in
    shuffled = dict(reversed(list(fs.items())))
    redges = {p: dict(reversed(list(near.items()))) for p, near in reversed(list(edges.items()))}
    assert sorted(decide_groups(shuffled, redges, rules), key=lambda g: g.members) == sorted(
        decisions, key=lambda g: g.members)
