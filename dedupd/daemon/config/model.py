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
#: Bump when only ``decode: fast``'s pixels change: then only stores of fast hashes re-encode
#: (2: the resizes read the photo's exact span of the reduced image).
FAST_DECODE_VERSION = 2

HASH_METHOD_NAMES: tuple[str, ...] = ("phash", "dhash", "ahash", "whash")
CNN_MODEL_NAMES: tuple[str, ...] = ("mobilenet_v3_small", "efficientnet_lite0", "efficientnet_lite0_copy")
KEEP_RULE_NAMES: tuple[str, ...] = (
    "largest_pixels", "largest_file", "oldest_mtime", "newest_mtime", "shortest_path",
)
#: imagededup's defaults: max Hamming distance 10, min cosine similarity 0.9.
DEFAULT_HASH_THRESHOLD = 10
DEFAULT_CNN_THRESHOLD = 0.9
#: Confidence bands (docs/quality.md, "bands"): a hash match within this distance is ``strong``
#: (quarantine may move it); beyond it, up to the threshold, it is ``weak`` (reported for review)
#: unless the CNN confirms it. At 4 (pHash, crop hashes within 2) the strong band had 1 false pair
#: among 2,912 on a 10,000-file mixed set and none on the transformed, mixed and hard-negative sets;
#: at 6 it had 3 on the 10,000 files (precision 0.99898 < 0.999). aHash and wHash have no entry:
#: even at distance 0 they match unrelated look-alikes, so their matches alone are never strong.
DEFAULT_STRONG: dict[str, int] = {"phash": 4, "dhash": 4}
#: A CNN-only match is strong from this cosine similarity on (below: weak): on the hard-negative
#: set (other framings of the same scene) 0.97 still let 7 false pairs through, 0.99 none.
DEFAULT_CNN_STRONG = 0.99
#: A hash match beyond its strong bound becomes strong when the CNN similarity reaches this: at
#: the CNN threshold (0.9) two hard-negative pairs (a mirrored other crop) were "confirmed".
DEFAULT_CNN_CONFIRM = 0.97
#: Hash variant options by config key (``methods.phash.crop: true``) → :mod:`dedupd.core.variants` option.
HASH_OPTION_KEYS: dict[str, str] = {"crop": "crop", "flip": "dihedral"}
#: Max distance of a match through a variant hash when the option is just ``true`` (capped by the
#: threshold): stricter than the plain threshold, because each variant adds comparisons (chances
#: of a false match). At 2, border5 recall is 1.00 (0.99 on 10,000 files) and hflip/vflip 1.00,
#: adding no false pair on 1,500 files and 0 (crop) / 2 (flip) on 10,000 small tiles; crop at 8
#: added 113 false pairs there (docs/quality.md).
DEFAULT_VARIANT_LIMITS: dict[str, int] = {"crop": 2, "dihedral": 2}
#: Options on unless the config says ``crop: false``: border crops are an everyday edit, and for
#: pHash/dHash the crop hashes cost no measured precision (docs/quality.md). Flips stay opt-in.
DEFAULT_HASH_OPTIONS: dict[str, dict[str, bool]] = {"phash": {"crop": True}, "dhash": {"crop": True}}
#: Framing check (``methods.<hash>.agree``, docs/quality.md "framing check"): on by default for
#: every hash method with crop hashes, at the method's threshold: a plain match beyond ``strong``
#: counts only when the crop hashes of the same framing are also within the threshold. On 20,000
#: tiny (64 px) mixed files it cut the false pairs of the default from 457 to 69 (precision 0.928 →
#: 0.988, recall 0.698 → 0.681); on 10,000 mixed 640 px files from 101 to 32.
DEFAULT_AGREE = True
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
    """A watched directory (absolute), whether its subdirectories are watched too, and whether it
    holds originals (``reference``: its files are never moved and are kept before any other copy)."""

    path: str
    recursive: bool = True
    reference: bool = False


