"""The daemon configuration model: one frozen :class:`Config` and its parts, plus the defaults.

Pure values and predicates over paths (which files are wanted, which folders are skipped); loading
and validation live in :mod:`.load` and :mod:`.check`.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass

from dedupd.daemon.config.values import path_inside

#: Bump when a hash algorithm or its preprocessing changes: stored hashes then re-encode lazily.
ENCODER_VERSION = 1

HASH_METHOD_NAMES: tuple[str, ...] = ("phash", "dhash", "ahash", "whash")
CNN_MODEL_NAMES: tuple[str, ...] = ("mobilenet_v3_small", "efficientnet_lite0", "efficientnet_lite0_copy")
KEEP_RULE_NAMES: tuple[str, ...] = (
    "largest_pixels", "largest_file", "oldest_mtime", "newest_mtime", "shortest_path",
)
#: imagededup's defaults: max Hamming distance 10, min cosine similarity 0.9.
DEFAULT_HASH_THRESHOLD = 10
DEFAULT_CNN_THRESHOLD = 0.9
#: Mirrors ``dedupd.imaging.IMAGE_EXTENSIONS`` (not imported: the CLI must not pull in PIL).
DEFAULT_INCLUDE: tuple[str, ...] = tuple(
    f"*{ext}" for ext in (
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".mpo", ".ppm", ".pgm", ".pbm", ".pnm",
        ".tif", ".tiff", ".gif", ".webp", ".heic", ".heif", ".avif",
    )
)
#: Names that uploads, browsers, editors and sync tools use while a file is still being written.
DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".*", "*~", "*.part", "*.partial", "*.tmp", "*.temp", "*.crdownload", "*.download", "*.swp",
)
DEFAULT_KEEP: tuple[str, ...] = ("largest_pixels", "largest_file", "oldest_mtime")
#: Images above this many pixels are refused undecoded (``max_pixels``). 100 Mpx admits every
#: 12-61 MP camera photo and 100 MP medium format, and phone/stitched panoramas up to e.g.
#: 20000x5000, while a decode stays bounded (an RGB copy of 100 Mpx is 300 MB); it is below
#: Pillow's own hard limit (178 Mpx), which alone lets a 17 KB PNG cost 1.3 GB of memory.
DEFAULT_MAX_PIXELS = 100_000_000
#: Report files and thumbnails: readable by everyone who may read the reports (less the umask).
DEFAULT_REPORT_MODE = 0o644
MAX_MAX_PIXELS = 1_000_000_000


@dataclass(frozen=True)
class RootConfig:
    """A watched directory (absolute) and whether its subdirectories are watched too."""

    path: str
    recursive: bool = True


@dataclass(frozen=True)
class CnnConfig:
    """The CNN method: backbone name or TorchScript path, min cosine similarity, weights file."""

    model: str
    threshold: float = DEFAULT_CNN_THRESHOLD
    weights: str | None = None

    @property
    def model_id(self) -> str:
        """Identity of the vectors this model produces (stored in the store's ``meta``)."""
        return self.model if self.weights is None else f"{self.model}@{self.weights}"


@dataclass(frozen=True)
class KeepRule:
    """One keep rule: ``kind`` is a name of :data:`KEEP_RULE_NAMES` or ``"prefer"`` (with ``pattern``).

    ``prefer`` patterns are fnmatch globs on the absolute path (``*`` also matches ``/``), so
    ``"*/originals/*"`` prefers every file under a directory called ``originals``.
    """

    kind: str
    pattern: str | None = None


@dataclass(frozen=True)
class LogConfig:
    """Log output: ``format`` auto (JSON unless stderr is a terminal) | json | console; ``level``."""

    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True)
class Config:
    """The validated daemon configuration. Build it with :func:`~dedupd.daemon.config.load_config`
    or :func:`~dedupd.daemon.config.config_from_mapping`."""

    roots: tuple[RootConfig, ...]
    store_dir: str
    report_dir: str
    socket_path: str
    socket_mode: int = 0o660
    report_mode: int = DEFAULT_REPORT_MODE
    socket_group: str | int | None = None
    policy: str = "report"
    quarantine_dir: str | None = None
    hash_thresholds: tuple[tuple[str, int], ...] = (("phash", DEFAULT_HASH_THRESHOLD),)
    cnn: CnnConfig | None = None
    match: str = "any"
    keep: tuple[KeepRule, ...] = tuple(KeepRule(k) for k in DEFAULT_KEEP)
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    settle_ms: int = 1000
    workers: int = 1
    rescan_interval_s: float = 3600.0
    decode: str = "exact"
    exif_transpose: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    log: LogConfig = LogConfig()
    source: str | None = None

    def hash_methods(self) -> dict[str, int]:
        """Configured hash methods → max Hamming distance."""
        return dict(self.hash_thresholds)

    def excluded_dirs(self) -> tuple[str, ...]:
        """Directories never watched or scanned, even inside a root: store, report, quarantine."""
        dirs = (self.store_dir, self.report_dir, self.quarantine_dir)
        return tuple(d for d in dirs if d is not None)

    def hash_params_id(self) -> str:
        """Identity of the hash values this config produces (decode options change the pixels)."""
        return f"v{ENCODER_VERSION}:decode={self.decode}:exif={int(self.exif_transpose)}"

    def cnn_model_id(self) -> str | None:
        """Identity of the CNN vectors this config produces, or None without a CNN method."""
        if self.cnn is None:
            return None
        return f"{self.cnn.model_id}:decode={self.decode}:exif={int(self.exif_transpose)}"

    def in_excluded_dir(self, path: str) -> bool:
        """True when absolute ``path`` is one of :meth:`excluded_dirs` or lies inside one."""
        return any(path_inside(d, path) for d in self.excluded_dirs())

    def wants_file(self, path: str) -> bool:
        """True when the file at absolute ``path`` should be encoded.

        Its name must match an ``include`` glob and no ``exclude`` glob (case-insensitive fnmatch on
        the base name; a pattern containing ``/`` is matched against the whole path instead), and it
        must not be inside :meth:`excluded_dirs`.
        """
        return (
            _matches_any(path, self.include)
            and not _matches_any(path, self.exclude)
            and not self.in_excluded_dir(path)
        )

    def skips_dir(self, path: str) -> bool:
        """True when the walker/watcher must not descend into directory ``path``.

        That is an excluded directory, or one whose name matches an ``exclude`` glob (``.*`` skips
        hidden directories such as ``.thumbnails``). Not meant for the roots themselves.
        """
        return self.in_excluded_dir(path) or _matches_any(path, self.exclude)


@functools.lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    """One regex for the name patterns and one for the path patterns (a scan tests every file)."""
    def join(group: list[str]) -> re.Pattern[str] | None:
        return re.compile("|".join(fnmatch.translate(p.lower()) for p in group)) if group else None

    return join([p for p in patterns if "/" not in p]), join([p for p in patterns if "/" in p])


def _matches_any(path: str, patterns: tuple[str, ...]) -> bool:
    by_name, by_path = _compile(patterns)
    low = path.lower()
    return bool((by_name and by_name.match(os.path.basename(low))) or (by_path and by_path.match(low)))
