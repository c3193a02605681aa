"""The start-up graph built in blocks, with adds/removes in between, equals a synchronous build."""

from __future__ import annotations

import random
import threading

from dedupd.core import hamming
from dedupd.daemon.index import FileInfo, MatchIndex, Matching


def items(seed: int, n: int):
    rng = random.Random(seed)
    values: list[int] = []
    for k in range(n):
        if values and rng.random() < 0.5:
            v = rng.choice(values) ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64))
        else:
            v = rng.getrandbits(64)
        values.append(v)
        yield f"/r/{k}.jpg", FileInfo(k.to_bytes(8, "big"), 1, 1, 8, 8), {"phash": v}, None


def graph(index: MatchIndex) -> dict[str, set[str]]:
    return {p: {q for q, _ in index.duplicates_of(p)} for p in index.files}


def test_background_build_with_concurrent_changes_equals_sync(monkeypatch):
    monkeypatch.setattr(hamming, "_BLOCK_ELEMENTS", 4096)  # many small blocks
    loaded = list(items(1, 1500))
    extra = list(items(2, 200))
    bg = MatchIndex(Matching({"phash": 10}))
    bg.bulk_load(loaded, build_graph=False)
    assert not bg.graph_ready and bg.query({"phash": loaded[0][2]["phash"]})  # queries work meanwhile

    builder = threading.Thread(target=bg.build_graph)
    builder.start()
    for (path, _info, _hashes, _), (path2, info2, hashes2, _) in zip(loaded[::7], extra):
        bg.remove(path)
        bg.add("/new" + path2, FileInfo(b"x" + info2.digest, 1, 1, 8, 8), hashes2)
    builder.join()
    assert bg.graph_ready

    sync = MatchIndex(Matching({"phash": 10}))
    removed = {p for p, *_ in loaded[::7][: len(extra)]}
    sync.bulk_load([it for it in loaded if it[0] not in removed]
                   + [("/new" + p, FileInfo(b"x" + i.digest, 1, 1, 8, 8), h, v) for p, i, h, v in extra[: len(removed)]])
    assert graph(bg) == graph(sync)
    assert sum(len(v) for v in graph(sync).values()) > 100  # the test exercises real edges


def test_build_graph_can_be_stopped():
    bg = MatchIndex(Matching({"phash": 10}))
    bg.bulk_load(list(items(3, 300)), build_graph=False)
    assert bg.build_graph(should_stop=lambda: True) is False
    assert not bg.graph_ready


def test_a_retune_supersedes_a_running_build():
    """A reload's retune empties the graph: a build of the old graph stops, the new one completes."""
    loaded = list(items(5, 400))
    bg = MatchIndex(Matching({"phash": 10}))
    bg.bulk_load(loaded, build_graph=False)
    steps = 0

    def retune_midway() -> bool:
        nonlocal steps
        steps += 1
        if steps == 2:
            bg.retune(Matching({"phash": 6}))
        return False

    assert bg.build_graph(should_stop=retune_midway) is False and not bg.graph_ready
    assert bg.build_graph() and bg.graph_ready
    sync = MatchIndex(Matching({"phash": 6}))
    sync.bulk_load(loaded)
    assert graph(bg) == graph(sync)
