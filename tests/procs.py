"""Processes from /proc, for the tests' leak checks (no psutil needed)."""

from __future__ import annotations

import os


def live_processes(*, parent: int | None = None, group: int | None = None) -> set[int]:
    """Live (non-zombie) processes whose parent pid is ``parent`` or whose process group is ``group``."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, ppid, pgrp = f.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z" and (int(ppid) == parent or int(pgrp) == group):
            out.add(int(entry))
    return out
