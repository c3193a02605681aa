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

from dedupd.core.groups import components
from dedupd.core.keep import Candidate, choose_keeper, rule_key
from dedupd.core.review import BoundReview

EXACT = "exact"


@dataclass(frozen=True)
class Matching:
    """Duplicate rule: hash thresholds (max Hamming), optional CNN min similarity, any/all."""

    hashes: Mapping[str, int]
    cnn: float | None = None
    mode: str = "any"

    @property
    def methods(self) -> list[str]:
        return [*self.hashes, *(["cnn"] if self.cnn is not None else [])]


@dataclass(frozen=True)
class Evidence:
    """Why two files are duplicates: the primary method and its score, plus every method's score."""

    method: str
    score: float
    scores: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        key = "similarity" if self.method == "cnn" else "distance"
        return {"method": self.method, key: self.score, "scores": dict(self.scores)}

    @property
    def reason(self) -> str:
        """One line for the manifest and the log: ``"phash distance 3 to kept copy"``."""
        kind = "similarity" if self.method == "cnn" else "distance"
        return f"{self.method} {kind} {self.score} to kept copy"


EXACT_EVIDENCE = Evidence(EXACT, 0, {EXACT: 0})


def pair_evidence(matching: Matching, a: Mapping[str, int], b: Mapping[str, int], sim: float | None) -> Evidence | None:
    """Decide one pair of contents under ``matching`` (None = not duplicates).

    Args:
        a, b: each content's hashes (method → 64-bit int); a method missing on one side is skipped.
        sim: their CNN cosine similarity, when both have a vector.
    """
    scores: dict[str, float] = {m: (a[m] ^ b[m]).bit_count() for m in matching.hashes if m in a and m in b}
    if sim is not None:
        scores["cnn"] = sim
    return score_evidence(matching, scores)


def score_evidence(matching: Matching, scores: Mapping[str, float | None]) -> Evidence | None:
    """Decide one pair from its scores (method → Hamming distance, ``"cnn"`` → similarity), as
    :func:`pair_evidence` does from the hashes; a method without a score (or None) is skipped."""
    out: dict[str, float] = {}
    hits: list[str] = []
    for method, limit in matching.hashes.items():
        d = scores.get(method)
        if d is not None:
            out[method] = d
            if d <= limit:
                hits.append(method)
    sim = scores.get("cnn")
    if matching.cnn is not None and sim is not None:
        out["cnn"] = round(float(sim), 6)
        if sim >= matching.cnn:
            hits.append("cnn")
    ok = bool(hits) and (matching.mode == "any" or len(hits) == len(matching.methods))
    if not ok:
        return None
    return Evidence(hits[0], out[hits[0]], out)


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
        return self.direct and not self.exempt and not self.distinct and self.protected is None


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
        """The members to quarantine: direct matches of the kept copy that are not exempt."""
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
