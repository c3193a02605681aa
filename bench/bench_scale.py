"""The daemon at scale: start-up, restart, RSS, socket latency, a SIGHUP threshold change and one new
file to the report, on a synthetic library of N files (default 100,000).

The library is built through the store API, without decoding: an empty placeholder file per entry
under the root (so that the daemon's start-up walk finds it unchanged and keeps it) and a
``FileRecord`` + ``EncodingRecord`` with a synthetic 64-bit PHash (and random hashes for the default
config's crop variants, so that the daemon finds nothing to re-encode). Hashes are random, except for
planted near-duplicates: 10 % of the files are 1-4 bit flips of an earlier file, 1 % byte-identical
copies (same digest). No edges are written (unless ``--edges``): the first start derives the
persisted graph in the background (as after an upgrade from a store without edges); the restart
then loads it.

Measured, against ``dedupd run`` as a subprocess (real LMDB, socket, inotify):

- ``first start``: socket answering, graph derived (every group back), daemon RSS;
- ``restart``: the same with the persisted graph loaded (the 100k / 1M targets);
- ``query``: ``GET /v1/duplicates?path=`` through the socket (new connection each), p50 / p95;
- ``SIGHUP``: phash threshold 10 → 8 (within the stored reach: a filter): the slowest ``status``
  answer while it runs, and the time until ``groups.json`` shows the new threshold (on a loaded
  machine the slowest answer is mostly the process waiting for a CPU: ``bench/bench_gil.py``
  measures the daemon's own GIL holds meanwhile);
- ``one new file``: a real photo copied into the root (decoded), then a byte copy of it: time from
  the copy to the socket listing the pair, and to ``groups.json`` listing it, less ``settle_ms``.

    python bench/bench_scale.py                 # 100,000 files
    python bench/bench_scale.py -n 1000000      # a million (about 1 GB of store, placeholders)
    python bench/bench_scale.py -n 1000000 --keep          # ... and keep the library, store and log
    python bench/bench_scale.py -n 1000000 --keep --edges  # ... its graph stored by the all-pairs join
    python bench/bench_scale.py --reuse WORK --repeat 3    # restarts only, on a kept library
    python bench/bench_scale.py --reuse WORK --daemon-repo /other/checkout  # A/B another tree's daemon
    python bench/bench_scale.py --reuse WORK --full        # ... with the SIGHUP and new-file measurements
    python bench/bench_scale.py --reuse WORK --no-seal     # ... each start building groups.json in full
    python bench/bench_scale.py --reuse WORK --crash idle  # restarts after kill -9 once the idle seal is written
    python bench/bench_scale.py --reuse WORK --crash busy  # ... after the idle seal and 40 new files
    python bench/bench_scale.py --reuse WORK --crash plain # ... after kill -9 with the idle seal off

A restart after a clean stop of the same code adopts the ``groups.json`` sealed at that stop
(:mod:`dedupd.reports.seal`): every group is back once the graph is linked. Runs that adopted are
marked ``a`` in the "each run" column; ``--no-seal`` removes the seal before each start (the
full build, as after a crash or a config change), and a run after another checkout's daemon (A/B)
builds in full too (that daemon rewrote the file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_query import CORPUS, PER_DIR, pct  # noqa: E402
from dedupd.client import ApiError, Client, DaemonNotRunning  # noqa: E402
from dedupd.daemon.config import Config, config_from_mapping  # noqa: E402
from dedupd.daemon.snapshot import SNAPSHOT_NAME  # noqa: E402
from dedupd.daemon.store import EncodingRecord, FileRecord, Store  # noqa: E402
from dedupd.reports.seal import SEAL_NAME  # noqa: E402

SETTLE_MS = 200
NEW_FILES = 10


def planted_hashes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` hashes (random, 10 % near-duplicates of an earlier one) and, per file, the index of
    the file whose content it copies byte for byte (itself for 99 %)."""
    hashes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    hashes ^= rng.integers(0, 2, size=n).astype(np.uint64)
    near = np.flatnonzero(rng.random(n) < 0.10)
    near = near[near > 0]
    parents = (rng.random(len(near)) * near).astype(np.int64)
    hashes[near] = hashes[parents]
    for _ in range(4):
        flip = rng.random(len(near)) < 0.6
        bits = rng.integers(0, 64, size=len(near)).astype(np.uint64)
        hashes[near] = np.where(flip, hashes[near] ^ (np.uint64(1) << bits), hashes[near])
    same = np.arange(n)
    copies = np.flatnonzero(rng.random(n) < 0.01)
    copies = copies[copies > 0]
    same[copies] = (rng.random(len(copies)) * copies).astype(np.int64)
    return hashes, same


