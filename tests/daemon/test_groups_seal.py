"""A restart adopts the ``groups.json`` sealed at the last clean stop when nothing it depends on
changed (store, settings, code), and builds it in full otherwise: after a crash between a store
commit and the report write, a config change, files changed while stopped. Real daemon, real
LMDB, real corpus images; every report compared with a full write from the store."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from dedupd.daemon.config import config_from_mapping, load_config
from dedupd.daemon.loader import load_index
from dedupd.daemon.store import Store
from dedupd.reports.files import write_reports
from dedupd.reports.seal import SEAL_NAME, adoptable, config_digest, file_identity
from tests.daemon.helpers import DaemonProcess

ADOPTED = "groups.json sealed at the last stop is current"


def _without_time(data: bytes) -> bytes:
    head, sep, rest = data.partition(b', "policy"')
    assert head.startswith(b'{"generated_at": ') and sep
    return sep + rest


def full_write(daemon: DaemonProcess, tmp: Path) -> bytes:
    """``groups.json`` as a full write from the daemon's store (stopped) under its config."""
    cfg = load_config(daemon.config_path)
    out = tmp / f"full{len(list(tmp.glob('full*')))}"
    with Store.open(cfg.store_dir, readonly=True) as store:
        write_reports(str(out), load_index(store, cfg), cfg, store)
    return (out / "groups.json").read_bytes()


def starts_adopted(daemon: DaemonProcess) -> list[bool]:
    """Per start of ``daemon``, whether it adopted the sealed groups.json."""
    return [ADOPTED in part for part in daemon.log_text().split("---- start #")[1:]]


def grouped_paths(data: bytes) -> set[str]:
    groups = json.loads(data)["groups"]
    return {g["keep"]["path"] for g in groups} | {d["path"] for g in groups for d in g["duplicates"]}


