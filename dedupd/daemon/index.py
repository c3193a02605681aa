"""The daemon's in-memory match state: hash columns, the embedding matrix and the duplicate graph.

Everything is keyed by *content digest* first: byte-identical copies share one tree entry and one
vector, and are duplicates of each other by definition. The graph between digests (``Evidence``
per matched pair) is kept up to date on every add/remove, so reports and queries never rescan.
The index is a cache of the store: it can always be rebuilt from it, and is only updated after the
store commit. One ``RLock`` guards it; readers (the socket server) take it briefly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from dedupd.core import hamming
from dedupd.core import variants as hash_variants
from dedupd.core.hashindex import HashIndex
from dedupd.core.policy import EXACT as EXACT  # re-exported: callers import the match types from here
from dedupd.core.policy import EXACT_EVIDENCE, Evidence, Matching, closeness, pair_evidence
from dedupd.core.vectors import VectorIndex


@dataclass
class FileInfo:
    """What the index keeps per path (for the keep-rule and reports)."""

    digest: bytes
    size: int
    mtime_ns: int
    width: int
    height: int


@dataclass
class _Content:
    hashes: dict[str, int]
    has_vector: bool
    paths: set[str] = field(default_factory=set)


class MatchIndex:
    """Incremental duplicate graph over indexed files."""

    def __init__(self, matching: Matching) -> None:
        self.lock = threading.RLock()
        self.matching = matching
        self.files: dict[str, FileInfo] = {}
        self._contents: dict[bytes, _Content] = {}
        self._graph: dict[bytes, dict[bytes, Evidence]] = {}
        self._trees: dict[str, HashIndex[bytes]] = {k: HashIndex() for k in _columns(matching)}
        self._vectors: VectorIndex[bytes] | None = None
        self.generation = 0  # bumped on every change (readers cache derived views on it)
        self.graph_ready = True  # False while build_graph() is still linking bulk-loaded contents
        self._graph_epoch = 0  # bumped when the graph is emptied for a rebuild

    # -- evidence ---------------------------------------------------------------------------

    def _evidence(self, a: Mapping[str, int], b: Mapping[str, int], sim: float | None) -> Evidence | None:
        """Decide one pair of contents under the matching rule (None = not duplicates)."""
        return pair_evidence(self.matching, a, b, sim)

    def _candidates(self, hashes: Mapping[str, int], vector: np.ndarray | None) -> dict[bytes, float | None]:
        """Digests that may match (from trees and vectors), with their CNN similarity when known."""
        out: dict[bytes, float | None] = {}
        for method in self.matching.hashes:
            for qkey, column, radius in _lookups(self.matching, method):
                if qkey in hashes:
                    for key, _ in self._trees[column].search(hashes[qkey], radius):
                        out.setdefault(key, None)
        if vector is not None and self._vectors is not None and len(self._vectors):
            assert self.matching.cnn is not None
            thr = self.matching.cnn if self.matching.mode == "any" else -1.0
            hits = dict(self._vectors.search(vector, thr if out or self.matching.mode == "any" else self.matching.cnn))
            if self.matching.mode == "any":
                for key, s in hits.items():
                    out[key] = s
            else:
                for key in out:
                    out[key] = hits.get(key, None)
                if not self.matching.hashes:
                    out = dict(hits)
        return out

    # -- mutation ---------------------------------------------------------------------------

    def add(self, path: str, info: FileInfo, hashes: Mapping[str, int], vector: np.ndarray | None = None) -> None:
        """Index ``path`` (replacing any previous version of it) and link it to its duplicates."""
        with self.lock:
            self.generation += 1
            old = self.files.get(path)
            if old is not None and old.digest != info.digest:
                self.remove(path)
            self.files[path] = info
            content = self._contents.get(info.digest)
            if content is not None and (content.hashes != dict(hashes) or (vector is not None) != content.has_vector):
                # re-encoded under new settings (a method added): relink the content with its new values
                paths = content.paths
                self._drop_content(info.digest)
                content = self._add_content(info.digest, dict(hashes), vector)
                content.paths |= paths
            elif content is None:
                content = self._add_content(info.digest, dict(hashes), vector)
            content.paths.add(path)

    def _add_content(self, digest: bytes, hashes: dict[str, int], vector: np.ndarray | None) -> _Content:
        edges: dict[bytes, Evidence] = {}
        for other, sim in self._candidates(hashes, vector).items():
            ev = self._evidence(hashes, self._contents[other].hashes, sim)
            if ev is not None:
                edges[other] = ev
        content = _Content(hashes, vector is not None)
        self._contents[digest] = content
        self._graph[digest] = edges
        for other, ev in edges.items():
            self._graph[other][digest] = ev
        for column, tree in self._trees.items():
            if column in hashes:
                tree.add(digest, hashes[column])
        if vector is not None and self.matching.cnn is not None:
            if self._vectors is None:
                self._vectors = VectorIndex(dim=int(np.asarray(vector).size))
            self._vectors.add(digest, vector)
        return content

    def remove(self, path: str) -> FileInfo | None:
        """Forget ``path``; its content goes too when no other path has it."""
        with self.lock:
            info = self.files.pop(path, None)
            if info is None:
                return None
            self.generation += 1
            content = self._contents[info.digest]
            content.paths.discard(path)
            if not content.paths:
                self._drop_content(info.digest)
            return info

    def _drop_content(self, digest: bytes) -> None:
        """Forget a content with its edges, hash entries and vector (its paths are the caller's)."""
        del self._contents[digest]
        for other in self._graph.pop(digest, {}):
            self._graph[other].pop(digest, None)
        for tree in self._trees.values():
            tree.discard(digest)
        if self._vectors is not None:
            self._vectors.remove(digest)

    def rename(self, old: str, new: str) -> bool:
        """Move an indexed path to a new name (same content: no re-encoding); a file indexed at
        ``new`` is replaced (``mv a b`` over an existing ``b``)."""
        with self.lock:
            if old == new:
                return old in self.files
            info = self.files.pop(old, None)
            if info is None:
                return False
            self.generation += 1
            if new in self.files:
                self.remove(new)
            self.files[new] = info
            paths = self._contents[info.digest].paths
            paths.discard(old)
            paths.add(new)
            return True

    def bulk_load(
        self, items: Iterable[tuple[str, FileInfo, Mapping[str, int], np.ndarray | None]], *, build_graph: bool = True
    ) -> None:
        """Load many files at start-up; the graph comes from all-pairs scans instead of N queries.

        With ``build_graph=False`` the files, hash columns and vectors are loaded at once (queries
        work) and :meth:`build_graph` must be called next, typically in a background thread:
        ``graph_ready`` is False until it has finished.
        """
        with self.lock:
            self.generation += 1
            vectors: dict[bytes, np.ndarray] = {}
            for path, info, hashes, vector in items:
                self.files[path] = info
                content = self._contents.get(info.digest)
                if content is None:
                    content = self._contents[info.digest] = _Content(dict(hashes), vector is not None)
                    if vector is not None:
                        vectors[info.digest] = np.asarray(vector, dtype=np.float32).reshape(-1)
                content.paths.add(path)
            self._reset_structures(vectors)
        if build_graph:
            self.build_graph()

    def retune(self, matching: Matching) -> None:
        """Change thresholds/mode (config reload): rebuild the columns and empty the graph, which
        :meth:`build_graph` then fills (in the background: this holds the lock for O(n) only)."""
        with self.lock:
            self.generation += 1
            vectors = {}
            if self._vectors is not None:
                vectors = {k: self._vectors.get(k) for k in self._vectors.keys()}
            self.matching = matching
            self._trees = {k: HashIndex() for k in _columns(matching)}
            self._vectors = None
            self._reset_structures(vectors)

    def _reset_structures(self, vectors: Mapping[bytes, np.ndarray]) -> None:
        """Empty graph; hash columns and the vector matrix filled from the loaded contents."""
        self.graph_ready = False
        self._graph_epoch += 1  # a build of the previous graph still running stops
        digests = list(self._contents)
        self._graph = {d: {} for d in digests}
        for method, column in self._trees.items():
            for d in digests:
                if method in self._contents[d].hashes:
                    column.add(d, self._contents[d].hashes[method])
        if vectors and self.matching.cnn is not None:
            keys = [d for d in digests if d in vectors]
            self._vectors = VectorIndex(dim=len(next(iter(vectors.values()))), capacity=max(1, len(keys)))
            if keys:
                self._vectors.add_many(keys, np.stack([vectors[k] for k in keys]))

    def build_graph(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Compute the duplicate graph of the loaded contents, one block of rows per lock hold.

        Between blocks other threads may query, add and remove: a content added meanwhile gets
        its edges from :meth:`add`; pairs with a content removed meanwhile are skipped.
        """
        steps = self._graph_steps()
        epoch = self._graph_epoch
        while not should_stop():
            with self.lock:
                if self._graph_epoch != epoch:
                    return False  # the structures were reset (a reload): a newer build takes over
                if next(steps, None) is None:
                    self.graph_ready = True
                    self.generation += 1
                    return True
            time.sleep(0)  # let waiting readers and writers take the lock
        return False

    def _link(self, da: bytes, db: bytes, sim: float | None) -> None:
        ca, cb = self._contents.get(da), self._contents.get(db)
        if ca is None or cb is None or da == db:
            return
        if sim is None and self._vectors is not None and da in self._vectors and db in self._vectors:
            sim = float(self._vectors.get(da) @ self._vectors.get(db))
        ev = self._evidence(ca.hashes, cb.hashes, sim)
        if ev is not None:
            self._graph[da][db] = ev
            self._graph[db][da] = ev

    def _graph_steps(self) -> Iterator[bool]:
        """Generator doing the all-pairs work in blocks; each ``next`` must run under the lock."""
        m = self.matching
        digests = list(self._contents)
        # with match "all" every method must agree, so the first method's pairs are the candidates
        methods = list(m.hashes.items())[: 1 if m.mode == "all" else None]
        for method, limit in methods:
            have = [d for d in digests if method in self._contents[d].hashes]
            values = np.array([self._contents[d].hashes[method] for d in have], dtype=np.uint64)
            for i, j, _ in hamming.iter_pairs(values, limit):
                for a, b in zip(i.tolist(), j.tolist()):
                    self._link(have[a], have[b], None)
                yield True
            cross = _lookups(m, method)[1:]
            for start in range(0, len(have) if cross else 0, 256):  # variant comparisons: row queries
                for d in have[start:start + 256]:
                    content = self._contents.get(d)
                    if content is None:
                        continue
                    for qkey, column, radius in cross:
                        if qkey in content.hashes:
                            for other, _ in self._trees[column].search(content.hashes[qkey], radius):
                                self._link(d, other, None)
                yield True
        if self._vectors is not None and m.cnn is not None and (m.mode == "any" or not m.hashes):
            for a, b, sim in self._vectors.pairs(m.cnn):
                self._link(a, b, sim)
            yield True

    # -- reads ------------------------------------------------------------------------------

    def duplicates_of(self, path: str) -> list[tuple[str, Evidence]]:
        """Every indexed path that duplicates ``path``: exact copies first, then by score, then name."""
        with self.lock:
            info = self.files.get(path)
            if info is None:
                return []
            out = [(p, EXACT_EVIDENCE) for p in self._contents[info.digest].paths if p != path]
            for other, ev in self._graph.get(info.digest, {}).items():
                out.extend((p, ev) for p in self._contents[other].paths)
            return sorted(out, key=_order)

    def query(
        self, hashes: Mapping[str, int], vector: np.ndarray | None = None, digest: bytes | None = None
    ) -> list[tuple[str, Evidence]]:
        """Duplicates among indexed files of an image that is *not* added to the index."""
        with self.lock:
            out: list[tuple[str, Evidence]] = []
            if digest is not None and digest in self._contents:
                out.extend((p, EXACT_EVIDENCE) for p in self._contents[digest].paths)
            for other, sim in self._candidates(hashes, vector).items():
                if other == digest:
                    continue
                ev = self._evidence(hashes, self._contents[other].hashes, sim)
                if ev is not None:
                    out.extend((p, ev) for p in self._contents[other].paths)
            return sorted(out, key=_order)

    def adjacency(self) -> dict[str, list[str]]:
        """``{path: [duplicate paths]}`` for every indexed path (the duplicates.json content)."""
        with self.lock:
            return {p: [q for q, _ in self.duplicates_of(p)] for p in sorted(self.files)}

    def neighbours(self) -> dict[str, set[str]]:
        """Path-level neighbour sets for grouping (only paths that have duplicates)."""
        with self.lock:
            out: dict[str, set[str]] = {}
            for digest, content in self._contents.items():
                near = [p for other in self._graph.get(digest, {}) for p in self._contents[other].paths]
                if len(content.paths) < 2 and not near:
                    continue
                for p in content.paths:
                    out[p] = (content.paths - {p}) | set(near)
            return out

    @property
    def content_count(self) -> int:
        """Distinct contents (digests) indexed: O(1), for status."""
        return len(self._contents)

    def stats(self) -> dict[str, int]:
        """Counts including graph edges (O(graph): for tests and diagnostics, not for status)."""
        with self.lock:
            return {
                "files": len(self.files),
                "contents": len(self._contents),
                "edges": sum(len(e) for e in self._graph.values()) // 2,
            }


def _columns(matching: Matching) -> list[str]:
    """Hash columns the index keeps: each method's plain hash and its variant hashes."""
    return [k for m in matching.hashes for k in (m, *hash_variants.variant_keys(m, matching.options.get(m, ())))]


def _lookups(matching: Matching, method: str) -> list[tuple[str, str, int]]:
    """``(key of the query, column searched, radius)`` of each comparison ``method`` makes (plain first)."""
    out = []
    for option, radius in matching.limits(method):
        comps = [(method, method)] if not option else hash_variants.option_comparisons(method, option)
        out += [(q, c, radius) for q, c in comps]
    return out


def _order(item: tuple[str, Evidence]) -> tuple:
    return closeness(*item)
