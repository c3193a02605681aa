"""The duplicate rule and the keep/quarantine decision, as pure functions.

Two questions, answered here and nowhere else:

- :func:`pair_evidence`: are two contents duplicates under the configured thresholds, and why
  (the first method that matched and every method's score)?
- :func:`decide_groups`: given the members of the duplicate graph with their facts (path, pixels,
  bytes, mtime) and the evidence between them, which copy of each group is kept, which members
  are moved (only *direct* matches of the kept copy: A~B and B~C never moves C for A) and why.

The reports (``groups.json``) and the daemon's quarantine planner both call :func:`decide_groups`,
so what the report says would be quarantined is exactly what the daemon quarantines.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from dedupd.core import variants as hash_variants
from dedupd.core.groups import components
from dedupd.core.keep import Candidate, choose_keeper, rule_key
from dedupd.core.review import BoundReview

EXACT = "exact"
#: Confidence bands of a match: ``strong`` may be quarantined, ``weak`` is only reported for review.
STRONG = "strong"
WEAK = "weak"
BANDS: tuple[str, ...] = (STRONG, WEAK)
#: Score name suffix of the framing check (``"phash@agree"``, see :func:`framing_distance`).
AGREE = "agree"


@dataclass(frozen=True)
class Matching:
    """Duplicate rule: hash thresholds (max Hamming), optional CNN min similarity, any/all.

    The cascade (see :func:`band_of`): ``strong`` maps a method to the bound within which its
    match alone is ``strong`` (hash: max distance; ``"cnn"``: min similarity); a hash match beyond
    its bound is ``strong`` only when the CNN also matches (it confirms it), and every other match
    is ``weak``. An empty ``strong`` means no bands: every match is ``strong`` (the rule before
    bands existed). ``options`` maps a hash method to its variant options (``"crop"``,
    ``"dihedral"``: :mod:`dedupd.core.variants`) and the max distance of a match through them
    (capped by the method's threshold: a variant comparison is stricter or equal).
    """

    hashes: Mapping[str, int]
    cnn: float | None = None
    mode: str = "any"
    strong: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: min CNN similarity that confirms a hash match beyond its strong bound (None: the CNN threshold)
    confirm: float | None = None
    #: hash method → max :func:`framing_distance` of a plain match beyond its strong bound (every
    #: plain match without a bound): a weak match that fails this check is no match of the method
    #: (docs/quality.md, "framing check"); methods not listed have no check
    agree: Mapping[str, int] = field(default_factory=dict)

    def limits(self, method: str) -> list[tuple[str, int]]:
        """``(option, max distance)`` of each comparison family of a hash method: ``""`` (plain,
        its threshold) first, then each variant option, capped by the threshold."""
        t = self.hashes[method]
        return [("", t), *((o, min(t, v)) for o, v in self.options.get(method, {}).items())]

    @property
    def methods(self) -> list[str]:
        return [*self.hashes, *(["cnn"] if self.cnn is not None else [])]

    def checks(self) -> list[str]:
        """Names of the framing-check scores this rule reads (``"phash@agree"``): computed for
        every pair, never used to find candidates."""
        return [f"{m}@{AGREE}" for m in self.hashes if m in self.agree]


def framing_distance(method: str, a: Mapping[str, int], b: Mapping[str, int]) -> int | None:
    """The largest Hamming distance between the two contents' crop hashes of the *same* framing
    (``a@c90`` against ``b@c90``, ``a@c81`` against ``b@c81``); None when a side lacks one.

    Two copies of one picture that differ by a photometric edit (re-encoding, brightness, a
    watermark) are near-duplicates at every framing; two different pictures whose plain hashes
    happen to be close (flat tiles, one diagonal edge) rarely are at all three: the check cuts
    chance matches, whose number grows with the square of the collection, at little recall.
    """
    worst = 0
    for scale in hash_variants.CROP_SCALES:
        name = hash_variants.key(method, scale)
        if name not in a or name not in b:
            return None
        worst = max(worst, (a[name] ^ b[name]).bit_count())
    return worst


@dataclass(frozen=True)
class Evidence:
    """Why two files are duplicates: the primary method and its score, plus every method's score."""

    method: str
    score: float
    scores: Mapping[str, float] = field(default_factory=dict)
    band: str = STRONG
    #: every method within its threshold, in config order (the cascade's evidence)
    matched: tuple[str, ...] = field(default=(), compare=False)
    #: for hash methods reached through a variant hash: method → variant (``{"phash": "c90"}``)
    variants: Mapping[str, str] = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict:
        key = "similarity" if self.method == "cnn" else "distance"
        out = {"method": self.method, key: self.score, "scores": dict(self.scores), "band": self.band,
               "matched": list(self.matched or (self.method,))}
        if self.variants:
            out["variants"] = dict(self.variants)
        return out

    @property
    def reason(self) -> str:
        """One line for the manifest and the log: ``"phash distance 3 to kept copy"``."""
        kind = "similarity" if self.method == "cnn" else "distance"
        return f"{self.method} {kind} {self.score} to kept copy"


EXACT_EVIDENCE = Evidence(EXACT, 0, {EXACT: 0}, STRONG, (EXACT,))


def band_of(matching: Matching, scores: Mapping[str, float], hits: Sequence[str]) -> str:
    """The cascade's confidence in a match: ``strong`` or ``weak``.

    Strong when a matching method is within its ``strong`` bound (hash distance ``<=``, CNN
    similarity ``>=``), or when a hash method matches and the CNN confirms it (similarity at
    least ``matching.confirm``, or the CNN threshold when that is None). Weak otherwise: hash-only
    matches beyond the strong bound, CNN-only matches below it. Without bands (empty
    ``matching.strong``) every match is strong.
    """
    if not matching.strong:
        return STRONG
    for m in hits:
        bound = matching.strong.get(m)
        if bound is not None and (scores[m] >= bound if m == "cnn" else scores[m] <= bound):
            return STRONG
    if "cnn" in hits and any(m != "cnn" for m in hits):
        if matching.confirm is None or scores["cnn"] >= matching.confirm:
            return STRONG
    return WEAK


def pair_evidence(matching: Matching, a: Mapping[str, int], b: Mapping[str, int], sim: float | None) -> Evidence | None:
    """Decide one pair of contents under ``matching`` (None = not duplicates).

    Args:
        a, b: each content's hashes (method → 64-bit int, plus variant hashes under
            ``"method@variant"`` keys); a method missing on one side is skipped.
        sim: their CNN cosine similarity, when both have a vector.
    """
    scores: dict[str, float | None] = {}
    hows: dict[str, str] = {}
    for method in matching.hashes:
        for option, (d, variant) in hash_variants.distances(method, matching.options.get(method, {}), a, b).items():
            name = f"{method}@{option}" if option else method
            scores[name] = d
            if option:
                hows[name] = variant
    for name in matching.checks():
        scores[name] = framing_distance(name.partition("@")[0], a, b)
    if sim is not None:
        scores["cnn"] = sim
    return score_evidence(matching, scores, hows)


def score_evidence(matching: Matching, scores: Mapping[str, float | None],
                   hows: Mapping[str, str] | None = None) -> Evidence | None:
    """Decide one pair from its scores, as :func:`pair_evidence` does from the hashes.

    ``scores``: method → plain Hamming distance, ``"method@option"`` → the smallest distance
    through that variant family (crop, dihedral), ``"method@agree"`` → the framing check
    (:func:`framing_distance`), ``"cnn"`` → similarity; a missing or None score is skipped (a
    missing framing check fails it). ``hows``: ``"method@option"`` → the variant that gave it (``"c90"``), for
    the evidence (default: the family name).
    """
    out: dict[str, float] = {}
    hits: list[str] = []
    via: dict[str, str] = {}
    for method, limit in matching.hashes.items():
        opts = matching.options.get(method, {})
        found: dict[str, tuple[float, str]] = {}
        for option, _ in matching.limits(method):
            d = scores.get(f"{method}@{option}" if option else method)
            if d is not None:
                found[option] = (d, (hows or {}).get(f"{method}@{option}", option))
        if not found:
            continue
        within = [found[f] for f in found if found[f][0] <= (limit if not f else min(limit, opts[f]))]
        if within and method in matching.agree and not _framed(matching, method, within, scores):
            within = []  # a weak plain match whose framings disagree: no match of this method
        d, how = min(within) if within else found.get("", min(found.values()))
        out[method] = d
        if within:
            hits.append(method)
            if how:
                via[method] = how
    sim = scores.get("cnn")
    if matching.cnn is not None and sim is not None:
        out["cnn"] = round(float(sim), 6)
        if sim >= matching.cnn:
            hits.append("cnn")
    ok = bool(hits) and (matching.mode == "any" or len(hits) == len(matching.methods))
    if not ok:
        return None
    return Evidence(hits[0], out[hits[0]], out, band_of(matching, out, hits), tuple(hits),
                    {m: v for m, v in via.items() if m in hits})


def _framed(matching: Matching, method: str, within: list[tuple[float, str]],
            scores: Mapping[str, float | None]) -> bool:
    """Whether a hash method's match passes the framing check: a variant family within its
    limit, or a plain distance within the strong bound, needs none; otherwise the framing
    distance must be within ``matching.agree``."""
    bound = matching.strong.get(method)
    if any(how for _, how in within) or (bound is not None and min(within)[0] <= bound):
        return True
    framing = scores.get(f"{method}@{AGREE}")
    return framing is not None and framing <= matching.agree[method]


def closeness(path: str, ev: Evidence) -> tuple:
    """Sort key of a neighbour: exact copies first, then the closest score, then the name."""
    rank = 0 if ev.method == EXACT else 1
    score = -ev.score if ev.method == "cnn" else ev.score
    return (rank, score, path)


@dataclass(frozen=True)
class Duplicate:
    """A member of a group other than the kept copy.

    ``direct``: it matches the kept copy itself (``evidence`` says how). Otherwise it is only in
    the group through others: ``via`` is its closest neighbour that matches the kept copy
    directly (None when even that is more than two steps away). ``exempt``: a user restored it, so
    it stays although it matches. ``distinct``: the user said it is not a duplicate of the kept
    copy. ``protected``: why it is never moved (a reference root, pinned by the user; see
    :mod:`dedupd.core.review`).
    """

    path: str
    direct: bool
    evidence: Evidence | None = None
    via: str | None = None
    exempt: bool = False
    distinct: bool = False
    protected: str | None = None

    @property
    def move(self) -> bool:
        """Quarantine it: a direct, ``strong`` match of the kept copy that is not exempt, not
        declared distinct and not protected (a ``weak`` match is reported for review, never moved)."""
        return (self.direct and not self.exempt and not self.distinct and self.protected is None
                and self.evidence is not None and self.evidence.band == STRONG)


@dataclass(frozen=True)
class GroupDecision:
    """One duplicate group: its members (sorted), the copy to keep and every other member."""

    members: tuple[str, ...]
    keep: str
    duplicates: tuple[Duplicate, ...]
    kept_by: str | None = None  # the kept copy was not chosen by the keep-rules: why (core.review)
    reopened: bool = False  # the user declared some pairs distinct, then a new member joined

    @property
    def moves(self) -> tuple[Duplicate, ...]:
        """The members to quarantine: direct, strong matches of the kept copy that are not exempt."""
        return tuple(d for d in self.duplicates if d.move)


def decide_group(
    members: Sequence[Candidate],
    edges: Mapping[str, Mapping[str, Evidence]],
    rules: Sequence[str | dict[str, str]],
    exempt: Collection[str] = (),
    review: BoundReview | None = None,
) -> GroupDecision:
    """Keep one copy of a connected group and say, for every other member, whether it goes and why.

    Args:
        members: the group's files with the facts the keep-rule looks at.
        edges: ``{path: {duplicate path: evidence}}``, symmetric; paths outside ``members`` are ignored.
        rules: keep-rules in :mod:`dedupd.core.keep`'s vocabulary.
        exempt: paths that must not be moved (restored by a user).
        review: the user's decisions (reference copies and pins choose the kept copy first;
            declared-distinct and protected members are not moved).
    """
    kept_by = None
    if review is None:
        keep = choose_keeper(members, rules).path
    else:
        by_rules = rule_key(rules)
        keep = min(members, key=lambda c: (review.rank(c.path), by_rules(c))).path
        kept_by = review.protected(keep)
    names = sorted(c.path for c in members)
    inside = set(names)
    direct = {p: ev for p, ev in edges.get(keep, {}).items() if p in inside and p != keep}
    out = []
    for p in names:
        if p == keep:
            continue
        distinct = review is not None and review.distinct(keep, p)
        protected = None if review is None else review.protected(p, keep)
        if p in direct:
            out.append(Duplicate(p, True, direct[p], exempt=p in exempt, distinct=distinct, protected=protected))
        else:
            near = sorted(edges.get(p, {}).items(), key=lambda item: closeness(*item))
            via = next((q for q, _ in near if q in direct), None)
            out.append(Duplicate(p, False, via=via, exempt=p in exempt, distinct=distinct, protected=protected))
    reopened = review is not None and review.declared(names, edges)[1] > 0
    return GroupDecision(tuple(names), keep, tuple(out), kept_by, reopened)


def decide_groups(
    facts: Mapping[str, Candidate],
    edges: Mapping[str, Mapping[str, Evidence]],
    rules: Sequence[str | dict[str, str]],
    exempt: Collection[str] = (),
    review: BoundReview | None = None,
) -> list[GroupDecision]:
    """Every duplicate group of the graph ``edges`` (largest first, then by first member), decided.

    Args:
        facts: keep-rule facts of every path that appears in ``edges``.
        edges: ``{path: {duplicate path: evidence}}``, symmetric.
        rules: keep-rules in :mod:`dedupd.core.keep`'s vocabulary.
        exempt: paths that must not be moved (restored by a user).
        review: the user's decisions; a group whose every match the user declared distinct is
            left out (see :mod:`dedupd.core.review`).
    """
    out = []
    for group in components(edges):
        if review is not None:
            matches, declared = review.declared(group, edges)
            if matches and declared == matches:
                continue  # dismissed: "not duplicates", until a new member joins
        out.append(decide_group([facts[p] for p in group], edges, rules, exempt, review))
    return out
