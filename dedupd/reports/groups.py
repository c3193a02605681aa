"""Duplicate groups for ``groups.json``, ``report.html`` and the socket's ``/v1/groups``.

The decision (which copy is kept, which members match it directly and how) is
:func:`dedupd.core.policy.decide_groups`; this module gathers its inputs from the index and
turns its answer into the report format. That format is a contract with report consumers:
``{"id", "size", "keep": {path, width, height, bytes, mtime}, "duplicates": [{path, ..., "direct",
"method", "distance"|"similarity", "scores"} | {path, ..., "direct": false, "via"}]}``.
Added for decisions and previews: every duplicate has ``"move"`` (quarantine would move it, or
moves it) and, when they apply, ``"distinct": true`` (the user said not a duplicate of the kept
copy) and ``"protected"`` (why it never moves); a group may have ``"kept_by"`` (the kept copy is
a reference original or the user's choice) and ``"reopened": true``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from dedupd.core.keep import Candidate
from dedupd.core.policy import Evidence, GroupDecision, decide_groups
from dedupd.core.review import Review
from dedupd.daemon.config import Config, KeepRule
from dedupd.daemon.index import GraphSnapshot, MatchIndex
from dedupd.daemon.slices import drop_in_steps


def keep_rules(rules: Sequence[KeepRule]) -> list[str | dict[str, str]]:
    """Config keep rules in :mod:`dedupd.core.keep`'s vocabulary."""
    return [{"prefer": r.pattern or ""} if r.kind == "prefer" else r.kind for r in rules]


def file_view(path: str, index: MatchIndex) -> dict[str, Any]:
    info = index.files.get(path)
    if info is None:
        return {"path": path}
    return {"path": path, "width": info.width, "height": info.height, "bytes": info.size,
            "mtime": round(info.mtime_ns / 1e9, 3)}


def decide(index: MatchIndex | GraphSnapshot, rules: Sequence[KeepRule], exempt: Collection[str] = (),
           review: Review | None = None, config: Config | None = None) -> list[GroupDecision]:
    """Every duplicate group of ``index`` decided by the keep ``rules`` (call under ``index.lock``).

    ``review`` (the store's decisions) and ``config`` (its reference roots) apply the user's word,
    see :mod:`dedupd.core.review`.
    """
    with index.lock:
        edges: dict[str, dict[str, Evidence]] = {p: dict(d) for p, d in index.duplicate_lists().items()}
        facts = {}
        for p in edges:
            info = index.files[p]
            facts[p] = Candidate(p, info.width * info.height, info.size, info.mtime_ns)
        bound = None
        reference = [p for p in edges if config.is_reference(p)] if config is not None else []
        if (review is not None and not review.empty) or reference:
            bound = (review or Review()).bind({p: index.files[p].digest for p in edges}, reference)
    decided = decide_groups(facts, edges, keep_rules(rules), exempt, bound)
    drop_in_steps(edges)  # hundreds of thousands of dicts at 1M files: not freed in one C call on return
    drop_in_steps(facts)
    return decided


def group_id(members: Sequence[str]) -> str:
    """A group's ``id``: a short hash of its (sorted) members."""
    return hashlib.blake2b("\0".join(members).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _str_or_null(value: str | None) -> str:
    """``_compact`` of a string or None, without ``json.dumps``'s per-call cost (~100k calls at 1M files)."""
    return "null" if value is None else encode_basestring_ascii(value)


def _file_json(path: str, index: MatchIndex | GraphSnapshot) -> str:
    """:func:`file_view` as compact JSON members (without the braces)."""
    info = index.files.get(path)
    if info is None:
        return '"path":' + encode_basestring_ascii(path)
    return (f'"path":{encode_basestring_ascii(path)},"width":{info.width!r},"height":{info.height!r},'
            f'"bytes":{info.size!r},"mtime":{round(info.mtime_ns / 1e9, 3)!r}')


def encode_group(decision: GroupDecision, index: MatchIndex | GraphSnapshot, evidence: dict[int, str]
               ) -> tuple[str, list[tuple[str, int]]]:
    """``json.dumps(group_view(decision, index), separators=(",", ":"))`` without building the
    view (a million-file report has ~100k groups), and the members quarantine would move, with
    their bytes. ``evidence``: a memo of each evidence object's JSON (they are shared), by id,
    valid while the decisions live."""
    dups, moves = [], []
    for d in decision.duplicates:
        if d.direct:
            assert d.evidence is not None
            ev = evidence.get(id(d.evidence))
            if ev is None:
                ev = evidence[id(d.evidence)] = _compact(d.evidence.as_dict())[1:-1]
            how = ',"direct":true,' + ev
        else:
            how = ',"direct":false,"via":' + _str_or_null(d.via)
        extra = ',"distinct":true' if d.distinct else ""
        if d.protected:
            extra += ',"protected":' + _str_or_null(d.protected)
        move = d.move
        dups.append("{" + _file_json(d.path, index) + how + (',"move":true' if move else ',"move":false') + extra + "}")
        if move:
            info = index.files.get(d.path)
            moves.append((d.path, 0 if info is None else info.size))
    out = (f'{{"id":"{group_id(decision.members)}","size":{len(decision.members)},'
           f'"keep":{{{_file_json(decision.keep, index)}}},"duplicates":[{",".join(dups)}]')
    if decision.kept_by:
        out += ',"kept_by":' + _compact(decision.kept_by)
    if decision.reopened:
        out += ',"reopened":true'
    return out + "}", moves


def group_view(decision: GroupDecision, index: MatchIndex) -> dict[str, Any]:
    """One group in the report format."""
    dups = []
    for d in decision.duplicates:
        entry = {**file_view(d.path, index), "direct": d.direct}
        if d.direct:
            assert d.evidence is not None
            entry.update(d.evidence.as_dict())
        else:
            entry["via"] = d.via
        entry["move"] = d.move
        if d.distinct:
            entry["distinct"] = True
        if d.protected:
            entry["protected"] = d.protected
        dups.append(entry)
    out = {"id": group_id(decision.members), "size": len(decision.members), "keep": file_view(decision.keep, index), "duplicates": dups}
    if decision.kept_by:
        out["kept_by"] = decision.kept_by
    if decision.reopened:
        out["reopened"] = True
    return out


def build_groups(index: MatchIndex, rules: Sequence[KeepRule], review: Review | None = None,
                 config: Config | None = None) -> list[dict[str, Any]]:
    """Every duplicate group: the kept file and, for each other member, how it matched the kept one."""
    with index.lock:
        return [group_view(g, index) for g in decide(index, rules, review=review, config=config)]


def would_quarantine(groups: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The preview of ``groups`` (:func:`build_groups` format): paths quarantine moves, bytes it frees."""
    paths = [d for g in groups for d in g["duplicates"] if d.get("move")]
    return {"would_quarantine": [d["path"] for d in paths], "would_free_bytes": sum(d.get("bytes", 0) for d in paths)}
