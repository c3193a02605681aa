"""The ``dedupd`` command: the daemon (``run``), a one-shot ``scan``, and the socket client commands.

Exit codes: 0 ok, 1 error, 2 daemon not running / usage, 3 duplicate found (``query
--fail-on-duplicate``). Only this module and the daemon call ``sys.exit``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from dedupd import __version__
from dedupd.client import DEFAULT_SOCKET, ApiError, Client, DaemonNotRunning

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DUPLICATE, EXIT_NOT_RUNNING = 0, 1, 2, 3, 4  # 2: as argparse
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by SIGINT
EXIT_BROKEN_PIPE = 141  # as a shell reports a command ended by SIGPIPE


def _load_config(args: argparse.Namespace, overrides: dict[str, Any] | None = None):
    from dedupd.daemon.config import load_config

    path = args.config or os.environ.get("DEDUPD_CONFIG")
    return load_config(path, overrides={**(overrides or {}), **_common_overrides(args)})


def _common_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "log_level", None):
        out["log.level"] = args.log_level
    return out


def _socket_path(args: argparse.Namespace) -> str:
    """--socket, else $DEDUPD_SOCKET_PATH, else the config's socket_path, else the usual places."""
    if getattr(args, "socket", None):
        return args.socket
    if os.environ.get("DEDUPD_SOCKET_PATH"):
        return os.environ["DEDUPD_SOCKET_PATH"]
    if args.config or os.environ.get("DEDUPD_CONFIG"):
        from dedupd.errors import DedupdError

        try:
            return _load_config(args).socket_path
        except (DedupdError, OSError):
            # a config the client cannot fully validate (e.g. roots it may not stat): its socket_path
            return _raw_socket_path(args.config or os.environ["DEDUPD_CONFIG"]) or DEFAULT_SOCKET
    from dedupd.daemon.config import default_paths

    for candidate in (DEFAULT_SOCKET, default_paths(os.environ)["socket_path"]):
        if os.path.exists(candidate):
            return candidate
    return DEFAULT_SOCKET


def _raw_socket_path(config_file: str) -> str | None:
    import yaml

    try:
        with open(config_file, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        value = data.get("socket_path") if isinstance(data, dict) else None
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(value, str) or not value:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(config_file)), os.path.expanduser(value)))


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