def populate(root: Path, store_dir: Path, config: Config, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    hashes, same = planted_hashes(n, rng)
    params = config.hash_params_id()
    variants = [k for k in config.hash_keys() if k != "phash"]  # the default crop hashes: random
    extra = rng.integers(0, 2**63, size=(n, len(variants)), dtype=np.int64).astype(np.uint64) * np.uint64(2)
    with Store.open(store_dir) as store:
        store.set_encoders(config.hash_keys(), config.cnn_model_id(), hash_params=params)
        batch: list = []
        for i in range(n):
            folder = root / "syn" / f"d{i // PER_DIR:04d}"
            if i % PER_DIR == 0:
                folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"f{i:07d}.jpg"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            j = int(same[i])
            digest = hashlib.blake2b(j.to_bytes(8, "big"), digest_size=16).digest()
            enc = EncodingRecord(640, 480, "JPEG", {"phash": int(hashes[j]), **dict(zip(variants, map(int, extra[j])))},
                                 hash_params=params)
            batch.append((str(path), FileRecord.from_stat(os.stat(path), digest), enc))
            if len(batch) >= 5000:
                store.put_files(batch)
                batch = []
        if batch:
            store.put_files(batch)


def write_edges(config: Config) -> tuple[int, float]:
    """Store the graph a first start would derive, stamped complete, without the daemon's
    per-digest derivation (~45 min at 1M): the phash pairs within the reach come from the library's
    all-pairs join (:func:`dedupd.core.hamming.iter_pairs`) and are scored by the index as the
    daemon scores them. A pair within the crop reach only (phash beyond it) is not looked for: the
    crop hashes here are random, so one is expected about once in ten million-file libraries.
    Returns (edges written, seconds)."""
    from dedupd.core.hamming import iter_pairs
    from dedupd.daemon.loader import load_index, reach_of, stamp_of

    t0 = time.monotonic()
    reach = reach_of(config)
    with Store.open(config.store_dir) as store:
        index = load_index(store, config, build_graph=False, reach=reach)
        ids, values = index.column("phash")
        edges, expect = [], {}
        for i, j, _ in iter_pairs(values, dict(reach.radii)["phash"]):
            for a, b in zip(ids[i].tolist(), ids[j].tolist(), strict=True):
                edge = index.scored_pair(a, b)
                if edge is not None:
                    edges.append(edge)
                    expect[edge[0]], expect[edge[1]] = index.hashes_of(edge[0]), index.hashes_of(edge[1])
        store.reset_graph(stamp_of(config, reach), clear=True)
        store.put_edges(stamp_of(config, reach, complete=True), edges, expect)
    return len(edges), time.monotonic() - t0


def rss_mb(pid: int) -> tuple[float, float, float]:
    """(VmRSS, VmHWM, RssAnon) of ``pid`` in MB: RssAnon leaves out file pages (the store's
    memory map, shared libraries), which the kernel can drop under pressure."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out.get("VmRSS", 0.0), out.get("VmHWM", 0.0), out.get("RssAnon", 0.0)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used: on a shared machine, what the wall times
    are inflated from."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    def __init__(self, work: Path, socket_path: str, repo: Path = REPO) -> None:
        self.work, self.socket_path, self.repo = work, socket_path, repo
        self.proc: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}  # added to the daemon's environment
        self.client = Client(socket_path, timeout=120, retry_s=0)

    def start(self) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
        env["PYTHONPATH"] = str(self.repo)
        env.update(self.env)
        self.log = open(self.work / "daemon.log", "ab")  # noqa: SIM115 - open while the daemon runs
        t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "dedupd", "run", "--config", str(self.work / "c.yaml")],
                                     stdout=self.log, stderr=self.log, env=env, start_new_session=True,
                                     cwd=self.repo)  # ``-m`` puts the working directory first on the path
        return t0

    def status(self) -> dict | None:
        try:
            return self.client.get("/v1/status")
        except (DaemonNotRunning, ApiError, OSError):
            return None

    def wait(self, pred, t0: float, timeout: float, what: str, interval: float = 0.05) -> float:
        while time.monotonic() - t0 < timeout:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited: see {self.work / 'daemon.log'}")
            s = self.status()
            if s is not None and pred(s):
                return time.monotonic() - t0
            time.sleep(interval)
        raise SystemExit(f"timed out waiting for {what}; see {self.work / 'daemon.log'}")

    def stop(self) -> float:
        t0 = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
        return time.monotonic() - t0


def groups_paths(report_dir: Path) -> tuple[float, set[str], dict]:
    """(generated_at, every path in groups.json, methods) of the current report."""
    data = json.loads((report_dir / "groups.json").read_text())
    paths = {g["keep"]["path"] for g in data["groups"]} | {d["path"] for g in data["groups"] for d in g["duplicates"]}
    return data["generated_at"], paths, data["methods"]


class ReportWatch:
    """``groups.json`` polled cheaply: a ``stat`` per poll, a parse only per new version (at 1M
    the file is ~50 MB: parsing it on every 20 ms poll took a core from the daemon it measures).
    :meth:`poll` returns the parsed report and the time its version was first seen."""

    def __init__(self, report_dir: Path) -> None:
        self.path = report_dir / "groups.json"
        self._sig: tuple[int, int, int] | None = None
        self.seen = 0.0
        self.parsed: tuple[float, set[str], dict] | None = None

    def poll(self) -> tuple[tuple[float, set[str], dict] | None, float]:
        try:
            st = os.stat(self.path)
        except OSError:
            return self.parsed, self.seen
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if sig != self._sig:
            seen = time.monotonic()
            try:
                parsed = groups_paths(self.path.parent)
            except (OSError, ValueError):  # replaced while read: the next poll reads the new one
                return self.parsed, self.seen
            self._sig, self.seen, self.parsed = sig, seen, parsed
        return self.parsed, self.seen

    def lists(self, path: str) -> float | None:
        """The time the first version of ``groups.json`` naming ``path`` was seen, else None. Each
        new version is searched for the path's JSON string, not parsed: a parse (~1 s of a loaded
        core at 1M) of a version written just before held up the stat that sees the next one."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            sig = (st.st_ino, st.st_mtime_ns, st.st_size)
            if sig == self._sig:
                return None
            seen = time.monotonic()
            found = json.dumps(path).encode() in f.read()
        self._sig = sig
        return seen if found else None


def start_and_measure(d: Daemon, n: int, timeout: float) -> dict[str, float]:
    """Start ``d`` and time it until the socket answers, the graph of ``n`` files is ready and the
    groups are reported; CPU, load average and RSS then."""
    t0 = d.start()
    t_sock = d.wait(lambda s: True, t0, timeout, "the socket", 0.02)
    assert d.proc is not None
    cpu_sock = cpu_s(d.proc.pid)
    t_graph = d.wait(lambda s: s.get("graph") == "ready" and s["files"] == n, t0, timeout, "the graph", 0.05)
    t_groups = d.wait(lambda s: s["groups"] > 0, t0, timeout, "the groups reported", 0.05)
    cpu, load = cpu_s(d.proc.pid), os.getloadavg()[0]
    rss, hwm, anon = rss_mb(d.proc.pid)
    d.wait(lambda s: s["state"] == "watching" and s["queued"] == 0, t0, timeout, "watching", 0.2)
    return {"socket": t_sock, "graph": t_graph, "groups": t_groups, "rss": rss, "hwm": hwm, "anon": anon,
            "cpu": cpu, "cpu_socket": cpu_sock, "load": load}


def bench(n: int, base: Path, timeout: float, keep: bool = False, edges: bool = False) -> list[tuple[str, str]]:
    work = Path(tempfile.mkdtemp(prefix=f"scale{n}-", dir=base))
    root, store_dir, reports = work / "root", work / "store", work / "reports"
    (root / "real").mkdir(parents=True)
    sock = tempfile.mkdtemp(prefix="bs-", dir="/tmp") + "/s"
    raw = {"roots": [str(root)], "store_dir": str(store_dir), "report_dir": str(reports), "socket_path": sock,
           "rescan_interval_s": 0, "workers": 1, "settle_ms": SETTLE_MS, "methods": {"phash": 10},
           "log": {"format": "json", "level": "info"}}
    (work / "c.yaml").write_text(json.dumps(raw))
    config = config_from_mapping({k: v for k, v in raw.items() if k != "log"}, env={})
    rows: list[tuple[str, str]] = []
    t = time.monotonic()
    populate(root, store_dir, config, n, seed=n)
    rows.append(("populate (store API, no decode)", f"{time.monotonic() - t:.1f} s"))
    if edges:
        count, secs = write_edges(config)
        rows.append(("edges stored by the all-pairs join (no derivation: the first start is a restart)",
                     f"{count:,} in {secs:.1f} s"))
    d = Daemon(work, sock)
    try:
        first = start_and_measure(d, n, timeout)
        rows += [("first start: socket answers", f"{first['socket']:.2f} s"),
                 ("first start: graph derived, groups reported", f"{first['graph']:.1f} s / {first['groups']:.1f} s"),
                 ("first start: daemon RSS (peak; anonymous)",
                  f"{first['rss']:.0f} MB ({first['hwm']:.0f} MB; {first['anon']:.0f} MB)")]
        rows.append(("shutdown", f"{d.stop():.2f} s"))
        with Store.open(store_dir, readonly=True) as store:
            st = store.stats()
        rows.append(("stored edges / store size", f"{st.edges} / {st.disk_bytes / 2**20:.0f} MB"))
        again = start_and_measure(d, n, timeout)
        rows += [("restart: socket answers", f"{again['socket']:.2f} s"),
                 ("restart: graph loaded, every group back", f"{again['graph']:.2f} s / {again['groups']:.2f} s"),
                 ("restart: daemon CPU until every group is back (load average)",
                  f"{again['cpu']:.2f} s ({again['load']:.1f})"),
                 ("restart: daemon RSS (peak; anonymous)",
                  f"{again['rss']:.0f} MB ({again['hwm']:.0f} MB; {again['anon']:.0f} MB)")]
        # socket latency of a path query (the always-current view)
        rng = np.random.default_rng(1)
        lat = []
        for i in rng.integers(0, n, size=200).tolist():
            p = root / "syn" / f"d{i // PER_DIR:04d}" / f"f{i:07d}.jpg"
            t = time.perf_counter()
            d.client.duplicates(str(p))
            lat.append(time.perf_counter() - t)
        rows.append(("socket /v1/duplicates p50 / p95", f"{pct(lat, 0.5) * 1e3:.1f} / {pct(lat, 0.95) * 1e3:.1f} ms"))
        rows += sighup(d, work, raw, reports, timeout)
        rows += new_files(d, root, reports, timeout)
        rows.append(("shutdown", f"{d.stop():.2f} s"))
    finally:
        d.stop() if d.proc is not None and d.proc.poll() is None else None
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def socket_only(d: Daemon, timeout: float) -> dict[str, float]:
    """Start ``d`` and time it until the socket answers (CPU, load average and RSS then): for a
    store whose graph is still being derived."""
    t0 = d.start()
    t_sock = d.wait(lambda s: True, t0, timeout, "the socket", 0.02)
    assert d.proc is not None
    cpu, load = cpu_s(d.proc.pid), os.getloadavg()[0]
    rss, hwm, anon = rss_mb(d.proc.pid)
    return {"socket": t_sock, "groups": float("nan"), "rss": rss, "hwm": hwm, "anon": anon, "cpu": cpu,
            "cpu_socket": cpu, "load": load}


