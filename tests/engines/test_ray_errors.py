"""The Ray engine's errors and its idempotent writes, without a cluster: Ray missing, an address
where nothing answers, and a task's result recorded twice (a retry) leaving the same store."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.pipeline import encode_spec
from dedupd.daemon.store import Store
from dedupd.engines.ray_runtime import EngineUnavailable, check_address
from dedupd.engines.ray_scan import RayStats, _Writer, candidates, encode_files
from tests.engines.test_ray_scan import REPO, store_contents


def run_scan(tmp_path: Path, *args: str, pythonpath: str = str(REPO)) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DEDUPD_", "RAY_"))}, "PYTHONPATH": pythonpath}
    (tmp_path / "in").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "dedupd", "scan", str(tmp_path / "in"), "--store-dir",
                           str(tmp_path / "store"), "--report-dir", str(tmp_path / "reports"), "--engine", "ray", *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


def test_without_ray_installed_the_error_names_the_extra(tmp_path: Path) -> None:
    # Ray is installed here: a module that refuses to import stands for a machine without it
    blocker = tmp_path / "no-ray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('No module named ray')\n")
    out = run_scan(tmp_path, pythonpath=f"{blocker}{os.pathsep}{REPO}")
    assert out.returncode == 1, out.stderr
    assert "pip install 'dedupd[ray]'" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_an_address_where_nothing_answers_fails_fast_and_clearly(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    out = run_scan(tmp_path, "--ray-address", f"127.0.0.1:{port}")
    assert out.returncode == 1 and time.monotonic() - t0 < 30, out.stderr
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in out.stderr and "ray start --head" in out.stderr
    assert "Traceback" not in out.stderr
    with pytest.raises(EngineUnavailable, match="not HOST:PORT"):
        check_address("head-node")


def test_addresses_from_the_environment_a_client_url_and_an_empty_one(tmp_path: Path) -> None:
    """``$RAY_ADDRESS`` is the cluster of a scan without --ray-address (as for the library; it
    used to crash Ray's private start with a traceback); a ``ray://`` URL without Ray's client,
    and an empty --ray-address (an unset variable), are clear errors."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("DEDUPD_", "RAY_"))}, "PYTHONPATH": str(REPO),
           "RAY_ADDRESS": f"127.0.0.1:{port}"}
    (tmp_path / "in").mkdir()
    out = subprocess.run([sys.executable, "-m", "dedupd", "scan", str(tmp_path / "in"), "--store-dir",
                          str(tmp_path / "store"), "--report-dir", str(tmp_path / "reports"), "--engine", "ray"],
                         capture_output=True, text=True, timeout=60, env=env, check=False)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"dedupd: no Ray cluster answers at 127.0.0.1:{port} (Connection refused); start one with "
        "`ray start --head` on the head node, or fix RAY_ADDRESS")
    empty = run_scan(tmp_path, "--ray-address", "")
    assert empty.returncode == 2 and "'' is not a Ray address" in empty.stderr, empty.stderr
    client = run_scan(tmp_path, "--ray-address", f"ray://127.0.0.1:{port}")
    assert client.returncode == 1 and "Traceback" not in client.stderr, client.stderr
    assert client.stderr.strip().splitlines()[-1].startswith(f"dedupd: cannot join the Ray cluster at ray://127.0.0.1:{port}")


def test_an_address_where_something_else_listens_fails_fast_and_clearly(tmp_path: Path) -> None:
    """An HTTP server at the address: Ray's own connection would retry for minutes."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        t0 = time.monotonic()
        out = run_scan(tmp_path, "--ray-address", f"127.0.0.1:{port}")
        assert out.returncode == 1 and time.monotonic() - t0 < 30, out.stderr[-2000:]
        assert f"something answers at 127.0.0.1:{port}, but not a Ray cluster" in out.stderr, out.stderr[-2000:]
    finally:
        server.shutdown()
        server.server_close()


def test_a_task_result_recorded_twice_writes_the_same_entries(tmp_path: Path, photos: Path) -> None:
    config = config_from_mapping({"roots": [str(photos)], "store_dir": str(tmp_path / "store"),
                                  "report_dir": str(tmp_path / "reports"), "socket_path": str(tmp_path / "s")})
    with Store.open(config.store_dir) as store:
        stats = RayStats()
        items = list(itertools.islice(candidates(config, store, stats), 40))
        node, rows = encode_files(items, encode_spec(config))
        writer = _Writer(config, store, stats)
        writer.add(items, rows)
        writer.flush()
    once = store_contents(tmp_path / "store")
    with Store.open(config.store_dir) as store:  # Ray ran the task again (its node died after it finished)
        writer = _Writer(config, store, RayStats())
        writer.add(items, rows)
        writer.flush()
    again = store_contents(tmp_path / "store")
    assert node == "local" and len(once["files"]) == 40 and once["encodings"]
    assert again == once


def test_files_the_nodes_cannot_see_are_counted_and_said(tmp_path: Path, photos: Path, caplog,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster whose nodes do not mount the photos: every task says "not found", the driver (which
    sees them) decodes them itself, and says why instead of silently doing all the work."""
    import logging

    from dedupd.engines.ray_scan import NOT_FOUND, encode_on_ray

    config = config_from_mapping({"roots": [str(photos)], "store_dir": str(tmp_path / "store"),
                                  "report_dir": str(tmp_path / "reports"), "socket_path": str(tmp_path / "s")})

    def blind_stream(ray, fn, batches, **kw):  # Ray's answers from nodes that see no file
        for items, spec in batches:
            yield (items, spec), ("node-1", [(item[0], None, NOT_FOUND, None) for item in items])

    import dedupd.engines.ray_scan as ray_scan

    monkeypatch.setattr(ray_scan, "stream", blind_stream)
    with Store.open(config.store_dir) as store, caplog.at_level(logging.WARNING, logger="dedupd.engines.ray_scan"):
        stats = encode_on_ray(None, config, store, batch=16)
    assert stats.sent > 0 and stats.unseen == stats.left == stats.sent, stats
    assert any("not found on the node that ran their task" in r.getMessage() for r in caplog.records)


def test_progress_gives_files_per_second_and_an_eta_once_the_walk_is_done() -> None:
    from dedupd.engines.ray_runtime import Rate

    rate = Rate(0, walking=True)
    rate.total, rate.t0 = 100, time.monotonic() - 10.0
    rate.advance(25)
    assert rate.eta_s is None and "25/100+ (walking) files" in rate.line() and "ETA ?" in rate.line()
    rate.walking = False
    assert 2.4 < rate.per_s < 2.6 and 29 < (rate.eta_s or 0) < 31
    assert rate.line().startswith("encoding on Ray: 25/100 files, 2.5 files/s, ETA 30 s")