def test_restart_adopts_only_a_current_groups_json(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    daemon = daemon_factory([watched], methods={"phash": {"threshold": 10, "crop": False}})
    groups_json = daemon.report_dir / "groups.json"

    daemon.start()
    first = daemon.wait_quiet()
    assert first["groups"] > 3
    daemon.stop()
    assert (daemon.report_dir / SEAL_NAME).is_file()
    sealed, identity = groups_json.read_bytes(), file_identity(str(groups_json))
    assert _without_time(sealed) == _without_time(full_write(daemon, tmp_path))

    # 1. a clean restart with nothing changed: adopted (the file is not rewritten), counts as before
    daemon.start()
    again = daemon.wait_quiet()
    assert starts_adopted(daemon) == [False, True]
    assert (again["groups"], again["duplicates"]) == (first["groups"], first["duplicates"])
    assert file_identity(str(groups_json)) == identity and groups_json.read_bytes() == sealed
    # ... and later changes are incremental writes equal to a full write
    member = next(iter(sorted(grouped_paths(sealed))))
    copy = watched / ("copy of " + os.path.basename(member))
    shutil.copyfile(member, copy)
    daemon.wait_until(lambda: str(copy) in grouped_paths(groups_json.read_bytes()), 30, "the copy in groups.json")
    daemon.wait_quiet()
    daemon.stop()
    assert _without_time(groups_json.read_bytes()) == _without_time(full_write(daemon, tmp_path))

    # 2. a commit whose report was never written (kill -9 between them): simulated by a store
    # commit while stopped (the file gone from disk and store): not adopted, the report is rebuilt
    gone = next(p for p in sorted(grouped_paths(groups_json.read_bytes())) if p != str(copy))
    os.remove(gone)
    with Store.open(daemon.config["store_dir"]) as store:
        assert store.delete_file(gone)
    daemon.start()
    daemon.wait_quiet()
    assert starts_adopted(daemon)[-1] is False
    assert gone not in grouped_paths(groups_json.read_bytes())
    daemon.stop()
    assert _without_time(groups_json.read_bytes()) == _without_time(full_write(daemon, tmp_path))

    # 3. a real kill -9 right after a change reached the store: not adopted, nothing lost
    daemon.start()
    daemon.wait_quiet()
    assert starts_adopted(daemon)[-1] is True
    member = next(p for p in sorted(grouped_paths(groups_json.read_bytes())) if os.path.exists(p))
    copy2 = watched / ("second copy of " + os.path.basename(member))
    shutil.copyfile(member, copy2)
    daemon.wait_until(lambda: daemon.api("GET", f"/v1/duplicates?path={quote(str(copy2))}")[0] == 200, 30, "the copy indexed")
    daemon.kill9()
    daemon.start()
    daemon.wait_quiet()
    assert starts_adopted(daemon)[-1] is False
    assert str(copy2) in grouped_paths(groups_json.read_bytes())
    daemon.stop()
    assert _without_time(groups_json.read_bytes()) == _without_time(full_write(daemon, tmp_path))

    # 4. a setting that changes the groups (threshold, within the stored graph's reach): not adopted
    daemon.write_config(methods={"phash": {"threshold": 8, "crop": False}})
    daemon.start()
    daemon.wait_quiet()
    assert starts_adopted(daemon)[-1] is False
    daemon.stop()
    assert _without_time(groups_json.read_bytes()) == _without_time(full_write(daemon, tmp_path))

    # 5. files deleted while stopped: the store is unchanged, so the file is adopted; the start-up
    # walk then finds the deletion and the report follows it
    victim = next(p for p in sorted(grouped_paths(groups_json.read_bytes())) if p not in (str(copy), str(copy2)))
    os.remove(victim)
    daemon.start()
    daemon.wait_until(lambda: victim not in grouped_paths(groups_json.read_bytes()), 30, "the deletion reported")
    daemon.wait_quiet()
    assert starts_adopted(daemon)[-1] is True
    daemon.stop()
    assert _without_time(groups_json.read_bytes()) == _without_time(full_write(daemon, tmp_path))
    assert not daemon.errors_in_log()


def test_seal_checks_settings_file_and_store(tmp_path: Path) -> None:
    """The seal's config digest ignores socket, log and timing settings but not the rule; a
    touched ``groups.json``, another store generation or another config voids it."""
    from dedupd.reports.files import ReportWriter

    def cfg(**extra):
        return config_from_mapping({"roots": [str(tmp_path / "p")], "store_dir": str(tmp_path / "store"),
                                    "report_dir": str(tmp_path / "r"), "socket_path": str(tmp_path / "s"), **extra})

    (tmp_path / "p").mkdir()
    (tmp_path / "q").mkdir()
    base = cfg()
    assert config_digest(base) == config_digest(cfg(socket_path=str(tmp_path / "t"), log={"level": "debug"},
                                                    settle_ms=5, report_interval_s=3))
    for other in (cfg(methods={"phash": 9}), cfg(dry_run=True), cfg(keep=["oldest_mtime"]),
                  cfg(roots=[str(tmp_path / "q")])):
        assert config_digest(other) != config_digest(base)

    with Store.open(tmp_path / "store") as store:
        index = load_index(store, base)
        writer = ReportWriter(str(tmp_path / "r"))
        writer.write_groups(index, base, store)
        assert writer.seal(index, base, store)
        gen = store.generation()
        counts = {"groups": 0, "duplicates": 0}
        assert adoptable(str(tmp_path / "r"), store.path, gen, base) == counts
        assert adoptable(str(tmp_path / "r"), store.path, gen + 1, base) is None
        assert adoptable(str(tmp_path / "r"), store.path, gen, cfg(methods={"phash": 9})) is None
        assert adoptable(str(tmp_path / "r"), str(tmp_path / "other"), gen, base) is None
        os.utime(tmp_path / "r" / "groups.json", ns=(1, 1))
        assert adoptable(str(tmp_path / "r"), store.path, gen, base) is None
        # a writer whose file on disk is not its last write does not seal it
        assert not writer.seal(index, base, store)
        (tmp_path / "r" / SEAL_NAME).write_text("not json")
        assert adoptable(str(tmp_path / "r"), store.path, gen, base) is None
        # another writer of groups.json (``dedupd scan``) removes the seal
        writer = ReportWriter(str(tmp_path / "r"))  # nothing to adopt: writes in full
        writer.write_groups(index, base, store)
        assert writer.seal(index, base, store) and (tmp_path / "r" / SEAL_NAME).is_file()
        write_reports(str(tmp_path / "r"), index, base, store)
        assert not (tmp_path / "r" / SEAL_NAME).exists()


@pytest.mark.parametrize("touch", [False, True])
def test_writer_adopts_then_builds_the_lines(tmp_path: Path, touch: bool) -> None:
    """In process: a new writer adopts the sealed file (no write), then builds its lines at the
    next write and writes the file only when the index changed meanwhile; either way the file
    then equals a full write."""
    from dedupd.daemon.store import EncodingRecord, FileRecord
    from dedupd.reports.files import ReportWriter

    root = tmp_path / "p"
    root.mkdir()
    cfg = config_from_mapping({"roots": [str(root)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "r"), "socket_path": str(tmp_path / "s"),
                               "methods": {"phash": {"threshold": 10, "crop": False}}})
    with Store.open(tmp_path / "store") as store:
        rng = random.Random(3)
        batch, base = [], 0
        for k in range(12):  # six pairs of near-duplicates (one bit apart), distinct contents
            base = rng.getrandbits(64) if k % 2 == 0 else base ^ 1
            digest = bytes([k + 1]) * 32
            rec = FileRecord(100 + k, k, 1, k, digest)
            batch.append((root / f"f{k}.jpg", rec, EncodingRecord(10, 10 + k, "JPEG", {"phash": base})))
        store.put_files(batch)
        index = load_index(store, cfg)
        first = ReportWriter(str(tmp_path / "r"))
        assert first.write_groups(index, cfg, store)["groups"] > 0
        assert first.seal(index, cfg, store)
        path = tmp_path / "r" / "groups.json"
        identity, counts = file_identity(str(path)), first.counts

        index = load_index(store, cfg)
        writer = ReportWriter(str(tmp_path / "r"))
        assert writer.write_groups(index, cfg, store) == counts and writer.adopted
        assert not writer.slow_pending and writer.groups() == []
        assert writer.write(index, cfg, store, slow=True, lazy=True) == counts and writer.adopted  # final write
        if touch:
            index.remove(str(root / "f0.jpg"))
        writer.write_groups(index, cfg, store)
        assert not writer.adopted and writer.slow_pending and len(writer.groups()) == writer.counts["groups"]
        assert (file_identity(str(path)) == identity) is not touch
        want = tmp_path / "want"
        write_reports(str(want), index, cfg)
        assert _without_time(path.read_bytes()) == _without_time((want / "groups.json").read_bytes())
