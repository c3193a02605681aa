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
