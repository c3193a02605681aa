"""A real daemon with the default config quarantines strong matches and only reports weak ones."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageEnhance

from dedupd.core.policy import STRONG, WEAK, Matching, pair_evidence
from dedupd.daemon.config.model import DEFAULT_HASH_THRESHOLD, DEFAULT_STRONG, DEFAULT_VARIANT_LIMITS
from dedupd.encoding import encode_file
from tests.daemon.helpers import checksums

#: the default config's rule (phash <= 10, crop hashes within their default limit, strong bound,
#: the framing check of weak matches)
RULE = Matching({"phash": 10}, strong={"phash": DEFAULT_STRONG["phash"]},
                options={"phash": {"crop": DEFAULT_VARIANT_LIMITS["crop"]}}, agree={"phash": DEFAULT_HASH_THRESHOLD})
KEYS = ("phash", "phash@c90", "phash@c81")


def _photo(path: Path) -> Image.Image:
    img = Image.open(path).convert("RGB")
    img.thumbnail((640, 640))
    return img


def make_pairs(corpus_dir: Path, out: Path) -> tuple[Path, Path, Path, Path]:
    """(A, strong copy of A, B, weak copy of B) from real photos, checked under :data:`RULE`;
    no file matches a file of the other pair."""
    bases = sorted((corpus_dir / "base").glob("*.jpg"))
    a = out / "a.png"
    _photo(bases[0]).save(a)
    a_copy = out / "a-copy.jpg"
    _photo(bases[0]).save(a_copy, quality=70)
    ha, hc = encode_file(a, KEYS).hashes, encode_file(a_copy, KEYS).hashes
    assert (ev := pair_evidence(RULE, ha, hc, None)) is not None and ev.band == STRONG
    for base in bases[1:40]:
        img = _photo(base)
        w, h = img.size
        b = out / "b.png"
        img.save(b)
        hb = encode_file(b, KEYS).hashes
        if any(pair_evidence(RULE, hb, x, None) for x in (ha, hc)):
            continue
        for f in (0.04, 0.05, 0.06, 0.07, 0.08):  # one corner cropped, a little brighter
            for gain in (1.0, 1.1, 1.2):
                edit = ImageEnhance.Brightness(img.crop((int(w * f), int(h * f), w, h))).enhance(gain)
                weak = out / "b-edit.png"
                edit.save(weak)
                hw = encode_file(weak, KEYS).hashes
                ev = pair_evidence(RULE, hb, hw, None)
                if ev is not None and ev.band == WEAK and not any(pair_evidence(RULE, hw, x, None) for x in (ha, hc)):
                    return a, a_copy, b, weak
    raise AssertionError("no corpus photo gave a weak pair")


def test_quarantine_moves_strong_matches_never_weak_ones(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    watched.mkdir()
    a, a_copy, b, weak = make_pairs(corpus_dir, watched)
    before = checksums(watched)
    qdir = tmp_path / "quarantine"
    daemon = daemon_factory([watched], policy="quarantine", quarantine_dir=str(qdir))  # default methods
    daemon.start()
    daemon.wait_until(lambda: daemon.status()["quarantined"] > 0, 60, "the strong copy quarantined")
    daemon.wait_quiet(stable=1.5)

    moved = {e["origin"]: e for e in daemon.manifest() if e["state"] == "moved"}
    assert set(moved) == {str(a_copy)} and moved[str(a_copy)]["keeper"] == str(a)
    assert b.exists() and weak.exists(), "a weak match is never moved"
    assert {p: h for p, h in checksums(watched).items()} == {p: h for p, h in before.items() if p != str(a_copy)}

    # groups.json: the weak pair is reported, with its band and evidence
    groups = daemon.groups()
    groups = groups["groups"] if isinstance(groups, dict) else groups
    (group,) = [g for g in groups if g["keep"]["path"] in (str(b), str(weak))]
    (dup,) = group["duplicates"]
    assert dup["direct"] is True and dup["band"] == WEAK and dup["method"] == "phash"
    assert dup["matched"] == ["phash"] and DEFAULT_STRONG["phash"] < dup["distance"] <= 10 and "phash" in dup["scores"]
    # the socket API says the same
    status, body = daemon.api("GET", "/v1/groups")
    assert status == 200
    api_groups = body["groups"] if isinstance(body, dict) else body
    api_dup = next(d for g in api_groups for d in g["duplicates"] if d["path"] in (str(b), str(weak)))
    assert api_dup["band"] == WEAK and api_dup["scores"] == dup["scores"]
    res = daemon.cli("groups")
    assert res.returncode == 0 and "weak: review" in res.stdout, res.stdout + res.stderr
    # the HTML report marks it for review and leaves it out of what quarantine would free
    page = (daemon.report_dir / "report.html").read_text()
    assert "weak matches to review" in page and '"weak"' in page
    daemon.stop()


def test_weak_band_in_query_answer(corpus_dir: Path, tmp_path: Path, daemon_factory) -> None:
    """``dedupd query --json`` of the weak copy shows the band of its match."""
    watched = tmp_path / "photos"
    watched.mkdir()
    _, _, b, weak = make_pairs(corpus_dir, watched)
    daemon = daemon_factory([watched])
    daemon.start()
    daemon.wait_quiet(stable=1.0)
    res = daemon.cli("query", "--json", str(weak))
    assert res.returncode == 0, res.stdout + res.stderr
    answer = json.loads(res.stdout)
    text = json.dumps(answer)
    assert str(b) in text and '"band": "weak"' in text
    daemon.stop()
