"""How many CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

``os.cpu_count()`` counts the machine's CPUs; a container limited with ``--cpus 2`` on a 64-core
host (a cgroup quota) or a process pinned with ``taskset`` (its affinity) gets far less, and a
pool sized to the machine then only adds contention and memory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cgroup_v2_quota(root: Path, own: str) -> float | None:
    # cpu.max of this process's cgroup and of each ancestor: "max 100000" or "200000 100000"
    limits = []
    rel = Path(own.lstrip("/"))
    for d in [root / rel, *(root / p for p in rel.parents)]:
        try:
            quota, period = (d / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and int(period) > 0:
            limits.append(int(quota) / int(period))
    return min(limits) if limits else None


def _cgroup_v1_quota(root: Path, own: str) -> float | None:
    # cpu.cfs_quota_us / cpu.cfs_period_us of this process's cpu cgroup and its ancestors (-1: none)
    limits = []
    rel = Path(own.lstrip("/"))
    for mount in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
        for d in [mount / rel, *(mount / p for p in rel.parents)]:
            try:
                quota = int((d / "cpu.cfs_quota_us").read_text())
                period = int((d / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota > 0 and period > 0:
                limits.append(quota / period)
    return min(limits) if limits else None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when unlimited/unknown."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    entries = [line.split(":", 2) for line in lines]
    for parts in entries:  # cgroup v1: "4:cpu,cpuacct:/path"
        if len(parts) == 3 and "cpu" in parts[1].split(","):
            return _cgroup_v1_quota(root, parts[2])
    for parts in entries:  # cgroup v2 (unified): "0::/path"
        if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
            return _cgroup_v2_quota(root, parts[2])
    return None


def available_cpus() -> int:
    """CPUs this process may use: ``sched_getaffinity``, capped by the cgroup quota (rounded up,
    at least 1). Computed at call time, never at import."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def guided_chunks(n: int, workers: int, cap: int) -> list[int]:
    """Sizes of the units that split ``n`` equal-cost items over ``workers`` processes (guided
    scheduling): each unit is a share of what is left (``ceil(left / (2 * workers))``, at most
    ``cap``), so units shrink towards the end and no worker sits idle while another finishes a big
    last unit (18 files on 2 workers: 5, 4, 3, 2, 1, 1, 1, 1 rather than 5, 5, 5, 3).
    """
    sizes: list[int] = []
    left, share = max(0, int(n)), 2 * max(1, int(workers))
    while left:
        size = max(1, min(int(cap), -(-left // share)))
        sizes.append(size)
        left -= size
    return sizes
