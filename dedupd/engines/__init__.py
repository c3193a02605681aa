"""Engines that run dedupd's batch work somewhere else than this process's pool.

``local`` (the default everywhere) is the daemon's own process pool. ``ray`` runs the bulk
encode and the all-pairs search on a Ray cluster (``pip install 'dedupd[ray]'``):
:mod:`.ray_runtime` (connecting, the clear errors, streaming task results), :mod:`.ray_scan`
(``dedupd scan --engine ray``), :mod:`.ray_pairs` (distributed all-pairs search).
"""

from __future__ import annotations

ENGINES: tuple[str, ...] = ("local", "ray")


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`; ValueError naming the choices otherwise."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine
