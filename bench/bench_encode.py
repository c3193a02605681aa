#!/usr/bin/env python
"""Encoding speed end to end: ``dedupd scan`` vs imagededup (the reference) and czkawka.

Every tool runs as its own process tree, timed by wall clock from start to exit (the reference:
its ``encode_images`` calls only, without its imports), with the peak of
the summed RSS of all its processes sampled every 50 ms; runs of the tools being compared
alternate (``--repeats`` rounds) so that a change of machine load hits them alike. Medians.

Rows:

a. 12 MP camera photos (JPEG, and PNG/WebP apart), all four hashes: the reference's four
   ``encode_images(num_enc_workers=2)`` vs ``dedupd scan`` (fresh store, ``decode: exact`` and
   ``decode: fast``, the four hashes only: ``crop: false``); the exact hashes read back from the
   scan's store must equal the reference's; for fast, the pair agreement with exact (threshold 10,
   per method: |pairs both find| / |pairs either finds|). Also the scan with the default crop
   hashes of pHash and dHash (8 hashes per file).
b. 640 px JPEGs, pHash + dHash: files per second of ``dedupd scan`` (the daemon's ingest path:
   walk, stat, digest, worker decode, LMDB, index) with the default and the fast decode.
c. ``dedupd scan`` with its default config vs czkawka's Python bindings (``pip install czkawka``:
   one 64-bit gradient hash, similarity 10; its hash cache is kept in a fresh folder per run) on
   1,000 mixed photos and 20,000 tiny JPEGs; pair precision and recall of both against the
   generator's ground truth. Skipped with a message when czkawka is not installed.
d. fast vs exact decode on many pairs (30 photos of 6 MP and 40 of 12 MP, and every everyday edit
   of each): pair agreement per method at threshold 10, and the bits that differ per file.
e. the daemon (``dedupd run``, pHash + dHash, default settle of 1 s): 640 px JPEGs copied into a
   watched folder at a steady 20 files/s (arrival to ``duplicates.json``: p50 / p95), then a burst
   (files/s until the last one is reported, and the CPU milliseconds a file of every process from
   the burst's start until the daemon is idle again: thumbnails and reports included); with the
   default ``workers: 1``, then one worker per CPU; with ``crop: false`` (the issue's target as
   worded: two hashes a file) and with the default config (their crop hashes too: six a file).

Usage::

    python bench/bench_encode.py            # full run (about 15-25 min on 2 busy cores)
    python bench/bench_encode.py --quick    # small sets, 1 repeat (smoke test)
    python bench/bench_encode.py --only a   # one section
    python bench/bench_encode.py --only abc --before /work/main  # + before/after rows: that checkout's scan
    python bench/bench_encode.py --only e --before /work/main    # the daemon of both, alternated
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, DEFAULT_DATA, ROOT, camera_set, dataset, fmt_ratio, fmt_s, log, tiny_set, web_set  # noqa: E402

from dedupd.cpus import available_cpus  # noqa: E402

HASHES = ("phash", "ahash", "dhash", "whash")
THRESHOLD = 10
PY = sys.executable

# the reference is timed from inside, without its imports (torch: seconds): only its encode_images
REF_SCRIPT = """
import json, sys, logging, time
logging.disable(logging.WARNING)
from imagededup.methods import PHash, AHash, DHash, WHash
out = {}
t0 = time.perf_counter()
for name, cls in (("phash", PHash), ("ahash", AHash), ("dhash", DHash), ("whash", WHash)):
    out[name] = cls(verbose=False).encode_images(image_dir=sys.argv[1], num_enc_workers=int(sys.argv[2]))
