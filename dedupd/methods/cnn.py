"""imagededup-compatible CNN method: ``CNN`` and ``CustomModel``.

Same constructor, method and argument names, defaults, return shapes, validation errors and
``outfile`` JSON as ``imagededup.methods.CNN`` 0.3.x. Differences underneath:

* nothing is built at import: the default MobileNetV3-small is built by ``CNN()``;
* the similarity search is a tiled matrix product (:func:`dedupd.core.vectors.cosine_pairs`),
  so memory stays bounded and scores stay float32 for any number of images (the reference
  switches to float16 beyond 10,000 images);
* unreadable files are logged once each (``logging`` warning naming the file and the reason) and
  skipped; an empty folder gives an empty map instead of an exception.

Example:
    >>> from dedupd.methods import CNN
    >>> cnn = CNN(verbose=False)                                        # doctest: +SKIP
    >>> encodings = cnn.encode_images(image_dir="photos/")              # doctest: +SKIP
    >>> duplicates = cnn.find_duplicates(encoding_map=encodings, min_similarity_threshold=0.85)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from dedupd.cnn_models import DEFAULT_BACKBONE, DEFAULT_MODEL_NAME, CustomModel, load_model, require_torch
from dedupd.core.ann import ann_pairs, check_method
from dedupd.core.duplicates import duplicate_map, files_to_remove
from dedupd.core.vectors import cosine_pairs
from dedupd.engines import check_engine
from dedupd.engines.library import cosine_all_pairs
from dedupd.errors import NO_IMAGE_INPUT, ArgumentTypeError, ImageArrayError, ImageDecodeError
from dedupd.files import check_dir, list_files, relative_names, save_json
from dedupd.imaging import DecodedImage, decode_array, decode_file
from dedupd.methods.hashing import warn_encodings_given
from dedupd.parallel import Progress, check_workers

__all__ = ["CNN", "CustomModel", "index_ordered_neighbours"]

logger = logging.getLogger(__name__)

def _log_unreadable(path: str, reason: str) -> None:
    logger.warning("Invalid image file %s: %s", path, reason)


def _rgb_array(image_array: np.ndarray) -> np.ndarray:
    """(H, W, 3) as is, (H, W) grayscale repeated to 3 channels; anything else is an
    :class:`ImageArrayError` (the reference: ``AssertionError`` for a wrong channel count,
    ``ValueError`` for a wrong number of dimensions)."""
    shape = image_array.shape
    if image_array.ndim == 2:
        return np.repeat(image_array[..., None], 3, axis=2)
    if image_array.ndim == 3 and shape[2] == 3:
        return image_array
    if image_array.ndim == 3:
        raise ImageArrayError(f"Received image array with shape: {shape}, expected image array shape is (x, y, 3)")
    raise ImageArrayError(
        f"Received image array with shape: {shape}, expected number of image array dimensions are 3 for "
        "rgb image and 2 for grayscale image!"
    )


def index_ordered_neighbours(
    n: int, i: np.ndarray, j: np.ndarray, sim: np.ndarray
) -> list[list[tuple[int, float]]]:
    """Symmetric neighbour lists from pairs ``(i, j, sim)``, each list in index order.

    That is the order of imagededup's CNN results: a row of the similarity matrix, filtered.
    """
    q = np.concatenate([i, j])
    t = np.concatenate([j, i])
    s = np.concatenate([sim, sim])
    order = np.lexsort((t, q))
    q, t, s = q[order], t[order], s[order]
    bounds = np.searchsorted(q, np.arange(n + 1)).tolist()
    ts, ss = t.tolist(), list(s)  # scores stay numpy scalars (float32 for float32 features), as the reference's
    return [list(zip(ts[a:b], ss[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]


class CNN:
    """Encode images with a convolutional network and find duplicates by cosine similarity.

    Args:
        verbose: show a progress counter on a terminal while encoding.
        model_config: the feature model (:class:`CustomModel`, or imagededup's); default: the
            ImageNet MobileNetV3-small, 576-d, as imagededup.
        device: dedupd extension: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        batch_size: dedupd extension: images per forward pass (64, as imagededup).
        num_threads: dedupd extension: ``torch.set_num_threads`` for CPU inference.
        allow_download: dedupd extension: let torchvision download the default model's weights
            when they are not found locally (True, as imagededup; the daemon passes False).

    Warns:
        SyntaxWarning: ``model_config`` keeps the placeholder name ``"default_model"`` (as the reference).

    Raises:
        ValueError: ``model_config`` lacks a model or a transform.
        ModelUnavailableError: torch, or the default model's weights, are missing.
    """

    def __init__(
        self,
        verbose: bool = True,
        model_config: Any = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        num_threads: int | None = None,
        allow_download: bool = True,
    ) -> None:
        require_torch()
        from dedupd.cnn_models.runtime import FeatureExtractor

        if model_config is not None and (model_config.model is None or model_config.transform is None):
            raise ValueError("No value provided for model and/or transform in model_config ..")
        if model_config is None:
            model_config = load_model(DEFAULT_BACKBONE, allow_download=allow_download)
        if model_config.name == DEFAULT_MODEL_NAME:
            warnings.warn("Consider setting a custom model name in model_config ..", SyntaxWarning, stacklevel=2)
        self.model_config = model_config
        self.verbose = 1 if verbose is True else 0  # as the reference stores it (an int)
        self.batch_size = batch_size
        self.extractor = FeatureExtractor(model_config, device=device, batch_size=batch_size, num_threads=num_threads)
        self.device = self.extractor.device
        logger.info("Initialized %s for feature extraction on %s", model_config.name, self.device)

    # -- encoding -----------------------------------------------------------------------------

    def encode_image(
        self, image_file: str | PurePath | None = None, image_array: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Encode one image, given by file path or as an array.

        Args:
            image_file: path to the image file.
            image_array: used instead of ``image_file``: an (H, W, 3) RGB or (H, W) grayscale array.

        Returns:
            float32 array of shape (1, D), or None when the file cannot be decoded (logged).

        Raises:
            ValueError: ``image_file`` is not an existing file and no array was given, or the
                array's shape is wrong.
        """
        if isinstance(image_file, str | os.PathLike):
            if not Path(image_file).is_file():
                raise ValueError(NO_IMAGE_INPUT)
            try:
                image = decode_file(image_file)
            except ImageDecodeError as exc:
                _log_unreadable(exc.path, exc.reason)
                return None
        elif isinstance(image_array, np.ndarray):
            image = decode_array(_rgb_array(image_array))
        else:
            raise ValueError(NO_IMAGE_INPUT)
        return self.extractor.encode([image])

    def encode_decoded(self, images: Sequence[DecodedImage], normalize: bool = False) -> np.ndarray:
        """dedupd extension for the daemon: encode already-decoded images in batches.

        Returns:
            float32 (len(images), D); with ``normalize`` every row has unit L2 norm.
        """
        return self.extractor.encode(images, normalize=normalize)

    def encode_images(
        self, image_dir: str | PurePath | None = None, recursive: bool = False, num_enc_workers: int = 0
    ) -> dict[str, np.ndarray]:
        """Encode every image in a directory.

        Args:
            image_dir: directory of images.
            recursive: also walk sub-directories (keys are then relative paths).
            num_enc_workers: processes for decoding and preprocessing; 0 = this process only.

        Returns:
            ``{relative_name: float32 array of shape (D,)}`` in sorted path order, for every file
            that decodes; unreadable files are logged and skipped.

        Raises:
            ValueError: ``image_dir`` is not a directory, or ``num_enc_workers`` is negative.
            ArgumentTypeError: ``image_dir`` is not a ``str`` or path (the reference's ``AttributeError``).
            TypeError: ``num_enc_workers`` is not an int.
        """
        if not isinstance(image_dir, str | os.PathLike):
            raise ArgumentTypeError(f"image_dir must be the path of a directory of images, got {type(image_dir).__name__}")
        check_dir(image_dir)
        check_workers(num_enc_workers, "num_enc_workers")
        if num_enc_workers is not None and num_enc_workers < 0:
            raise ValueError(f"num_enc_workers must be >= 0 (0: decode in this process), got {num_enc_workers}")
        files = sorted(list_files(image_dir, recursive))
        names = relative_names(image_dir, files)
        # the reference draws no bar here; on a terminal a counter helps and cannot be captured
        with Progress(len(files), "Encoding", self.verbose, terminal_only=True) as progress:
            done, feats = self.extractor.encode_files(
                files, workers=int(num_enc_workers or 0), on_error=_log_unreadable, progress=progress.advance
            )
        self.encoding_map = {names[k]: feats[row] for row, k in enumerate(done)}
        return self.encoding_map

    # -- search -------------------------------------------------------------------------------

    @staticmethod
    def _check_threshold_bounds(thresh: Any) -> None:
        if not isinstance(thresh, float):
            raise TypeError("Threshold must be a float between -1.0 and 1.0")
        if thresh < -1.0 or thresh > 1.0:
            raise ValueError("Threshold must be a float between -1.0 and 1.0")

    def _find_duplicates_dict(
        self,
        encoding_map: Mapping[str, Any],
        min_similarity_threshold: float,
        scores: bool,
        outfile: str | os.PathLike[str] | None = None,
        engine: str = "local",
        index: str = "exact",
    ) -> dict[str, list]:
        names = list(encoding_map)
        feats = np.asarray([np.asarray(v).reshape(-1) for v in encoding_map.values()])
        if feats.dtype != np.float32:  # as the reference's similarities: float32 stays, anything else is float64
            feats = feats.astype(np.float64)
        if index == "exact":
            pairs = cosine_all_pairs if check_engine(engine) == "ray" else cosine_pairs
            i, j, sim = pairs(feats, min_similarity_threshold)
        else:
            if check_engine(engine) == "ray":
                raise ValueError(f"index={index!r} runs on this machine only: use engine='local' with it")
            i, j, sim = ann_pairs(feats, min_similarity_threshold, method=index)
        self.results = duplicate_map(names, index_ordered_neighbours(len(names), i, j, sim), scores)
        if outfile and scores:
            # as the reference: the scores written become Python floats in the returned map too
            self.results = {k: [(name, float(score)) for name, score in v] for k, v in self.results.items()}
        if outfile:
            save_json(self.results, outfile)
        return self.results

    def find_duplicates(
        self,
        image_dir: str | PurePath | None = None,
        encoding_map: Mapping[str, Any] | None = None,
        min_similarity_threshold: float = 0.9,
        scores: bool = False,
        outfile: str | os.PathLike[str] | None = None,
        recursive: bool = False,
        num_enc_workers: int = 0,
        num_sim_workers: int | None = None,
        engine: str = "local",
        index: str = "exact",
    ) -> dict[str, list]:
        """Find the duplicates of every image: cosine similarity ``>= min_similarity_threshold``.

        Args:
            image_dir: directory of images to encode and search.
            encoding_map: used instead of ``image_dir``: ``{name: (D,) array}`` from ``encode_images``.
            min_similarity_threshold: float in [-1.0, 1.0].
            scores: return ``(name, similarity)`` tuples (similarity as a numpy scalar, ``float32`` for
                float32 encodings, as the reference; Python floats when ``outfile`` is given, as there).
            outfile: also write the result as JSON to this file.
            recursive: walk sub-directories of ``image_dir``.
            num_enc_workers: processes for decoding (0 = this process).
            num_sim_workers: accepted for compatibility; the tiled search needs no workers.
            engine: dedupd extension: "ray" runs the similarity search on a Ray cluster (same
                result; an ``image_dir`` is still encoded here).
            index: dedupd extension: "exact" (all pairs) or "ivf", an approximate index (faiss,
                the ``ann`` extra) for a million encodings or more: a subset of the exact pairs
                with the same scores, recall measured by ``bench/bench_cnn_scale.py``.

        Returns:
            ``{name: [duplicate, ...]}`` for every encoded image (symmetric; each list in the
            order of the encodings, not sorted by score), or ``{name: [(duplicate, score), ...]}``.

        Raises:
            TypeError: the threshold is not a float. ValueError: it is outside [-1, 1], neither
                a directory nor encodings were given, or ``index`` is unknown.
        """
        self._check_threshold_bounds(min_similarity_threshold)
        if index != "exact":
            check_method(index)
        if image_dir:
            encoding_map = self.encode_images(image_dir, recursive=recursive, num_enc_workers=num_enc_workers)
        elif encoding_map:
            warn_encodings_given(recursive)
        else:
            raise ValueError("Provide either an image directory or encodings!")
        return self._find_duplicates_dict(encoding_map, min_similarity_threshold, scores, outfile, engine, index)

    def find_duplicates_to_remove(
        self,
        image_dir: str | PurePath | None = None,
        encoding_map: Mapping[str, Any] | None = None,
        min_similarity_threshold: float = 0.9,
        outfile: str | os.PathLike[str] | None = None,
        recursive: bool = False,
        num_enc_workers: int = 0,
        num_sim_workers: int | None = None,
        index: str = "exact",
    ) -> list[str]:
        """Files to remove so that one image of each duplicate set stays (nothing is deleted here).

        Walks the duplicate map in order: an image not yet marked keeps itself and marks all its
        duplicates. Returns the marked names, sorted (the reference returns them unordered).
        ``index``: as in :meth:`find_duplicates`.
        """
        result = self.find_duplicates(
            image_dir=image_dir,
            encoding_map=encoding_map,
            min_similarity_threshold=min_similarity_threshold,
            scores=False,
            recursive=recursive,
            num_enc_workers=num_enc_workers,
            num_sim_workers=num_sim_workers,
            index=index,
        )
        to_remove = files_to_remove(result)
        if outfile:
            save_json(to_remove, outfile)
        return to_remove
