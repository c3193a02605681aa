"""MatchIndex: every sequence of add/remove/rename, bulk_load and retune gives the brute-force graph."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.daemon.index import EXACT, FileInfo, MatchIndex, Matching

DIM = 8


@dataclass(frozen=True)
class Content:
    digest: bytes
    hashes: dict[str, int]
    vector: np.ndarray | None


def make_contents(rng: random.Random, n: int, with_vectors: bool) -> list[Content]:
    """Contents in clusters: near-duplicate hashes (a few flipped bits) and nearby vectors."""
    out: list[Content] = []
    for i in range(n):
        if out and rng.random() < 0.6:
            parent = rng.choice(out)
            hashes = {}
            for m, v in parent.hashes.items():
                for _ in range(rng.randrange(0, 14)):
                    v ^= 1 << rng.randrange(64)
                hashes[m] = v
            vec = None if parent.vector is None else parent.vector + np.array(
                [rng.gauss(0, 0.35) for _ in range(DIM)])
        else:
            hashes = {m: rng.getrandbits(64) for m in ("phash", "dhash")}
            vec = np.array([rng.gauss(0, 1) for _ in range(DIM)]) if with_vectors else None
        if vec is not None:
            vec = (vec / np.linalg.norm(vec)).astype(np.float32)
        out.append(Content(i.to_bytes(4, "big") * 4, hashes, vec))
    return out


def cnn_threshold(contents: list[Content], wanted: float) -> float:
    """A threshold near ``wanted`` that no pair's similarity is within 1e-3 of (float rounding)."""
    vecs = [c.vector.astype(np.float64) for c in contents if c.vector is not None]
    sims = sorted(float(a @ b) for i, a in enumerate(vecs) for b in vecs[i + 1:])
    for step in range(200):
        for thr in (wanted + step * 0.001, wanted - step * 0.001):
            if all(abs(s - thr) > 1e-3 for s in sims):
                return thr
    raise AssertionError("no threshold with a margin")


def brute_evidence(m: Matching, a: Content, b: Content) -> tuple[str, float] | None:
    if a.digest == b.digest:
        return (EXACT, 0)
    hits: list[tuple[str, float]] = []
    for method, limit in m.hashes.items():
        d = (a.hashes[method] ^ b.hashes[method]).bit_count()
        if d <= limit:
            hits.append((method, d))
    if m.cnn is not None and a.vector is not None and b.vector is not None:
        s = float(a.vector.astype(np.float64) @ b.vector.astype(np.float64))
        if s >= m.cnn:
            hits.append(("cnn", s))
    if not hits or (m.mode == "all" and len(hits) != len(m.methods)):
        return None
    return hits[0]


def brute_graph(m: Matching, files: dict[str, Content]) -> dict[str, dict[str, tuple[str, float]]]:
    out: dict[str, dict[str, tuple[str, float]]] = {p: {} for p in files}
    for p, a in files.items():
        for q, b in files.items():
            if p != q and (ev := brute_evidence(m, a, b)) is not None:
                out[p][q] = ev
    return out


def index_graph(index: MatchIndex) -> dict[str, dict[str, tuple[str, float]]]:
    out = {}
    for p in index.files:
        out[p] = {}
        for q, ev in index.duplicates_of(p):
            assert q not in out[p], f"{q} listed twice as a duplicate of {p}"
            out[p][q] = (ev.method, ev.score)
    return out


def assert_same(index: MatchIndex, m: Matching, files: dict[str, Content]) -> None:
    want = brute_graph(m, files)
    got = index_graph(index)
    assert got.keys() == want.keys()
    for p in want:
        assert got[p].keys() == want[p].keys(), p
        for q, (method, score) in want[p].items():
            assert got[p][q][0] == method, (p, q, got[p][q], want[p][q])
            assert got[p][q][1] == pytest.approx(score, abs=1e-5), (p, q)
    adjacency = index.adjacency()
    assert {p: set(v) for p, v in adjacency.items()} == {p: set(v) for p, v in want.items()}
    stats = index.stats()
    assert stats["files"] == len(files)
    assert stats["contents"] == len({c.digest for c in files.values()})
    neighbours = index.neighbours()
    assert neighbours == {p: set(v) for p, v in want.items() if v}


def info(c: Content) -> FileInfo:
    return FileInfo(c.digest, 100, 1, 10, 10)


MATCHINGS = [
    ("phash", lambda t: Matching({"phash": 8})),
    ("phash+dhash any", lambda t: Matching({"phash": 8, "dhash": 6}, None, "any")),
    ("phash+dhash all", lambda t: Matching({"phash": 10, "dhash": 8}, None, "all")),
    ("phash+cnn any", lambda t: Matching({"phash": 6}, t, "any")),
    ("phash+cnn all", lambda t: Matching({"phash": 12}, t, "all")),
    ("cnn only", lambda t: Matching({}, t, "any")),
]


