"""A self-contained HTML duplicate report: ``report.html`` plus a ``thumbs/`` folder beside it.

:func:`build_html` is pure: groups (``build_groups``'s format) + per-path states + per-path
thumbnail URLs → one HTML string. No external resources: inline CSS and JS only. The groups are
embedded as one JSON blob (escaped for a ``<script>`` context) and rendered client-side in pages
of ``page_size`` cards with DOM APIs (``textContent``/``setAttribute``, never ``innerHTML``), so a
file named ``<script>...`` is shown as text; everything rendered on the server goes through
``html.escape``. 10,000 groups: a few MB of JSON, only the first page of cards is in the DOM, and
thumbnails have ``loading="lazy"``.

:func:`write_html_report` is the glue for the daemon, ``dedupd scan`` and ``dedupd report``: it
builds groups from a :class:`MatchIndex`, reads states from the store's quarantine manifest,
generates missing thumbnails into ``report_dir/thumbs`` and writes ``report.html`` atomically.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dedupd.daemon.slices import drop_in_steps
from dedupd.reports.atomic import write_atomic
from dedupd.units import human_bytes

PAGE_SIZE = 200
THUMBS_DIR = "thumbs"
#: groups JSON-encoded per call when the page is built in pieces (~0.1 ms of held GIL each)
JSON_STEP = 64


def _script_safe(text: str) -> str:
    """``text`` (JSON) safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` or
    line separators (each escaped on its own: a piece of a text is escaped as the whole would be)."""
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _script_json(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (one string: see :func:`script_json_pieces`)."""
    return _script_safe(json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def script_json_pieces(items: Sequence[Any], step: int = JSON_STEP) -> Iterator[str]:
    """``_script_json(list(items))`` in pieces of ``step`` items: the same text, but no single
    ``json.dumps`` / ``str.replace`` over the whole list (at a million files, the report's groups
    are tens of MB: one call held the GIL for a fraction of a second, stalling the socket)."""
    if not items:
        yield "[]"
        return
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    for k in range(0, len(items), step):
        body = dumps(list(items[k:k + step]))[1:-1]  # the slice's items as the whole list has them
        yield _script_safe(("[" if k == 0 else ",") + body + ("]" if k + step >= len(items) else ""))



def file_link(path: str) -> str | None:
    """``file://`` URL of an absolute path (percent-encoded, so any name is a safe link), else None."""
    return Path(path).as_uri() if path.startswith("/") else None


def _member(f: Mapping[str, Any], state: str, thumb: str | None, preview: bool = False) -> list[Any]:
    """Compact row: [path, w, h, bytes, mtime, state, thumb, method, score, via, direct, note, link,
    band, evidence].

    ``link``: a ``file://`` URL of where the file is now (its quarantine copy once moved); ``band``:
    the cascade's ``strong``/``weak``; ``evidence``: every method's score, one line.
    """
    score = f.get("distance", f.get("similarity"))
    where = str(f.get("dest") if state == "quarantined" and f.get("dest") else f.get("path", ""))
    return [f.get("path", ""), f.get("width"), f.get("height"), f.get("bytes"), f.get("mtime"), state, thumb,
            f.get("method"), score, f.get("via"), bool(f.get("direct", False)), f.get("note") or decision_note(f, preview),
            file_link(where), f.get("band"), _evidence_line(f)]


def decision_note(f: Mapping[str, Any], preview: bool = False) -> str | None:
    """Why a member is (not) moved, from ``build_groups``' marks; None when nothing to say.
    ``preview`` (a dry run): say which members quarantine would move."""
    if f.get("distinct"):
        return "not a duplicate of the kept copy (your decision): never moved"
    if f.get("protected"):
        return f"never moved: {f['protected']}"
    if preview and f.get("move") and f.get("state", "duplicate") == "duplicate":
        return "quarantine would move this file"
    return None


def keep_reasons(groups: Sequence[dict[str, Any]], index: Any, rules: Sequence[Any]) -> None:
    """Set ``keep_reason`` on each group whose kept copy and at least one other member are indexed
    (why that copy is the one kept, from :func:`dedupd.core.keep.keep_reason`); others are left alone."""
    from dedupd.core.keep import Candidate, keep_reason
    from dedupd.reports.groups import keep_rules

    vocab = keep_rules(rules)
    for g in groups:
        if g.get("keep_reason"):
            continue  # set by whoever decided the group (e.g. a user's choice)
        facts = []
        for f in (g["keep"], *g.get("duplicates", ())):
            info = index.files.get(f["path"])
            if info is not None:
                facts.append(Candidate(f["path"], info.width * info.height, info.size, info.mtime_ns))
        if len(facts) >= 2 and g["keep"]["path"] in index.files:
            g["keep_reason"] = keep_reason(g["keep"]["path"], facts, vocab)


def freed_by(group: Mapping[str, Any]) -> int:
    """Bytes quarantine would free in ``group``: its members still in place that it would move
    (``move`` when the group says, else the direct duplicates that are not weak matches)."""
    return sum(int(d.get("bytes") or 0) for d in group.get("duplicates", ())
               if d.get("move", d.get("direct") and d.get("band") != "weak")
               and d.get("state", "duplicate") == "duplicate")


def _evidence_line(f: Mapping[str, Any]) -> str | None:
    """``"phash 3 (c90) · dhash 12 · cnn 0.950"``: every method's score and the variant that matched."""
    scores = f.get("scores") or {}
    if not scores or f.get("method") == "exact":
        return None
    variants = f.get("variants") or {}
    parts = []
    for m, v in scores.items():
        val = f"{float(v):.3f}" if m == "cnn" else f"{int(v)}"
        parts.append(f"{m} {val}" + (f" ({variants[m]})" if m in variants else ""))
    return " · ".join(parts)


def summarize(groups: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """files (members of all groups), groups, and bytes quarantine would free (the members it
    would move: direct duplicates, less those the user's decisions or reference roots protect)."""
    return {
        "files": sum(1 + len(g.get("duplicates", ())) for g in groups),
        "groups": len(groups),
        "freeable_bytes": sum(freed_by(g) for g in groups),
        "weak": sum(1 for g in groups for d in g.get("duplicates", ()) if d.get("band") == "weak"),
    }


def attach_quarantine(groups: list[dict[str, Any]], entries: Iterable[Any]) -> list[dict[str, Any]]:
    """Add the manifest's states to ``groups`` (a new list; input groups are not modified).

    Per origin the latest entry counts. A duplicate still in a group whose last entry is
    ``restored`` is marked restored; an origin that was moved (``moved``) is no longer indexed and
    is added to its keeper's group as a ``quarantined`` member (a group of its own if the keeper
    has no group left). ``entries`` are QuarantineEntry-like objects or dicts.
    """
    latest: dict[str, Any] = {}
    for e in entries:
        get = e.get if isinstance(e, dict) else (lambda k, e=e: getattr(e, k, None))
        latest[str(get("origin"))] = {k: get(k) for k in ("origin", "dest", "keeper", "state", "reason", "updated_at",
                                                     "digest")}
    out = []
    in_groups: set[str] = set()
    by_keeper: dict[str, dict[str, Any]] = {}
    for g in groups:
        g = {**g, "keep": {**g["keep"], "state": "kept"}, "duplicates": [dict(d) for d in g.get("duplicates", ())]}
        in_groups.add(g["keep"]["path"])
        for d in g["duplicates"]:
            in_groups.add(d["path"])
            e = latest.get(d["path"])
            d["state"] = "restored" if e is not None and e["state"] == "restored" else "duplicate"
        by_keeper[g["keep"]["path"]] = g
        out.append(g)
    for origin, e in latest.items():
        if e["state"] != "moved" or origin in in_groups:
            continue
        keeper_group = by_keeper.get(e["keeper"])
        if keeper_group is None:
            gid = hashlib.blake2b(("q\0" + e["keeper"]).encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
            keeper_group = by_keeper[e["keeper"]] = {"id": gid, "size": 1, "duplicates": [],
                                                     "keep": {"path": e["keeper"], "state": "kept"}}
            out.append(keeper_group)
        g = keeper_group
        g["duplicates"].append({"path": origin, "dest": e["dest"], "state": "quarantined", "direct": True,
                                "note": f"moved to {e['dest']}" + (f" ({e['reason']})" if e.get("reason") else ""),
                                "digest": e.get("digest")})
        g["size"] = 1 + len(g["duplicates"])
    return out


def build_html(groups: Sequence[Mapping[str, Any]], *, thumbs: Mapping[str, str | None] | None = None,
               generated_at: float | None = None, title: str = "dedupd duplicate report",
               page_size: int = PAGE_SIZE, files_indexed: int | None = None, preview: bool = False) -> str:
    """One self-contained HTML page for ``groups`` (the pieces of :func:`html_pieces`, joined)."""
    return "".join(html_pieces(groups, thumbs=thumbs, generated_at=generated_at, title=title, page_size=page_size,
                               files_indexed=files_indexed, preview=preview))


def html_pieces(groups: Sequence[Mapping[str, Any]], *, thumbs: Mapping[str, str | None] | None = None,
                generated_at: float | None = None, title: str = "dedupd duplicate report",
                page_size: int = PAGE_SIZE, files_indexed: int | None = None, preview: bool = False) -> Iterator[str]:
    """One self-contained HTML page for ``groups``, in pieces of at most :data:`JSON_STEP` groups
    (see :func:`script_json_pieces`): what is written at a million files without one long
    ``json.dumps``, ``replace`` or ``encode`` over the whole page.

    Args:
        groups: ``build_groups`` output, optionally with ``state`` on members (see
            :func:`attach_quarantine`; default ``kept`` / ``duplicate``).
        thumbs: ``{path: thumbnail URL relative to the page}``; missing/None → placeholder.
        files_indexed: shown in the summary if given (all indexed files, not only duplicates).
        preview: a dry run: members quarantine would move are marked so.
    """
    thumbs = thumbs or {}
    data = []
    for g in groups:
        keep = g["keep"]
        members = [_member(keep, keep.get("state", "kept"), thumbs.get(keep.get("path", "")))]
        for d in g.get("duplicates", ()):
            members.append(_member(d, d.get("state", "duplicate"), thumbs.get(d.get("path", "")), preview))
        data.append([str(g.get("id", "")), members, g.get("keep_reason"), freed_by(g)])
    s = summarize(groups)
    methods = sorted({str(d.get("method")) for g in groups for d in g.get("duplicates", ()) if d.get("method")})
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(generated_at if generated_at is not None else time.time()))
    e = html.escape
    summary = [f"<b>{s['groups']:,}</b> groups", f"<b>{s['files']:,}</b> files in groups",
               f"<b>{e(human_bytes(s['freeable_bytes']))}</b> quarantine would free"]
    if s["weak"]:
        summary.append(f"<b>{s['weak']:,}</b> weak matches to review (never moved)")
    if files_indexed is not None:
        summary.insert(0, f"<b>{files_indexed:,}</b> files indexed")
    if preview:
        marked = sum(1 for g in groups for d in g.get("duplicates", ())
                     if d.get("move") and d.get("state", "duplicate") == "duplicate")
        summary.append(f"dry run: <b>{marked:,}</b> files marked to move, nothing moved")
    method_opts = "".join(f'<option value="{e(m)}">{e(m)}</option>' for m in methods)
    page = (_TEMPLATE
            .replace("%%TITLE%%", e(title))
            .replace("%%WHEN%%", e(when))
            .replace("%%SUMMARY%%", " · ".join(summary))
            .replace("%%METHODS%%", method_opts)
            .replace("%%PAGE%%", str(int(page_size))))
    # the data goes in last, wherever the placeholder is (as a last ``replace`` would put it)
    texts = page.split("%%DATA%%")
    yield texts[0]
    for text in texts[1:]:
        yield from script_json_pieces(data)
        yield text
    drop_in_steps(data)  # a list per group and member: not freed in one C call on return


def write_html_report(out_path: str, index: Any, config: Any, store: Any = None, *,
                      groups: list[dict[str, Any]] | None = None, thumbs_dir: str | None = None,
                      on_thumbnails: Any = None, pause: Callable[[], None] | None = None,
                      thumbnails: Callable[..., dict[str, str | None]] | None = None,
                      tmp_prefix: str | None = None) -> dict[str, Any]:
    """Build groups (unless given), thumbnails and ``out_path`` (atomically). Returns counts.

    Thumbnails go to ``thumbs_dir`` (default ``<dir of out_path>/thumbs``), named by content
    digest, so each content is decoded once across reports; the page links them relatively.
    With ``on_thumbnails`` (a callable) missing thumbnails are made in the background (see
    :func:`~dedupd.reports.thumbnails.ensure_thumbnails`) and the page shows placeholders until then.
    ``pause`` is called between steps and pieces of the page (the daemon lets a due ``groups.json``
    write go first there). ``thumbnails`` replaces :func:`~dedupd.reports.thumbnails.ensure_thumbnails`
    (the report child's lookup of cached ones: :mod:`dedupd.reports.offline`); ``tmp_prefix``
    names the page's temp file.
    """
    pause = pause or (lambda: None)
    from dedupd.reports.groups import build_groups
    from dedupd.reports.thumbnails import ensure_thumbnails

    t0 = time.monotonic()
    out_dir = os.path.dirname(os.path.abspath(out_path))
    prune = thumbs_dir is None  # only our own folder: a shared cache passed in is never pruned
    thumbs_dir = thumbs_dir or os.path.join(out_dir, THUMBS_DIR)
    if groups is None:
        groups = build_groups(index, config.keep, store.review() if store is not None else None, config)
    entries = list(store.iter_quarantine()) if store is not None else []
    groups = attach_quarantine(groups, entries)
    pause()
    for g in groups:  # a keeper whose duplicates are all quarantined: its group comes from the manifest
        if "bytes" not in g["keep"] and g["keep"]["path"] in index.files:
            info = index.files[g["keep"]["path"]]
            g["keep"].update(width=info.width, height=info.height, bytes=info.size, mtime=round(info.mtime_ns / 1e9, 3))
    items = []
    for g in groups:
        for f in (g["keep"], *g["duplicates"]):
            info = index.files.get(f["path"])
            if info is not None:
                items.append((f["path"], info.digest))
            elif f.get("state") == "quarantined" and f.get("digest") and f.get("dest") and os.path.exists(f["dest"]):
                items.append((f["dest"], f["digest"]))
    pause()
    names = (thumbnails or ensure_thumbnails)(items, thumbs_dir, max_pixels=config.max_pixels,
                                              mode=config.report_mode, on_made=on_thumbnails)
    pause()
    if prune:  # thumbnails of contents no longer in any group
        digests = {d.hex() if isinstance(d, bytes) else d for _, d in items}
        keep = {h + ext for h in digests for ext in (".jpg", ".err")}
        for entry in os.scandir(thumbs_dir) if os.path.isdir(thumbs_dir) else ():
            if entry.name not in keep and entry.name.endswith((".jpg", ".err")) and entry.is_file():
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
    rel = os.path.relpath(thumbs_dir, out_dir).replace(os.sep, "/")
    thumbs: dict[str, str | None] = {}
    for g in groups:
        for f in (g["keep"], *g["duplicates"]):
            name = names.get(f["path"]) or (names.get(f["dest"]) if f.get("dest") else None)
            thumbs[f["path"]] = f"{rel}/{name}" if name else None
    for g in groups:  # not part of the page data
        for f in g["duplicates"]:
            f.pop("digest", None)
    pause()
    keep_reasons(groups, index, config.keep)
    pause()
    size = 0

    def encoded() -> Iterator[bytes]:  # piece by piece: no encode of the whole page (tens of MB at 1M files)
        nonlocal size
        for piece in html_pieces(groups, thumbs=thumbs, files_indexed=len(index.files),
                                 preview=bool(getattr(config, "dry_run", False))):
            raw = piece.encode("utf-8", "surrogateescape")
            size += len(raw)
            yield raw
            pause()

    write_atomic(out_path, encoded(), config.report_mode, prefix=tmp_prefix)
    counts = {"groups": len(groups), "thumbnails": sum(1 for v in names.values() if v)}  # before the drops empty them
    for part in (groups, thumbs, items, names):
        drop_in_steps(part)  # (see html_pieces)
    return {**counts, "bytes": size, "seconds": round(time.monotonic() - t0, 3)}


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>%%TITLE%%</title>
<style>
:root{--bg:#f5f6f8;--card:#fff;--ink:#1d2330;--mute:#6b7385;--line:#dde1e8;--acc:#2d6cdf}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{position:sticky;top:0;z-index:2;background:#1d2330;color:#fff;padding:10px 18px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
header h1{font-size:17px;margin:0 12px 0 0;display:inline}header .when{color:#aab3c5;font-size:12px}
#summary{margin:6px 0;font-size:14px}#summary b{color:#ffd36b}
#controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;font-size:13px}
#controls input,#controls select,#controls button{font:inherit;padding:3px 7px;border-radius:4px;border:1px solid #4b556a;background:#2b3344;color:#fff}
#controls input{width:280px}#controls button{cursor:pointer}#controls .hint{color:#aab3c5}
main{padding:14px 18px;display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:14px;align-items:start}
main>.empty{grid-column:1/-1}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;margin:0;padding:10px 12px;scroll-margin-top:120px;min-width:0}
.card.wide{grid-column:span 2}.card.full{grid-column:1/-1}
.card .why{font-weight:400;color:#3a7d52;margin-left:6px}
.card.current{outline:3px solid var(--acc);outline-offset:1px}
.card h2{font-size:13px;margin:0 0 8px;color:var(--mute);font-weight:600}
.members{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:10px}
.m{border:1px solid var(--line);border-radius:6px;padding:6px;background:#fafbfc;min-width:0}
.m.kept{border-color:#3a9d5d;background:#f1faf4}.m.quarantined{opacity:.75;border-style:dashed}
.m .ph,.m img{display:block;width:100%;height:160px;object-fit:contain;background:#e9ecf1;border-radius:4px}
.m .ph{display:flex;align-items:center;justify-content:center;color:var(--mute);font-size:12px}
.m .name{font-weight:700;font-size:13.5px;word-break:break-all;margin:5px 0 0;display:block;color:inherit}
.m a.name{text-decoration:none}.m a.name:hover{text-decoration:underline;color:var(--acc)}
.m .path{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px;color:var(--mute);word-break:break-all;margin:0 0 3px}
.m .meta{font-size:12px;color:var(--mute);overflow-wrap:anywhere}
.badge{display:inline-block;font-size:11px;font-weight:600;border-radius:3px;padding:0 5px;margin-right:4px;color:#fff;background:#7a8294}
.badge.kept{background:#3a9d5d}.badge.duplicate{background:#c9822b}.badge.quarantined{background:#b33c3c}.badge.restored{background:#2d6cdf}
.m .meta.weak{color:#a05a00;font-weight:600}
#pager{display:flex;gap:8px;align-items:center;justify-content:center;padding:4px 0 24px}
#pager button{font:inherit;padding:4px 12px;cursor:pointer}
.empty{color:var(--mute);padding:30px;text-align:center}
</style></head>
<body>
<header>
<h1>%%TITLE%%</h1><span class="when">generated %%WHEN%%</span>
<div id="summary">%%SUMMARY%%</div>
<div id="controls">
<label>Folder <input id="folder" list="folders" placeholder="path prefix or part of a path"></label>
<datalist id="folders"></datalist>
<label>Method <select id="method"><option value="">any</option>%%METHODS%%</select></label>
<label>Sort <select id="sort"><option value="freed">most space freed first</option><option value="size">largest groups first</option><option value="recent">most recent first</option></select></label>
<span id="count"></span>
<span class="hint">j/k or ↓/↑: next/previous group · n/p: next/previous page · /: folder filter</span>
</div>
</header>
<noscript><p class="empty">This report needs JavaScript to display the groups.</p></noscript>
<main id="cards"></main>
<nav id="pager"><button id="prev" type="button">← previous</button><span id="pageinfo"></span><button id="next" type="button">next →</button></nav>
<script type="application/json" id="data">%%DATA%%</script>
<script>
(function(){
"use strict";
var PAGE=%%PAGE%%;
var DATA=JSON.parse(document.getElementById("data").textContent);
// group: [id,members,keep reason,bytes freed]; member: [path,w,h,bytes,mtime,state,thumb,method,score,via,direct,note,link]
var groups=DATA.map(function(g){
  var recent=0,folders={},methods={};
  g[1].forEach(function(m){if(m[4]&&m[4]>recent)recent=m[4];folders[dirname(m[0])]=1;if(m[7])methods[m[7]]=1;});
  return {id:g[0],members:g[1],why:g[2],recent:recent,freed:g[3]||0,folders:Object.keys(folders),methods:methods,hay:g[1].map(function(m){return m[0].toLowerCase();}).join("\n")};
});
function dirname(p){var i=p.lastIndexOf("/");return i>0?p.slice(0,i):"/";}
function human(n){if(n==null)return "?";var u=["B","KiB","MiB","GiB","TiB"],i=0;while(n>=1024&&i<4){n/=1024;i++;}return (i?n.toFixed(1):n)+" "+u[i];}
function date(t){if(!t)return "";var d=new Date(t*1000);function z(x){return (x<10?"0":"")+x;}return d.getFullYear()+"-"+z(d.getMonth()+1)+"-"+z(d.getDate())+" "+z(d.getHours())+":"+z(d.getMinutes());}
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!=null)e.textContent=text;return e;}
(function(){var all={};groups.forEach(function(g){g.folders.forEach(function(f){all[f]=1;});});
  var dl=document.getElementById("folders"),keys=Object.keys(all).sort().slice(0,2000);
  keys.forEach(function(f){var o=document.createElement("option");o.value=f;dl.appendChild(o);});})();
var $folder=document.getElementById("folder"),$method=document.getElementById("method"),$sort=document.getElementById("sort");
var $cards=document.getElementById("cards"),$count=document.getElementById("count"),$info=document.getElementById("pageinfo");
var view=[],page=0,cur=-1;
function apply(){
  var f=$folder.value.trim().toLowerCase(),m=$method.value;
  view=groups.filter(function(g){return (!f||g.hay.indexOf(f)>=0)&&(!m||g.methods[m]);});
  if($sort.value==="recent")view.sort(function(a,b){return b.recent-a.recent||b.members.length-a.members.length;});
  else if($sort.value==="freed")view.sort(function(a,b){return b.freed-a.freed||b.members.length-a.members.length||b.recent-a.recent;});
  else view.sort(function(a,b){return b.members.length-a.members.length||b.recent-a.recent;});
  $count.textContent=view.length+" of "+groups.length+" groups";
  show(0,0);
}
function card(g){
  var n=g.members.length,c=el("section","card"+(n>4?" full":n>2?" wide":""));c.id="g-"+g.id;c.setAttribute("data-group",g.id);c.tabIndex=-1;
  var h=el("h2",null,"Group "+g.id+" · "+n+" files"+(g.freed?" · frees "+human(g.freed):""));
  if(g.why){var w=el("span","why","kept: "+g.why);h.appendChild(w);}
  c.appendChild(h);
  var ms=el("div","members");
  g.members.forEach(function(m){
    var d=el("div","m "+m[5]);d.setAttribute("data-path",m[0]);
    if(m[6]){var img=document.createElement("img");img.setAttribute("loading","lazy");img.setAttribute("decoding","async");
      img.setAttribute("src",m[6]);img.setAttribute("alt",m[0]);img.setAttribute("width","186");img.setAttribute("height","160");d.appendChild(img);}
    else d.appendChild(el("div","ph","no preview"));
    var cut=m[0].lastIndexOf("/")+1,nm=el(m[12]?"a":"div","name",m[0].slice(cut));nm.title=m[0];
    if(m[12]){nm.setAttribute("href",m[12]);nm.setAttribute("target","_blank");nm.setAttribute("rel","noopener");}
    d.appendChild(nm);
    var p=el("div","path",m[0].slice(0,cut));p.title=m[0];d.appendChild(p);
    var meta=el("div","meta");meta.appendChild(el("span","badge "+m[5],m[5]));
    var bits=[];if(m[1])bits.push(m[1]+"×"+m[2]);if(m[3]!=null)bits.push(human(m[3]));if(m[4])bits.push(date(m[4]));
    meta.appendChild(document.createTextNode(bits.join(" · ")));
    d.appendChild(meta);
    if(m[5]!=="kept"){
      var how=m[7]==="exact"?"exact copy (same content)":m[7]?(m[7]+(m[8]!=null?(m[7]==="cnn"?" similarity ":" distance ")+(+m[8]).toFixed(m[7]==="cnn"?3:0):"")):(m[9]?"via "+m[9]:"");
      if(how)d.appendChild(el("div","meta",how));
      if(m[13]==="weak")d.appendChild(el("div","meta weak","weak match: review (never moved)"));
      if(m[14])d.appendChild(el("div","meta ev",m[14]));
      if(m[11])d.appendChild(el("div","meta",m[11]));
    }
    ms.appendChild(d);
  });
  c.appendChild(ms);return c;
}
function pages(){return Math.max(1,Math.ceil(view.length/PAGE));}
function show(p,focus){
  page=Math.max(0,Math.min(p,pages()-1));
  var frag=document.createDocumentFragment(),slice=view.slice(page*PAGE,(page+1)*PAGE);
  slice.forEach(function(g){frag.appendChild(card(g));});
  $cards.textContent="";
  if(!slice.length)$cards.appendChild(el("div","empty","No duplicate groups match."));
  $cards.appendChild(frag);
  $info.textContent="page "+(page+1)+" of "+pages();
  cur=-1;if(focus!=null&&slice.length)select(focus<0?slice.length-1:focus,focus!==0||p!==0);
}
function select(i,scroll){
  var cs=$cards.children;if(!cs.length||cs[0].className==="empty")return;
  if(cur>=0&&cs[cur])cs[cur].classList.remove("current");
  cur=Math.max(0,Math.min(i,cs.length-1));cs[cur].classList.add("current");
  if(scroll)cs[cur].scrollIntoView({block:"nearest"});
}
function move(delta){
  var n=$cards.children.length,i=cur+delta;
  if(i>=n){if(page<pages()-1){show(page+1,0);window.scrollTo(0,0);}return;}
  if(i<0){if(cur<0)i=0;else{if(page>0)show(page-1,-1);return;}}
  select(i,true);
}
document.getElementById("prev").onclick=function(){show(page-1,0);window.scrollTo(0,0);};
document.getElementById("next").onclick=function(){show(page+1,0);window.scrollTo(0,0);};
var t;$folder.addEventListener("input",function(){clearTimeout(t);t=setTimeout(apply,200);});
$method.onchange=apply;$sort.onchange=apply;
document.addEventListener("keydown",function(e){
  if(e.ctrlKey||e.metaKey||e.altKey)return;
  var tag=(e.target&&e.target.tagName)||"";
  if(tag==="INPUT"||tag==="SELECT"){if(e.key==="Escape")e.target.blur();return;}
  if(e.key==="j"||e.key==="ArrowDown"){move(1);e.preventDefault();}
  else if(e.key==="k"||e.key==="ArrowUp"){move(-1);e.preventDefault();}
  else if(e.key==="n"){show(page+1,0);window.scrollTo(0,0);}
  else if(e.key==="p"){show(page-1,0);window.scrollTo(0,0);}
  else if(e.key==="/"){$folder.focus();e.preventDefault();}
});
apply();
})();
</script>
</body></html>
"""


def report_from_store(config: Any, out_path: str, *, thumbs_dir: str | None = None) -> dict[str, Any]:
    """``dedupd report --html OUT``: the report from ``config.store_dir`` without a running daemon.

    The store is opened read-only without the writer lock (a running daemon may hold it).
    """
    from dedupd.daemon.loader import load_index
    from dedupd.daemon.store import Store

    store = Store.open(config.store_dir, readonly=True, lock=False)
    try:
        index = load_index(store, config)
        return write_html_report(out_path, index, config, store, thumbs_dir=thumbs_dir)
    finally:
        store.close()
