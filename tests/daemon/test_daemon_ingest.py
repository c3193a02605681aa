"""Files copied into a watched folder while the daemon runs are reported quickly and correctly.

A real ``dedupd run`` subprocess, real corpus photos, real inotify and LMDB: the reports must equal
what the library finds on the same files, and each file must be reported within seconds.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

from dedupd.methods import PHash
from tests.daemon.helpers import as_sets, copy_tree_files, image_files, relative_map

THRESHOLD = 10
LATENCY_BOUND_S = 5.0


class ReportWatcher:
    """Polls duplicates.json and records when each path first appears as a key."""

    def __init__(self, daemon, interval: float = 0.025) -> None:
        self.daemon = daemon
        self.interval = interval
        self.first_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ReportWatcher:  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                keys = self.daemon.duplicates().keys()
            except ValueError:  # never expected: the file is replaced atomically
                keys = ()
            now = time.monotonic()
            for k in keys:
                self.first_seen.setdefault(k, now)
            self._stop.wait(self.interval)


def test_copy_into_watched_folder_matches_library(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    watched.mkdir()
    daemon = daemon_factory([watched], methods={"phash": {"threshold": THRESHOLD, "crop": False}}).start()  # as the library
    names = sorted(os.path.relpath(p, mixed200) for p in image_files(mixed200))
    assert len(names) == 200

    arrived: dict[str, float] = {}
    with ReportWatcher(daemon) as seen:
        # first half at a steady pace (about 25 files/s): per-file arrival-to-report latency
        for name in names[:100]:
            copy_tree_files(mixed200, watched, [name])
            arrived[str(watched / name)] = time.monotonic()
            time.sleep(0.04)
        # second half in one burst: the ingest rate
        t_burst = time.monotonic()
        for name in names[100:]:
            copy_tree_files(mixed200, watched, [name])
            arrived[str(watched / name)] = time.monotonic()
        daemon.wait_until(lambda: all(p in seen.first_seen for p in arrived), 60, "every copied file reported")
        burst_s = max(seen.first_seen[str(watched / n)] for n in names[100:]) - t_burst

    latency = {p: seen.first_seen[p] - t for p, t in arrived.items()}
    paced = sorted(latency[str(watched / n)] for n in names[:100])
    median = statistics.median(paced)
    print(f"\narrival-to-report latency (paced half, 25 files/s): median {median:.3f} s, "
          f"p90 {paced[89]:.3f} s, max {paced[-1]:.3f} s")
    print(f"burst of 100 files: all reported after {burst_s:.2f} s = {100 / burst_s:.0f} files/s "
          f"(worst latency in the burst {max(latency[str(watched / n)] for n in names[100:]):.2f} s)")
    slow = {p: round(v, 2) for p, v in latency.items() if v > LATENCY_BOUND_S}
    assert not slow, f"files reported more than {LATENCY_BOUND_S} s after they arrived: {slow}"
    assert median < 2.0, f"median arrival-to-report latency {median:.2f} s (a couple of seconds at most)"

    status = daemon.wait_quiet()
    assert status["files"] == 200 and status["unreadable"] == 0
    # one decode per distinct content: byte-identical copies reuse the encoding
    assert status["decoded"] == status["encoded"] < 200

    got = relative_map(daemon.duplicates(), watched)
    expected = as_sets(PHash(verbose=False).find_duplicates(image_dir=str(watched), recursive=True,
                                                           max_distance_threshold=THRESHOLD))
    assert got.keys() == expected.keys()
    wrong = {k: (sorted(got[k]), sorted(expected[k])) for k in expected if got[k] != expected[k]}
    assert not wrong, f"duplicates.json differs from the library (daemon, library): {wrong}"
    assert sum(bool(v) for v in got.values()) >= 40, "the corpus sample should contain many duplicates"

    # symmetric, and groups.json covers exactly the files that have duplicates
    for k, vs in got.items():
        assert all(k in got[v] for v in vs)
    groups = daemon.groups()["groups"]
    members = [g["keep"]["path"] for g in groups] + [d["path"] for g in groups for d in g["duplicates"]]
    assert len(members) == len(set(members))
    assert {os.path.relpath(m, watched) for m in members} == {k for k, v in got.items() if v}
    assert status["groups"] == len(groups)

    # a "found" event names every file that has a duplicate (as the new file or as its match)
    named: set[str] = set()
    for ev in daemon.events("found"):
        named.add(ev["path"])
        named.update(d["path"] for d in ev["duplicates"])
    assert {os.path.relpath(p, watched) for p in named} == {k for k, v in got.items() if v}
    assert not daemon.errors_in_log()
    daemon.stop()
