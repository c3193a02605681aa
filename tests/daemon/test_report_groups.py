"""``groups.json``'s group format (a contract with report consumers), built from a hand-made index."""

from __future__ import annotations

import numpy as np

from dedupd.daemon.config import KeepRule
from dedupd.daemon.index import FileInfo, MatchIndex, Matching
from dedupd.reports.groups import build_groups


def test_groups_format_golden() -> None:
    index = MatchIndex(Matching({"phash": 4}, cnn=0.9))
    v = np.zeros(4, dtype=np.float32)
    v[0] = 1.0
    w = np.array([0.95, 0.3122499, 0, 0], dtype=np.float32)  # cosine 0.95 with v
    index.add("/p/A.jpg", FileInfo(b"a" * 16, 1000, 1_600_000_000_000_000_000, 40, 30), {"phash": 0}, v)
    index.add("/p/A-copy.jpg", FileInfo(b"a" * 16, 1000, 1_600_000_001_000_000_000, 40, 30), {"phash": 0}, v)
    index.add("/p/B.jpg", FileInfo(b"b" * 16, 900, 1_600_000_002_000_000_000, 20, 30), {"phash": 0b111}, None)
    index.add("/p/C.jpg", FileInfo(b"c" * 16, 800, 1_600_000_003_000_000_000, 10, 30), {"phash": 0b11110111}, None)
    index.add("/p/D.jpg", FileInfo(b"d" * 16, 700, 1_600_000_004_000_000_000, 10, 10), {"phash": 0xFFFF0000FFFF0000}, w)
    groups = build_groups(index, (KeepRule("largest_pixels"),))
    assert groups == [{
        "id": groups[0]["id"], "size": 5,
        "keep": {"path": "/p/A-copy.jpg", "width": 40, "height": 30, "bytes": 1000, "mtime": 1600000001.0},
        "duplicates": [
            {"path": "/p/A.jpg", "width": 40, "height": 30, "bytes": 1000, "mtime": 1600000000.0, "direct": True,
             "method": "exact", "distance": 0, "scores": {"exact": 0}, "band": "strong", "matched": ["exact"], "move": True},
            {"path": "/p/B.jpg", "width": 20, "height": 30, "bytes": 900, "mtime": 1600000002.0, "direct": True,
             "method": "phash", "distance": 3, "scores": {"phash": 3}, "band": "strong", "matched": ["phash"], "move": True},
            {"path": "/p/C.jpg", "width": 10, "height": 30, "bytes": 800, "mtime": 1600000003.0, "direct": False,
             "via": "/p/B.jpg", "move": False},
            {"path": "/p/D.jpg", "width": 10, "height": 10, "bytes": 700, "mtime": 1600000004.0, "direct": True,
             "method": "cnn", "similarity": groups[0]["duplicates"][3]["similarity"],
             "scores": {"phash": 32, "cnn": groups[0]["duplicates"][3]["similarity"]}, "band": "strong", "matched": ["cnn"],
             "move": True},
        ]}]
    assert abs(groups[0]["duplicates"][3]["similarity"] - 0.95) < 1e-3
    assert len(groups[0]["id"]) == 12 and groups[0]["id"] == build_groups(index, (KeepRule("oldest_mtime"),))[0]["id"]


def test_encoded_group_lines_equal_the_views_json() -> None:
    """``encode_group`` (groups.json's line without building the view) gives exactly the compact
    JSON of ``group_view``, and the members that view moves with their bytes, also with the
    user's word in play (declared distinct, a pinned copy, a restored file) and a file not indexed."""
    import json

    from dedupd.core.review import Review
    from dedupd.reports.groups import decide, encode_group, group_view

    index = MatchIndex(Matching({"phash": 4}, cnn=0.9))
    v = np.zeros(4, dtype=np.float32)
    v[0] = 1.0
    w = np.array([0.95, 0.3122499, 0, 0], dtype=np.float32)
    index.add("/p/A.jpg", FileInfo(b"a" * 16, 1000, 1_600_000_000_123_456_789, 40, 30), {"phash": 0}, v)
    index.add("/p/A-copy.jpg", FileInfo(b"a" * 16, 1000, 1_600_000_001_000_000_000, 40, 30), {"phash": 0}, v)
    index.add("/p/B\u00e9\udcff.jpg", FileInfo(b"b" * 16, 900, 2, 20, 30), {"phash": 0b111}, None)
    index.add("/p/C.jpg", FileInfo(b"c" * 16, 800, 3, 10, 30), {"phash": 0b11110111}, None)
    index.add("/p/D.jpg", FileInfo(b"d" * 16, 700, 4, 10, 10), {"phash": 0xFFFF0000FFFF0000}, w)
    index.add("/q/E.jpg", FileInfo(b"e" * 16, 5, 5, 2, 2), {"phash": 1 << 60}, None)
    index.add("/q/F.jpg", FileInfo(b"f" * 16, 6, 6, 1, 1), {"phash": (1 << 60) | 1}, None)
    index.add("/q/G.jpg", FileInfo(b"g" * 16, 7, 7, 1, 1), {"phash": (1 << 60) | 2}, None)
    review = Review(distinct=(frozenset({b"e" * 16, b"f" * 16}), frozenset({b"a" * 16, b"b" * 16})),
                    pins=((b"c" * 16, 1.0, "/p/C.jpg"), (b"b" * 16, 2.0, "/p/B\u00e9\udcff.jpg")))
    seen: set[str] = set()
    for rv in (None, review):
        for rules in ((KeepRule("largest_pixels"),), (KeepRule("oldest_mtime"),)):
            memo: dict[int, str] = {}
            for decision in decide(index, rules, exempt={"/p/D.jpg"}, review=rv):
                line, moves = encode_group(decision, index, memo)
                view = group_view(decision, index)
                assert line == json.dumps(view, separators=(",", ":"))
                assert moves == [(d["path"], d.get("bytes", 0)) for d in view["duplicates"] if d.get("move")]
                seen.update(k for k in ("kept_by", "reopened") if k in view)
                seen.update(k for d in view["duplicates"] for k in ("distinct", "protected", "via") if k in d)
    decisions = decide(index, (KeepRule("largest_pixels"),))
    index.files.pop("/p/C.jpg")  # a member whose facts are gone since (listed by path only)
    for decision in decisions:
        assert encode_group(decision, index, {})[0] == json.dumps(group_view(decision, index), separators=(",", ":"))
    assert {"kept_by", "distinct", "protected", "via"} <= seen, seen
