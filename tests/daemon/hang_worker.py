"""A decode-worker function for tests: hangs on files named ``*hang*``, encodes the others.

Module-level (and imported by its module name) so that the pipeline's forkserver workers can run it.
"""

from __future__ import annotations

import os
import time

from dedupd.daemon.encoder import EncodeResult, EncodeSpec, encode_many


def hang_on_marked(paths: list[str], spec: EncodeSpec) -> list[EncodeResult]:
    if any("hang" in os.path.basename(p) for p in paths):
        time.sleep(3600)  # a decoder stuck in a codec loop
    return encode_many(paths, spec)