out["seconds"] = time.perf_counter() - t0
json.dump(out, open(sys.argv[3], "w"))
"""

CZKAWKA_SCRIPT = """
import json, sys
from czkawka import ImageSimilarity
f = ImageSimilarity()
f.set_directories([sys.argv[1]])
f.set_similarity(int(sys.argv[2]))
json.dump([[str(p) for p in g] for g in f.find_similar()], open(sys.argv[3], "w"))
"""


# -- running and sampling -------------------------------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK")


def _tree_sample(root: int, cpu: dict[int, float], pss: list[int] | None = None) -> int:
    """Summed VmRSS (kB) of ``root`` and all its descendants (from /proc); records each one's CPU
    seconds so far (user + system) in ``cpu`` (by pid), and appends their summed PSS (kB: pages
    shared by forked workers counted once in all) to ``pss``."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                ppid = kb = 0
                for line in fh:
                    if line.startswith("PPid:"):
                        ppid = int(line.split()[1])
                    elif line.startswith("VmRSS:"):
                        kb = int(line.split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = kb
    total, shared, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
        if pss is not None:
            try:
                with open(f"/proc/{pid}/smaps_rollup") as fh:
                    shared += next((int(line.split()[1]) for line in fh if line.startswith("Pss:")), 0)
            except OSError:
                pass
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
            cpu[pid] = max(cpu.get(pid, 0.0), (int(fields[11]) + int(fields[12])) / _TICK)
        except (OSError, IndexError, ValueError):
            pass
    if pss is not None:
        pss.append(shared)
    return total


def run_timed(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600,
              cwd: Path | None = None) -> dict[str, Any]:
    """Run ``cmd``; wall time, the peak summed RSS of its process tree (MB; ``pss_mb``: the peak summed
    PSS, shared pages counted once) and its CPU time (``cpu_s``:
    user + system of every process, sampled every 50 ms, so a process's last 50 ms may be missed)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    peak = [0]
    cpu: dict[int, float] = {}
    pss: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_sample(proc.pid, cpu, pss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        done.set()
        sampler.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}: {err[-2000:]}")
    return {"s": seconds, "mb": peak[0] / 1024, "pss_mb": max(pss, default=0) / 1024, "cpu_s": sum(cpu.values()), "cpu_by_pid": dict(cpu),
            "main_cpu_s": cpu.get(proc.pid, 0.0), "stdout": out}


def alternate(runs: dict[str, Any], repeats: int) -> dict[str, dict[str, Any]]:
    """Call each ``runs[label]()`` once per round, rotating the order; medians and max memory."""
    labels = list(runs)
    acc: dict[str, list[dict[str, Any]]] = {k: [] for k in labels}
    for r in range(repeats):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            log(f"  {label} (round {r + 1}/{repeats})")
            acc[label].append(runs[label]())
    return {k: {"s": statistics.median(x["s"] for x in v), "mb": max(x["mb"] for x in v),
                "pss_mb": max(x.get("pss_mb", 0.0) for x in v),
                "cpu_s": statistics.median(x.get("cpu_s", 0.0) for x in v),
                "main_cpu_s": statistics.median(x.get("main_cpu_s", 0.0) for x in v), "last": v[-1]} for k, v in acc.items()}


# -- tools ---------------------------------------------------------------------------------------


def reference(img: Path, workers: int, out: Path) -> dict[str, Any]:
    out.parent.mkdir(parents=True, exist_ok=True)
    res = run_timed([PY, "-c", REF_SCRIPT, str(img), str(workers), str(out)])
    res["hashes"] = json.loads(out.read_text())
    res["s"] = res["hashes"].pop("seconds")
    return res


_RUNS = itertools.count()
_OLD_RUNS: list[Path] = []  # folders of earlier runs, deleted once the benchmark is over


def fresh_dir(work: Path) -> Path:
    """A new, never used folder for one run, with ``work`` a symlink to it (the last run stays
    there to be read). The folder of the run before is deleted at the end of the benchmark, not
    now: deleting a scan's 5,000 thumbnails and its store just before the next run slowed that
    run's own file writes (ext4 here, measured by hand from the thumbnails' mtimes: the thumbnail
    phase of 20,000 tiny JPEGs 0.7 -> 1.3 s, ``dedupd scan`` 7.2 -> 7.9 s), a cost no user's scan pays."""
    run = work.with_name(f"{work.name}.run{os.getpid()}-{next(_RUNS)}")
    if work.is_symlink():
        _OLD_RUNS.append(work.resolve())
        work.unlink()
    elif work.exists():
        shutil.rmtree(work)  # a folder of a benchmark before this one
    run.mkdir(parents=True)
    work.symlink_to(run)
    return run


def delete_old_runs() -> None:
    for d in _OLD_RUNS:
        shutil.rmtree(d, ignore_errors=True)
    _OLD_RUNS.clear()


