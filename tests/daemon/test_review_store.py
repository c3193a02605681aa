"""The user's decisions in a real LMDB store (the ``review`` sub-database) and the config keys behind
preview and reference roots (``dry_run``, ``roots[].reference``)."""

from __future__ import annotations

from pathlib import Path

import lmdb
import pytest

from dedupd.core.review import Review
from dedupd.daemon.config import RootConfig, config_from_mapping
from dedupd.daemon.store import Store
from dedupd.errors import ConfigError
from tests.daemon.test_store import enc, rec

ENV = {"HOME": "/home/u"}


def test_decisions_persist_by_content_across_reopen(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        store.put_files([("/p/a.jpg", rec(b"a" * 16), enc(1)), ("/p/b.jpg", rec(b"b" * 16, inode=2), enc(2))])
        assert store.review() == Review() and store.review().empty
        sid = store.add_distinct([b"a" * 16, b"b" * 16], ["/p/a.jpg", "/p/b.jpg"])
        assert store.add_distinct([b"b" * 16, b"a" * 16], ["/p/b.jpg", "/p/a.jpg"]) == sid  # same set: same id
        store.pin(b"a" * 16, "/p/a.jpg")
        with pytest.raises(ValueError, match="two different"):
            store.add_distinct([b"a" * 16], ["/p/a.jpg"])
    with Store.open(tmp_path / "s", readonly=True, lock=False) as store:  # a reader sees them
        (s,) = store.distinct_sets()
        assert (s.id, s.digests, s.paths) == (sid, frozenset({b"a" * 16, b"b" * 16}), ("/p/a.jpg", "/p/b.jpg"))
        (pin,) = store.pins()
        assert (pin.digest, pin.path) == (b"a" * 16, "/p/a.jpg")
        assert store.review().pins == ((b"a" * 16, pin.pinned_at, "/p/a.jpg"),)
    with Store.open(tmp_path / "s") as store:
        assert store.remove_distinct([sid, 99]) == [sid] and store.distinct_sets() == []
        assert store.unpin([b"a" * 16, b"z" * 16]) == [b"a" * 16] and store.pins() == []
        assert store.add_distinct([b"a" * 16, b"c" * 16], ["/p/a.jpg", "/p/c.jpg"]) == sid + 1  # ids never reused


def test_a_store_from_before_the_review_database_opens_read_only_with_no_decisions(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as store:
        store.put_file("/p/a.jpg", rec(), enc())
    env = lmdb.open(str(tmp_path / "s"), max_dbs=10)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"review", txn=txn), delete=True)
    env.close()
    with Store.open(tmp_path / "s", readonly=True, lock=False) as store:
        assert store.review().empty and store.get_file("/p/a.jpg") is not None
    with Store.open(tmp_path / "s") as store:  # read-write: the database is created, decisions work
        store.pin(b"d" * 16, "/p/a.jpg")
        assert len(store.pins()) == 1


def test_reference_roots_and_dry_run_in_the_config(tmp_path: Path) -> None:
    photos, archive = tmp_path / "photos", tmp_path / "archive"
    photos.mkdir()
    archive.mkdir()
    cfg = config_from_mapping({"roots": [str(photos), {"path": str(archive), "reference": True}],
                               "policy": "quarantine", "dry_run": True}, env=ENV)  # no quarantine_dir: a preview
    assert cfg.roots == (RootConfig(str(photos)), RootConfig(str(archive), True, True))
    assert cfg.dry_run and not cfg.moves_files
    assert cfg.is_reference(str(archive / "x.jpg")) and not cfg.is_reference(str(photos / "x.jpg"))
    assert not cfg.is_reference(str(archive) + "-other/x.jpg")
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"roots": [{"path": str(archive), "reference": "yes"}], "dry_run": 1,
                             "policy": "quarantine"}, env=ENV)
    text = str(err.value)
    assert "roots[0].reference: must be true or false" in text and "dry_run: must be true or false" in text
    assert "quarantine_dir: is required" in text
    env_cfg = config_from_mapping({"roots": [str(photos)], "policy": "quarantine"}, env={**ENV, "DEDUPD_DRY_RUN": "true"})
    assert env_cfg.dry_run
