// dedupd review page: groups from /api/state, decisions POSTed with the token in a header.
// Every file name goes into the DOM through textContent / setAttribute, never innerHTML.
(function () {
  "use strict";
  var TOKEN = document.querySelector('meta[name="dedupd-token"]').getAttribute("content");
  var PAGE = 100, POLL_MS = 3000;
  var state = null, raw = "", version = "", view = [], page = 0, busy = false;
  var selected = new Set();
  var $ = function (id) { return document.getElementById(id); };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function human(n) {
    if (n == null) return "?";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < 4) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function date(t) {
    if (!t) return "";
    var d = new Date(t * 1000), z = function (x) { return (x < 10 ? "0" : "") + x; };
    return d.getFullYear() + "-" + z(d.getMonth() + 1) + "-" + z(d.getDate()) + " " + z(d.getHours()) + ":" + z(d.getMinutes());
  }
  function split(p) { var i = p.lastIndexOf("/"); return i >= 0 ? [p.slice(0, i + 1), p.slice(i + 1)] : ["", p]; }
  function say(text, error) { var m = $("msg"); m.textContent = text; m.className = error ? "error" : ""; }

  function request(method, url, body) {
    var opts = { method: method, credentials: "same-origin", headers: { "X-Dedupd-Token": TOKEN } };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    return fetch(url, opts).then(function (r) {
      return r.json().then(function (d) {
        if (!r.ok) throw new Error((d.error || ("HTTP " + r.status)) + (d.detail ? ": " + d.detail : ""));
        return d;
      });
    });
  }

  function members(g) { return [g.keep].concat(g.duplicates || []); }
  // what quarantine would move: the group's "move" mark when the daemon sends it, else the direct duplicates
  function moves(d) { return (d.move !== undefined ? d.move : d.direct) && d.state !== "quarantined" && d.state !== "restored"; }
  function freed(g) {
    return (g.duplicates || []).reduce(function (s, d) { return s + (moves(d) ? (d.bytes || 0) : 0); }, 0);
  }
  function recent(g) { return members(g).reduce(function (r, m) { return Math.max(r, m.mtime || 0); }, 0); }

  function load(quiet) {
    return request("GET", "/api/state").then(function (s) {
      var text = JSON.stringify(s);
      if (text === raw) return;
      raw = text; state = s;
      var known = new Set();
      s.groups.forEach(function (g) { members(g).forEach(function (m) { known.add(m.path); }); });
      selected.forEach(function (p) { if (!known.has(p)) selected.delete(p); });
      $("source").textContent = (s.live ? "live: " : "") + s.source;
      var files = s.groups.reduce(function (n, g) { return n + members(g).length; }, 0);
      var sum = $("summary"); sum.textContent = "";
      [[s.groups.length, " groups · "], [files, " files in groups · "],
       [human(s.groups.reduce(function (n, g) { return n + freed(g); }, 0)), " quarantine would free"]]
        .forEach(function (p) { sum.appendChild(el("b", null, String(p[0]))); sum.appendChild(document.createTextNode(p[1])); });
      if (!s.live) sum.appendChild(el("span", "when", " · read-only (no daemon running)"));
      apply(true);
    }).catch(function (e) { if (!quiet) say(String(e.message || e), true); });
  }

  function apply(keepPage) {
    if (!state) return;
    var f = $("filter").value.trim().toLowerCase(), how = $("sort").value;
    view = state.groups.filter(function (g) {
      return !f || members(g).some(function (m) { return m.path.toLowerCase().indexOf(f) >= 0; });
    });
    var key = how === "size" ? function (g) { return members(g).length; } : how === "recent" ? recent : freed;
    view.sort(function (a, b) { return key(b) - key(a) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0); });
    $("count").textContent = view.length + " of " + state.groups.length + " groups";
    show(keepPage ? page : 0);
  }

  function can(action) { return state && state.live && state.features && state.features[action]; }
  function why(action) {
    if (!state.live) return "read-only: no daemon is running";
    if (!can(action)) return "the daemon does not offer this yet (no " + action + " endpoint)";
    return "";
  }
  function button(label, cls, action, handler) {
    var b = el("button", cls, label); b.type = "button";
    var no = why(action);
    if (no) { b.disabled = true; b.title = no; } else b.addEventListener("click", handler);
    return b;
  }

  function card(g) {
    var c = el("section", "card"); c.setAttribute("data-group", g.id);
    var h = el("h2"); h.appendChild(el("span", null, members(g).length + " files · frees " + human(freed(g))));
    var movable = (g.duplicates || []).filter(function (d) { return d.direct && d.state !== "quarantined" && !d.protected && !d.distinct; })
      .map(function (d) { return d.path; });
    var live = members(g).filter(function (m) { return m.state !== "quarantined"; }).map(function (m) { return m.path; });
    var qa = button("Quarantine duplicates", "group-quarantine", "quarantine", function () { act("quarantine", { paths: movable }); });
    if (!movable.length) qa.disabled = true;
    h.appendChild(qa);
    var ig = button("Not duplicates", "group-ignore", "ignore", function () { act("ignore", { paths: live }); });
    if (live.length < 2) ig.disabled = true;
    h.appendChild(ig);
    c.appendChild(h);
    var ms = el("div", "members");
    members(g).forEach(function (m) { ms.appendChild(member(g, m)); });
    c.appendChild(ms);
    return c;
  }

  function member(g, m) {
    var st = m.state || (m === g.keep ? "kept" : "duplicate");
    var d = el("div", "m " + st + (selected.has(m.path) ? " sel" : ""));
    d.setAttribute("data-path", m.path); d.setAttribute("data-state", st);
    var q = "?path=" + encodeURIComponent(m.path);
    var a = el("a"); a.setAttribute("href", "/original" + q); a.setAttribute("target", "_blank"); a.setAttribute("rel", "noopener");
    var img = document.createElement("img");
    img.setAttribute("loading", "lazy"); img.setAttribute("src", "/thumb" + q); img.setAttribute("alt", m.path);
    img.addEventListener("error", function () { a.replaceChild(el("div", "ph", "no preview"), img); });
    a.appendChild(img); d.appendChild(a);
    var parts = split(m.path);
    var name = el("div", "name", parts[1]); name.title = m.path; d.appendChild(name);
    d.appendChild(el("div", "dir", parts[0]));
    var meta = el("div", "meta"); meta.appendChild(el("span", "badge " + st, st));
    var bits = [];
    if (m.width) bits.push(m.width + "×" + m.height);
    if (m.bytes != null) bits.push(human(m.bytes));
    if (m.mtime) bits.push(date(m.mtime));
    meta.appendChild(document.createTextNode(bits.join(" · ")));
    d.appendChild(meta);
    if (m !== g.keep) {
      var how = m.method === "exact" ? "exact copy" : m.method ? m.method + (m.distance != null ? " distance " + m.distance :
        m.similarity != null ? " similarity " + (+m.similarity).toFixed(3) : "") : m.via ? "via " + split(m.via)[1] : "";
      if (how) d.appendChild(el("div", "meta", how));
      if (m.note) d.appendChild(el("div", "meta", m.note));
      var decided = m.distinct ? "not a duplicate of the kept copy (your decision)" : m.protected ? "never moved: " + m.protected : "";
      if (decided) d.appendChild(el("div", "meta", decided));
    }
    var acts = el("div", "acts");
    if (st !== "kept" && st !== "quarantined") {
      var box = el("input", "select"); box.type = "checkbox"; box.checked = selected.has(m.path);
      box.title = "select for Quarantine selected";
      box.addEventListener("change", function () {
        if (box.checked) selected.add(m.path); else selected.delete(m.path);
        d.classList.toggle("sel", box.checked); counts();
      });
      acts.appendChild(box);
      acts.appendChild(button("Keep this one", "act-keep", "keep", function () { act("keep", { path: m.path }); }));
      if (m.direct) acts.appendChild(button("Quarantine", "act-quarantine", "quarantine", function () { act("quarantine", { paths: [m.path] }); }));
      acts.appendChild(button("Not a duplicate", "act-ignore", "ignore", function () { act("ignore", { paths: [m.path, g.keep.path] }); }));
    } else if (st === "quarantined") {
      var rbox = el("input", "select"); rbox.type = "checkbox"; rbox.checked = selected.has(m.path);
      rbox.title = "select for Restore selected";
      rbox.addEventListener("change", function () {
        if (rbox.checked) selected.add(m.path); else selected.delete(m.path);
        d.classList.toggle("sel", rbox.checked); counts();
      });
      acts.appendChild(rbox);
      acts.appendChild(button("Restore", "act-restore", "restore", function () { act("restore", { paths: [m.path] }); }));
    }
    d.appendChild(acts);
    return d;
  }

  function byState() {
    var out = { quarantined: [], other: [] }, st = {};
    if (state) state.groups.forEach(function (g) { members(g).forEach(function (m) { st[m.path] = m.state; }); });
    selected.forEach(function (p) { (st[p] === "quarantined" ? out.quarantined : out.other).push(p); });
    return out;
  }
  function counts() {
    var s = byState();
    $("quarantine-selected").textContent = "Quarantine selected (" + s.other.length + ")";
    $("restore-selected").textContent = "Restore selected (" + s.quarantined.length + ")";
    $("quarantine-selected").disabled = busy || !s.other.length || !!why("quarantine");
    $("restore-selected").disabled = busy || !s.quarantined.length || !!why("restore");
  }

  function pages() { return Math.max(1, Math.ceil(view.length / PAGE)); }
  function show(p) {
    page = Math.max(0, Math.min(p, pages() - 1));
    var cards = $("cards"), slice = view.slice(page * PAGE, (page + 1) * PAGE), frag = document.createDocumentFragment();
    slice.forEach(function (g) { frag.appendChild(card(g)); });
    cards.textContent = "";
    if (!slice.length) cards.appendChild(el("p", "empty", "No duplicate groups."));
    cards.appendChild(frag);
    $("pageinfo").textContent = "page " + (page + 1) + " of " + pages();
    counts();
  }

  function summary(action, r) {
    var results = r.results || [];
    var ok = results.filter(function (x) { return x.ok; }), bad = results.filter(function (x) { return !x.ok; });
    var text = action + ": " + (results.length ? ok.length + " done" + (bad.length ? ", " + bad.length + " refused" : "") :
      (r.detail || "done"));
    bad.forEach(function (x) { text += "\n" + x.path + ": " + x.detail; });
    return [text, bad.length > 0];
  }

  function act(action, body) {
    if (busy) return;
    busy = true; counts(); say(action + "…");
    document.body.setAttribute("data-busy", "1");
    request("POST", "/api/" + action, body).then(function (r) {
      var s = summary(action, r); say(s[0], s[1]);
      (body.paths || [body.path]).forEach(function (p) { selected.delete(p); });
    }).catch(function (e) { say(action + " failed: " + (e.message || e), true); })
      .then(function () { return load(false); })
      .then(function () { busy = false; counts(); document.body.removeAttribute("data-busy"); });
  }

  $("quarantine-selected").addEventListener("click", function () { act("quarantine", { paths: byState().other }); });
  $("restore-selected").addEventListener("click", function () { act("restore", { paths: byState().quarantined }); });
  $("clear-selection").addEventListener("click", function () { selected.clear(); show(page); });
  $("prev").addEventListener("click", function () { show(page - 1); window.scrollTo(0, 0); });
  $("next").addEventListener("click", function () { show(page + 1); window.scrollTo(0, 0); });
  var t; $("filter").addEventListener("input", function () { clearTimeout(t); t = setTimeout(function () { apply(false); }, 200); });
  $("sort").addEventListener("change", function () { apply(false); });
  // poll a small version stamp; the groups are fetched again only when it changed
  function poll() {
    if (busy || document.hidden) return;
    request("GET", "/api/version").then(function (v) {
      var text = JSON.stringify(v.version);
      if (text !== version) { version = text; return load(true); }
    }).catch(function () {});
  }
  load(false);
  setInterval(poll, POLL_MS);
})();