def dedupd_scan(img: Path, work: Path, methods: dict[str, int] | None, decode: str | None = None,
                extra: dict[str, Any] | None = None, root: Path = ROOT) -> dict[str, Any]:
    """A fresh-store ``dedupd scan`` (in a new folder: :func:`fresh_dir`); ``methods``/``decode`` None
    keep the config defaults; ``root``: the checkout whose dedupd runs (``--before``: another one,
    for an A/B in the same run)."""
    work = fresh_dir(work.absolute())
    cfg: dict[str, Any] = {"roots": [os.path.abspath(img)], "store_dir": str(work / "store"), "report_dir": str(work / "reports"),
                           "socket_path": str(work / "s.sock"), **(extra or {})}
    if methods is not None:
        cfg["methods"] = methods
    if decode is not None:
        cfg["decode"] = decode
    (work / "cfg.yaml").write_text(json.dumps(cfg))
    env = {"PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # run in the work folder: ``python -m`` puts the current folder first on the path, so from
    # inside a checkout its dedupd, not ``root``'s, would run
    res = run_timed([PY, "-m", "dedupd", "scan", "--config", str(work / "cfg.yaml"), "--json"], env=env, cwd=work)
    res["status"] = json.loads(res["stdout"])
    res["work"] = work
    return res


def scan_hashes(work: Path, root: Path) -> dict[str, dict[str, int]]:
    """``{method: {relative name: hash}}`` read back from a scan's store."""
    sys.path.insert(0, str(ROOT))
    from dedupd.daemon.store import Store

    out: dict[str, dict[str, int]] = {}
    with Store.open(work / "store", readonly=True) as store:
        for path, rec in store.iter_files():
            enc = store.get_encoding(rec.digest) if rec.digest else None
            if enc is None:
                continue
            for m, h in enc.hashes.items():
                out.setdefault(m, {})[os.path.relpath(path, root)] = h
    return out


def scan_pairs(work: Path, root: Path) -> set[frozenset[str]]:
    dup = json.loads((work / "reports" / "duplicates.json").read_text())
    return {frozenset((os.path.relpath(a, root), os.path.relpath(b, root))) for a, bs in dup.items() for b in bs}


def run_czkawka(img: Path, out: Path) -> dict[str, Any]:
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.mkdtemp(prefix="czkawka-cache-"))
    try:
        res = run_timed([PY, "-c", CZKAWKA_SCRIPT, str(img), str(THRESHOLD), str(out)],
                        env={"XDG_CACHE_HOME": str(cache), "XDG_CONFIG_HOME": str(cache), "HOME": str(cache)})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    groups = json.loads(out.read_text())
    real = os.path.realpath(img)  # czkawka names files by their real path (a dataset folder may be a symlink)
    res["pairs"] = {frozenset((os.path.relpath(os.path.realpath(a), real), os.path.relpath(os.path.realpath(b), real)))
                    for g in groups for a, b in itertools.combinations(g, 2)}
    return res


# -- measures ------------------------------------------------------------------------------------


def pairs_of(hashes: dict[str, int], threshold: int = THRESHOLD) -> set[frozenset[str]]:
    names = sorted(hashes)
    return {frozenset((a, b)) for a, b in itertools.combinations(names, 2)
            if (hashes[a] ^ hashes[b]).bit_count() <= threshold}


def agreement(a: set, b: set) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def truth_pairs(meta: Path) -> set[frozenset[str]]:
    gt = json.loads((meta / "ground_truth.json").read_text())
    return {frozenset((a, b)) for a, bs in gt.items() for b in bs}


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), (hit / len(truth) if truth else 1.0)


def split_by_format(img: Path, dest: Path) -> dict[str, Path]:
    """Hard links of ``img``'s files in ``dest/jpeg`` and ``dest/png_webp``."""
    out = {"jpeg": dest / "jpeg", "png_webp": dest / "png_webp"}
    for d in out.values():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for f in sorted(img.iterdir()):
        kind = "jpeg" if f.suffix.lower() in (".jpg", ".jpeg") else "png_webp" if f.suffix.lower() in (
            ".png", ".webp") else None
        if kind:
            os.link(f, out[kind] / f.name)
    return out


# -- sections ------------------------------------------------------------------------------------