def adoptions(work: Path, what: str = "adopted as the first write") -> int:
    """How many starts logged in ``work``'s daemon log adopted a sealed groups.json (or logged ``what``:
    ``"index snapshot adopted"``)."""
    try:
        return (work / "daemon.log").read_text(errors="replace").count(what)
    except OSError:
        return 0


def _reuse(work: Path, repo: Path) -> tuple[dict, int, Daemon]:
    """A kept library's config with the threshold back at 10, a fresh socket and the log at
    ``info``, its file count, and a daemon from ``repo`` for it."""
    raw = json.loads((work / "c.yaml").read_text())
    # info: the runs read the daemon's log (adoptions, idle seals); bench_gil.py leaves "warning"
    raw.update(methods={"phash": 10}, socket_path=tempfile.mkdtemp(prefix="bs-", dir="/tmp") + "/s",
               log={"format": "json", "level": "info"})
    (work / "c.yaml").write_text(json.dumps(raw))
    with Store.open(raw["store_dir"], readonly=True) as store:
        n = store.stats().files
    return raw, n, Daemon(work, raw["socket_path"], repo)


def _each_run(runs: list[dict[str, float]]) -> str:
    """Each run's socket / every-group seconds, marked a (groups.json adopted), t (its groups taken
    after a replay) and s (the index snapshot adopted)."""
    return " · ".join(f"{r['socket']:.1f}/{r['groups']:.1f}{'a' if r['adopted'] else ''}"
                      f"{'t' if r.get('taken') else ''}{'s' if r['snapshot'] else ''}" for r in runs)


