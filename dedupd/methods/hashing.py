"""imagededup-compatible hashing methods: ``PHash``, ``AHash``, ``DHash``, ``WHash``.

Same constructor, method names, argument names, defaults, return shapes, validation errors and
``outfile`` JSON as ``imagededup.methods`` 0.3.x, so switching is a change of import. Underneath:
one decode per file (:mod:`dedupd.imaging`), int hashes (:mod:`dedupd.core`), a vectorised popcount
scan for the all-pairs search, and explicit per-file errors logged once as warnings.

Example:
    >>> from dedupd.methods import PHash
    >>> phasher = PHash(verbose=False)
    >>> encodings = phasher.encode_images(image_dir="photos/")          # doctest: +SKIP
    >>> duplicates = phasher.find_duplicates(encoding_map=encodings)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from dedupd.core import hamming
from dedupd.core.algorithms import TARGET_SIZES, hash_array
from dedupd.core.bktree import BKTree, imagededup_visit_ranks
from dedupd.core.duplicates import files_to_remove, pair_map
from dedupd.core.hashes import hex_hamming, hexes_to_array, int_to_hex
from dedupd.engines import check_engine
from dedupd.engines.library import hamming_all_pairs, ray_map
from dedupd.errors import NO_IMAGE_INPUT, ImageArrayError, ImageDecodeError
from dedupd.files import check_dir, list_files, relative_names, save_json
from dedupd.imaging import decode_array, decode_file
from dedupd.parallel import Progress, check_workers, pmap

logger = logging.getLogger(__name__)

#: Accepted ``search_method`` names. The reference's default, "brute_force_cython", and
#: "brute_force" both run the vectorised scan here; "bktree" runs a BK-tree.
SEARCH_METHODS = ("brute_force_cython", "brute_force", "bktree")


class Hashing:
    """Base class: encode images with a perceptual hash and find duplicates by Hamming distance.

    Subclasses only name their algorithm (``method``); decoding, search and output are shared.

    Args:
        verbose: show a progress counter on a terminal while encoding.
        exif_transpose: dedupd extension: turn each file as its EXIF orientation says before hashing
            (a photo and its rotated-by-metadata copy then hash alike). Off by default, as in
            imagededup, whose hashes are then reproduced exactly.
    """

    method = "ahash"

    def __init__(self, verbose: bool = True, *, exif_transpose: bool = False) -> None:
        self.verbose = verbose
        self.exif_transpose = exif_transpose
        self.target_size = TARGET_SIZES[self.method]

    # -- encoding -----------------------------------------------------------------------------

    @staticmethod
    def hamming_distance(hash1: str, hash2: str) -> np.int64:
        """Number of differing bits between two hex hashes (both read as 64-bit, left-padded).

        Returns a ``numpy.int64``, as the reference does.
        """
        return np.int64(hex_hamming(hash1, hash2))

    def encode_image(self, image_file: str | PurePath | None = None, image_array: np.ndarray | None = None) -> str | None:
        """Hash one image, given by file path or as an array.

        Args:
            image_file: path to the image file.
            image_array: used instead of ``image_file``: an (H, W, 3) RGB or (H, W) grayscale array.

        Returns:
            16-character hex hash, or None when the file cannot be decoded (a warning is logged).

        Raises:
            ValueError: neither an existing file nor an array was given.
            ImageArrayError: the array's shape is wrong (a ``ValueError`` and an ``AssertionError``).
        """
        if image_file and _existing_path(image_file):
            try:
                image = decode_file(image_file, exif_transpose=self.exif_transpose)
            except ImageDecodeError as exc:
                logger.warning("Invalid image file %s: %s", exc.path, exc.reason)
                return None
        elif isinstance(image_array, np.ndarray):
            _check_hash_array(image_array)
            image = decode_array(image_array)
        else:
            raise ValueError(NO_IMAGE_INPUT)
        return int_to_hex(hash_array(self.method, image.gray(self.target_size)))

    def _encode_path(self, path: Path) -> str | None:
        return self.encode_image(image_file=path)

    def encode_images(
        self, image_dir: str | PurePath | None = None, recursive: bool = False, num_enc_workers: int | None = None,
        engine: str = "local",
    ) -> dict[str, str]:
        """Hash every image in a directory.

        Args:
            image_dir: directory of images.
            recursive: also walk sub-directories (keys are then relative paths).
            num_enc_workers: processes to use; None = every available CPU
                (:func:`dedupd.parallel.available_cpus`), 0 or 1 = this process only.
            engine: dedupd extension: "local" (default), or "ray" to encode on a Ray cluster
                (:mod:`dedupd.engines.library`; the files must be on storage every node sees).

        Returns:
            ``{relative_name: hex_hash}`` for every file that decodes; unreadable files are skipped.

        Raises:
            ValueError: ``image_dir`` is not a directory (``TypeError`` when it is not a path at all).
            TypeError: ``num_enc_workers`` is not an int or None.
        """
        check_dir(image_dir)
        check_workers(num_enc_workers, "num_enc_workers")
        files = list_files(image_dir, recursive)
        mapper = ray_map if check_engine(engine) == "ray" else pmap
        hashes = mapper(self._encode_path, files, num_enc_workers, verbose=self.verbose)  # unlabelled, as the reference's bars
        return {name: h for name, h in zip(relative_names(image_dir, files), hashes) if h}

    # -- search -------------------------------------------------------------------------------

    @staticmethod
    def _check_hamming_distance_bounds(thresh: Any) -> None:
        if not isinstance(thresh, int):
            raise TypeError("Threshold must be an int between 0 and 64")
        if thresh < 0 or thresh > 64:
            raise ValueError("Threshold must be an int between 0 and 64")

    def _find_duplicates_dict(
        self,
        encoding_map: dict[str, str],
        max_distance_threshold: int = 10,
        scores: bool = False,
        outfile: str | None = None,
        search_method: str = "brute_force_cython",
        num_dist_workers: int | None = None,
        engine: str = "local",
    ) -> dict[str, list]:
        names = list(encoding_map.keys())
        check_workers(num_dist_workers, "num_dist_workers")
        with Progress(len(names), enabled=self.verbose) as progress:
            values = hexes_to_array(encoding_map.values())
            tie = None
            if check_engine(engine) == "ray":
                i, j, d = hamming_all_pairs(values, max_distance_threshold)
            elif search_method == "bktree":
                i, j, d = _pairs_bktree(values, max_distance_threshold)
                tie = np.asarray(imagededup_visit_ranks(values.tolist()), dtype=np.int64)
            else:
                i, j, d = hamming.all_pairs(values, max_distance_threshold)
            progress.advance(len(names))
        # the reference's "brute_force" lists numpy.int64 distances (its other searches: int)
        self.results = pair_map(names, i, j, np.asarray(d, dtype=np.int64), scores, tie=tie,
                                numpy_scores=search_method == "brute_force")
        if outfile:
            save_json(self.results, outfile)
        return self.results

    def find_duplicates(
        self,
        image_dir: str | PurePath | None = None,
        encoding_map: dict[str, str] | None = None,
        max_distance_threshold: int = 10,
        scores: bool = False,
        outfile: str | None = None,
        search_method: str = "brute_force_cython",
        recursive: bool = False,
        num_enc_workers: int | None = None,
        num_dist_workers: int | None = None,
        engine: str = "local",
    ) -> dict[str, list]:
        """Find the duplicates of every image: Hamming distance <= ``max_distance_threshold``.

        Args:
            image_dir: directory of images to encode and search.
            encoding_map: used instead of ``image_dir``: ``{name: hex_hash}`` from ``encode_images``.
            max_distance_threshold: int in [0, 64]; pairs at this distance or closer are duplicates.
            scores: return ``(name, distance)`` tuples instead of names.
            outfile: also write the result as JSON to this file.
            search_method: "brute_force_cython" (default) or "brute_force" (vectorised scan), or "bktree".
            recursive: walk sub-directories of ``image_dir``.
            num_enc_workers: processes for encoding (None = every CPU).
            num_dist_workers: accepted for compatibility (an int or None); the vectorised search
                needs no workers.
            engine: dedupd extension: "ray" encodes and searches on a Ray cluster (same result;
                ``search_method`` is then not used).

        Returns:
            ``{name: [duplicate, ...]}`` for every encodable image (symmetric; each list ordered by
            distance, then by input order), or ``{name: [(duplicate, distance), ...]}``.

        Warns:
            SyntaxWarning: ``recursive`` with ``encoding_map`` (it has no effect), as the reference.
            RuntimeWarning: on every call with ``encoding_map``, as the reference ("num_enc_workers
                has no effect"), whether or not ``num_enc_workers`` was passed.

        Raises:
            TypeError, ValueError: bad threshold; ValueError: neither directory nor encodings given.
        """
        self._check_hamming_distance_bounds(max_distance_threshold)
        if image_dir:
            encoding_map = self.encode_images(image_dir, recursive=recursive, num_enc_workers=num_enc_workers,
                                              engine=engine)
        elif encoding_map:
            warn_encodings_given(recursive)
        else:
            raise ValueError("Provide either an image directory or encodings!")
        return self._find_duplicates_dict(
            encoding_map, max_distance_threshold, scores, outfile, search_method, num_dist_workers, engine
        )

    def find_duplicates_to_remove(
        self,
        image_dir: str | PurePath | None = None,
        encoding_map: dict[str, str] | None = None,
        max_distance_threshold: int = 10,
        outfile: str | None = None,
        recursive: bool = False,
        num_enc_workers: int | None = None,
        num_dist_workers: int | None = None,
    ) -> list[str]:
        """Files to remove so that one image of each duplicate set stays (nothing is deleted here).

        Walks the duplicate map in order: an image not yet marked for removal keeps itself and
        marks all its duplicates. Returns the marked names, sorted.
        """
        result = self.find_duplicates(
            image_dir=image_dir,
            encoding_map=encoding_map,
            max_distance_threshold=max_distance_threshold,
            scores=False,
            recursive=recursive,
            num_enc_workers=num_enc_workers,
            num_dist_workers=num_dist_workers,
        )
        to_remove = files_to_remove(result)
        if outfile:
            save_json(to_remove, outfile)
        return to_remove


def warn_encodings_given(recursive: Any) -> None:
    """The reference's warnings when duplicates are searched from given encodings (categories included)."""
    if recursive:
        warnings.warn("recursive parameter is irrelevant when using encodings.", SyntaxWarning, stacklevel=3)
    warnings.warn("Parameter num_enc_workers has no effect since encodings are already provided",
                  RuntimeWarning, stacklevel=3)


def _check_hash_array(array: np.ndarray) -> None:
    shape = array.shape
    if len(shape) == 3 and shape[2] != 3:
        raise ImageArrayError(f"Received image array with shape: {shape}, expected image array shape is (x, y, 3)")
    if len(shape) not in (2, 3):
        raise ImageArrayError(
            f"Received image array with shape: {shape}, expected number of image array dimensions are 3 for "
            "rgb image and 2 for grayscale image!"
        )


def _existing_path(image_file: object) -> bool:
    """Whether ``image_file`` names an existing file or folder; a value that is not a ``str`` or
    path but exists (bytes, a descriptor) or cannot be tested (a file object) is a ValueError,
    as in the reference."""
    try:
        exists = os.path.exists(image_file)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(NO_IMAGE_INPUT) from None
    if exists and not isinstance(image_file, str | PurePath):
        raise ValueError(NO_IMAGE_INPUT)
    return exists


def _pairs_bktree(values: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j within ``radius`` using a BK-tree (one query per item, inserted as we go)."""
    tree = BKTree()
    out: list[tuple[int, int, int]] = []
    for j, v in enumerate(values.tolist()):
        out.extend((int(i), j, d) for i, d in tree.search(v, radius))  # type: ignore[call-overload]
        tree.add(j, v)
    if not out:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    arr = np.asarray(out, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2]


class PHash(Hashing):
    """Perceptual hash: DCT of a 32x32 grayscale image, top-left 8x8 block vs its median.

    Reference: http://www.hackerfactor.com/blog/index.php?/archives/432-Looks-Like-It.html
    """

    method = "phash"


class AHash(Hashing):
    """Average hash: 8x8 grayscale pixels vs their mean.

    Reference: http://www.hackerfactor.com/blog/index.php?/archives/529-Kind-of-Like-That.html
    """

    method = "ahash"


class DHash(Hashing):
    """Difference hash: sign of horizontal gradients of a 9x8 grayscale image.

    Reference: http://www.hackerfactor.com/blog/index.php?/archives/529-Kind-of-Like-That.html
    """

    method = "dhash"


class WHash(Hashing):
    """Wavelet hash: Haar low-pass band (level 5) of a 256x256 grayscale image vs its median.

    Reference: https://fullstackml.com/wavelet-image-hash-in-python-3504fdd282b5
    """

    method = "whash"
