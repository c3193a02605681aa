"""``POST /v1/quarantine`` (the review page's "quarantine the selected") on a real daemon: what it
refuses and why, and that a refusal moves nothing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.helpers import DaemonProcess


@pytest.fixture
def daemon(corpus_dir: Path, tmp_path: Path) -> Iterator[DaemonProcess]:
    photos = tmp_path / "photos"
    photos.mkdir()
    src = sorted((corpus_dir / "base").glob("b*.jpg"))[30]
    shutil.copyfile(src, photos / "one.jpg")
    shutil.copyfile(src, photos / "two.jpg")
    d = DaemonProcess(tmp_path, [photos], policy="report")
    try:
        d.start()
        d.wait_until(lambda: d.api("GET", "/v1/groups")[1]["total"] == 1, 60, "one group")
        yield d
    finally:
        d.close()


def test_quarantine_route_refuses_clearly(daemon: DaemonProcess, tmp_path: Path):
    photos = tmp_path / "photos"
    group = daemon.api("GET", "/v1/groups")[1]["groups"][0]
    dup = group["duplicates"][0]["path"]
    for bad in ({}, {"paths": []}, {"paths": ["relative.jpg"]}, {"paths": [dup], "all": True}, {"path": dup}):
        status, body = daemon.api("POST", "/v1/quarantine", bad)
        assert status == 400 and "paths" in body["detail"], bad
    status, body = daemon.api("POST", "/v1/quarantine", {"paths": [dup]})
    assert status == 409 and "quarantine_dir" in body["detail"], "no quarantine folder configured"
    daemon.write_config(quarantine_dir=str(tmp_path / "q"))
    assert daemon.api("POST", "/v1/reload")[0] == 200
    status, body = daemon.api("POST", "/v1/quarantine", {"paths": [group["keep"]["path"], str(photos / "nope.jpg")]})
    assert status == 200 and body["quarantined"] == 0
    assert [r["ok"] for r in body["results"]] == [False, False]
    assert "kept copy" in body["results"][0]["detail"] and "not a member" in body["results"][1]["detail"]
    assert sorted(p.name for p in photos.iterdir()) == ["one.jpg", "two.jpg"]
    status, body = daemon.api("POST", "/v1/quarantine", {"paths": [dup]})
    assert status == 200 and body["quarantined"] == 1 and body["results"][0]["ok"]
    assert not Path(dup).exists() and Path(body["results"][0]["detail"]).is_file()
    entries = daemon.api("GET", "/v1/quarantine")[1]["entries"]
    assert [(e["origin"], e["state"]) for e in entries] == [(dup, "moved")]
    assert entries[0]["reason"].startswith("selected by a user")