def restarts(work: Path, timeout: float, repeat: int, repo: Path, socket: bool = False,
             full: bool = False, no_seal: bool = False) -> list[tuple[str, str]]:
    """Restart-only runs on a library kept by ``--keep`` (no populate, no first start): the
    config's threshold back at 10, a fresh socket, the daemon from ``repo``; with ``socket``, only
    until the socket answers; with ``full``, each restart followed by the SIGHUP and new-file
    measurements (the files a previous run added are deleted first)."""
    raw, n, d = _reuse(work, repo)
    runs = []
    extra: list[list[tuple[str, str]]] = []
    for _ in range(repeat):
        if full:
            (work / "c.yaml").write_text(json.dumps(raw))
            for f in (work / "root" / "real").glob("*.jpg"):
                f.unlink()
        if no_seal:  # what a crash leaves: neither seal
            (Path(raw["report_dir"]) / SEAL_NAME).unlink(missing_ok=True)
            (Path(raw["store_dir"]) / SNAPSHOT_NAME).unlink(missing_ok=True)
        before, snapshots = adoptions(work), adoptions(work, "index snapshot adopted")
        try:
            runs.append(socket_only(d, timeout) if socket else start_and_measure(d, n, timeout))
            runs[-1]["adopted"] = float(adoptions(work) > before)
            runs[-1]["snapshot"] = float(adoptions(work, "index snapshot adopted") > snapshots)
            if full:
                extra.append(sighup(d, work, raw, Path(raw["report_dir"]), timeout)
                             + new_files(d, work / "root", Path(raw["report_dir"]), timeout))
        finally:
            stopped = d.stop()
            if runs:
                runs[-1]["stop"] = stopped
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    each = _each_run(runs)
    return [(f"restart ({n:,} files, daemon from {repo}), median of {repeat}", ""),
            ("restart: socket answers / every group back (each run)",
             f"{med['socket']:.2f} s / {med['groups']:.2f} s ({each})"),
            (f"restart: daemon CPU until {'the socket answers' if socket else 'every group is back'} (load average)",
             f"{med['cpu']:.2f} s ({med['load']:.1f})"),
            ("restart: daemon CPU until the socket answers / every group is back, load average (each run)",
             " · ".join(f"{r['cpu_socket']:.1f}/{r['cpu']:.1f} ({r['load']:.1f})" for r in runs)),
            ("restart: the stop after it (each run; a clean stop writes the seals)",
             " · ".join(f"{r['stop']:.1f} s" for r in runs)),
            ("restart: daemon RSS (peak; anonymous)", f"{med['rss']:.0f} MB ({med['hwm']:.0f} MB; {med['anon']:.0f} MB)"),
            *[(f"{k} (each run)", " · ".join(e[i][1] for e in extra)) for i, (k, _) in enumerate(extra[0] if extra else [])]]


