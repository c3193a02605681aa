"""imagededup-compatible evaluation: ``from dedupd.evaluation import evaluate``."""

from __future__ import annotations

from dedupd.evaluation.evaluation import MapValidationError, evaluate

__all__ = ["MapValidationError", "evaluate"]