@dataclass(frozen=True)
class CnnConfig:
    """The CNN method: backbone name or TorchScript path, min cosine similarity, weights file."""

    model: str
    threshold: float = DEFAULT_CNN_THRESHOLD
    weights: str | None = None
    strong: float = DEFAULT_CNN_STRONG
    confirm: float = DEFAULT_CNN_CONFIRM

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
    #: per hash method: max distance of a ``strong`` match (missing: :data:`DEFAULT_STRONG`)
    hash_strong: tuple[tuple[str, int], ...] = ()
    #: per hash method: variant options (``"crop"``, ``"dihedral"``) with the max distance of a
    #: match through them, see :mod:`dedupd.core.variants`
    hash_options: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
        ("phash", (("crop", DEFAULT_VARIANT_LIMITS["crop"]),)),)
    cnn: CnnConfig | None = None
    #: per hash method: max framing distance of a match beyond its strong bound (see
    #: :func:`dedupd.core.policy.framing_distance`); methods not listed have no framing check
    hash_agree: tuple[tuple[str, int], ...] = (("phash", DEFAULT_HASH_THRESHOLD),)
    match: str = "any"
    keep: tuple[KeepRule, ...] = tuple(KeepRule(k) for k in DEFAULT_KEEP)
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    settle_ms: int = 1000
    workers: int = 1
    #: worker processes of a one-shot ``dedupd scan``; 0 ("auto"): every CPU this process may use
    scan_workers: int = 0
    rescan_interval_s: float = 3600.0
    decode: str = "exact"
    exif_transpose: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    report_interval_s: float = 0.5
    graph_margin: int = 2
    log: LogConfig = LogConfig()
    source: str | None = None
    dry_run: bool = False  # policy quarantine: mark what would move, move nothing

    @property
    def moves_files(self) -> bool:
        """The policy moves duplicates now (quarantine, not a dry run)."""
        return self.policy == "quarantine" and not self.dry_run

    def is_reference(self, path: str) -> bool:
        """True when absolute ``path`` lies in a ``reference: true`` root (never moved, kept first)."""
        return any(r.reference and path_inside(r.path, path) and path != r.path for r in self.roots)

    def hash_methods(self) -> dict[str, int]:
        """Configured hash methods → max Hamming distance."""
        return dict(self.hash_thresholds)

    def strong_bounds(self) -> dict[str, float]:
        """Method → bound of a ``strong`` match (hash: max distance; ``cnn``: min similarity)."""
        given = dict(self.hash_strong)
        out: dict[str, float] = {}
        for m, t in self.hash_thresholds:
            bound = given.get(m, DEFAULT_STRONG.get(m))
            if bound is not None:
                out[m] = min(t, bound)
        if self.cnn is not None:
            out["cnn"] = self.cnn.strong
        return out

    def agree_bounds(self) -> dict[str, int]:
        """Hash method → max framing distance of a weak match (the framing check)."""
        return dict(self.hash_agree)

    def hash_keys(self) -> tuple[str, ...]:
        """Every hash to compute and store: each method's plain hash and its variant hashes."""
        from dedupd.core.variants import variant_keys

        options = self.variant_options()
        return tuple(k for m, _ in self.hash_thresholds for k in (m, *variant_keys(m, options.get(m, {}))))

    def variant_options(self) -> dict[str, dict[str, int]]:
        """Hash method → {variant option: max distance of a match through it}."""
        return {m: dict(opts) for m, opts in self.hash_options}

    def excluded_dirs(self) -> tuple[str, ...]:
        """Directories never watched or scanned, even inside a root: store, report, quarantine."""
        dirs = (self.store_dir, self.report_dir, self.quarantine_dir)
        return tuple(d for d in dirs if d is not None)

    def hash_params_id(self) -> str:
        """Identity of the hash values this config produces (decode options change the pixels)."""
        decode = f"fast{FAST_DECODE_VERSION}" if self.decode == "fast" else self.decode
        return f"v{ENCODER_VERSION}:decode={decode}:exif={int(self.exif_transpose)}"

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