def section_a(args: argparse.Namespace, rows: list[list[str]], notes: list[str]) -> None:
    meta = dataset(args.corpus, args.data_dir, *camera_set(args.mp12))
    parts = split_by_format(meta / "img", args.data_dir / f"enc-12mp-{args.mp12}-split")
    # the four hashes the reference computes: without the default config's crop hashes of pHash and
    # dHash (four more resizes per file), measured apart ("exact + crop")
    four: dict[str, Any] = {m: {"threshold": THRESHOLD, "crop": False} if m in ("phash", "dhash") else THRESHOLD
                            for m in HASHES}
    tmp = args.data_dir / "enc-work"
    for kind, img in parts.items():
        n = len(list(img.iterdir()))
        if n == 0:
            continue
        log(f"a. 12 MP {kind}: {n} files")
        runs: dict[str, Any] = {
            "ref": lambda img=img: reference(img, 2, tmp / "ref.json"),
            "exact": lambda img=img: dedupd_scan(img, tmp / "exact", four, "exact"),
            "fast": lambda img=img: dedupd_scan(img, tmp / "fast", four, "fast"),
            "crop": lambda img=img: dedupd_scan(img, tmp / "crop", dict.fromkeys(HASHES, THRESHOLD), "exact"),
        }
        for mode in ("exact", "fast") if args.before else ():
            runs[f"{mode} before"] = lambda img=img, mode=mode: dedupd_scan(img, tmp / f"{mode}-before", four, mode,
                                                                            root=args.before)
        res = alternate(runs, args.repeats)
        ref_h = {m: {k: int(v, 16) for k, v in hs.items()} for m, hs in res["ref"]["last"]["hashes"].items()}
        exact_h = scan_hashes(tmp / "exact", img)
        fast_h = scan_hashes(tmp / "fast", img)
        same = sum(1 for m in HASHES for k, v in ref_h[m].items() if exact_h.get(m, {}).get(k) == v)
        total = sum(len(ref_h[m]) for m in HASHES)
        agree = {m: agreement(pairs_of(exact_h.get(m, {})), pairs_of(fast_h.get(m, {}))) for m in HASHES}
        pairs = {m: len(pairs_of(exact_h.get(m, {}))) for m in HASHES}
        rows.append([f"12 MP {kind} x{n}, 4 hashes, exact", fmt_s(res["ref"]["s"]), fmt_s(res["exact"]["s"]),
                     fmt_ratio(res["ref"]["s"], res["exact"]["s"]),
                     f"{res['ref']['mb']:.0f} / {res['exact']['mb']:.0f} (PSS {res['exact']['pss_mb']:.0f})",
                     f"identical hashes {same}/{total}; CPU s ref {res['ref']['cpu_s']:.1f}, "
                     f"dedupd {res['exact']['cpu_s']:.1f}"])
        rows.append([f"12 MP {kind} x{n}, 4 hashes + pHash/dHash crop hashes (default), exact", fmt_s(res["ref"]["s"]),
                     fmt_s(res["crop"]["s"]), fmt_ratio(res["ref"]["s"], res["crop"]["s"]),
                     f"- / {res['crop']['mb']:.0f} (PSS {res['crop']['pss_mb']:.0f})",
                     f"8 hashes per file (4 more resizes); CPU s dedupd {res['crop']['cpu_s']:.1f}"])
        for mode in ("exact", "fast") if args.before else ():
            rows.append(before_row(f"12 MP {kind} x{n}, 4 hashes, {mode}", n, res[f"{mode} before"], res[mode], args))
        rows.append([f"12 MP {kind} x{n}, 4 hashes, fast", fmt_s(res["ref"]["s"]), fmt_s(res["fast"]["s"]),
                     fmt_ratio(res["ref"]["s"], res["fast"]["s"]), f"- / {res['fast']['mb']:.0f}",
                     "pair agreement with exact: " + ", ".join(f"{m} {agree[m]:.3f} ({pairs[m]} pairs)"
                                                                for m in HASHES)])


def section_b(args: argparse.Namespace, rows: list[list[str]], notes: list[str]) -> None:
    meta = dataset(args.corpus, args.data_dir, *web_set(args.small))
    img = meta / "img"
    n = sum(1 for _ in img.rglob("*") if _.is_file())
    log(f"b. 640 px: {n} files")
    tmp = args.data_dir / "enc-work"
    two = {"phash": THRESHOLD, "dhash": THRESHOLD}
    runs = {
        "exact": lambda: dedupd_scan(img, tmp / "b-exact", two, "exact"),
        "fast": lambda: dedupd_scan(img, tmp / "b-fast", two, "fast"),
    }
    if args.before:
        runs["exact before"] = lambda: dedupd_scan(img, tmp / "b-exact-before", two, "exact", root=args.before)
    res = alternate(runs, args.repeats)
    for mode in ("exact", "fast"):
        st = res[mode]["last"]["status"]
        rows.append([f"640 px x{n}, phash+dhash, scan {mode}", "-", fmt_s(res[mode]["s"]), "-",
                     f"- / {res[mode]['mb']:.0f} (PSS {res[mode]['pss_mb']:.0f})",
                     f"{n / res[mode]['s']:.0f} files/s (decoded {st.get('decoded')}); CPU of all processes "
                     f"{res[mode]['cpu_s']:.1f} s = {n / max(res[mode]['cpu_s'], 1e-9):.0f} files per CPU-second "
                     f"({1000 * res[mode]['cpu_s'] / n:.1f} ms/file, main process {1000 * res[mode]['main_cpu_s'] / n:.1f})"])
    if args.before:
        rows.append(before_row(f"640 px x{n}, phash+dhash, scan exact", n, res["exact before"], res["exact"], args))


