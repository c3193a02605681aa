"""Ray as an engine: import it with a clear error, connect (checking the address answers first),
and run many tasks with a bounded number in flight, results handed back as they finish.

Tasks are plain module-level functions of dedupd (each node imports dedupd, so they are sent by
reference); their arguments and results are dedupd's own plain data, between processes of the
same trusted deployment, as with the daemon's local process pool. A task whose worker or node dies
is run again by Ray (``max_retries``); everything a task computes is keyed by content digest or
path, so a second run of it writes the same entries again (nothing is duplicated).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dedupd.errors import DedupdError

logger = logging.getLogger(__name__)

#: How often Ray re-runs a task whose worker process or node died (a bad file never gets here:
#: encode functions record decode failures as results).
TASK_RETRIES = 4
#: TCP connect timeout of the check that the cluster's address answers at all (Ray itself would
#: retry a dead address for minutes).
CONNECT_TIMEOUT_S = 5.0


_REMOTES: dict[tuple[Callable[..., Any], float], Any] = {}  # one Ray wrapper per function (exported once)


class EngineUnavailable(DedupdError):
    """The requested engine cannot run here (not installed, or the cluster does not answer)."""


def require_ray() -> Any:
    """The ``ray`` module; :class:`EngineUnavailable` naming the extra to install when it is missing."""
    try:
        import ray
    except ImportError as exc:
        raise EngineUnavailable("the Ray engine needs Ray, which is not installed: "
                                "pip install 'dedupd[ray]' (on the driver and on every node of the cluster)") from exc
    return ray


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S, *, named_by: str = "--ray-address") -> None:
    """Raise :class:`EngineUnavailable` unless something accepts a TCP connection at ``host:port``
    (``named_by``: the option or variable that gave the address, for the message).

    ``auto``, ``local`` and ``ray://`` addresses are left to Ray.
    """
    if address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise EngineUnavailable(f"{named_by} {address!r} is not HOST:PORT (the head node's GCS address, "
                                "printed by `ray start --head`, default port 6379)")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout) as sock:
            grpc = _speaks_grpc(sock) if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", "") else True
    except OSError as exc:
        raise EngineUnavailable(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
                                f"`ray start --head` on the head node, or fix {named_by}") from None
    if not grpc:  # Ray itself would retry such an address for minutes
        raise EngineUnavailable(f"something answers at {address}, but not a Ray cluster (no gRPC): give the head "
                                f"node's GCS address, printed by `ray start --head` (default port 6379), in {named_by}")


def _speaks_grpc(sock: socket.socket) -> bool:
    """Whether the peer answers an HTTP/2 client preface with a SETTINGS frame, as Ray's GCS (gRPC,
    cleartext) does at once."""
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    head = b""
    try:
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except OSError:  # a timeout: no answer to HTTP/2
        return False
    return len(head) == 9 and head[3] == 0x04


@contextlib.contextmanager
def connected(address: str | None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect this process to the cluster at ``address`` (None: start a private one-machine Ray
    with ``num_cpus``), yield the ``ray`` module, and disconnect at the end."""
    ray = require_ray()
    named_by = "--ray-address"
    if not address and os.environ.get("RAY_ADDRESS"):  # as the library: the cluster $RAY_ADDRESS names
        address, named_by = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address:
        check_address(address, named_by=named_by)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    else:
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:  # ValueError: e.g. ray:// without ray[client]
        raise EngineUnavailable(f"cannot join the Ray cluster at {address} ({named_by}): {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cpus(ray: Any) -> int:
    """CPUs the cluster offers now (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def stream(ray: Any, fn: Callable[..., Any], batches: Iterable[tuple[Any, ...]], *,
           in_flight: int | None = None, num_cpus: float = 1,
           return_errors: bool = False) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Run ``fn(*args)`` as a Ray task for each ``args`` of ``batches``; yield ``(args, result)``
    in completion order, with at most ``in_flight`` tasks queued (default: 2 per cluster CPU).

    A task that fails even after Ray's retries (its node kept dying, or ``fn`` raised) raises
    here, or with ``return_errors`` is yielded as ``(args, the exception)``.
    """
    key = (fn, num_cpus)
    remote = _REMOTES.get(key)
    if remote is None:
        remote = _REMOTES[key] = ray.remote(num_cpus=num_cpus, max_retries=TASK_RETRIES)(fn)
    limit = in_flight or 2 * cluster_cpus(ray)
    pending: dict[Any, tuple[Any, ...]] = {}
    it = iter(batches)
    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < limit:
            args = next(it, None)
            if args is None:
                exhausted = True
                break
            pending[remote.remote(*args)] = args
        if not pending:
            break
        done, _ = ray.wait(list(pending), num_returns=1, timeout=None)
        for ref in done:
            args = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                if not return_errors:
                    raise
                result = exc
            yield args, result


class Rate:
    """Files/s and ETA of a run, as the progress line shows them."""

    def __init__(self, total: int, *, walking: bool = False) -> None:
        self.total, self.done, self.t0 = total, 0, time.monotonic()
        self.walking = walking  # the total still grows: no ETA yet

    def advance(self, n: int) -> None:
        self.done += n

    @property
    def per_s(self) -> float:
        return self.done / max(1e-9, time.monotonic() - self.t0)

    @property
    def eta_s(self) -> float | None:
        rate = self.per_s
        return (self.total - self.done) / rate if rate > 0 and self.done and not self.walking else None

    def line(self, what: str = "encoding on Ray") -> str:
        eta = self.eta_s
        return (f"{what}: {self.done}/{self.total}{'+ (walking)' if self.walking else ''} files, "
                f"{self.per_s:.1f} files/s, ETA {'?' if eta is None else f'{eta:.0f} s'}")
