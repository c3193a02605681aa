"""The daemon's log: exceptions keep their traceback, a dying thread is logged, all as JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.daemon.helpers import REPO

SCRIPT = """
import logging, threading
from dedupd.daemon import log
log.setup("info", "json")
try:
    raise OSError(28, "No space left on device")
except OSError:
    logging.getLogger("dedupd.daemon").exception("writing reports failed")
t = threading.Thread(target=lambda: 1 / 0, name="dedupd-pipeline")
t.start(); t.join()
"""


def test_exceptions_and_thread_deaths_are_json_lines_with_tracebacks() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(REPO)}, check=True)
    lines = [json.loads(line) for line in out.stderr.splitlines()]  # every line is JSON: no raw traceback
    assert [entry["event"] for entry in lines] == ["writing reports failed", "thread dedupd-pipeline died"]
    assert "No space left on device" in lines[0]["exception"]
    assert "ZeroDivisionError" in lines[1]["exception"] and lines[1]["level"] == "critical"
