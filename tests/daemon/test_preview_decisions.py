"""Preview, the user's decisions and reference roots against a real daemon subprocess, real files and
its socket: a dry run moves nothing and marks exactly what the real quarantine then moves; "not a
duplicate" and "keep this one" survive a rename and are reopened by a new member; originals in a
reference root are kept and never moved."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import pytest

from tests.daemon.helpers import checksums
from tests.daemon.socket_helpers import SocketDaemon, near_duplicate

pytestmark = pytest.mark.slow


def groups_json(d: SocketDaemon) -> dict:
    return json.loads((d.report_dir / "groups.json").read_text())


def group_of(doc: dict, path: Path) -> dict | None:
    p = str(path)
    return next((g for g in doc["groups"] if p == g["keep"]["path"] or p in [x["path"] for x in g["duplicates"]]),
                None)


def test_dry_run_marks_then_quarantine_moves_exactly_those_and_decisions_hold(tmp_path: Path, corpus_dir: Path) -> None:
    bases = corpus_dir / "base"
    photos, archive, qdir = tmp_path / "photos", tmp_path / "archive", tmp_path / "quarantine"
    photos.mkdir()
    archive.mkdir()
    for i in (30, 31, 32, 33):
        shutil.copyfile(bases / f"b00{i}.jpg", photos / f"b00{i}.jpg")
    shutil.copyfile(bases / "b0030.jpg", photos / "copy30.jpg")
    near_duplicate(bases / "b0031.jpg", photos / "near31.jpg")
    near_duplicate(bases / "b0032.jpg", photos / "near32.jpg")
    shutil.copyfile(bases / "b0034.jpg", archive / "orig34.jpg")  # the original, in a reference root
    shutil.copyfile(bases / "b0034.jpg", photos / "a-copy34.jpg")  # a name the keep-rules would prefer
    # every pHash match strong, so the decisions (not the confidence bands) decide what moves
    d = SocketDaemon(tmp_path, [photos], name="preview", policy="quarantine", dry_run=True,
                     quarantine_dir=str(qdir), keep=["shortest_path"], methods={"phash": {"threshold": 10, "strong": 10}})
    d.write_config(roots=[str(photos), {"path": str(archive), "reference": True}])
    try:
        before = {**checksums(photos), **checksums(archive)}
        d.start()
        d.wait_quiet()
        doc = d.wait_until(lambda: (g := groups_json(d)) and len(g["groups"]) == 4 and g, 30, "4 groups")
        assert doc["dry_run"] is True
        assert {**checksums(photos), **checksums(archive)} == before and d.manifest() == []  # nothing moved
        ref = group_of(doc, archive / "orig34.jpg")
        assert ref["keep"]["path"] == str(archive / "orig34.jpg") and ref["kept_by"] == "in a reference root"
        assert set(doc["would_quarantine"]) == {x["path"] for g in doc["groups"] for x in g["duplicates"] if x["move"]}
        assert doc["would_free_bytes"] == sum(os.path.getsize(p) for p in doc["would_quarantine"]) > 0
        assert "quarantine would move this file" in (d.report_dir / "report.html").read_text()

        # the user's word, through the CLI and the socket
        out = d.run_cli("ignore", str(photos / "b0032.jpg"), str(photos / "near32.jpg"))
        assert out.returncode == 0 and "not duplicates" in out.stdout, out.stderr
        out = d.run_cli("keep", str(photos / "near31.jpg"))
        assert out.returncode == 0, out.stderr
        code, body = d.api("POST", "/v1/ignore", {"paths": [str(photos / "b0030.jpg"), str(photos / "copy30.jpg")]})
        assert code == 422 and "byte-identical" in body["detail"]
        code, body = d.api("POST", "/v1/ignore", {"paths": [str(photos / "b0033.jpg")]})
        assert code == 422 and "at least two" in body["detail"]
        code, body = d.api("POST", "/v1/keep", {"path": str(tmp_path / "elsewhere.jpg")})
        assert code == 403
        def both_decisions(g: dict) -> bool:  # the report after "ignore" may be written before "keep" lands
            kept = group_of(g, photos / "near31.jpg")
            return len(g["groups"]) == 3 and kept is not None and kept["keep"]["path"] == str(photos / "near31.jpg")

        doc = d.wait_until(lambda: (g := groups_json(d)) and both_decisions(g) and g, 30, "both decisions applied")
        assert group_of(doc, photos / "near32.jpg") is None
        assert group_of(doc, photos / "near31.jpg")["keep"]["path"] == str(photos / "near31.jpg")
        listed = json.loads(d.run_cli("ignore", "--list", "--json").stdout)["sets"]
        assert [sorted(s["current"]) for s in listed] == [[str(photos / "b0032.jpg"), str(photos / "near32.jpg")]]
        assert set(doc["would_quarantine"]) == {
            str(photos / "b0031.jpg"), str(photos / "a-copy34.jpg"), str(photos / "copy30.jpg")}  # same length: a-z
        assert d.manifest() == []

        # a rename keeps the decision (it is by content); a new member reopens the group
        os.rename(photos / "near32.jpg", photos / "renamed32.jpg")
        d.wait_until(lambda: str(photos / "renamed32.jpg") in d.duplicates(), 30, "the rename indexed")
        d.wait_quiet()
        assert group_of(groups_json(d), photos / "renamed32.jpg") is None
        newcomer = near_duplicate(bases / "b0032.jpg", tmp_path / "new32.jpg")
        with open(newcomer, "ab") as f:
            f.write(b"\0")  # other bytes than any file before
        os.rename(newcomer, photos / "new32.jpg")
        g = d.wait_until(lambda: group_of(groups_json(d), photos / "renamed32.jpg"), 30, "the group reopened")
        assert g.get("reopened") is True and g["keep"]["path"] == str(photos / "b0032.jpg")
        by = {x["path"]: x for x in g["duplicates"]}
        assert by[str(photos / "renamed32.jpg")]["distinct"] is True and not by[str(photos / "renamed32.jpg")]["move"]
        assert by[str(photos / "new32.jpg")]["move"] is True
        d.wait_quiet()
        marks = set(groups_json(d)["would_quarantine"])
        assert str(photos / "new32.jpg") in marks and len(marks) == 4 and d.manifest() == []

        # the real run moves exactly what the preview marked
        d.write_config(dry_run=False)
        out = d.run_cli("reload")
        assert out.returncode == 0, out.stderr
        d.wait_until(lambda: len([e for e in d.manifest() if e["state"] == "moved"]) >= len(marks), 30,
                     "the quarantine moves")
        d.wait_quiet()
        assert {e["origin"] for e in d.manifest() if e["state"] == "moved"} == marks
        assert len(d.manifest()) == len(marks)
        assert all(not os.path.exists(p) for p in marks)
        for kept in ("b0032.jpg", "renamed32.jpg", "near31.jpg", "b0033.jpg", "b0030.jpg"):
            assert (photos / kept).exists()
        assert (archive / "orig34.jpg").exists()
        after = groups_json(d)
        assert after["would_quarantine"] == [] and after["dry_run"] is False

        # a decision about a quarantined file names the way back instead of "not indexed"
        moved = str(photos / "copy30.jpg")
        code, body = d.api("POST", "/v1/keep", {"path": moved})
        assert code == 409 and body["error"] == "quarantined", body
        assert f"dedupd restore {moved}" in body["detail"] and str(qdir) in body["detail"]
        out = d.run_cli("keep", moved)
        assert out.returncode != 0 and "restore it first" in out.stderr, (out.stdout, out.stderr)
        code, body = d.api("GET", "/v1/duplicates?path=" + urllib.parse.quote(moved))
        assert code == 409 and "restore it first" in body["detail"]
        code, body = d.api("POST", "/v1/keep", {"path": str(photos / "never-was.jpg")})
        assert code == 404 and body["error"] == "not indexed"

        # forgetting the decision (over the socket) lets quarantine act on the pair again
        out = d.run_cli("ignore", "--remove", str(photos / "renamed32.jpg"))
        assert out.returncode == 0 and "1 set(s) forgotten" in out.stdout, out.stderr
        entry = d.wait_until(lambda: next((e for e in d.manifest() if e["origin"] == str(photos / "renamed32.jpg")),
                                          None), 30, "the no longer ignored duplicate quarantined")
        assert entry["keeper"] == str(photos / "b0032.jpg") and not (photos / "renamed32.jpg").exists()
        out = d.run_cli("keep", "--list", "--json")
        assert [p["path"] for p in json.loads(out.stdout)["pins"]] == [str(photos / "near31.jpg")]
        out = d.run_cli("keep", "--remove", str(photos / "near31.jpg"))
        assert out.returncode == 0 and "1 pin(s) removed" in out.stdout, out.stderr
        d.stop()
        assert not d.errors_in_log(), d.log_tail()
    finally:
        d.close()
