"""The daemon's start-up adopts the index snapshot of its last clean stop and then answers as a
start that loads the store, also after a ``kill -9`` following a change (replayed from the
store's change journal); after a config change or with a damaged snapshot it loads the store. Real daemon subprocess, real LMDB, real corpus images."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dedupd.daemon.config import load_config
from dedupd.daemon.loader import load_index
from dedupd.daemon.snapshot import SNAPSHOT_NAME
from dedupd.daemon.store import Store
from tests.daemon.helpers import DaemonProcess

ADOPTED, NOT_ADOPTED, UNUSABLE = "index snapshot adopted", "index snapshot not adopted", "index snapshot"


def last_start(daemon: DaemonProcess) -> str:
    return daemon.log_text().split("---- start #")[-1]


def adoption(daemon: DaemonProcess) -> dict[str, Any] | None:
    """The last start's "index snapshot adopted" record (None: not adopted)."""
    for line in last_start(daemon).splitlines():
        if line.startswith("{") and f'"event": "{ADOPTED}"' in line:
            record: dict[str, Any] = json.loads(line)
            return record
    return None


def answers(daemon: DaemonProcess) -> dict:
    """What the socket says about every indexed file, the counts and the groups on disk."""
    status = daemon.status()
    groups = json.loads((daemon.report_dir / "groups.json").read_text())["groups"]
    cfg = load_config(daemon.config_path)
    with Store.open(cfg.store_dir, readonly=True) as store:
        paths = sorted(load_index(store, cfg, build_graph=False).files)
    dups = {}
    for p in paths:
        code, body = daemon.api("GET", f"/v1/duplicates?path={quote(p)}")
        assert code == 200, (p, body)
        dups[p] = body
    return {"counts": (status["files"], status["groups"], status["duplicates"]), "dups": dups, "groups": groups}


def copy_a_member(daemon: Any, loaded: dict, watched: Path) -> tuple[str, Path]:
    """Copy the first file of ``loaded``'s groups into ``watched``; once the daemon indexed it,
    return that file and its copy."""
    member = next(p for p, d in sorted(loaded["dups"].items()) if d["duplicates"])
    copy = watched / ("copy of " + os.path.basename(member))
    shutil.copyfile(member, copy)
    daemon.wait_until(lambda: daemon.api("GET", f"/v1/duplicates?path={quote(str(copy))}")[0] == 200, 30,
                      "the copy indexed")
    return member, copy


def test_restart_adopts_the_snapshot_only_when_current(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    daemon = daemon_factory([watched], methods={"phash": {"threshold": 10, "crop": False}})
    snapshot = Path(daemon.config["store_dir"]) / SNAPSHOT_NAME

    daemon.start()
    daemon.wait_quiet()
    loaded = answers(daemon)
    assert loaded["counts"][1] > 3
    daemon.stop()
    assert snapshot.is_file() and "index snapshot written" in last_start(daemon)

    # 1. a clean restart: adopted, the same answers
    daemon.start()
    daemon.wait_quiet()
    assert ADOPTED in last_start(daemon)
    assert answers(daemon) == loaded
    # ... and it goes on like a loaded index: a new copy is found
    member, copy = copy_a_member(daemon, loaded, watched)
    daemon.wait_quiet()
    # 2. kill -9 after that change reached the store: adopted, the change replayed from the journal
    daemon.kill9()
    daemon.start()
    daemon.wait_quiet()
    adopted = adoption(daemon)
    assert adopted is not None and adopted["replayed"] >= 1 and adopted["rebuilt"] >= 2, adopted
    after_kill = answers(daemon)
    assert str(copy) in after_kill["dups"] and member in {d["path"] for d in after_kill["dups"][str(copy)]["duplicates"]}
    # ... the answers of a store load (the snapshot gone: what a crash before any seal leaves)
    daemon.kill9()
    snapshot.unlink()
    daemon.start()
    daemon.wait_quiet()
    assert ADOPTED not in last_start(daemon)
    assert answers(daemon) == after_kill
    daemon.stop()
    daemon.start()
    daemon.wait_quiet()
    assert ADOPTED in last_start(daemon)
    assert answers(daemon) == after_kill
    daemon.stop()

    # 3. another threshold (within the stored reach): not adopted
    daemon.write_config(methods={"phash": {"threshold": 8, "crop": False}})
    daemon.start()
    daemon.wait_quiet()
    assert NOT_ADOPTED in last_start(daemon)
    stricter = answers(daemon)
    daemon.stop()

    # 4. a damaged snapshot: a warning, the store load, the same answers
    data = snapshot.read_bytes()
    snapshot.write_bytes(data[: len(data) // 3])
    daemon.start()
    daemon.wait_quiet()
    assert "unusable" in last_start(daemon) and ADOPTED not in last_start(daemon)
    assert answers(daemon) == stricter
    daemon.stop()
    assert not daemon.errors_in_log()
