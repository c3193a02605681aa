"""The event storm: a seeded random mix of file and folder operations against a running daemon; once
idle, its duplicates.json (every indexed file, and each one's duplicates) equals a fresh ``dedupd scan``.

Operations: creates (new content, exact copies), in-place rewrites, renames (within and across
folders, over an existing file, chains a → b → c), deletes (also right after the create), uploads
under a temporary name then renamed, rewrite-then-rename before the settle time, folder creates,
renames, deletes, folders moved out of the roots and back, files moved in from outside.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.daemon.events_helpers import (
    compare,
    group_sets,
    image_variants,
    peak_rss_kib,
    scan_duplicates,
    wait_reported,
)


@dataclass
class Storm:
    """The disk model the operations pick from (relative paths); the disk itself is the truth."""

    root: Path
    outside: Path
    images: list[bytes]
    rng: random.Random
    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=lambda: {""})
    away: list[str] = field(default_factory=list)  # folders parked outside the roots
    counts: dict[str, int] = field(default_factory=dict)
    journal: list[str] = field(default_factory=list)  # what happened, for a failure's post-mortem
    _n: int = 0

    def _name(self, ext: str = ".jpg") -> str:
        self._n += 1
        return f"n{self._n:05d}{ext}"

    def _new_path(self) -> str:
        return os.path.join(self.rng.choice(sorted(self.dirs)), self._name())

    def _abs(self, rel: str) -> Path:
        return self.root / rel

    def _write(self, rel: str, data: bytes | None = None) -> None:
        self._abs(rel).write_bytes(data if data is not None else self.rng.choice(self.images))
        self.files.add(rel)
        self.journal.append(f"write {rel}")

    def _pick(self) -> str | None:
        return self.rng.choice(sorted(self.files)) if self.files else None

    def _rename_file(self, src: str, dst: str) -> None:
        os.replace(self._abs(src), self._abs(dst))
        self.journal.append(f"rename {src} {dst}")
        self.files.discard(src)
        self.files.add(dst)

    def _rename_tree(self, src: str, dst: str) -> None:
        self.journal.append(f"rename-dir {src} {dst}")
        def move(p: str) -> str:
            return dst + p[len(src):] if p == src or p.startswith(src + "/") else p

        self.files = {move(p) for p in self.files}
        self.dirs = {move(d) for d in self.dirs}

    def _drop_tree(self, src: str) -> None:
        self.journal.append(f"drop-dir {src}")
        self.files = {p for p in self.files if not p.startswith(src + "/")}
        self.dirs = {d for d in self.dirs if d != src and not d.startswith(src + "/")}

    # -- operations ---------------------------------------------------------------------------

    def create(self) -> None:
        self._write(self._new_path())

    def copy(self) -> None:
        src = self._pick()
        if src is not None:
            self._write(self._new_path(), self._abs(src).read_bytes())

    def rewrite(self) -> None:
        p = self._pick()
        if p is not None:
            self._write(p)

    def rename(self) -> None:
        p = self._pick()
        if p is not None:
            self._rename_file(p, self._new_path())

    def rename_over(self) -> None:
        a, b = self._pick(), self._pick()
        if a is not None and b is not None and a != b:
            self._rename_file(a, b)

    def rewrite_then_rename(self) -> None:
        p = self._pick()
        if p is not None:
            self._write(p)
            self._rename_file(p, self._new_path())

    def chain(self) -> None:
        p = self._pick()
        if p is None or self.rng.random() < 0.5:
            p = self._new_path()
            self._write(p)
        for _ in range(self.rng.randint(2, 3)):
            q = self._new_path()
            self._rename_file(p, q)
            p = q

    def delete(self) -> None:
        p = self._pick()
        if p is not None:
            os.remove(self._abs(p))
            self.files.discard(p)
            self.journal.append(f"delete {p}")

    def flash(self) -> None:
        p = self._new_path()
        self._write(p)
        os.remove(self._abs(p))
        self.files.discard(p)
        self.journal.append(f"delete {p}")

    def upload(self) -> None:
        p = self._new_path()
        part = p + ".part"
        self._abs(part).write_bytes(self.rng.choice(self.images))
        os.replace(self._abs(part), self._abs(p))
        self.files.add(p)
        self.journal.append(f"upload {p}")

    def mkdir(self) -> None:
        parent = self.rng.choice(sorted(d for d in self.dirs if d.count("/") < 3))
        d = os.path.join(parent, self._name(""))
        self._abs(d).mkdir()
        self.dirs.add(d)
        self.journal.append(f"mkdir {d}")
        for _ in range(self.rng.randint(0, 4)):
            self._write(os.path.join(d, self._name()))

    def move_dir(self) -> None:
        movable = sorted(d for d in self.dirs if d)
        if not movable:
            return
        src = self.rng.choice(movable)
        parents = sorted(d for d in self.dirs if d != src and not d.startswith(src + "/") and d.count("/") < 3)
        dst = os.path.join(self.rng.choice(parents), self._name(""))
        os.rename(self._abs(src), self._abs(dst))
        self._rename_tree(src, dst)

    def delete_dir(self) -> None:
        removable = sorted(d for d in self.dirs if d)
        if removable:
            d = self.rng.choice(removable)
            shutil.rmtree(self._abs(d))
            self._drop_tree(d)

    def dir_out(self) -> None:
        movable = sorted(d for d in self.dirs if d)
        if movable:
            d = self.rng.choice(movable)
            name = self._name("")
            os.rename(self._abs(d), self.outside / name)
            self.journal.append(f"dir-out {d} {name}")
            self._drop_tree(d)
            self.away.append(name)

    def dir_back(self) -> None:
        if not self.away:
            return
        name = self.away.pop(self.rng.randrange(len(self.away)))
        parent = self.rng.choice(sorted(d for d in self.dirs if d.count("/") < 2))
        dst = os.path.join(parent, name)
        os.rename(self.outside / name, self._abs(dst))
        self.journal.append(f"dir-back {name} {dst}")
        for dirpath, _dirs, names in os.walk(self._abs(dst)):
            rel = os.path.relpath(dirpath, self.root)
            self.dirs.add(rel)
            self.files.update(os.path.join(rel, n) for n in names)

    def file_in(self) -> None:
        tmp = self.outside / self._name()
        tmp.write_bytes(self.rng.choice(self.images))
        dst = self._new_path()
        os.rename(tmp, self._abs(dst))
        self.files.add(dst)
        self.journal.append(f"file-in {dst}")

    WEIGHTS = {"create": 14, "copy": 5, "rewrite": 9, "rename": 9, "rename_over": 5, "rewrite_then_rename": 5,
               "chain": 4, "delete": 8, "flash": 4, "upload": 4, "mkdir": 5, "move_dir": 4, "delete_dir": 1,
               "dir_out": 1, "dir_back": 2, "file_in": 3}

    def step(self) -> None:
        ops = list(self.WEIGHTS)
        op = self.rng.choices(ops, weights=[self.WEIGHTS[o] for o in ops])[0]
        getattr(self, op)()
        self.counts[op] = self.counts.get(op, 0) + 1


def run_storm(corpus_dir: Path, tmp_path: Path, daemon_factory, operations: int, seed: int,
              crash_at: int | None = None) -> None:
    """``operations`` random operations; with ``crash_at``, the daemon is killed (-9) before that
    operation and started again 200 operations later (what happened meanwhile is found by its reconcile)."""
    watched, outside = tmp_path / "photos", tmp_path / "outside"
    watched.mkdir()
    outside.mkdir()
    storm = Storm(watched, outside, image_variants(corpus_dir, 240, size=128), random.Random(seed))
    for _ in range(30):  # a starting library, indexed before the storm
        storm.mkdir() if storm.rng.random() < 0.2 else storm.create()
    daemon = daemon_factory([watched], settle_ms=100, workers=2)
    daemon.start()
    daemon.wait_quiet()
    t0 = time.monotonic()
    for i in range(operations):
        if i == crash_at:
            daemon.kill9()
        if crash_at is not None and i == crash_at + 200:
            daemon.start(timeout=120)
        storm.step()
        if i % 25 == 0:
            time.sleep(storm.rng.random() * 0.15)  # now and then some of it settles mid-storm
    t_ops = time.monotonic() - t0
    dups = wait_reported(daemon, timeout=300)
    t_idle = time.monotonic() - t0
    rss = peak_rss_kib(daemon.pid)
    status = daemon.status()
    t1 = time.monotonic()
    diff = compare(dups, scan_duplicates(daemon, watched, tmp_path / "scan"))
    t_scan = time.monotonic() - t1
    groups, scan_groups = group_sets(daemon.groups()), group_sets(json.loads(
        (tmp_path / "scan" / "reports" / "groups.json").read_text()))
    print(f"\nevent storm (seed {seed}{', kill -9 and restart' if crash_at else ''}): {operations} operations in {t_ops:.1f} s, idle after {t_idle:.1f} s; "
          f"{status['files']} files indexed, {status['decoded']} decoded; daemon peak RSS {rss / 1024:.0f} MiB; "
          f"scan {t_scan:.1f} s; mismatches: {diff.count} ({diff})\noperations: {storm.counts}")
    if diff.count:
        (tmp_path / "journal.txt").write_text("\n".join(storm.journal))
    assert not diff.count, str(diff) + f"\njournal: {tmp_path / 'journal.txt'}" + daemon.log_tail()
    assert groups == scan_groups, f"groups differ: {len(groups ^ scan_groups)} not in both"
    assert set(dups) == {str(watched / p) for p in storm.files}, "the daemon differs from the model of the disk"
    assert not daemon.errors_in_log(), daemon.errors_in_log()[:5]
    daemon.stop()


def test_event_storm_short(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """1,000 operations (another seed: ``DEDUPD_STORM_SEED``)."""
    seed = int(os.environ.get("DEDUPD_STORM_SEED", "20261129"))
    run_storm(corpus_dir, tmp_path, daemon_factory, operations=1000, seed=seed)


@pytest.mark.stress
@pytest.mark.parametrize("seed", [int(os.environ["DEDUPD_STORM_SEED"])] if os.environ.get("DEDUPD_STORM_SEED")
                         else [1, 2])
def test_event_storm_full(corpus_dir: Path, tmp_path: Path, daemon_factory, seed: int) -> None:
    run_storm(corpus_dir, tmp_path, daemon_factory, operations=10_000, seed=seed)


@pytest.mark.stress
def test_event_storm_with_a_crash(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """10,000 operations; at the 5,000th the daemon is killed, 200 happen while it is down."""
    run_storm(corpus_dir, tmp_path, daemon_factory, operations=10_000, seed=5, crash_at=5000)