def section_c(args: argparse.Namespace, rows: list[list[str]], notes: list[str]) -> None:
    try:
        import czkawka  # noqa: F401
    except ImportError:
        notes.append("c. skipped: czkawka is not installed (`pip install czkawka` into this environment)")
        log(notes[-1])
        return
    sets = [
        ((f"enc-mixed-{args.mixed}", "--kind", "mixed", "--count", str(args.mixed), "--seed", "1000"),
         f"{args.mixed} mixed photos"),
        (tiny_set(args.tiny), f"{args.tiny} tiny JPEGs (64 px)"),
    ]
    tmp = args.data_dir / "enc-work"
    for spec, label in sets:
        meta = dataset(args.corpus, args.data_dir, *spec)
        img = meta / "img"
        log(f"c. {label}")
        runs = {
            "czkawka": lambda img=img: run_czkawka(img, tmp / "czkawka.json"),
            "dedupd": lambda img=img: dedupd_scan(img, tmp / "c-scan", None),
        }
        if args.before:
            runs["before"] = lambda img=img: dedupd_scan(img, tmp / "c-scan-before", None, root=args.before)
        res = alternate(runs, args.repeats)
        truth = truth_pairs(meta)
        pz, rz = precision_recall(res["czkawka"]["last"]["pairs"], truth)
        pd, rd = precision_recall(scan_pairs(tmp / "c-scan", img), truth)
        rows.append([f"{label}: dedupd scan (default config) vs czkawka", fmt_s(res["czkawka"]["s"]),
                     fmt_s(res["dedupd"]["s"]), fmt_ratio(res["czkawka"]["s"], res["dedupd"]["s"]),
                     f"{res['czkawka']['mb']:.0f} / {res['dedupd']['mb']:.0f} (PSS {res['czkawka']['pss_mb']:.0f} / "
                     f"{res['dedupd']['pss_mb']:.0f})",
                     f"pairs precision/recall: czkawka {pz:.3f}/{rz:.3f}, dedupd {pd:.3f}/{rd:.3f}; CPU s "
                     f"czkawka {res['czkawka']['cpu_s']:.1f}, dedupd {res['dedupd']['cpu_s']:.1f} (main process "
                     f"{res['dedupd']['main_cpu_s']:.1f})"])
        if args.before:
            rows.append(before_row(f"{label}: dedupd scan (default config)", sum(1 for f in img.rglob("*") if f.is_file()),
                                   res["before"], res["dedupd"], args))


def _both_modes(path: str) -> tuple[dict[str, int], dict[str, int], float, float] | None:
    """Exact and fast hashes of ``path`` (EXIF orientation applied, as in the daemon) and the CPU
    seconds of each encode."""
    from dedupd.encoding import encode_file
    from dedupd.errors import ImageDecodeError

    try:
        t0 = time.process_time()
        exact = encode_file(path, HASHES, exif_transpose=True).hashes
        t1 = time.process_time()
        fast = encode_file(path, HASHES, exif_transpose=True, fast=True).hashes
        return exact, fast, t1 - t0, time.process_time() - t1
    except ImageDecodeError:
        return None


def section_d(args: argparse.Namespace, rows: list[list[str]], notes: list[str]) -> None:
    """Fast vs exact pair agreement on many pairs: every everyday edit of camera-sized photos (6 MP,
    where JPEGs are drafted by 1/4, and 12 MP, by 1/8)."""
    for mp, bases in ((6, args.agree), (12, args.agree12)):
        _agreement(args, rows, mp, bases)


