"""Latency of ``POST /v1/query`` (image bytes) against a real daemon with 1k / 10k / 100k indexed hashes.

Building a 100k index by decoding 100k images would take an hour, so the store is populated
directly: for each synthetic file an empty placeholder file is created under the root (so the
daemon's start-up reconcile finds it unchanged and keeps it) and a ``FileRecord`` +
``EncodingRecord`` with a synthetic PHash goes into the LMDB store through ``Store.put_files``.
Synthetic hashes are clustered (random centres, each member a few bit flips away), so the index
has realistic duplicate groups for the BK-tree, the duplicate graph and the reports. A few real
photos are added to the root and decoded by the daemon as usual; the queries are near-duplicates
of those photos, generated outside the root and sent as bytes like ``dedupd query`` does.

Then ``dedupd run`` starts as a subprocess on that store; once it is ``watching`` and its reports
are written, queries are timed through :class:`dedupd.client.Client` (a new connection per query,
as the CLI makes). ``decode+hash`` is the same image encoded in this process without a socket:
the part of the latency that does not depend on the index size.

    python bench/bench_query.py                      # 1k, 10k, 100k; 200 queries each
    python bench/bench_query.py --sizes 1000,20000 --queries 50
"""

from __future__ import annotations

import argparse
import hashlib
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

from dedupd.client import ApiError, Client, DaemonNotRunning
from dedupd.daemon.config import Config, config_from_mapping
from dedupd.daemon.encoder import encode_job
from dedupd.daemon.pipeline import encode_spec
from dedupd.daemon.store import EncodingRecord, FileRecord, Store

CORPUS = Path(os.environ.get("DEDUPD_CORPUS", REPO.parent / "shared" / "corpus"))
REAL = 20  # real photos in the root (decoded by the daemon)
PER_DIR = 1000


