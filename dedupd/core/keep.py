"""Keep-rules: which copy of a duplicate group is the original to keep.

A rule list is applied in order, each rule breaking the ties left by the previous ones; the
final tie-break is always the path, alphabetically (imagededup's rule). Pure: callers pass the
facts (pixels, bytes, mtime) they already know.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Rule names a config may use (plus ``{"prefer": "<glob>"}``).
RULES = ("largest_pixels", "largest_file", "oldest_mtime", "newest_mtime", "shortest_path")


@dataclass(frozen=True)
class Candidate:
    """What the keep-rule may look at for one file."""

    path: str
    pixels: int
    size: int
    mtime_ns: int


def _prefer(pattern: str) -> Callable[[Candidate], Any]:
    # a match sorts first; "**/" style globs and plain substrings of folders both work
    def key(c: Candidate) -> int:
        p = c.path
        hit = fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, f"*/{pattern}") or (
            not any(ch in pattern for ch in "*?[") and pattern.strip("/") in p.split("/")
        )
        return 0 if hit else 1

    return key


_KEYS: dict[str, Callable[[Candidate], Any]] = {
    "largest_pixels": lambda c: -c.pixels,
    "largest_file": lambda c: -c.size,
    "oldest_mtime": lambda c: c.mtime_ns,
    "newest_mtime": lambda c: -c.mtime_ns,
    "shortest_path": lambda c: len(c.path),
}


def rule_key(rules: Sequence[str | dict[str, str]]) -> Callable[[Candidate], tuple]:
    """Sort key implementing ``rules``; the smallest key is the copy to keep."""
    parts: list[Callable[[Candidate], Any]] = []
    for rule in rules:
        if isinstance(rule, dict):
            parts.append(_prefer(rule["prefer"]))
        elif rule in _KEYS:
            parts.append(_KEYS[rule])
        else:
            raise ValueError(f"unknown keep rule {rule!r}; use one of {', '.join(RULES)} or {{prefer: <glob>}}")
    return lambda c: (*(p(c) for p in parts), c.path)


def choose_keeper(candidates: Sequence[Candidate], rules: Sequence[str | dict[str, str]]) -> Candidate:
    """The candidate to keep under ``rules`` (ties broken alphabetically by path)."""
    if not candidates:
        raise ValueError("choose_keeper needs at least one candidate")
    return min(candidates, key=rule_key(rules))


_WHY = {
    "largest_pixels": lambda k, o: f"most pixels ({k.pixels:,} vs {o.pixels:,})",
    "largest_file": lambda k, o: f"largest file ({k.size:,} vs {o.size:,} bytes)",
    "oldest_mtime": lambda k, o: "oldest modification time",
    "newest_mtime": lambda k, o: "newest modification time",
    "shortest_path": lambda k, o: f"shortest path ({len(k.path)} vs {len(o.path)} characters)",
}


def keep_reason(keeper: str, candidates: Sequence[Candidate], rules: Sequence[str | dict[str, str]]) -> str:
    """Why ``keeper`` is the copy kept among ``candidates``: the first rule that sets it apart from the
    runner-up, in words. A keeper the rules would not choose was chosen otherwise (a user's decision
    or a reference root), and the answer says so."""
    by_path = {c.path: c for c in candidates}
    if keeper not in by_path or len(by_path) < 2:
        return "the only copy"
    rank = rule_key(rules)
    ranked = sorted(by_path.values(), key=rank)
    if ranked[0].path != keeper:
        return "chosen over the keep rules (a user's decision or a reference root)"
    k, runner = ranked[0], ranked[1]
    for rule, a, b in zip(rules, rank(k), rank(runner)):
        if a != b:
            if isinstance(rule, dict):
                return f"matches prefer: {rule['prefer']}"
            return _WHY[rule](k, runner)
    return "all keep rules tie: first in alphabetical order"