IDLE_DONE = "idle seal: groups.json and the index snapshot current"


def log_events(work: Path, event: str) -> list[dict]:
    """The JSON records of ``event`` in ``work``'s daemon log."""
    try:
        lines = (work / "daemon.log").read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [json.loads(line) for line in lines if line.startswith("{") and f'"event": "{event}"' in line]


def crash_restarts(work: Path, timeout: float, repeat: int, repo: Path, mode: str) -> list[tuple[str, str]]:
    """Restarts after a ``kill -9`` on a kept library. ``idle``: the kill comes after the idle
    seal (``DEDUPD_IDLE_SEAL_S=5``: written 5 s after the daemon went idle); ``busy``: after the
    idle seal, :data:`BUSY_FILES` real photos and byte copies are added and the kill comes as soon
    as the socket lists the last (commits after the seal: the start replays them from the store's
    journal); ``plain``: right once the daemon is watching with every group, the idle seal off and
    the seals of the last clean stop removed (what a crash left before either existed: a store
    load). A first start (not measured) precedes the ``repeat`` measured ones."""
    raw, n, d = _reuse(work, repo)
    idle = mode != "plain"
    d.env = {"DEDUPD_IDLE_SEAL_S": "5" if idle else "0"}
    runs: list[dict[str, float]] = []
    writes: list[dict] = []
    replays: list[dict] = []  # busy: the adoptions' records (journal entries replayed, paths rebuilt)
    try:
        done = len(log_events(work, IDLE_DONE))  # idle seals logged before this start
        wrote = len(log_events(work, "index snapshot written"))
        start_and_measure(d, n, timeout)
        for i in range(repeat + 1):
            if idle:
                t0 = time.monotonic()
                d.wait(lambda s, done=done: len(log_events(work, IDLE_DONE)) > done, t0, timeout, "the idle seal", 0.5)
                written = log_events(work, "index snapshot written")
                if len(written) > wrote:  # (else the snapshot on disk was still current: not rewritten)
                    writes.append(written[-1])
            if mode == "busy" and i < repeat:
                n += busy_files(d, Path(raw["roots"][0]), i, timeout)
            assert d.proc is not None
            os.killpg(d.proc.pid, signal.SIGKILL)
            d.proc.wait()
            d.log.close()
            if i == repeat:
                break
            if not idle:  # what a crash leaves without the idle seal (a clean stop's may still be current)
                (Path(raw["report_dir"]) / SEAL_NAME).unlink(missing_ok=True)
                (Path(raw["store_dir"]) / SNAPSHOT_NAME).unlink(missing_ok=True)
            before, snapshots = adoptions(work), adoptions(work, "index snapshot adopted")
            taken = adoptions(work, TAKEN)
            done, wrote = len(log_events(work, IDLE_DONE)), len(log_events(work, "index snapshot written"))
            runs.append(start_and_measure(d, n, timeout))
            runs[-1]["adopted"] = float(adoptions(work) > before)
            runs[-1]["snapshot"] = float(adoptions(work, "index snapshot adopted") > snapshots)
            runs[-1]["taken"] = float(adoptions(work, TAKEN) > taken)
            if mode == "busy":
                adopted = log_events(work, "index snapshot adopted")
                replays.append(adopted[-1] if len(adopted) > snapshots else {})
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    each = _each_run(runs)
    what = {"idle": "after the idle seal", "busy": f"after the idle seal and {BUSY_FILES} new files",
            "plain": "while idle, no idle seal"}[mode]
    rows = [(f"crash restart ({n:,} files, kill -9 {what}, daemon from {repo}), median of {repeat}", ""),
            ("crash restart: socket answers / every group back (each run; a: groups.json adopted, t: its groups "
             "taken and the replayed files' recomputed, s: snapshot)",
             f"{med['socket']:.2f} s / {med['groups']:.2f} s ({each})"),
            ("crash restart: daemon CPU until the socket answers / every group is back, load average (each run)",
             " · ".join(f"{r['cpu_socket']:.1f}/{r['cpu']:.1f} ({r['load']:.1f})" for r in runs)),
            ("crash restart: daemon RSS (peak; anonymous)",
             f"{med['rss']:.0f} MB ({med['hwm']:.0f} MB; {med['anon']:.0f} MB)")]
    if replays:
        rows.append(("crash restart: journal entries replayed / paths rebuilt / seconds of the adoption (each)",
                     " · ".join(f"{r.get('replayed', 0)}/{r.get('rebuilt', 0)}/{r.get('seconds', float('nan')):.1f} s"
                                if r else "not adopted" for r in replays)))
    if writes:
        rows.append(("idle seal: index snapshot under the index lock / whole write (each)",
                     " · ".join(f"{w.get('lock_s', float('nan')):.2f}/{w['seconds']:.1f} s" for w in writes)))
    return rows


