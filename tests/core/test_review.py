"""The user's decisions applied by the group decision (dedupd.core.review + decide_groups): pure, no files."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.core.policy import EXACT_EVIDENCE, decide_groups
from dedupd.core.review import PINNED, REFERENCE, Review, distinct_contents
from tests.core.test_policy import ev, facts, graph

RULES = ["largest_pixels"]
# /A is the largest: the keep-rules keep it
FACTS = facts("/A", "/B", "/C", "/N", "/A2", pixels={"/A": 900, "/B": 500})
DIGESTS = {"/A": b"a", "/B": b"b", "/C": b"c", "/N": b"n", "/A2": b"a"}


def decide(edges, review: Review, reference=()):
    return decide_groups({p: FACTS[p] for p in edges}, edges, RULES, review=review.bind(DIGESTS, reference))


def test_a_group_declared_distinct_is_dismissed_until_a_new_member_joins() -> None:
    edges = graph({("/A", "/B"): ev(4), ("/B", "/C"): ev(5)})
    said = Review(distinct=(frozenset({b"a", b"b", b"c"}),))
    assert decide(edges, said) == []
    assert [g.keep for g in decide(edges, Review())] == ["/A"]  # without the decision: a group

    joined = graph({("/A", "/B"): ev(4), ("/B", "/C"): ev(5), ("/A", "/N"): ev(2)})  # /N is new content
    (g,) = decide(joined, said)
    assert g.reopened and g.keep == "/A"
    by = {d.path: d for d in g.duplicates}
    assert by["/N"].move  # the newcomer matches the kept copy: it may go
    assert by["/B"].distinct and not by["/B"].move  # the user said /A and /B are different pictures
    assert not by["/C"].move


def test_a_pair_declared_distinct_inside_a_larger_group_stays() -> None:
    edges = graph({("/A", "/B"): ev(4), ("/A", "/C"): ev(3)})
    (g,) = decide(edges, Review(distinct=(frozenset({b"a", b"b"}),)))
    assert [d.path for d in g.moves] == ["/C"] and g.reopened


def test_byte_identical_copies_are_never_declared_distinct() -> None:
    edges = graph({("/A", "/A2"): EXACT_EVIDENCE, ("/A", "/B"): ev(4)})
    (g,) = decide(edges, Review(distinct=(frozenset({b"a", b"b"}),)))
    assert {d.path for d in g.moves} == {"/A2"}  # same content as /A: still a duplicate
    with pytest.raises(ValueError, match="byte-identical"):
        distinct_contents([("/A", b"a"), ("/A2", b"a")])
    with pytest.raises(ValueError, match="at least two"):
        distinct_contents([("/A", b"a"), ("/A", b"a")])
    assert distinct_contents([("/A", b"a"), ("/B", b"b")]) == {b"a": "/A", b"b": "/B"}


def test_a_pin_chooses_the_kept_copy_the_latest_pin_wins_and_an_older_one_stays() -> None:
    edges = graph({("/A", "/B"): ev(4), ("/A", "/C"): ev(3)})
    (g,) = decide(edges, Review(pins=((b"b", 10.0, "/B"),)))
    assert g.keep == "/B" and g.kept_by == PINNED
    (g,) = decide(edges, Review(pins=((b"b", 10.0, "/B"), (b"c", 20.0, "/C"))))
    assert g.keep == "/C"
    assert {d.path: d.protected for d in g.duplicates} == {"/A": None, "/B": PINNED}
    edges2 = graph({("/A", "/B"): ev(4), ("/A", "/C"): ev(3), ("/B", "/C"): ev(6)})
    (g,) = decide(edges2, Review(pins=((b"b", 10.0, "/B"), (b"c", 20.0, "/C"))))
    assert g.keep == "/C" and [d.path for d in g.moves] == ["/A"]  # /B matches /C too, but stays pinned


def test_a_pin_names_one_of_byte_identical_copies_and_follows_a_rename() -> None:
    edges = graph({("/A", "/A2"): EXACT_EVIDENCE})
    (g,) = decide(edges, Review(pins=((b"a", 1.0, "/A2"),)))
    assert g.keep == "/A2" and [d.path for d in g.moves] == ["/A"]  # the other copy is a plain duplicate
    (g,) = decide(edges, Review(pins=((b"a", 1.0, "/renamed-away"),)))  # named path gone: the content still wins
    assert g.kept_by == PINNED and len(g.moves) == 1


def test_reference_copies_are_kept_first_and_never_moved() -> None:
    edges = graph({("/A", "/B"): ev(4), ("/A", "/C"): ev(3), ("/B", "/C"): ev(3)})
    (g,) = decide(edges, Review(pins=((b"c", 1.0, "/C"),)), reference={"/B"})
    assert g.keep == "/B" and g.kept_by == REFERENCE  # before pins and keep-rules
    assert {d.path: d.protected for d in g.duplicates} == {"/A": None, "/C": PINNED}
    (g,) = decide(edges, Review(), reference={"/B", "/C"})
    assert g.keep == "/B" and [d.path for d in g.moves] == ["/A"]  # /C: another original, stays


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABCDN"), st.sampled_from("ABCDN")), min_size=1, max_size=10),
       st.sets(st.sampled_from("ABCDN")), st.sets(st.sampled_from("ABCDN"), max_size=2))
def test_nothing_protected_or_declared_distinct_from_the_keeper_ever_moves(pairs, declared, refs) -> None:
    edges = graph({(f"/{a}", f"/{b}"): ev(3) for a, b in pairs if a != b})
    if not edges:
        return
    digests = {p: p.encode() for p in edges}
    review = Review(distinct=(frozenset(f"/{x}".encode() for x in declared),), pins=((b"/D", 1.0, "/D"),))
    bound = review.bind(digests, {f"/{r}" for r in refs})
    fs = facts(*edges)
    for g in decide_groups(fs, edges, RULES, review=bound):
        for d in g.moves:
            assert d.path in edges[g.keep]  # only direct matches
            assert bound.protected(d.path, g.keep) is None and not bound.distinct(g.keep, d.path)
        total, said = bound.declared(g.members, edges)
        assert said == 0 or said < total  # a group all of whose matches were declared distinct is not reported