def near_duplicate(src: Path, dst: Path) -> Path:
    from PIL import Image, ImageEnhance

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        im = im.crop((w // 40, h // 40, w - w // 40, h - h // 40))
        im = ImageEnhance.Brightness(im).enhance(1.1).resize((int(w * 0.6), int(h * 0.6)))
        im.save(dst, quality=55)
    return dst


def clustered_hashes(n: int, rng: np.random.Generator, cluster: int = 8, max_flips: int = 6) -> np.ndarray:
    """``n`` 64-bit hashes in clusters of about ``cluster``: random centres plus 0..max_flips bit flips."""
    centres = rng.integers(0, 2**63, size=max(1, n // cluster), dtype=np.int64).astype(np.uint64) * np.uint64(
        2
    )
    centres ^= rng.integers(0, 2, size=len(centres), dtype=np.int64).astype(np.uint64)
    out = centres[rng.integers(0, len(centres), size=n)]
    for _ in range(max_flips):
        flip = rng.random(n) < 0.5
        bits = rng.integers(0, 64, size=n).astype(np.uint64)
        out = np.where(flip, out ^ (np.uint64(1) << bits), out)
    return out


def populate(root: Path, store_dir: Path, config: Config, n: int, seed: int) -> None:
    """``n`` placeholder files under ``root/syn`` and their synthetic records in the store."""
    rng = np.random.default_rng(seed)
    hashes = clustered_hashes(n, rng)
    params = config.hash_params_id()
    with Store.open(store_dir) as store:
        store.set_encoders(config.hash_methods(), config.cnn_model_id(), hash_params=params)
        batch = []
        for i in range(n):
            folder = root / "syn" / f"d{i // PER_DIR:04d}"
            if i % PER_DIR == 0:
                folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"f{i:07d}.jpg"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.close(fd)
            st = os.stat(path)
            digest = hashlib.blake2b(i.to_bytes(8, "big"), digest_size=16).digest()
            rec = FileRecord.from_stat(st, digest)
            enc = EncodingRecord(640, 480, "JPEG", {"phash": int(hashes[i])}, hash_params=params)
            batch.append((str(path), rec, enc))
            if len(batch) >= 5000:
                store.put_files(batch)
                batch = []
        if batch:
            store.put_files(batch)


class Daemon:
    def __init__(self, workdir: Path, config_path: Path, socket_path: str) -> None:
        self.workdir, self.config_path, self.socket_path = workdir, config_path, socket_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 900) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPD_")}
        env["PYTHONPATH"] = str(REPO)
        self.log = open(self.workdir / "daemon.log", "wb")  # noqa: SIM115 - open while the daemon runs
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dedupd", "run", "--config", str(self.config_path)],
            stdout=self.log,
            stderr=self.log,
            env=env,
            start_new_session=True,
        )
        client = Client(self.socket_path, timeout=60)
        last = None
        stable_since = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited: see {self.workdir / 'daemon.log'}")
            try:
                s = client.get("/v1/status")
            except (DaemonNotRunning, ApiError):
                time.sleep(0.2)
                continue
            sig = (s["state"], s["files"], s["groups"], s["queued"])
            if sig != last:
                last, stable_since = sig, time.monotonic()
            elif (
                s["state"] == "watching"
                and s["queued"] == 0
                and s["groups"]
                and time.monotonic() - stable_since > 2
            ):
                return stable_since - t0
            time.sleep(0.2)
        raise SystemExit("daemon did not become ready in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_size(n: int, queries: int, base: Path, uploads: list[tuple[Path, Path]]) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix=f"n{n}-", dir=base))
    root, store_dir = work / "root", work / "store"
    (root / "real").mkdir(parents=True)
    for _, original in uploads:
        shutil.copyfile(original, root / "real" / original.name)
    sock = tempfile.mkdtemp(prefix="bq-", dir="/tmp") + "/s"
    cfg_text = (
        f"roots: [{root}]\nstore_dir: {store_dir}\nreport_dir: {work / 'reports'}\nsocket_path: {sock}\n"
        "rescan_interval_s: 0\nworkers: 2\nlog: {format: json, level: warning}\n"
    )
    (work / "dedupd.yaml").write_text(cfg_text)
    config = config_from_mapping(
        {
            "roots": [str(root)],
            "store_dir": str(store_dir),
            "report_dir": str(work / "reports"),
            "socket_path": sock,
        },
        env={},
    )
    synthetic = n - len(uploads)
    t0 = time.monotonic()
    populate(root, store_dir, config, synthetic, seed=n)
    t_populate = time.monotonic() - t0
    daemon = Daemon(work, work / "dedupd.yaml", sock)
    try:
        t_ready = daemon.start()
        client = Client(sock, timeout=120)
        status = client.get("/v1/status")
        assert status["files"] == n, status
        bodies = [(q.read_bytes(), original) for q, original in uploads]
        for body, _ in bodies[:5]:  # warm-up
            client.query_bytes(body)
        lat = []
        for k in range(queries):
            body, original = bodies[k % len(bodies)]
            t = time.perf_counter()
            res = client.query_bytes(body)
            lat.append(time.perf_counter() - t)
            if not any(m["path"].endswith("/real/" + original.name) for m in res["duplicates"]):
                raise SystemExit(f"query of a near-duplicate of {original.name} missed it: {res}")
        dup_lat = []
        for k in range(queries):
            _, original = bodies[k % len(bodies)]
            t = time.perf_counter()
            client.get("/v1/duplicates", path=str(root / "real" / original.name))
            dup_lat.append(time.perf_counter() - t)
        groups_t = time.perf_counter()
        page = client.get("/v1/groups", offset=0, limit=100)
        groups_first = time.perf_counter() - groups_t
        groups_t = time.perf_counter()
        client.get("/v1/groups", offset=page["total"] // 2, limit=100)
        groups_cached = time.perf_counter() - groups_t
    finally:
        daemon.stop()
        shutil.rmtree(os.path.dirname(sock), ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "n": n,
        "populate_s": t_populate,
        "ready_s": t_ready,
        "median": statistics.median(lat),
        "p95": pct(lat, 0.95),
        "max": max(lat),
        "dup_median": statistics.median(dup_lat),
        "dup_p95": pct(dup_lat, 0.95),
        "groups": page["total"],
        "groups_first": groups_first,
        "groups_cached": groups_cached,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="indexed files per run (comma-separated)")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per size")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="dedupd-bench-query-"))
    try:
        upload_dir = base / "uploads"
        upload_dir.mkdir()
        spec = encode_spec(config_from_mapping({"roots": [str(base)]}, env={}))
        uploads = []  # near-duplicates within the threshold of their original (a hit is checked)
        for o in sorted((CORPUS / "base").glob("*.jpg"))[100:]:
            q = near_duplicate(o, upload_dir / f"near-{o.name}")
            a, b = encode_job(str(o), spec).hashes["phash"], encode_job(str(q), spec).hashes["phash"]
            if (a ^ b).bit_count() <= 8:
                uploads.append((q, o))
            if len(uploads) == REAL:
                break
        enc = []
        for k in range(args.queries):
            t = time.perf_counter()
            encode_job(str(uploads[k % len(uploads)][0]), spec)
            enc.append(time.perf_counter() - t)
        kib = statistics.mean(u.stat().st_size for u, _ in uploads) / 1024
        print(
            f"query images: {len(uploads)} near-duplicates of real photos (JPEG, ~{kib:.0f} KiB, ~600 px); "
            f"PHash threshold 10; {args.queries} queries per size; CPUs: {os.cpu_count()}"
        )
        print(
            f"decode+hash alone (no socket, no search): median {statistics.median(enc) * 1000:.1f} ms, "
            f"p95 {pct(enc, 0.95) * 1000:.1f} ms\n"
        )
        rows = []
        for n in sizes:
            r = bench_size(n, args.queries, base, uploads)
            rows.append(r)
            print(
                f"  {n:>7} indexed: query median {r['median'] * 1000:.1f} ms, p95 {r['p95'] * 1000:.1f} ms "
                f"(store populated in {r['populate_s']:.1f} s, daemon ready in {r['ready_s']:.1f} s)",
                flush=True,
            )
        print()
        print(
            "| indexed | POST /v1/query (bytes) median | p95 | max | GET /v1/duplicates median | p95 "
            "| groups | GET /v1/groups first page | later page (cached) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['n']:,} | {r['median'] * 1000:.1f} ms | {r['p95'] * 1000:.1f} ms | {r['max'] * 1000:.1f} ms "
                f"| {r['dup_median'] * 1000:.2f} ms | {r['dup_p95'] * 1000:.2f} ms | {r['groups']:,} "
                f"| {r['groups_first'] * 1000:.0f} ms | {r['groups_cached'] * 1000:.1f} ms |"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