BUSY_FILES = 40
TAKEN = "groups.json of before the crash taken"  # (the log message of dedupd.reports.files)


def busy_files(d: Daemon, root: Path, run: int, timeout: float) -> int:
    """Copy :data:`BUSY_FILES` files (corpus photos, each with a byte copy) into ``root``, a
    folder per ``run``; return once the socket lists them all (their commits made): how many."""
    photos = sorted((CORPUS / "base").rglob("*.jpg"))[run * BUSY_FILES // 2:(run + 1) * BUSY_FILES // 2]
    folder = root / "busy" / f"run{run}-{os.getpid()}"
    folder.mkdir(parents=True)
    made = []
    for k, src in enumerate(photos):
        for name in (f"p{k}.jpg", f"p{k}-copy.jpg"):
            shutil.copyfile(src, folder / name)
            made.append(str(folder / name))
    t0 = time.monotonic()
    for path in made:
        d.wait(lambda s, p=path: _indexed(d, p), t0, timeout, "the busy files indexed", 0.02)
    return len(made)


def sighup(d: Daemon, work: Path, raw: dict, reports: Path, timeout: float) -> list[tuple[str, str]]:
    assert d.proc is not None
    (work / "c.yaml").write_text(json.dumps({**raw, "methods": {"phash": 8}}))
    watch = ReportWatch(reports)
    t0 = time.monotonic()
    os.kill(d.proc.pid, signal.SIGHUP)
    worst = 0.0
    while time.monotonic() - t0 < timeout:
        t = time.perf_counter()
        s = d.status()
        worst = max(worst, time.perf_counter() - t)
        report, seen = watch.poll()
        if s is not None and s.get("graph") == "ready" and report is not None and report[2] == {"phash": 8}:
            break
        time.sleep(0.02)
    else:
        raise SystemExit("the reload's groups did not appear")
    return [("SIGHUP phash 10 → 8: slowest status answer", f"{worst * 1e3:.0f} ms"),
            ("SIGHUP phash 10 → 8: new groups in groups.json", f"{seen - t0:.2f} s")]


def new_files(d: Daemon, root: Path, reports: Path, timeout: float) -> list[tuple[str, str]]:
    photos = sorted((CORPUS / "base").rglob("*.jpg"))[:NEW_FILES]
    sock_lat, report_lat = [], []
    watch = ReportWatch(reports)
    for k, src in enumerate(photos):
        first = root / "real" / f"new{k}.jpg"
        shutil.copyfile(src, first)
        d.wait(lambda s, p=str(first): _indexed(d, p), time.monotonic(), timeout, "the new file indexed")
        copy = root / "real" / f"copy{k}.jpg"
        t0 = time.monotonic()
        shutil.copyfile(first, copy)
        t_sock = d.wait(lambda s, p=str(copy), q=str(first): _lists(d, p, q), t0, timeout, "the copy", 0.01)
        while (seen := watch.lists(str(copy))) is None:
            if time.monotonic() - t0 > timeout:
                raise SystemExit("the copy never reached groups.json")
            time.sleep(0.02)
        report_lat.append(seen - t0 - SETTLE_MS / 1000)
        sock_lat.append(t_sock - SETTLE_MS / 1000)
    return [("one new file → socket lists it, after settle: p50 / p95",
             f"{statistics.median(sock_lat):.2f} / {pct(sock_lat, 0.95):.2f} s"),
            ("one new file → groups.json lists it, after settle: p50 / p95",
             f"{statistics.median(report_lat):.2f} / {pct(report_lat, 0.95):.2f} s")]


def _indexed(d: Daemon, path: str) -> bool:
    try:
        d.client.duplicates(path)
        return True
    except ApiError:
        return False


def _lists(d: Daemon, path: str, other: str) -> bool:
    try:
        return any(m["path"] == other for m in d.client.duplicates(path)["duplicates"])
    except ApiError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--files", type=int, default=100_000, help="files in the synthetic library")
    ap.add_argument("--base", default=tempfile.gettempdir(), help="where the library and store are built")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per phase")
    ap.add_argument("--keep", action="store_true", help="keep the library, store and daemon log")
    ap.add_argument("--reuse", type=Path, metavar="WORK",
                    help="a work directory kept by --keep: only restart the daemon on it (-n is ignored)")
    ap.add_argument("--repeat", type=int, default=1, help="restarts with --reuse (the median is printed)")
    ap.add_argument("--socket-only", action="store_true",
                    help="with --reuse: measure until the socket answers (a store still deriving its graph)")
    ap.add_argument("--edges", action="store_true",
                    help="store the graph after populating (the library's all-pairs join), so that the first "
                         "start loads it rather than deriving it (about 45 min at 1M)")
    ap.add_argument("--full", action="store_true",
                    help="with --reuse: after each restart, the SIGHUP and new-file measurements too")
    ap.add_argument("--no-seal", action="store_true",
                    help="with --reuse: remove groups.json's seal before each start (a full build each time)")
    ap.add_argument("--daemon-repo", type=Path, default=REPO, help="checkout whose daemon runs (A/B comparisons)")
    ap.add_argument("--crash", choices=("idle", "busy", "plain"),
                    help="with --reuse: restarts after kill -9, after the idle seal (idle), after it and new files "
                         "(busy: the journal replayed), or with it off (plain: a store load)")
    args = ap.parse_args()
    if args.reuse is not None and args.crash:
        rows = crash_restarts(args.reuse.resolve(), args.timeout, max(1, args.repeat), args.daemon_repo.resolve(),
                              args.crash)
    elif args.reuse is not None:
        rows = restarts(args.reuse.resolve(), args.timeout, max(1, args.repeat), args.daemon_repo.resolve(),
                        args.socket_only, args.full, args.no_seal)
    else:
        rows = bench(args.files, Path(args.base), args.timeout, args.keep, args.edges)
    size = "a kept library" if args.reuse is not None else f"{args.files:,} files"
    print(f"\n| {size} (phash, 10 % near-duplicates, 1 % copies) | |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
