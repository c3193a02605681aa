"""The framing check of weak hash matches (``Matching.agree``, :func:`framing_distance`)."""

from __future__ import annotations

import random

import pytest

from dedupd.core.policy import STRONG, WEAK, Matching, framing_distance, pair_evidence, score_evidence

#: the daemon's default rule: phash <= 10, crop hashes within 2, strong <= 4, framing check at 10
RULE = Matching({"phash": 10}, strong={"phash": 4}, options={"phash": {"crop": 2}}, agree={"phash": 10})
NO_CHECK = Matching({"phash": 10}, strong={"phash": 4}, options={"phash": {"crop": 2}})


def flip(value: int, bits: int, rng: random.Random) -> int:
    """``value`` with ``bits`` distinct random bits flipped."""
    for b in rng.sample(range(64), bits):
        value ^= 1 << b
    return value


def content(rng: random.Random) -> dict[str, int]:
    """Random plain and crop hashes, far apart from each other (no crop-family match by chance)."""
    return {"phash": rng.getrandbits(64), "phash@c90": rng.getrandbits(64), "phash@c81": rng.getrandbits(64)}


def edited(a: dict[str, int], plain: int, c90: int, c81: int, rng: random.Random) -> dict[str, int]:
    """A copy of ``a`` whose plain / c90 / c81 hashes differ by these many bits."""
    return {"phash": flip(a["phash"], plain, rng), "phash@c90": flip(a["phash@c90"], c90, rng),
            "phash@c81": flip(a["phash@c81"], c81, rng)}


def test_framing_distance_is_the_worse_of_the_two_framings_and_needs_both() -> None:
    rng = random.Random(1)
    a = content(rng)
    b = edited(a, 9, 3, 7, rng)
    assert framing_distance("phash", a, b) == 7 == framing_distance("phash", b, a)
    assert framing_distance("phash", a, {k: v for k, v in b.items() if k != "phash@c81"}) is None
    assert framing_distance("dhash", a, b) is None


@pytest.mark.parametrize("plain", [6, 8, 10])
def test_a_weak_match_counts_only_when_its_framings_agree(plain: int) -> None:
    rng = random.Random(plain)
    a = content(rng)
    agreeing = edited(a, plain, 10, 4, rng)
    ev = pair_evidence(RULE, a, agreeing, None)
    assert ev is not None and ev.band == WEAK and ev.method == "phash" and ev.score == plain
    disagreeing = edited(a, plain, 4, 11, rng)
    assert pair_evidence(RULE, a, disagreeing, None) is None
    # without the check (the library's rule, imagededup's) the same pair matches
    assert pair_evidence(NO_CHECK, a, disagreeing, None) is not None
    # a tighter check
    assert pair_evidence(Matching(RULE.hashes, strong=RULE.strong, options=RULE.options, agree={"phash": 3}),
                         a, agreeing, None) is None


def test_strong_and_crop_family_matches_need_no_framing_agreement() -> None:
    rng = random.Random(7)
    a = content(rng)
    strong = edited(a, 4, 30, 30, rng)
    ev = pair_evidence(RULE, a, strong, None)
    assert ev is not None and ev.band == STRONG and ev.score == 4
    # a border crop: the copy's plain hash is a's c90 hash (2 bits off), its framings disagree
    cropped = {"phash": flip(a["phash@c90"], 2, rng), "phash@c90": rng.getrandbits(64), "phash@c81": rng.getrandbits(64)}
    ev = pair_evidence(RULE, a, cropped, None)
    assert ev is not None and ev.variants == {"phash": "c90"} and ev.score <= 2


def test_missing_crop_hashes_fail_the_check() -> None:
    rng = random.Random(3)
    a = content(rng)
    b = edited(a, 8, 0, 0, rng)
    assert pair_evidence(RULE, a, b, None) is not None
    assert pair_evidence(RULE, {"phash": a["phash"]}, b, None) is None
    assert score_evidence(RULE, {"phash": 8}) is None
    assert score_evidence(RULE, {"phash": 8, "phash@agree": None}) is None
    assert score_evidence(RULE, {"phash": 8, "phash@agree": 10}) is not None
    assert score_evidence(RULE, {"phash": 4}) is not None  # strong: no check


def test_without_strong_bounds_every_plain_match_is_checked() -> None:
    rule = Matching({"phash": 10}, options={"phash": {"crop": 2}}, agree={"phash": 6})
    assert score_evidence(rule, {"phash": 0, "phash@agree": 7}) is None
    ev = score_evidence(rule, {"phash": 0, "phash@agree": 6})
    assert ev is not None and ev.band == STRONG  # no bands: every match is strong


def test_the_cnn_still_decides_alone_in_any_mode_and_a_failed_check_fails_all_mode() -> None:
    any_rule = Matching({"phash": 10}, cnn=0.9, strong={"phash": 4, "cnn": 0.99}, options={"phash": {"crop": 2}},
                        agree={"phash": 10})
    ev = score_evidence(any_rule, {"phash": 8, "phash@agree": 20, "cnn": 0.95})
    assert ev is not None and ev.method == "cnn" and ev.matched == ("cnn",) and ev.band == WEAK
    ev = score_evidence(any_rule, {"phash": 8, "phash@agree": 9, "cnn": 0.95})
    assert ev is not None and ev.matched == ("phash", "cnn") and ev.band == STRONG  # the CNN confirms it
    all_rule = Matching({"phash": 10}, cnn=0.9, mode="all", strong={"phash": 4}, options={"phash": {"crop": 2}},
                        agree={"phash": 10})
    assert score_evidence(all_rule, {"phash": 8, "phash@agree": 20, "cnn": 0.99}) is None
    assert score_evidence(all_rule, {"phash": 8, "phash@agree": 10, "cnn": 0.99}) is not None


def test_checks_name_the_scores_of_configured_methods_only() -> None:
    rule = Matching({"phash": 10, "dhash": 8}, options={"phash": {"crop": 2}}, agree={"phash": 10, "ahash": 4})
    assert rule.checks() == ["phash@agree"]
    assert NO_CHECK.checks() == []


def test_pair_and_score_evidence_agree_on_random_clustered_pairs() -> None:
    rng = random.Random(11)
    for _ in range(400):
        a = content(rng)
        b = edited(a, rng.randrange(0, 13), rng.randrange(0, 16), rng.randrange(0, 16), rng)
        ev = pair_evidence(RULE, a, b, None)
        plain = (a["phash"] ^ b["phash"]).bit_count()
        crop = min((a[k] ^ b["phash"]).bit_count() for k in ("phash@c90", "phash@c81"))
        crop = min(crop, *((a["phash"] ^ b[k]).bit_count() for k in ("phash@c90", "phash@c81")))
        scores = {"phash": plain, "phash@crop": crop, "phash@agree": framing_distance("phash", a, b)}
        assert ev == score_evidence(RULE, scores)
        expect = crop <= 2 or plain <= 4 or (plain <= 10 and scores["phash@agree"] <= 10)  # type: ignore[operator]
        assert (ev is not None) == expect
