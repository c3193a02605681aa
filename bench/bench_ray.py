#!/usr/bin/env python
"""``dedupd scan --engine ray`` against the local scan, on a real Ray cluster on this machine.

Measures, on a generated mixed corpus set (all in the same run, medians of ``--repeats``):

* the work itself: :func:`dedupd.engines.ray_scan.encode_files` in this process (read, digest,
  decode, every hash), per file: what any engine must pay;
* ``dedupd scan`` (local pool, ``workers`` 1 and 2): wall time and files/s;
* ``dedupd scan --engine ray`` with 1 and 2 worker nodes (one CPU each; the head node runs no
  tasks): the Ray phase's files/s (encode_s), the whole scan's wall time, and the per-file overhead
  of the engine (1 / files/s on one node, minus the in-process cost);
* the store's single writer: records/s through ``Store.put_files`` in the engine's batch size,
  which bounds how many nodes one writer can keep up with;
* the all-pairs Hamming search on random hashes: ``dedupd.core.hamming.all_pairs`` here vs
  :func:`dedupd.engines.ray_pairs.hamming_pairs` on 1 and 2 nodes.

Usage::

    python bench/bench_ray.py              # ~600 files, 3 repeats: about 10 min on 2 cores
    python bench/bench_ray.py --quick      # ~120 files, 1 repeat: about 1.5 min
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, DEFAULT_DATA, ROOT, dataset, log

NODE = {"num_cpus": 1, "object_store_memory": 100 << 20}


def write_config(base: Path, images: Path, methods: dict[str, Any], workers: int) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    cfg = {"roots": [str(images)], "store_dir": str(base / "store"), "report_dir": str(base / "reports"),
           "socket_path": str(base / "s"), "methods": methods, "workers": workers,
           "log": {"format": "json", "level": "warning"}}
    path = base / "dedupd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_scan(config: Path, *args: str) -> tuple[float, dict[str, Any]]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DEDUPD_", "RAY_"))}, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dedupd", "scan", "--config", str(config), "--json", *args],
                         capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"dedupd scan failed:\n{out.stderr[-3000:]}")
    return wall, json.loads(out.stdout)


def in_process_cost(images: Path, methods: dict[str, Any], repeats: int, tmp: Path) -> tuple[float, int]:
    """Median seconds per file of the work a Ray task does, run here without Ray."""
    from dedupd.daemon.config import load_config
    from dedupd.daemon.pipeline import encode_spec
    from dedupd.daemon.walk import walk_root
    from dedupd.engines.ray_scan import encode_files

    config = load_config(str(write_config(tmp / "inproc", images, methods, 1)))
    items = [(f.path, f.st.st_size, f.st.st_mtime_ns, f.st.st_dev, f.st.st_ino) for r in config.roots
             for f in walk_root(r, config) if f.st is not None and not f.error]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        encode_files(items, encode_spec(config))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / len(items), len(items)


def writer_rate(tmp: Path, n: int = 20000, batch: int = 512) -> float:
    """Records/s through Store.put_files, each file with its own encoding (the engine's worst case)."""
    from dedupd.daemon.store import EncodingRecord, FileRecord, Store

    rng = np.random.default_rng(1)
    rows = []
    for k in range(n):
        digest = rng.bytes(16)
        enc = EncodingRecord(640, 480, "JPEG", {"phash": int(rng.integers(0, 2**63))}, "v1")
        rows.append((f"/photos/{k // 1000:04d}/IMG_{k:07d}.jpg", FileRecord(100_000 + k, k, 1, k, digest), enc))
    with Store.open(tmp / "writer-store") as store:
        t0 = time.perf_counter()
        for k in range(0, n, batch):
            store.put_files(rows[k:k + batch])
        return n / (time.perf_counter() - t0)


def ray_scans(cluster: Any, images: Path, methods: dict[str, Any], repeats: int, batch: int, tmp: Path,
              label: str) -> dict[str, float]:
    walls, rates = [], []
    for r in range(repeats):
        config = write_config(tmp / f"ray-{label}-{r}", images, methods, 1)
        wall, status = run_scan(config, "--engine", "ray", "--ray-address", cluster.address, "--ray-batch", str(batch))
        walls.append(wall)
        rates.append(status["engine"]["files_per_s"])
        log(f"ray {label}: {wall:.1f} s, Ray phase {status['engine']['files_per_s']} files/s, "
            f"nodes {list(status['engine']['nodes'].values())}")
    return {"wall": statistics.median(walls), "rate": statistics.median(rates), "files": status["files"]}


def pairs_times(cluster: Any, n: int, repeats: int, batch: int) -> dict[str, float]:
    """All pairs here and on Ray; and the cost of an empty task carrying ``batch`` paths."""
    import ray

    from dedupd.core import hamming
    from dedupd.engines import ray_pairs
    from dedupd.engines.library import apply_all
    from dedupd.engines.ray_runtime import stream

    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**63, n, dtype=np.uint64)
    values[::5] = values[1::5] ^ np.uint64(3)  # some close pairs
    ray.init(address=cluster.address, logging_level="WARNING")
    try:
        paths = [f"/photos/2024/{k:04d}/IMG_{k:07d}.jpg" for k in range(batch)]
        list(stream(ray, apply_all, [(len, paths, 0)] * 8))  # workers started
        t0 = time.perf_counter()
        tasks = 300
        list(stream(ray, apply_all, [(len, paths, 0)] * tasks))
        per_task = (time.perf_counter() - t0) / tasks
        local = [time.perf_counter()]
        for _ in range(repeats):
            a = hamming.all_pairs(values, 10)
        local.append(time.perf_counter())
        remote = [time.perf_counter()]
        for _ in range(repeats):
            b = ray_pairs.hamming_pairs(ray, values, 10, tile=max(1024, n // 4))
        remote.append(time.perf_counter())
    finally:
        ray.shutdown()
    assert all(np.array_equal(x, y) for x, y in zip(a, b)), "Ray pairs differ from the local search"
    return {"local": (local[1] - local[0]) / repeats, "ray": (remote[1] - remote[0]) / repeats, "pairs": len(a[0]),
            "task": per_task}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--count", type=int, help="photos in the mixed set (default 600, quick 120)")
    p.add_argument("--repeats", type=int, help="default 3, quick 1")
    p.add_argument("--batch", type=int, default=32, help="files per Ray task")
    p.add_argument("--pairs", type=int, help="hashes for the all-pairs search (default 30000, quick 10000)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, help="also write the table here")
    args = p.parse_args()
    count = args.count or (120 if args.quick else 600)
    repeats = args.repeats or (1 if args.quick else 3)
    n_pairs = args.pairs or (10000 if args.quick else 30000)
    methods = {"phash": {"threshold": 10}, "dhash": {"threshold": 10}}

    from ray.cluster_utils import Cluster

    images = dataset(args.corpus, args.data_dir, f"ray-mixed-{count}", "--kind", "mixed", "--count", str(count),
                     "--nested") / "img"
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp_name:
        tmp = Path(tmp_name)
        per_file, files = in_process_cost(images, methods, repeats, tmp)
        log(f"in process: {per_file * 1e3:.2f} ms/file over {files} files")
        local: dict[int, float] = {}
        for workers in (1, 2):
            walls = [run_scan(write_config(tmp / f"local-{workers}-{r}", images, methods, workers))[0]
                     for r in range(repeats)]
            local[workers] = statistics.median(walls)
            log(f"local scan, workers {workers}: {local[workers]:.1f} s")
        writes = writer_rate(tmp)
        log(f"store writer: {writes:.0f} records/s")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": 100 << 20,
                                                                "include_dashboard": False})
        try:
            cluster.add_node(**NODE)
            one = ray_scans(cluster, images, methods, repeats, args.batch, tmp, "1 node")
            pairs1 = pairs_times(cluster, n_pairs, repeats, args.batch)
            cluster.add_node(**NODE)
            two = ray_scans(cluster, images, methods, repeats, args.batch, tmp, "2 nodes")
            pairs2 = pairs_times(cluster, n_pairs, repeats, args.batch)
        finally:
            cluster.shutdown()
    overhead = 1 / one["rate"] - per_file
    rows += [
        ("in-process encode (read, digest, decode, phash+dhash), no engine", f"{1 / per_file:.1f} files/s",
         f"{per_file * 1e3:.2f} ms/file"),
        ("`dedupd scan`, local pool, workers 1 (whole scan)", f"{files / local[1]:.1f} files/s", f"{local[1]:.1f} s"),
        ("`dedupd scan`, local pool, workers 2 (whole scan)", f"{files / local[2]:.1f} files/s", f"{local[2]:.1f} s"),
        ("`--engine ray`, 1 worker node: Ray phase", f"{one['rate']:.1f} files/s",
         f"overhead {overhead * 1e3:+.2f} ms/file ({overhead / per_file:+.0%})"),
        (f"an empty Ray task carrying {args.batch} paths (1 / 2 nodes)", f"{pairs1['task'] * 1e3:.1f} / "
         f"{pairs2['task'] * 1e3:.1f} ms/task", f"= {pairs1['task'] / args.batch * 1e3:.2f} ms/file of engine cost"),
        ("`--engine ray`, 2 worker nodes: Ray phase", f"{two['rate']:.1f} files/s",
         f"{two['rate'] / one['rate']:.2f}x 1 node"),
        ("`--engine ray`, 1 worker node (whole scan)", f"{files / one['wall']:.1f} files/s", f"{one['wall']:.1f} s"),
        ("`--engine ray`, 2 worker nodes (whole scan)", f"{files / two['wall']:.1f} files/s", f"{two['wall']:.1f} s"),
        ("store writer (`put_files`, 512 per transaction, one encoding each)", f"{writes:,.0f} records/s",
         f"= {writes / one['rate']:,.0f} nodes at the 1-node rate"),
        (f"all pairs, {n_pairs:,} hashes, radius 10: here", f"{pairs1['local']:.2f} s", f"{pairs1['pairs']:,} pairs"),
        (f"all pairs, {n_pairs:,} hashes: Ray, 1 / 2 nodes", f"{pairs1['ray']:.2f} s / {pairs2['ray']:.2f} s",
         "identical pairs"),
    ]
    load = os.getloadavg()[0]
    lines = [f"{files} files (mixed set, {count} photos + copies), medians of {repeats}; {os.cpu_count()}-core machine "
             f"shared with other jobs (load average {load:.1f} at the end); nodes are processes on this machine "
             "(1 CPU each, head runs no tasks)", "",
             "| what | rate | notes |", "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rows]]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