@pytest.mark.parametrize("name,matching", MATCHINGS, ids=[m[0] for m in MATCHINGS])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_incremental_updates_equal_brute_force(name: str, matching, seed: int) -> None:
    rng = random.Random(seed)
    with_vectors = "cnn" in name
    contents = make_contents(rng, 10, with_vectors)
    m = matching(cnn_threshold(contents, 0.8) if with_vectors else None)
    index = MatchIndex(m)
    files: dict[str, Content] = {}
    names = [f"/r/{c}.jpg" for c in "abcdefghij"]

    def add(path: str, c: Content) -> None:
        index.add(path, info(c), c.hashes, c.vector)
        files[path] = c

    for _ in range(30):
        op = rng.random()
        if op < 0.5 or not files:
            add(rng.choice(names), rng.choice(contents))  # new file, or a changed one (new content)
        elif op < 0.7:
            p = rng.choice(sorted(files))
            assert index.remove(p) is not None
            del files[p]
            assert index.remove(p) is None
        else:  # rename, possibly over an existing file (mv a b when b exists)
            old, new = rng.choice(sorted(files)), rng.choice(names)
            if old == new:
                continue
            assert index.rename(old, new)
            files[new] = files.pop(old)
        assert_same(index, m, files)

    # bulk_load of the same files gives the same graph
    fresh = MatchIndex(m)
    fresh.bulk_load([(p, info(c), c.hashes, c.vector) for p, c in files.items()])
    assert_same(fresh, m, files)
    # load_store too (as a store gives them: encodings by digest, one of no file, and files, one with no encoding)
    fresh = MatchIndex(m)
    used = {c.digest: c for c in files.values()}
    orphan = next((c for c in contents if c.digest not in used), None)
    encodings = [(d, 10, 10, dict(c.hashes), None if c.vector is None else c.vector.tobytes())
                 for d, c in sorted(used.items()) + ([(orphan.digest, orphan)] if orphan else [])]
    fresh.load_store(encodings, [*((p, 100, 1, c.digest) for p, c in sorted(files.items())),
                                ("/r/no-encoding.jpg", 100, 1, b"x" * 16)])
    assert_same(fresh, m, files)
    assert fresh.files == {p: info(c) for p, c in files.items()} and fresh.content_count == len(used)
    # and so does retuning to other thresholds, compared with a fresh build at those thresholds
    other = Matching({k: v + 4 for k, v in m.hashes.items()},
                     None if m.cnn is None else cnn_threshold(contents, 0.7), "all" if m.mode == "any" else "any")
    index.retune(other)
    assert not index.graph_ready  # the graph is rebuilt by build_graph, not under the caller
    assert index.build_graph()
    assert_same(index, other, files)
    # the index keeps working after a retune
    add("/r/new.jpg", contents[0])
    assert_same(index, other, files)


def test_query_does_not_add_and_finds_exact_and_near() -> None:
    rng = random.Random(3)
    contents = make_contents(rng, 12, False)
    m = Matching({"phash": 10, "dhash": 10})
    index = MatchIndex(m)
    files = {f"/r/{i}.jpg": c for i, c in enumerate(contents)}
    for p, c in files.items():
        index.add(p, info(c), c.hashes)
    probe = contents[4]
    got = {p: ev.method for p, ev in index.query(probe.hashes, None, probe.digest)}
    want = {p: brute_evidence(m, probe, c)[0] for p, c in files.items() if brute_evidence(m, probe, c)}
    assert got == want
    assert got["/r/4.jpg"] == EXACT
    assert len(index.files) == 12


def test_rename_onto_an_indexed_path_replaces_it() -> None:
    """``mv a.jpg b.jpg`` where b.jpg is indexed: b's old content must not keep the name."""
    rng = random.Random(5)
    a, b = make_contents(rng, 2, False)
    twin = Content(b.digest, b.hashes, None)
    m = Matching({"phash": 0})
    index = MatchIndex(m)
    index.add("/r/a.jpg", info(a), a.hashes)
    index.add("/r/b.jpg", info(b), b.hashes)
    index.add("/r/b-copy.jpg", info(twin), twin.hashes)
    assert [p for p, _ in index.duplicates_of("/r/b-copy.jpg")] == ["/r/b.jpg"]
    assert index.rename("/r/a.jpg", "/r/b.jpg")
    assert index.duplicates_of("/r/b-copy.jpg") == []
    assert index.duplicates_of("/r/b.jpg") == []
    assert index.files["/r/b.jpg"].digest == a.digest
    assert index.stats() == {"files": 2, "contents": 2, "edges": 0}


def test_a_re_encoded_content_is_relinked_with_its_new_hashes() -> None:
    """A method added by a reload: the same digest comes back with more hashes (and a vector)."""
    m = Matching({"phash": 4, "dhash": 4}, None, "all")
    index = MatchIndex(m)
    a, b = FileInfo(b"a" * 16, 1, 1, 8, 8), FileInfo(b"b" * 16, 1, 1, 8, 8)
    index.add("/r/a.jpg", a, {"phash": 0})
    index.add("/r/b.jpg", b, {"phash": 1})
    index.add("/r/a2.jpg", a, {"phash": 0})
    assert index.duplicates_of("/r/b.jpg") == []  # dhash missing: "all" cannot agree
    index.add("/r/a.jpg", a, {"phash": 0, "dhash": 3})
    index.add("/r/b.jpg", b, {"phash": 1, "dhash": 2})
    assert {p for p, _ in index.duplicates_of("/r/b.jpg")} == {"/r/a.jpg", "/r/a2.jpg"}
    assert index.content_count == 2
