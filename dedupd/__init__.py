"""dedupd: find exact and near-duplicate images, and keep finding them while folders change.

The library half mirrors imagededup's public API (``dedupd.methods``, ``dedupd.evaluation``,
``dedupd.utils``); the daemon half lives in ``dedupd.daemon`` and the ``dedupd`` command.
Importing the package does no work: no model is built, no logging is configured.
"""

__version__ = "0.1.0"
