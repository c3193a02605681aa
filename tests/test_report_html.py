"""The HTML duplicate report: built from a real scan, opened in headless Chromium, escaped, fast at 10k groups."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from dedupd.reports.html import PAGE_SIZE, attach_quarantine, build_html, report_from_store, summarize
from dedupd.reports.thumbnails import ensure_thumbnail, ensure_thumbnails
from tests import browser
from tests.browser import FLAGS, chromium

EVIL_DIR_NAME = "<script>alert(1)</script>.jpg"  # contains "/": a folder "<script>alert(1)<" + file "script>.jpg"
EVIL_FILE = "<img src=x onerror=alert(2)>.jpg"
QUOTE_FILE = "\"quote'&amp;.jpg"


def run_chromium(binary: str, profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout, check=True)


class DomScan(HTMLParser):
    """Cards, images, script elements and text nodes of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.scripts: list[dict[str, str | None]] = []
        self.paths: list[str] = []
        self.texts: list[str] = []
        self.event_attrs: list[tuple[str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for k, _ in attrs:
            if k.startswith("on"):
                self.event_attrs.append((tag, k))
        if tag == "section" and "card" in (a.get("class") or "").split():
            self.cards.append(a.get("data-group") or "")
        elif tag == "img":
            self.imgs.append(a)
        elif tag == "script":
            self.scripts.append(a)
        elif tag == "a" and "name" in (a.get("class") or "").split():
            self.links.append(a.get("href") or "")
        if "data-path" in a:
            self.paths.append(a["data-path"] or "")

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def dom_of(binary: str, profile: Path, page: Path) -> DomScan:
    out = run_chromium(binary, profile, "--dump-dom", page.as_uri()).stdout
    scan = DomScan()
    scan.feed(out)
    return scan


@pytest.fixture(scope="module")
def scanned(dataset, tmp_path_factory):
    """A real corpus with malicious names, scanned by ``dedupd scan``, then ``report.html`` from the store."""
    src = dataset("mixed", "--count", "60") / "images"
    root = tmp_path_factory.mktemp("report")
    imgs = root / "imgs"
    shutil.copytree(src, imgs)
    photos = sorted(p for p in imgs.iterdir() if p.suffix == ".jpg")
    (imgs / "<script>alert(1)<").mkdir()
    shutil.copy(photos[0], imgs / EVIL_DIR_NAME)
    shutil.copy(photos[1], imgs / EVIL_FILE)
    shutil.copy(photos[2], imgs / QUOTE_FILE)
    (imgs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    before = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in imgs.rglob("*") if p.is_file()}
    store, reports = root / "store", root / "reports"
    subprocess.run([sys.executable, "-m", "dedupd", "scan", str(imgs), "--store-dir", str(store),
                    "--report-dir", str(reports)], check=True, capture_output=True, timeout=300)
    from dedupd.daemon.config import load_config

    cfg = load_config(None, overrides={"store_dir": str(store), "report_dir": str(reports), "roots": [str(imgs)]})
    stats = report_from_store(cfg, str(reports / "report.html"))
    return {"root": root, "imgs": imgs, "reports": reports, "stats": stats, "before": before, "cfg": cfg}


def test_report_in_headless_chromium(scanned, tmp_path):
    binary = chromium()
    reports: Path = scanned["reports"]
    page = reports / "report.html"
    groups = json.loads((reports / "groups.json").read_text())["groups"]
    assert groups, "the corpus must produce duplicate groups"
    assert len(groups) <= PAGE_SIZE
    evil = [str(scanned["imgs"] / n) for n in (EVIL_DIR_NAME, EVIL_FILE, QUOTE_FILE)]
    in_groups = {f["path"] for g in groups for f in (g["keep"], *g["duplicates"])}
    assert set(evil) <= in_groups, "each malicious name is a copy of a photo, so it is in a group"

    shot = tmp_path / "report.png"
    run_chromium(binary, tmp_path / "profile1", f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri())
    with Image.open(shot) as im:
        assert im.size == (1400, 1000)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100, "screenshot looks blank"

    dom = dom_of(binary, tmp_path / "profile2", page)
    assert sorted(dom.cards) == sorted(g["id"] for g in groups), "one card per group"
    assert sorted(dom.paths) == sorted(in_groups), "every member of every group is shown"
    assert len(dom.imgs) >= len(in_groups) - 1  # broken.jpg is not in a group; every member has a preview
    for img in dom.imgs:
        src = img.get("src") or ""
        assert src.startswith("thumbs/") and img.get("loading") == "lazy"
        assert (reports / src).is_file(), src
    # the malicious names are text, not markup: no script elements beyond the report's own two
    for name in evil:  # the file name (emphasised) and its folder, each as text
        assert os.path.basename(name) in dom.texts and os.path.dirname(name) + "/" in dom.texts
    # every member links to its original with a file:// URL (percent-encoded: any name is a safe link)
    assert sorted(dom.links) == sorted(Path(p).as_uri() for p in in_groups)
    # why each kept copy was kept
    assert sum(1 for t in dom.texts if t.startswith("kept: ")) == len(groups)
    assert len(dom.scripts) == 2
    assert all(s.get("src") is None for s in dom.scripts)
    assert dom.event_attrs == [], "no injected event handler attributes"
    # no external resources
    raw = page.read_text()
    assert "http://" not in raw and "https://" not in raw


def test_report_never_touches_originals_and_caches_thumbnails(scanned):
    after = {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in scanned["imgs"].rglob("*") if p.is_file()}
    assert after == scanned["before"]
    thumbs = scanned["reports"] / "thumbs"
    names = sorted(p.name for p in thumbs.glob("*.jpg"))
    assert names and all(len(n) == len("x" * 32 + ".jpg") for n in names)
    mtimes = {p: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    again = report_from_store(scanned["cfg"], str(scanned["reports"] / "report.html"))
    assert again["groups"] == scanned["stats"]["groups"]
    # the counts it returns (and `dedupd report` prints) are the page's, not zero
    groups = json.loads((scanned["reports"] / "groups.json").read_text())["groups"]
    assert again["groups"] == len(groups) > 0
    assert again["thumbnails"] >= len(names) > 0  # members shown (identical copies share one file)
    assert {p: p.stat().st_mtime_ns for p in thumbs.iterdir()} == mtimes, "thumbnails are generated once"
    with Image.open(thumbs / names[0]) as im:
        assert max(im.size) <= 160


def test_escaping_in_raw_html():
    evil = "/x/<script>alert(1)</script>.jpg"
    groups = [{"id": "g<1>", "size": 2, "keep": {"path": "/x/a.jpg", "width": 1, "height": 1, "bytes": 10, "mtime": 1.0},
               "duplicates": [{"path": evil, "width": 1, "height": 1, "bytes": 7, "mtime": 2.0, "direct": True,
                               "method": "</script><script>alert(3)</script>", "distance": 0}]}]
    page = build_html(groups, title="<b>t</b>", thumbs={evil: "thumbs/\"><script>.jpg"})
    assert "<script>alert" not in page and "</script><script>" not in page
    assert "<b>t</b>" not in page and "&lt;b&gt;t&lt;/b&gt;" in page
    assert page.count("<script") == 2 and page.count("</script>") == 2


def test_summary_and_quarantine_states():
    groups = [{"id": "a", "size": 3, "keep": {"path": "/k", "bytes": 100},
               "duplicates": [{"path": "/d1", "bytes": 40, "direct": True}, {"path": "/d2", "bytes": 5, "direct": False,
                                                                              "via": "/d1"}]}]
    assert summarize(groups) == {"files": 3, "groups": 1, "freeable_bytes": 40, "weak": 0}
    entries = [{"origin": "/d1", "dest": "/q/d1", "keeper": "/k", "state": "moved"},
               {"origin": "/d1", "dest": "/q/d1", "keeper": "/k", "state": "restored"},
               {"origin": "/gone", "dest": "/q/gone", "keeper": "/k", "state": "moved"},
               {"origin": "/alone", "dest": "/q/alone", "keeper": "/k2", "state": "moved"},
               {"origin": "/failed", "dest": "/q/failed", "keeper": "/k", "state": "failed"}]
    out = attach_quarantine(groups, entries)
    assert groups[0]["duplicates"][0].get("state") is None, "input not modified"
    states = {f["path"]: f["state"] for g in out for f in (g["keep"], *g["duplicates"])}
    assert states == {"/k": "kept", "/d1": "restored", "/d2": "duplicate", "/gone": "quarantined",
                      "/k2": "kept", "/alone": "quarantined"}
    assert summarize(out)["freeable_bytes"] == 0  # restored and quarantined files are not counted again
    page = build_html(out)
    assert '"quarantined"' in page and '"restored"' in page


def test_thumbnail_placeholder_on_decode_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    cache = tmp_path / "cache"
    assert ensure_thumbnail(str(bad), b"\x01" * 16, str(cache)) is None
    assert (cache / ("01" * 16 + ".err")).exists()
    good = tmp_path / "good.png"
    Image.new("RGBA", (800, 400), (10, 200, 30, 128)).save(good)
    names = ensure_thumbnails([(str(good), b"\x02" * 16), (str(bad), b"\x01" * 16)], str(cache))
    assert names == {str(good): "02" * 16 + ".jpg", str(bad): None}
    with Image.open(cache / names[str(good)]) as im:
        assert im.size == (160, 80) and im.format == "JPEG"
    page = build_html([{"id": "x", "size": 2, "keep": {"path": str(good)}, "duplicates": [{"path": str(bad)}]}],
                      thumbs={str(good): "thumbs/" + names[str(good)], str(bad): None})
    assert "no preview" in page


def synthetic_groups(n: int) -> list[dict]:
    groups = []
    for i in range(n):
        folder = f"/photos/{2000 + i % 25}/{i % 12 + 1:02d}"
        keep = {"path": f"{folder}/IMG_{i:05d}.jpg", "width": 4000, "height": 3000, "bytes": 3_000_000 + i,
                "mtime": 1.6e9 + i}
        dups = [{"path": f"/backup{folder}/IMG_{i:05d} ({k}).jpg", "width": 4000, "height": 3000,
                 "bytes": 2_000_000 + k, "mtime": 1.6e9 + i + k, "direct": True,
                 "method": ("exact", "phash", "cnn")[k % 3], "distance": k}
                for k in range(1 + i % 3)]
        groups.append({"id": f"{i:012x}", "size": 1 + len(dups), "keep": keep, "duplicates": dups})
    return groups


def test_10k_groups_build_fast_and_paginate(tmp_path):
    groups = synthetic_groups(10_000)
    thumbs = {f["path"]: f"thumbs/{hash(f['path']) & 0xffffffff:032x}.jpg" for g in groups
              for f in (g["keep"], *g["duplicates"])}
    t0 = time.perf_counter()
    page = build_html(groups, thumbs=thumbs)
    elapsed = time.perf_counter() - t0
    size = len(page.encode())
    print(f"\n10k groups: build {elapsed:.3f} s, {size / 1e6:.2f} MB")
    assert elapsed < 5
    assert size < 12_000_000
    assert page.count('class="card') == 0, "cards are rendered client-side from the JSON blob, page by page"
    out = tmp_path / "report.html"
    out.write_text(page)
    if not (os.path.exists("/usr/bin/chromium") or shutil.which("chromium")):
        return  # the browser half is covered (and required under CI) by test_report_in_headless_chromium
    t0 = time.perf_counter()
    dom = dom_of(chromium(), tmp_path / "profile", out)
    load = time.perf_counter() - t0
    print(f"10k groups: chromium load + dump {load:.2f} s")
    assert len(dom.cards) == PAGE_SIZE, "only the first page of cards is in the DOM"
    assert dom.cards[0] in {g["id"] for g in groups if g["size"] == 4}, "largest groups first"
    assert all(img.get("loading") == "lazy" for img in dom.imgs)
    assert load < 20


def test_keyboard_filter_sort_in_chromium(tmp_path):
    """Keyboard navigation, paging, folder/method filters and the sort toggle, driven by synthetic events."""
    binary = chromium()
    groups = synthetic_groups(450)
    page = build_html(groups, page_size=200)
    probe = """<script>
function key(k){document.dispatchEvent(new KeyboardEvent("keydown",{key:k,bubbles:true}));}
function cur(){var c=document.querySelector(".card.current");return c?c.getAttribute("data-group"):"none";}
function cards(){return document.querySelectorAll(".card").length;}
var out={};
key("j");key("j");out.afterjj=cur();key("k");out.afterk=cur();
key("n");out.page2=document.getElementById("pageinfo").textContent;out.page2first=cur();
key("p");
var sel=document.getElementById("sort");sel.value="recent";sel.dispatchEvent(new Event("change"));
out.recentfirst=document.querySelector(".card").getAttribute("data-group");
var m=document.getElementById("method");m.value="cnn";m.dispatchEvent(new Event("change"));out.cnn=document.getElementById("count").textContent;
m.value="";m.dispatchEvent(new Event("change"));
var f=document.getElementById("folder");f.value="/photos/2003/";f.dispatchEvent(new Event("input"));
setTimeout(function(){out.folder=document.getElementById("count").textContent;out.foldercards=cards();
  var pre=document.createElement("pre");pre.id="probe";pre.textContent=JSON.stringify(out);document.body.appendChild(pre);},400);
</script></body>"""
    out = tmp_path / "report.html"
    out.write_text(page.replace("</body>", probe))
    html_out = run_chromium(binary, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom",
                            out.as_uri()).stdout
    m = re.search(r'<pre id="probe">(.*?)</pre>', html_out)
    assert m, "probe did not run"
    res = json.loads(html.unescape(m.group(1)))
    by_size = sorted(groups, key=lambda g: (-g["size"], -max(f["mtime"] for f in (g["keep"], *g["duplicates"]))))
    ids = [g["id"] for g in by_size]
    assert res["afterjj"] == ids[2] and res["afterk"] == ids[1]  # the first card is current on load
    assert res["page2"] == "page 2 of 3" and res["page2first"] == ids[200]
    newest = max(groups, key=lambda g: max(f["mtime"] for f in (g["keep"], *g["duplicates"])))
    assert res["recentfirst"] == newest["id"]
    n_cnn = sum(1 for g in groups if any(d["method"] == "cnn" for d in g["duplicates"]))
    assert res["cnn"] == f"{n_cnn} of 450 groups"
    n_folder = sum(1 for g in groups if g["keep"]["path"].startswith("/photos/2003/"))
    assert res["folder"] == f"{n_folder} of 450 groups" and res["foldercards"] == n_folder


def test_links_reasons_sort_and_width_in_chromium(tmp_path):
    """file:// links (to the quarantine copy once moved), the keep reason, sort by space freed, and cards
    side by side on a wide window."""
    binary = chromium()
    groups = [
        {"id": "small", "size": 2, "keep_reason": "most pixels (12 vs 6)",
         "keep": {"path": "/p/a b#1.jpg", "bytes": 500, "mtime": 3.0},
         "duplicates": [{"path": "/p/a-copy.jpg", "bytes": 100, "mtime": 9.0, "direct": True, "method": "exact"}]},
        {"id": "big", "size": 2, "keep": {"path": "/p/c.jpg", "bytes": 900, "mtime": 1.0},
         "duplicates": [{"path": "/p/c-copy.jpg", "bytes": 800, "mtime": 2.0, "direct": True, "method": "exact"}]},
        {"id": "moved", "size": 3, "keep": {"path": "/p/d.jpg", "bytes": 10, "mtime": 1.0},
         "duplicates": [{"path": "/p/d1.jpg", "bytes": 10, "direct": True, "state": "quarantined",
                         "dest": "/q/p/d1.jpg"},
                        {"path": "/p/d2.jpg", "bytes": 5, "direct": False, "via": "/p/d1.jpg"}]},
    ]
    probe = """<script>
setTimeout(function(){
var out={order:[...document.querySelectorAll(".card")].map(c=>c.getAttribute("data-group")),
  links:[...document.querySelectorAll("a.name")].map(a=>[a.textContent,a.getAttribute("href")]),
  why:[...document.querySelectorAll(".why")].map(w=>w.textContent),
  tops:[...document.querySelectorAll(".card")].map(c=>Math.round(c.getBoundingClientRect().top))};
var sel=document.getElementById("sort");sel.value="size";sel.dispatchEvent(new Event("change"));
out.bysize=[...document.querySelectorAll(".card")].map(c=>c.getAttribute("data-group"));
var pre=document.createElement("pre");pre.id="probe";pre.textContent=JSON.stringify(out);document.body.appendChild(pre);},100);
</script></body>"""
    out = tmp_path / "report.html"
    out.write_text(build_html(groups).replace("</body>", probe))
    dumped = run_chromium(binary, tmp_path / "profile", "--window-size=1400,1000", "--virtual-time-budget=3000",
                          "--dump-dom", out.as_uri()).stdout
    m = re.search(r'<pre id="probe">(.*?)</pre>', dumped)
    assert m, "probe did not run"
    res = json.loads(html.unescape(m.group(1)))
    assert res["order"] == ["big", "small", "moved"], "most space freed first (a quarantined copy frees nothing more)"
    assert res["bysize"][0] == "moved"
    links = dict(res["links"])
    assert links["a b#1.jpg"] == "file:///p/a%20b%231.jpg"
    assert links["d1.jpg"] == "file:///q/p/d1.jpg", "a quarantined file links to where it is now"
    assert res["why"] == ["kept: most pixels (12 vs 6)"]
    assert res["tops"][0] == res["tops"][1], "small groups sit side by side on a wide window"


def test_missing_chromium_fails_under_ci(monkeypatch):
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(browser, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        chromium()
    monkeypatch.setattr(browser, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception):
        chromium()


def test_stale_thumbnails_pruned(scanned, tmp_path):
    thumbs = scanned["reports"] / "thumbs"
    (thumbs / ("ab" * 16 + ".jpg")).write_bytes(b"stale")
    report_from_store(scanned["cfg"], str(scanned["reports"] / "report.html"))
    assert not (thumbs / ("ab" * 16 + ".jpg")).exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / ("cd" * 16 + ".jpg")).write_bytes(b"other")
    out = tmp_path / "r" / "report.html"
    report_from_store(scanned["cfg"], str(out), thumbs_dir=str(shared))
    assert (shared / ("cd" * 16 + ".jpg")).exists(), "a thumbs_dir passed in is never pruned"
    assert "../shared/" in out.read_text()


def _one_shot_page(groups, **kw):
    """The page as one string, the data placed by one ``json.dumps`` + ``replace`` (how it was built
    before the pieces): the reference the piecewise page must equal byte for byte."""
    from dedupd.reports import html as report_html

    pieces = report_html.script_json_pieces
    try:
        report_html.script_json_pieces = lambda items, step=0: iter([report_html._script_json(list(items))])
        return report_html.build_html(groups, **kw)
    finally:
        report_html.script_json_pieces = pieces


@pytest.mark.parametrize("step", [1, 2, 3, 64])
def test_script_json_pieces_equal_one_dumps(step):
    from dedupd.reports.html import _script_json, script_json_pieces

    odd = ["</script><script>&amp;", "line\u2028sep\u2029", "é ü 漢字 😀", "surrogate \udcff", 'q"\\', None,
           1.5, float("inf"), -0.0, True, {"k": [1, "<&>"]}, [], ""]
    for items in ([], [odd], odd, [[x, k] for k, x in enumerate(odd * 7)]):
        assert "".join(script_json_pieces(items, step)) == _script_json(items)
        assert all(len(piece) > 0 for piece in script_json_pieces(items, step))
    assert len(list(script_json_pieces(list(range(1000)), 64))) == 16  # no piece of the whole list


def test_html_pieces_equal_the_one_shot_page(tmp_path, monkeypatch):
    from dedupd.reports import html as report_html

    groups = synthetic_groups(300)
    groups[7]["duplicates"][0]["path"] = "/x/</script><script>alert(1)</script>\u2028.jpg"
    thumbs = {f["path"]: f"thumbs/{k}.jpg" for k, g in enumerate(groups) for f in (g["keep"], *g["duplicates"])}
    kw = dict(thumbs=thumbs, generated_at=1.7e9, files_indexed=12345, preview=True, title="t %%PAGE%% <b>")
    want = _one_shot_page(groups, **kw)
    pieces = list(report_html.html_pieces(groups, **kw))
    assert "".join(pieces) == want == build_html(groups, **kw)
    assert len(pieces) > 300 // report_html.JSON_STEP and max(map(len, pieces)) < len(want) / 3
    # the placeholder inside the title is replaced as the chain of replaces did; the data once
    assert "".join(report_html.html_pieces([], title="%%DATA%%")) == _one_shot_page([], title="%%DATA%%")


def test_report_file_written_in_pieces_is_the_page(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from dedupd.reports import html as report_html
    from dedupd.reports import thumbnails

    groups = synthetic_groups(200)
    monkeypatch.setattr(thumbnails, "ensure_thumbnails", lambda items, *a, **k: {})
    written: list[int] = []
    real = report_html.write_atomic

    def spy(path, data, mode, **kw):
        data = list(data) if not isinstance(data, bytes) else [data]
        written.extend(map(len, data))
        real(path, data, mode, **kw)

    monkeypatch.setattr(report_html, "write_atomic", spy)
    index = SimpleNamespace(files={})
    config = SimpleNamespace(keep=(), max_pixels=None, report_mode=0o644, dry_run=False)
    out = tmp_path / "report.html"
    got = report_html.write_html_report(str(out), index, config, groups=groups, thumbs_dir=str(tmp_path / "t"))
    page = out.read_bytes()
    assert got["bytes"] == len(page) == sum(written) and len(written) > 3
    want = build_html(report_html.attach_quarantine(groups, []), files_indexed=0,
                      thumbs={f["path"]: None for g in groups for f in (g["keep"], *g["duplicates"])})
    strip = lambda b: re.sub(rb"generated [0-9: -]+<", b"<", b)  # noqa: E731 - the clock moved on
    assert strip(page) == strip(want.encode())
