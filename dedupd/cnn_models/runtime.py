"""Batched CNN inference: images in, float32 feature rows out.

:class:`FeatureExtractor` owns one model on one device. It encodes decoded images (the daemon's
path: :meth:`FeatureExtractor.encode`) or files, streaming them through a batch of
``batch_size`` so memory stays flat, with decoding and preprocessing optionally in worker
processes. Inference runs under ``torch.inference_mode()``.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from dedupd.core.vectors import normalize_rows
from dedupd.errors import ImageDecodeError
from dedupd.imaging import DecodedImage, decode_file
from dedupd.parallel import imap_ordered

logger = logging.getLogger(__name__)

_worker_transform: Callable[[Any], Any] | None = None


def _init_worker(transform: Callable[[Any], Any]) -> None:
    global _worker_transform
    _worker_transform = transform
    torch.set_num_threads(1)  # one process per core already; avoid oversubscription


def _preprocess(path: str, transform: Callable[[Any], Any]) -> tuple[Any, str | None]:
    try:
        image = decode_file(path)
    except ImageDecodeError as exc:
        return None, exc.reason
    return transform(image.rgb), None


def _preprocess_in_worker(path: str) -> tuple[np.ndarray | None, str | None]:
    assert _worker_transform is not None, "worker not initialised"
    tensor, reason = _preprocess(path, _worker_transform)
    # numpy pickles as plain bytes; a tensor would travel through shared-memory file handles
    return (None if tensor is None else np.asarray(tensor)), reason


def preprocessed_files(
    paths: Sequence[str | os.PathLike[str]], transform: Callable[[Any], Any], workers: int = 0
) -> Iterator[tuple[Any, str | None]]:
    """``(model input, None)`` or ``(None, reason)`` for each path, in order.

    Args:
        paths: image files.
        transform: the model's preprocessing; it must be picklable to run in workers (else this
            process decodes, and a warning says why).
        workers: decode and preprocess in this many processes (started by a forkserver, never
            forked from this process, which has loaded torch); 0 or 1: in this process.
    """
    names = [os.fspath(p) for p in paths]
    if workers > 1 and len(names) >= 2 and not _picklable(transform):
        workers = 0
    if workers <= 1 or len(names) < 2:
        for name in names:
            yield _preprocess(name, transform)
        return
    yield from imap_ordered(
        _preprocess_in_worker, names, min(workers, len(names)), chunksize=4, initializer=_init_worker,
        initargs=(transform,), fallback=lambda name: _preprocess(name, transform),
    )


def _picklable(transform: Callable[[Any], Any]) -> bool:
    """Whether ``transform`` can be sent to worker processes (they are never forked); logs why not."""
    try:
        pickle.dumps(transform)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        logger.warning(
            "num_enc_workers ignored: the model's transform cannot be sent to worker processes (%s); "
            "decoding in this process. Use a module-level function or a torchvision transform to decode in workers.",
            exc,
        )
        return False
    return True


class FeatureExtractor:
    """One feature model on one device, encoding images in batches.

    Args:
        model_config: anything with ``name``, ``model`` and ``transform`` attributes (our
            :class:`~dedupd.cnn_models.CustomModel` or imagededup's). An ``nn.Module`` is moved to
            the device and put in eval mode.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when available (as imagededup).
        batch_size: images per forward pass.
        num_threads: if set, ``torch.set_num_threads`` (process-wide) for CPU inference.

    Raises:
        ValueError: ``model`` or ``transform`` is missing.
    """

    def __init__(
        self, model_config: Any, *, device: str | None = None, batch_size: int = 64, num_threads: int | None = None
    ) -> None:
        self.name: str = getattr(model_config, "name", "")
        model = getattr(model_config, "model", None)
        transform = getattr(model_config, "transform", None)
        if model is None or transform is None:
            raise ValueError("No value provided for model and/or transform in model_config ..")
        self.model: Callable[..., Any] = model
        self.transform: Callable[[Any], Any] = transform
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = max(1, int(batch_size))
        self.dim: int | None = None  # feature length, known after the first forward pass
        if isinstance(self.model, torch.nn.Module):
            self.model.to(self.device)
            try:
                self.model.eval()
            except NotImplementedError:  # torch.export modules refuse eval(); they are exported in eval mode
                pass

    def run(self, batch: torch.Tensor | np.ndarray) -> np.ndarray:
        """Forward one preprocessed batch (B, C, H, W); returns float32 (B, D)."""
        x = torch.as_tensor(batch).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
        out = torch.as_tensor(out)
        feats = out.reshape(out.shape[0], -1).to("cpu", torch.float32).numpy()
        self.dim = feats.shape[1]
        return feats

    def _batched(self, tensors: Iterable[Any]) -> Iterator[np.ndarray]:
        batch: list[torch.Tensor] = []
        for t in tensors:
            batch.append(torch.as_tensor(t))
            if len(batch) == self.batch_size:
                yield self.run(torch.stack(batch))
                batch = []
        if batch:
            yield self.run(torch.stack(batch))

    def _empty(self) -> np.ndarray:
        return np.empty((0, self.dim or 0), dtype=np.float32)

    def encode_pil(self, images: Iterable[Image.Image]) -> np.ndarray:
        """Features of RGB PIL images: float32 (n, D)."""
        chunks = list(self._batched(self.transform(img) for img in images))
        return np.concatenate(chunks) if chunks else self._empty()

    def encode(self, images: Sequence[DecodedImage], *, normalize: bool = False) -> np.ndarray:
        """Features of already-decoded images, in batches: float32 (n, D).

        Args:
            images: from :func:`dedupd.imaging.decode_file` / ``decode_array``.
            normalize: L2-normalise each row (cosine similarity is then a dot product).
        """
        feats = self.encode_pil(image.rgb for image in images)
        return normalize_rows(feats) if normalize and len(feats) else feats

    def encode_files(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        workers: int = 0,
        on_error: Callable[[str, str], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[list[int], np.ndarray]:
        """Decode, preprocess and encode files, streaming in batches.

        Args:
            paths: image files.
            workers: processes for decoding and preprocessing (0: this process).
            on_error: called with ``(path, reason)`` for each file that cannot be decoded.
            progress: called with the number of files handled since the last call.

        Returns:
            ``(indices, features)``: the positions in ``paths`` that were encoded, and their
            float32 (len(indices), D) features in the same order.
        """
        ok: list[int] = []

        def tensors() -> Iterator[Any]:
            for k, (arr, reason) in enumerate(preprocessed_files(paths, self.transform, workers)):
                if progress:
                    progress(1)
                if arr is None:
                    if on_error:
                        on_error(os.fspath(paths[k]), reason or "unknown error")
                    continue
                ok.append(k)
                yield arr

        chunks = list(self._batched(tensors()))
        feats = np.concatenate(chunks) if chunks else self._empty()
        return ok, feats