# -- daemon and scan ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from dedupd.daemon import log
    from dedupd.daemon.service import Daemon, DaemonFailed

    config = _load_config(args)
    log.setup(config.log.level, config.log.format)
    daemon = Daemon(config, config_loader=lambda: _load_config(args))
    daemon.install_signals()
    try:
        daemon.run()
    except DaemonFailed as exc:
        print(f"dedupd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    import time

    from dedupd.daemon import log
    from dedupd.daemon.service import Daemon, DaemonFailed

    overrides: dict[str, Any] = {}
    if args.dirs:
        overrides["roots"] = [os.path.abspath(d) for d in args.dirs]
    if args.report_dir:
        overrides["report_dir"] = os.path.abspath(args.report_dir)
    if args.store_dir:
        overrides["store_dir"] = os.path.abspath(args.store_dir)
    config = _load_config(args, overrides)
    log.setup(args.log_level or ("warning" if sys.stderr.isatty() else config.log.level), config.log.format)
    tty = sys.stderr.isatty()
    t0 = time.monotonic()

    def progress(s: dict[str, Any]) -> None:
        if tty:
            p = s["reconcile_progress"]
            sys.stderr.write(f"\rscanning: {p.get('walked', 0)} found, {s['files']} indexed, {s['queued']} queued   ")
            sys.stderr.flush()

    daemon = Daemon(config, serve=False, watch=False)
    daemon.install_signals()
    try:
        status = daemon.scan_once(progress)
    except DaemonFailed as exc:
        print(f"dedupd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if tty:
        sys.stderr.write("\n")
    if status["state"] == "interrupted":
        print("dedupd: scan interrupted before it finished; reports were not written (run it again: "
              "what was indexed is kept)", file=sys.stderr)
        return EXIT_INTERRUPTED
    status["elapsed_s"] = round(time.monotonic() - t0, 2)
    status["report_dir"] = config.report_dir
    progress_ = status["reconcile_progress"]
    status["unchanged"] = progress_.get("walked", 0) - progress_.get("queued", 0)
    with open(os.path.join(config.report_dir, "groups.json"), encoding="utf-8") as f:
        groups = json.load(f)["groups"]
    status["reclaimable_bytes"] = sum(d.get("bytes", 0) for g in groups for d in g["duplicates"])
    if args.json:
        _print_json({**status, "duplicate_groups": groups})  # "groups" stays the count, as in status
        return EXIT_OK
    for g in groups:
        print(f"keep {g['keep']['path']}  ({_size(g['keep'].get('bytes', 0))})")
        for d in g["duplicates"]:
            how = _score(d) if d.get("direct") else f"via {d.get('via')}"
            print(f"  dup {d['path']}  ({_size(d.get('bytes', 0))}, {how})")
    if groups:
        print()
    print(f"{status['files']} images indexed ({status['decoded']} decoded, {status['reused']} reused, "
          f"{status['unchanged']} unchanged since the last scan), {status['unreadable']} unreadable")
    print(f"{status['groups']} duplicate groups, {status['duplicates']} duplicates "
          f"({_size(status['reclaimable_bytes'])} reclaimable), {status['quarantined']} quarantined "
          f"in {status['elapsed_s']} s")
    print(f"reports: {config.report_dir}/duplicates.json, groups.json, report.html, events.jsonl")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """``dedupd report --html OUT``: the HTML report from the store, without a running daemon."""
    from dedupd.reports.html import report_from_store

    overrides: dict[str, Any] = {}
    if args.store_dir:
        overrides["store_dir"] = os.path.abspath(args.store_dir)
    if not (args.config or os.environ.get("DEDUPD_CONFIG")):
        overrides["roots"] = [os.sep]  # no config: report every file the store holds (default match settings)
    config = _load_config(args, overrides)
    out = os.path.abspath(args.html)
    stats = report_from_store(config, out, thumbs_dir=os.path.abspath(args.thumbs_dir) if args.thumbs_dir else None)
    if args.json:
        _print_json({**stats, "html": out})
    else:
        print(f"{stats['groups']} duplicate groups, {stats['thumbnails']} thumbnails -> {out} "
              f"({stats['bytes'] / 1e6:.1f} MB, {stats['seconds']} s)")
    return EXIT_OK


# -- client commands --------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    s = Client(_socket_path(args)).get("/v1/status")
    if args.json:
        _print_json(s)
        return EXIT_OK
    p = s.get("reconcile_progress", {})
    rows = [("state", s["state"]), ("files", s["files"]), ("encoded", s["encoded"]), ("decoded", s["decoded"]),
            ("reused", s.get("reused", 0)), ("unreadable", s["unreadable"]), ("queued", s["queued"]),
            ("groups", s["groups"]), ("duplicates", s.get("duplicates", 0)),
            ("quarantined", f"{s.get('in_quarantine', 0)} in quarantine now ({s.get('quarantined', 0)} moved, "
                            f"{s.get('restored', 0)} restored since start)"),
            ("policy", s.get("policy", "")),
            ("reconcile", (f"{p.get('walked', 0)} walked, {p.get('queued', 0)} queued, "
                           f"{'done' if p.get('done') else 'running'}")),
            ("uptime", _duration(s["uptime_s"])), ("store", _size(s["store_bytes"])), ("pid", s.get("pid", "?"))]
    if s.get("missing_roots"):
        rows.insert(1, ("missing", ", ".join(s["missing_roots"]) + " (watched folder gone)"))
    for name, problem in reversed(list(s.get("problems", {}).items())):  # why the state is "degraded"
        detail = problem.get("error", problem) if isinstance(problem, dict) else problem
        rows.insert(1, ("problem", f"{name}: {detail}"))
    if s.get("failed"):
        rows.insert(8, ("failed", f"{s['failed']} (given up after retries; see the log)"))
    for k, v in rows:
        print(f"{k:12s} {v}")
    return EXIT_OK


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _score(m: dict[str, Any]) -> str:
    if m.get("method") == "exact":
        return "exact copy"
    weak = ", weak: review" if m.get("band") == "weak" else ""  # the cascade's band (never moved when weak)
    via = f" via {m['variants'][m['method']]}" if m.get("variants", {}).get(m.get("method")) else ""
    if "similarity" in m:
        return f"{m['method']} similarity {m['similarity']:.3f}{weak}"
    return f"{m['method']} distance {m['distance']}{via}{weak}"


def cmd_query(args: argparse.Namespace) -> int:
    """Read each file here and send its bytes: works for files outside the daemon's roots."""
    client = Client(_socket_path(args))
    results = []
    for path in args.paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            results.append({"path": path, "error": "cannot read", "detail": exc.strerror or str(exc),
                            "duplicates": []})
            continue
        try:
            res = client.query_bytes(data)
        except ApiError as exc:
            res = {"error": exc.error, "detail": exc.detail, "duplicates": []}
        else:  # an indexed file is not a duplicate of itself (its bytes match its own entry)
            me = os.path.realpath(path)
            res["duplicates"] = [m for m in res.get("duplicates", []) if os.path.realpath(m["path"]) != me]
        results.append({"path": path, **res})
    found = any(r.get("duplicates") for r in results)
    failed = any(r.get("error") for r in results)
    if args.json:
        _print_json(results if len(results) > 1 else results[0])
    else:
        for r in results:
            if r.get("error"):
                print(f"{r['path']}: {r['error']}: {r['detail']}")
            elif not r["duplicates"]:
                print(f"{r['path']}: no duplicates")
            else:
                print(f"{r['path']}: {len(r['duplicates'])} duplicate(s)")
                for m in r["duplicates"]:
                    print(f"  {m['path']}  ({_score(m)})")
    if found and args.fail_on_duplicate:
        return EXIT_DUPLICATE
    return EXIT_ERROR if failed else EXIT_OK


def cmd_groups(args: argparse.Namespace) -> int:
    data = Client(_socket_path(args)).get("/v1/groups", offset=args.offset, limit=args.limit)
    if args.json:
        _print_json(data)
        return EXIT_OK
    shown = len(data["groups"])
    more = f" (showing {data['offset'] + 1}-{data['offset'] + shown})" if shown and shown < data["total"] else ""
    print(f"{data['total']} groups{more}")
    for g in data["groups"]:
        print(f"[{g['id']}] keep {g['keep']['path']}")
        for d in g["duplicates"]:
            how = _score(d) if d.get("direct") else f"via {d.get('via')}"
            print(f"    dup  {d['path']}  ({how})")
    return EXIT_OK


def cmd_simple_post(endpoint: str):
    def run(args: argparse.Namespace) -> int:
        res = Client(_socket_path(args)).post(endpoint)
        _print_json(res) if args.json else print(res.get("detail", "ok"))
        return EXIT_OK

    return run


def cmd_rescan(args: argparse.Namespace) -> int:
    """``dedupd rescan [--wait]``: start a walk; with ``--wait``, follow it to the end and summarize."""
    import time

    client = Client(_socket_path(args))
    before = client.get("/v1/status").get("reconcile_progress", {}).get("run", 0)
    t0 = time.monotonic()
    res = client.post("/v1/rescan")
    if not args.wait:
        _print_json(res) if args.json else print(res.get("detail", "ok"))
        return EXIT_OK
    while True:
        s = client.get("/v1/status")
        p = s.get("reconcile_progress", {})
        if p.get("run", 0) > before and p.get("done") and s["queued"] == 0 and s["state"] in ("watching", "degraded"):
            break
        if time.monotonic() - t0 > args.timeout:
            print(f"dedupd: the rescan did not finish within {args.timeout:g} s (state {s['state']}, "
                  f"{s['queued']} queued); it goes on in the daemon", file=sys.stderr)
            return EXIT_ERROR
        time.sleep(0.2)
    summary = {"seconds": round(time.monotonic() - t0, 2), "walked": p.get("walked", 0),
               "queued": p.get("queued", 0), "forgotten": p.get("forgotten", 0), "files": s["files"],
               "groups": s["groups"], "state": s["state"]}
    if args.json:
        _print_json(summary)
    else:
        print(f"rescan done in {summary['seconds']} s: {summary['walked']} files walked, {summary['queued']} new or "
              f"changed, {summary['forgotten']} gone; now {summary['files']} files in {summary['groups']} groups"
              + ("" if s["state"] == "watching" else f" (state {s['state']}: see dedupd status)"))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    if bool(args.all) == bool(args.paths):
        print("dedupd restore: give either --all or one or more paths", file=sys.stderr)
        return EXIT_USAGE
    payload = {"all": True} if args.all else {"paths": [os.path.abspath(p) for p in args.paths]}
    try:
        # the daemon gives a restore 120 s before it answers with a clear timeout error: wait longer
        res = Client(_socket_path(args), timeout=150.0).post("/v1/restore", payload)
    except DaemonNotRunning:
        if not (args.config or os.environ.get("DEDUPD_CONFIG")):
            raise
        res = _restore_offline(args, payload)
    if args.json:
        _print_json(res)
    else:
        for r in res["results"]:
            print(f"{'restored' if r['ok'] else 'NOT restored'}: {r['path']}" + ("" if r["ok"] else f" ({r['detail']})"))
        print(f"{res['restored']} file(s) restored")
    return EXIT_OK if all(r["ok"] for r in res["results"]) else EXIT_ERROR


def _restore_offline(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    """Restore without a daemon: take the store's writer lock, settle moves a crash interrupted
    (as the daemon does at start-up), then move the files back."""
    from dedupd.daemon.quarantine import Quarantine
    from dedupd.daemon.store import Store

    config = _load_config(args)
    with Store.open(config.store_dir, lock=True) as store:
        quarantine = Quarantine(config, store)
        quarantine.recover()  # a "pending" move may be complete on disk: restore must see it as moved
        outcomes = quarantine.restore(None if payload.get("all") else payload["paths"])
    results = [{"path": o.path, "ok": o.ok, "detail": o.detail} for o in outcomes]
    restored = sum(r["ok"] for r in results)
    return {"results": results, "restored": restored, "failed": len(results) - restored}


def cmd_quarantine(args: argparse.Namespace) -> int:
    data = Client(_socket_path(args)).get("/v1/quarantine", state=args.state)
    if args.json:
        _print_json(data)
        return EXIT_OK
    for e in data["entries"]:
        print(f"#{e['id']:<5} {e['state']:9s} {e['origin']} -> {e['dest']}  (kept {e['keeper']}; {e['reason']})")
    print(f"{len(data['entries'])} entries")
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------------------

EPILOG = """\
examples:
  dedupd scan ~/Pictures                      index a folder once, print the duplicate sets
  dedupd run --config /etc/dedupd/dedupd.yaml run the daemon
  dedupd query --fail-on-duplicate new.jpg    exit 3 if new.jpg duplicates an indexed image
  dedupd groups --limit 20 | less             the daemon's duplicate groups

exit status:
  0 done, 1 error (the message says which), 2 usage error, 3 duplicate found (--fail-on-duplicate),
  4 the daemon is not running, 130 interrupted, 141 output pipe closed
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dedupd", description="Find exact and near-duplicate images, and keep "
                                "finding them while folders change.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dedupd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", help="YAML config file (default: $DEDUPD_CONFIG)")
    common.add_argument("--socket", help=f"daemon socket (default: from --config, else {DEFAULT_SOCKET})")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", parents=[common], help="run the daemon (watch, index, report/quarantine)").set_defaults(
        func=cmd_run)
    s = sub.add_parser("scan", parents=[common], help="one-shot: index folders, write reports, exit")
    s.add_argument("dirs", nargs="*", metavar="DIR", help="folders to scan (default: the config's roots)")
    s.add_argument("--report-dir", help="where to write duplicates.json / groups.json")
    s.add_argument("--store-dir", help="LMDB store (re-runs are incremental)")
    s.set_defaults(func=cmd_scan)
    rp = sub.add_parser("report", parents=[common], help="write the HTML duplicate report from the store (no daemon needed)")
    rp.add_argument("--html", required=True, metavar="OUT", help="report file (thumbnails go to OUT's folder/thumbs)")
    rp.add_argument("--store-dir", help="store to read (default: the config's store_dir)")
    rp.add_argument("--thumbs-dir", help="thumbnail folder (default: thumbs/ next to OUT)")
    rp.set_defaults(func=cmd_report)
    sub.add_parser("status", parents=[common], help="daemon state and counters").set_defaults(func=cmd_status)
    q = sub.add_parser("query", parents=[common], help="is this file a duplicate of an indexed one?")
    q.add_argument("paths", nargs="+", metavar="PATH")
    q.add_argument("--fail-on-duplicate", action="store_true",
                   help="exit 3 when a duplicate is found (else 1 if a file could not be checked, 0 otherwise)")
    q.set_defaults(func=cmd_query)
    g = sub.add_parser("groups", parents=[common], help="list duplicate groups")
    g.add_argument("--offset", type=int, default=0)
    g.add_argument("--limit", type=int, default=100)
    g.set_defaults(func=cmd_groups)
    rs = sub.add_parser("rescan", parents=[common], help="walk the roots again now")
    rs.add_argument("--wait", action="store_true", help="wait until the walk and its work are done, then summarize")
    rs.add_argument("--timeout", type=float, default=3600, help="with --wait: give up after this many seconds")
    rs.set_defaults(func=cmd_rescan)
    sub.add_parser("reload", parents=[common], help="re-read the config (like SIGHUP)").set_defaults(
        func=cmd_simple_post("/v1/reload"))
    r = sub.add_parser("restore", parents=[common], help="move quarantined files back")
    r.add_argument("paths", nargs="*", metavar="PATH")
    r.add_argument("--all", action="store_true", help="restore every quarantined file")
    r.set_defaults(func=cmd_restore)
    qu = sub.add_parser("quarantine", parents=[common], help="quarantine manifest")
    qu.add_argument("action", choices=["list"], nargs="?", default="list")
    qu.add_argument("--state", choices=["pending", "moved", "restored", "failed"], help="only entries in this state")
    qu.set_defaults(func=cmd_quarantine)
    ca = sub.add_parser("calibrate", help="choose thresholds from a labelled sample (precision/recall per threshold)",
                        description="Sweep hash thresholds (and the crop/flip variant hashes) on a labelled folder "
                        "and print precision/recall per threshold plus the recommended `methods:` config lines. "
                        "The ground truth is imagededup's format; make_corpus.py's ground_truth.json is valid.")
    ca.add_argument("dir", help="folder of the labelled images")
    ca.add_argument("--ground-truth", required=True, help='JSON {"name": ["duplicate name", ...]}, names relative to DIR')
    ca.add_argument("--methods", default="phash,dhash", help="comma-separated hash methods (default phash,dhash)")
    ca.add_argument("--options", default="crop,flip", help="variant hashes to try: crop,flip (default both; '' none)")
    ca.add_argument("--precision", type=float, default=0.99, help="min pair precision of a match (default 0.99)")
    ca.add_argument("--strong-precision", type=float, default=0.999,
                    help="min pair precision of a strong match, which quarantine may move (default 0.999)")
    ca.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    ca.add_argument("--no-exif", action="store_true", help="ignore EXIF orientation (default: apply it, as the daemon)")
    ca.add_argument("--json", help="also write the numbers to this JSON file")
    ca.set_defaults(func=cmd_calibrate)
    return p


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``dedupd calibrate DIR --ground-truth FILE``: see :mod:`dedupd.calibrate`."""
    from dedupd.calibrate import main_args

    return main_args(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DaemonNotRunning as exc:
        print(f"dedupd: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ApiError as exc:
        print(f"dedupd: {exc}" + (f" (HTTP {exc.status})" if exc.status else ""), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `dedupd groups | head -1`: the reader left; end quietly, as a shell tool does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's final flush must not fail again
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        from dedupd.errors import DedupdError

        if isinstance(exc, DedupdError):
            print(f"dedupd: {exc}", file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
