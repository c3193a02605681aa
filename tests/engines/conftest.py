"""A real two-node Ray cluster on this machine (a head and a worker node, one CPU each) for the
engine tests, torn down at the end of the module even when a test fails."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.procs import live_processes

NODE = {"num_cpus": 1, "object_store_memory": 100 << 20}
#: a dead node is noticed in about a second (Ray's default: 5 missed checks of 3 s)
FAST_FAILURE_DETECTION = {"health_check_period_ms": 500, "health_check_failure_threshold": 2,
                          "health_check_initial_delay_ms": 0}


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False,
                                                            "_system_config": FAST_FAILURE_DETECTION})
    try:
        cluster.add_node(**NODE)
        yield cluster
    finally:
        cluster.shutdown()


def kill9_node(cluster: Any, node: Any) -> list[int]:
    """``kill -9`` a worker node's raylet and every process under it (its task workers), then let the
    cluster object forget it. Returns the pids killed."""
    raylet = node.all_processes["raylet"][0].process.pid
    pids = [raylet, *_descendants(raylet)]
    pids += [info.process.pid for name, infos in node.all_processes.items() if name != "raylet" for info in infos]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cluster.remove_node(node, allow_graceful=False)
    return pids


def running_tasks(node: Any) -> list[str]:
    """The process titles of the node's task workers that are running a task now (Ray titles a
    worker ``ray::<function>`` while it runs one and ``ray::IDLE`` between tasks)."""
    titles = []
    for pid in _descendants(node.all_processes["raylet"][0].process.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::") and title != "ray::IDLE":
            titles.append(title)
    return titles


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = sorted(live_processes(parent=todo.pop()))
        out += kids
        todo += kids
    return out


@pytest.fixture(scope="session")
def photos(dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 200-photo mixed set (shared with the daemon tests), plus what a scan must handle without a
    decode on Ray: a truncated JPEG, a text file named .png, an empty file, a dangling symlink, a copy."""
    import shutil

    src = dataset("mixed", "--count", "200", "--nested") / "images"
    out = tmp_path_factory.mktemp("ray-photos") / "images"
    shutil.copytree(src, out)
    first = sorted(p for p in out.rglob("*.jpg"))[0]
    (out / "odd").mkdir()
    (out / "odd" / "truncated.jpg").write_bytes(first.read_bytes()[:2000])
    (out / "odd" / "text.png").write_text("not an image\n")
    (out / "odd" / "empty.jpg").write_bytes(b"")
    (out / "odd" / "dangling.jpg").symlink_to(out / "odd" / "nowhere.jpg")
    shutil.copyfile(first, out / "odd" / "copy.jpg")
    return out
