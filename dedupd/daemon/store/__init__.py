"""The daemon's LMDB store: records and their encoding (:mod:`.records`), schema (:mod:`.schema`),
the writer lock (:mod:`.lock`), the quarantine manifest (:mod:`.manifest`) and the store itself
(:mod:`.db`, the only module that imports ``lmdb``)."""

from dedupd.daemon.store.db import Store
from dedupd.daemon.store.manifest import QUARANTINE_STATES, QuarantineEntry
from dedupd.daemon.store.records import EncoderMismatch, EncodingRecord, FileRecord, StoreStats
from dedupd.daemon.store.schema import SCHEMA_VERSION

__all__ = ["QUARANTINE_STATES", "SCHEMA_VERSION", "EncoderMismatch", "EncodingRecord", "FileRecord",
           "QuarantineEntry", "Store", "StoreStats"]