def _agreement(args: argparse.Namespace, rows: list[list[str]], mp: int, bases: int) -> None:
    sys.path.insert(0, str(ROOT))
    from dedupd.parallel import pmap

    suffix = "" if mp == 6 else f"-{mp}mp"  # the 6 MP set keeps its cached name
    meta = dataset(args.corpus, args.data_dir, f"enc-agree-{bases}{suffix}", "--kind", "transformed", "--num-bases",
                   str(bases), "--megapixels", str(mp), "--transforms", "everyday", "--seed", "99")
    files = sorted(str(p) for p in (meta / "img").rglob("*") if p.is_file())
    log(f"d. fast vs exact agreement, {mp} MP: {len(files)} files")
    done = [(f, r) for f, r in zip(files, pmap(_both_modes, files, 2)) if r is not None]
    both = [r for _, r in done]
    by_format: dict[str, list[tuple[float, float]]] = {}
    for f, r in done:
        by_format.setdefault(Path(f).suffix.lower().lstrip("."), []).append((r[2], r[3]))
    for kind, cpu in sorted(by_format.items()):
        ex, fa = statistics.median(c[0] for c in cpu), statistics.median(c[1] for c in cpu)
        rows.append([f"fast vs exact, {kind} x{len(cpu)} ({mp} MP), CPU per file, 4 hashes, in-process",
                     f"{ex * 1000:.0f} ms", f"{fa * 1000:.0f} ms", fmt_ratio(ex, fa), "-",
                     "exact: one decode, four LANCZOS resizes (dedupd's own exact path, not the reference)"])
    for m in HASHES:
        exact = {i: r[0][m] for i, r in enumerate(both)}
        fast = {i: r[1][m] for i, r in enumerate(both)}
        pe, pf = pairs_of({str(k): v for k, v in exact.items()}), pairs_of({str(k): v for k, v in fast.items()})
        bits = [(exact[i] ^ fast[i]).bit_count() for i in exact]
        rows.append([f"fast vs exact, {len(both)} files ({bases} {mp} MP photos + everyday edits), {m}", "-", "-",
                     "-", "-", f"pair agreement {agreement(pe, pf):.4f} ({len(pe)} exact pairs, {len(pf)} fast); "
                     f"bits differing per file: mean {statistics.mean(bits):.2f}, max {max(bits)}"])


def _first_seen(report: Path, seen: dict[str, float], stop: threading.Event) -> None:
    """Poll ``duplicates.json`` (every file is a key once reported): when each path first appears."""
    while not stop.wait(0.02):
        try:
            keys = json.loads(report.read_text())
        except (OSError, ValueError):
            continue
        now = time.monotonic()
        for k in keys:
            seen.setdefault(k, now)


def _cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds so far of ``root`` (``main``) and of each of its descendants (by pid)."""
    cpu: dict[int, float] = {}
    _tree_sample(root, cpu)
    return {("main" if pid == root else str(pid)): s for pid, s in cpu.items()}


def _run_and_wait(root: int) -> dict[int, tuple[float, float]]:
    """Each descendant process of ``root`` (single-threaded decode and thumbnail workers): the seconds
    its main thread has run and has waited for a CPU (``/proc/<pid>/schedstat``)."""
    cpu: dict[int, float] = {}
    _tree_sample(root, cpu)
    out = {}
    for pid in cpu:
        try:
            with open(f"/proc/{pid}/schedstat") as fh:
                ran, waited = fh.read().split()[:2]
        except (OSError, ValueError):
            continue
        if pid != root:
            out[pid] = (int(ran) / 1e9, int(waited) / 1e9)
    return out


def _wait_cpu_quiet(root: int, still_s: float = 0.6, limit_s: float = 15.0) -> dict[str, float]:
    """The tree's CPU by process once it has stopped rising for ``still_s`` (reports, thumbnails)."""
    last, since, end = _cpu_by_role(root), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < end:
        time.sleep(0.2)
        now = _cpu_by_role(root)
        if sum(now.values()) - sum(last.values()) > 0.02:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still_s:
            break
    return last


