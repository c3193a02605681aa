"""The user's word on duplicate groups, as pure values: "not a duplicate", "keep this one", originals.

Decisions are kept by *content* (digest), so a renamed or copied file keeps them:

- **distinct sets**: contents the user said are not duplicates of each other (``dedupd ignore A B``).
  A pair of members is *declared distinct* when both contents are in one set (byte-identical
  copies never are: same content). A group whose every match is a declared-distinct pair is
  *dismissed* (no report entry, nothing moved). When a new content joins it (its match is not
  declared), the group is *reopened*: reported again, and still no member is moved because of a
  member it was declared distinct from.
- **pins**: contents the user chose to keep (``dedupd keep PATH``): the pinned content is the kept
  copy of its group (the latest pin wins when a group holds several; among byte-identical copies
  the path the user named, while it exists); another pinned content in the group is never moved.
- **reference paths** (files in ``reference: true`` roots): never moved, and the kept copy when
  the group holds one (before pins and keep-rules).

:func:`dedupd.core.policy.decide_groups` takes a :class:`BoundReview` (decisions plus the current
path → digest map and the reference paths) and applies it; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

#: ``Duplicate.protected`` values: why a matching member stays
REFERENCE = "in a reference root"
PINNED = "kept by the user"


@dataclass(frozen=True)
class Review:
    """Decisions by content: ``distinct`` sets of digests, and ``pins`` (digest, when pinned, path named)."""

    distinct: tuple[frozenset[Hashable], ...] = ()
    pins: tuple[tuple[Hashable, float, str], ...] = ()

    def bind(self, digests: Mapping[str, Hashable], reference: Collection[str] = ()) -> BoundReview:
        """These decisions applied to the current files (``path → digest``) and reference paths."""
        return BoundReview(self, digests, frozenset(reference))

    @property
    def empty(self) -> bool:
        return not self.distinct and not self.pins


@dataclass(frozen=True)
class BoundReview:
    """A :class:`Review` seen through the current paths: the questions the decision asks."""

    review: Review
    digests: Mapping[str, Hashable]
    reference: frozenset[str] = frozenset()
    _pins: dict[Hashable, tuple[float, str]] = field(default_factory=dict, compare=False, repr=False)
    _sets_of: dict[Hashable, set[int]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for digest, when, path in self.review.pins:
            if when >= self._pins.get(digest, (-math.inf, ""))[0]:
                self._pins[digest] = (when, path)
        for i, members in enumerate(self.review.distinct):  # digest → the sets it is in: O(1) pair checks
            for digest in members:
                self._sets_of.setdefault(digest, set()).add(i)

    def distinct(self, a: str, b: str) -> bool:
        """The user said paths ``a`` and ``b`` are not duplicates (by their contents)."""
        da, db = self.digests.get(a), self.digests.get(b)
        if da is None or db is None or da == db or da not in self._sets_of or db not in self._sets_of:
            return False
        return not self._sets_of[da].isdisjoint(self._sets_of[db])

    def protected(self, path: str, keep: str | None = None) -> str | None:
        """Why ``path`` must never be moved (:data:`REFERENCE`, :data:`PINNED`), or None.

        With ``keep`` (the group's kept copy): a byte-identical copy of the kept pinned content is
        not protected by the pin (the user chose one copy of it).
        """
        if path in self.reference:
            return REFERENCE
        digest = self.digests.get(path)
        if digest in self._pins and (keep is None or self.digests.get(keep) != digest or path == keep):
            return PINNED
        return None

    def rank(self, path: str) -> tuple[int, float, int]:
        """Keeper order before the keep-rules: reference copies first, then the latest pin (the
        path the user named before its byte-identical copies)."""
        pin = self._pins.get(self.digests.get(path)) if path in self.digests else None
        return (0 if path in self.reference else 1, -pin[0] if pin else math.inf, 0 if pin and pin[1] == path else 1)

    def declared(self, members: Iterable[str], edges: Mapping[str, Mapping[str, object]]) -> tuple[int, int]:
        """``(matches, declared distinct)`` among the pairs of ``members`` that match in ``edges``
        (``(0, 0)`` at once when no member's content is in a distinct set)."""
        if not any(self.digests.get(p) in self._sets_of for p in members):
            return 0, 0
        inside = set(members)
        total = declared = 0
        for p in inside:
            for q in edges.get(p, {}):
                if q in inside and p < q:
                    total += 1
                    declared += self.distinct(p, q)
        return total, declared


def distinct_contents(named: Iterable[tuple[str, K]]) -> dict[K, str]:
    """``{digest: path}`` of the files a user says are not duplicates (``(path, digest)`` pairs).

    Raises:
        ValueError: two named files are byte-identical, or fewer than two contents are named.
    """
    out: dict[K, str] = {}
    for path, digest in named:
        if digest in out and out[digest] != path:
            raise ValueError(f"{out[digest]} and {path} are byte-identical: exact copies are always "
                             "duplicates (move or delete one yourself)")
        out[digest] = path
    if len(out) < 2:
        raise ValueError("name at least two different files that are not duplicates")
    return out
