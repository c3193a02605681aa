"""What the routes may see of the daemon: a small, read-mostly :class:`typing.Protocol`.

:class:`~dedupd.daemon.service.Daemon` satisfies it structurally; the routes are typed against it,
so neither the routes nor the transport import the service (no import circle), and a test can
serve the routes from a stand-in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dedupd.core.review import Review
    from dedupd.daemon.config import Config
    from dedupd.daemon.encoder import EncodeResult
    from dedupd.daemon.index import MatchIndex
    from dedupd.daemon.store import QuarantineEntry
    from dedupd.daemon.store.review import DistinctSet, Pin


class QuarantineListing(Protocol):
    """The part of the store the routes use: the quarantine manifest and the user's decisions."""

    def iter_quarantine(self, state: str | None = None) -> Iterator[QuarantineEntry]: ...

    def review(self) -> Review: ...

    def distinct_sets(self) -> list[DistinctSet]: ...

    def add_distinct(self, digests: Iterable[bytes], paths: Iterable[str]) -> int: ...

    def remove_distinct(self, ids: Iterable[int]) -> list[int]: ...

    def pins(self) -> list[Pin]: ...

    def pin(self, digest: bytes, path: str) -> None: ...

    def unpin(self, digests: Iterable[bytes]) -> list[bytes]: ...


class DaemonView(Protocol):
    """The daemon as the socket API sees it."""

    @property
    def config(self) -> Config: ...

    @property
    def index(self) -> MatchIndex: ...

    @property
    def store(self) -> QuarantineListing | None:
        """None while the daemon shuts down."""

    def status(self) -> dict[str, Any]: ...

    def request_rescan(self) -> None: ...

    def request_reload(self, wait: float = 0.0) -> dict[str, Any] | None:
        """Reload the config; with ``wait``, the outcome (``ok``, ``changed``, ``restart_needed``, ``error``)."""

    def restore(self, paths: list[str] | None) -> list[dict[str, Any]]:
        """Restore quarantined files (all of them with ``None``); one result dict per file."""

    def decisions_changed(self) -> None:
        """The user recorded a decision (ignore, keep): rewrite the reports, re-plan quarantine."""
    def quarantine_selected(self, paths: list[str]) -> list[dict[str, Any]]:
        """Quarantine files a user chose (direct duplicates of their kept copy); one result dict per file."""

    def encode_upload(self, data: bytes) -> EncodeResult:
        """Decode uploaded image bytes in a worker process (never in the daemon's own process)."""