def daemon_ingest(src: Path, work: Path, paced: int, rate: float, burst: int, workers: int = 1,
                  methods: dict[str, Any] | None = None, root: Path = ROOT) -> dict[str, Any]:
    """A ``dedupd run`` daemon (``methods``: default phash + dhash, default settle): ``paced`` files
    copied in at ``rate`` files/s (arrival to ``duplicates.json`` latency), then ``burst`` at once
    (files/s until all are in; the CPU seconds of each process from the burst's start until the
    daemon is idle again, thumbnails and reports included). ``root``: the checkout that runs."""
    sys.path.insert(0, str(ROOT))
    from dedupd.client import Client

    work = fresh_dir(work.absolute())
    watched = work / "photos"
    watched.mkdir()
    cfg = {"roots": [str(watched)], "store_dir": str(work / "store"), "report_dir": str(work / "reports"),
           "socket_path": str(work / "s.sock"), "methods": methods or {"phash": THRESHOLD, "dhash": THRESHOLD},
           "workers": workers}
    (work / "cfg.yaml").write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    files = sorted(p for p in src.iterdir() if p.is_file())[:paced + burst]
    proc = subprocess.Popen([PY, "-m", "dedupd", "run", "--config", str(work / "cfg.yaml")], env=env, cwd=work,
                            stdout=subprocess.DEVNULL, stderr=open(work / "daemon.log", "w"))
    seen: dict[str, float] = {}
    arrived: dict[str, float] = {}
    stop = threading.Event()
    poller = threading.Thread(target=_first_seen, args=(work / "reports" / "duplicates.json", seen, stop), daemon=True)
    try:
        client = Client(str(work / "s.sock"), timeout=10)
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/v1/status")["state"] == "watching":
                    break
            except Exception:  # noqa: BLE001 - not answering yet
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the daemon did not start (see {work / 'daemon.log'})")
            time.sleep(0.1)
        poller.start()
        t0 = time.monotonic()
        for i, f in enumerate(files[:paced]):
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            shutil.copyfile(f, watched / f.name)
            arrived[str(watched / f.name)] = time.monotonic()
        deadline = time.monotonic() + 300
        while any(p not in seen for p in arrived) and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu0 = _wait_cpu_quiet(proc.pid)
        sched0, t_burst = _run_and_wait(proc.pid), time.monotonic()
        for f in files[paced:]:
            shutil.copyfile(f, watched / f.name)
            arrived[str(watched / f.name)] = time.monotonic()
        while any(p not in seen for p in arrived) and time.monotonic() < deadline + 300:
            time.sleep(0.05)
        sched1, t_end = _run_and_wait(proc.pid), time.monotonic()
        cpu1 = _wait_cpu_quiet(proc.pid)
        lat = sorted(seen[p] - arrived[p] for p in list(arrived)[:paced] if p in seen)
        burst_s = max(seen.get(str(watched / f.name), float("inf")) for f in files[paced:]) - t_burst
    finally:
        stop.set()
        proc.terminate()
        proc.wait(60)
    used = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    others = sorted((v for k, v in used.items() if k != "main"), reverse=True)
    # the decode workers (the busiest children) over the burst: share of its wall time each ran, and
    # waited for a CPU (taken by the other processes, this machine's other jobs included); the rest idle
    span = max(t_end - t_burst, 1e-9)
    moved = sorted(((a[0] - sched0.get(k, (0.0, 0.0))[0], a[1] - sched0.get(k, (0.0, 0.0))[1])
                    for k, a in sched1.items()), reverse=True)
    return {"p50": statistics.median(lat), "p95": lat[int(0.95 * (len(lat) - 1))], "max": lat[-1],
            "paced": len(lat), "burst_files_s": burst / burst_s, "burst_s": burst_s,
            "cpu_ms": 1000 * sum(used.values()) / burst, "main_ms": 1000 * used.get("main", 0.0) / burst,
            "others_ms": [1000 * v / burst for v in others if v > 0.005],
            "workers_ran_waited": [(ran / span, waited / span) for ran, waited in moved[:workers]]}


#: section e's configs: the issue's literal one (the four plain hashes' pHash + dHash, no crop
#: hashes: they came later) and the default (pHash + dHash with their crop hashes: six a file)
DAEMON_CONFIGS: dict[str, dict[str, Any]] = {
    "phash+dhash, crop: false": {"phash": {"threshold": THRESHOLD, "crop": False},
                                 "dhash": {"threshold": THRESHOLD, "crop": False}},
    "phash+dhash (default: + crop hashes)": {"phash": THRESHOLD, "dhash": THRESHOLD},
}


