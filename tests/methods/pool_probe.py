"""Module-level functions that worker processes can import (pool tests)."""

from __future__ import annotations

import os
import sys


def parent_and_torch(_: object) -> tuple[int, bool]:
    """The worker's parent pid, and whether torch is loaded in the worker."""
    return os.getppid(), "torch" in sys.modules