def section_e(args: argparse.Namespace, rows: list[list[str]], notes: list[str]) -> None:
    """The daemon: arrival-to-report latency at a steady 20 files/s, then an ingest burst (640 px);
    each config with ``workers: 1`` then one worker per CPU; ``--before``: that checkout alternated."""
    meta = dataset(args.corpus, args.data_dir, *web_set(args.small))
    paced, burst = (100, 200) if args.quick else (200, 1500)
    roots = {"": ROOT, **({" (before)": args.before} if args.before else {})}
    for label, methods in DAEMON_CONFIGS.items():
        # the daemon's default (workers: 1), then one decode worker per CPU (the "on 2 cores" target)
        for workers in dict.fromkeys((1, available_cpus())):
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in roots}
            for r in range(args.repeats):
                for tag in list(roots)[r % len(roots):] + list(roots)[:r % len(roots)]:
                    log(f"e. daemon{tag}, {label}, {workers} worker(s): {paced} files at 20 files/s, then {burst} "
                        f"at once (round {r + 1}/{args.repeats})")
                    runs[tag].append(daemon_ingest(meta / "img", args.data_dir / "enc-work" / "e-daemon", paced, 20.0,
                                                   burst, workers, methods, roots[tag]))
            for tag, got in runs.items():
                med = {k: statistics.median(x[k] for x in got)
                       for k in ("p50", "p95", "max", "burst_files_s", "cpu_ms", "main_ms")}
                others = "; ".join(" / ".join(f"{v:.2f}" for v in x["others_ms"]) for x in got)
                busy = "; ".join(" / ".join(f"{100 * r:.0f} % ran, {100 * w:.0f} % waited for a CPU"
                                            for r, w in x["workers_ran_waited"]) for x in got)
                what = f"daemon{tag}, 640 px, {label}, workers: {workers}"
                rows.append([f"{what}: {paced} files at 20 files/s, arrival -> duplicates.json (settle 1 s)", "-",
                             f"p50 {med['p50']:.2f} s, p95 {med['p95']:.2f} s", "-", "-", f"max {med['max']:.2f} s"])
                rows.append([f"{what}: burst of {burst} files", "-", f"{med['burst_files_s']:.0f} files/s", "-", "-",
                             f"until the last is in duplicates.json; CPU of all processes {med['cpu_ms']:.2f} ms/file, "
                             f"main process {med['main_ms']:.2f}, the others per round: {others}; the decode workers over the "
                             f"burst per round: {busy}"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sets, 1 repeat (smoke test)")
    ap.add_argument("--repeats", type=int, help="rounds per comparison (default 3; --quick: 1)")
    ap.add_argument("--only", default="abcde", help="sections to run, e.g. 'a' or 'bc'")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="shared corpus with make_corpus.py")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="dataset cache")
    ap.add_argument("--before", type=Path, help="another dedupd checkout (e.g. the main branch's) whose scan "
                    "(daemon, in section e) runs alternately with this one's in sections a, b, c and e: a "
                    "before/after row each")
    args = ap.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.mp12, args.small, args.mixed, args.tiny = (8, 200, 200, 1000) if args.quick else (24, 2000, 1000, 20000)
    args.agree, args.agree12 = (4, 3) if args.quick else (30, 40)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    notes: list[str] = []
    t0 = time.perf_counter()
    try:
        for key, fn in (("a", section_a), ("b", section_b), ("c", section_c), ("d", section_d), ("e", section_e)):
            if key in args.only:
                fn(args, rows, notes)
    finally:  # what was measured is printed even when a later section fails
        print_table(args, rows, notes, t0)
        delete_old_runs()
    return 0


def before_row(what: str, n: int, before: dict[str, Any], after: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """A row comparing the ``--before`` checkout's scan (the reference column) with this one's."""
    return [f"{what}: {args.before} (before) vs this checkout", fmt_s(before["s"]), fmt_s(after["s"]),
            fmt_ratio(before["s"], after["s"]), f"{before['mb']:.0f} / {after['mb']:.0f}",
            f"CPU of all processes {before['cpu_s']:.1f} -> {after['cpu_s']:.1f} s "
            f"({1000 * before['cpu_s'] / n:.2f} -> {1000 * after['cpu_s'] / n:.2f} ms/file), main process "
            f"{before['main_cpu_s']:.1f} -> {after['main_cpu_s']:.1f} s"]


def print_table(args: argparse.Namespace, rows: list[list[str]], notes: list[str], t0: float) -> None:
    head = ["what", "reference / peer", "dedupd", "ratio (>1: dedupd faster)", "peak MB (all processes, RSS summed)",
            "check"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    for n in notes:
        print(f"\n{n}")
    la = os.getloadavg()
    print(f"\n{os.cpu_count()} CPUs, load average at end {la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}; medians of "
          f"{args.repeats} alternating round(s); {time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    sys.exit(main())
