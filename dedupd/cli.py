"""The ``dedupd`` command: the daemon (``run``), a one-shot ``scan``, and the socket client commands.

Exit codes: 0 ok, 1 error, 2 usage, 3 duplicate found (``query``/``scan --fail-on-duplicate``), 4 daemon
not running, 130 interrupted, 141 broken pipe. Only this module and the daemon call ``sys.exit``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

from dedupd import __version__
from dedupd.client import DEFAULT_SOCKET, ApiError, Client, DaemonNotRunning
from dedupd.units import human_bytes

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
    if getattr(args, "socket", None):
        out["socket_path"] = args.socket
    return out


def _config_file(args: argparse.Namespace) -> str | None:
    """The config file named by --config or $DEDUPD_CONFIG, if any.

    Raises:
        ConfigError: it cannot be read (a client must not fall back to the default socket silently).
    """
    path = args.config or os.environ.get("DEDUPD_CONFIG")
    if path:
        from dedupd.errors import ConfigError

        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"cannot read config file {os.path.abspath(path)}: {exc.strerror or exc}; "
                              "check the path") from None
    return path or None


def _socket_path(args: argparse.Namespace) -> str:
    """--socket, else $DEDUPD_SOCKET_PATH, else the config's socket_path, else the usual places."""
    config_file = _config_file(args)
    if getattr(args, "socket", None):
        return args.socket
    if os.environ.get("DEDUPD_SOCKET_PATH"):
        return os.environ["DEDUPD_SOCKET_PATH"]
    if config_file:
        from dedupd.errors import DedupdError

        try:
            return _load_config(args).socket_path
        except (DedupdError, OSError):
            # a config the client cannot fully validate (e.g. roots it may not stat): its socket_path
            return _raw_socket_path(config_file) or DEFAULT_SOCKET
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


def _require_folders(config: Any, *keys: str) -> None:
    """Refuse a folder setting of ``config`` (``store_dir``, ``report_dir``, ...) that exists as a file."""
    from dedupd.errors import DedupdError

    for key in keys:
        path = getattr(config, key)
        if path and os.path.exists(path) and not os.path.isdir(path):
            raise DedupdError(f"{key} {path} is not a folder; give a folder (--{key.replace('_', '-')} or "
                              f"{key} in the config; it is created if missing)")


def _path(text: str) -> str:
    """argparse type of a file or folder argument: not empty (an unset shell variable is not the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("empty path: give a file or folder (is a shell variable unset?)")
    return text


METHOD_NAMES = ("phash", "dhash", "ahash", "whash", "cnn")


def _methods(text: str) -> list[str]:
    """argparse type of ``scan --method``: known method names, comma-separated."""
    names = [m for m in text.split(",") if m]
    bad = [m for m in names if m not in METHOD_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown method {', '.join(map(repr, bad or [text]))}: choose from "
                                         f"{', '.join(METHOD_NAMES)} (repeat or comma-separate for several)")
    return names


def _int_in(low: int, high: int | None) -> Callable[[str], int]:
    """argparse type: an int from ``low`` to ``high`` (None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: give {low}-{high}" if high is not None
                                             else f"{value} is out of range: give {low} or more")
        return value

    return parse


def _bounded(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)`` when it parses and ``ok`` holds, else "'text' is not ``what``"."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value
    return parse


_positive_seconds = _bounded(float, lambda v: v > 0, "a timeout: give seconds above 0")
_precision = _bounded(float, lambda v: 0 < v <= 1, "a precision: give a number above 0 and at most 1")
_port = _bounded(int, lambda v: 0 <= v <= 65535, "a port: give 0-65535 (0: a free one)")


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
    finally:
        _end_process_pools()
    return EXIT_OK


def _end_process_pools() -> None:
    """The process exits next: no decode pool may still be starting or ending then (a pool a
    leftover thread started after the shutdown, too), see :mod:`dedupd.daemon.workers`."""
    import logging

    from dedupd.daemon.service import POOL_JOIN_S
    from dedupd.daemon.workers import end_process_pools

    stuck = end_process_pools(POOL_JOIN_S)
    if stuck:
        logging.getLogger("dedupd.daemon").warning("process pool threads still running at exit: %s",
                                                   ", ".join(stuck))


def cmd_scan(args: argparse.Namespace) -> int:
    import time

    if args.engine != "ray":
        from dedupd.daemon.forkserver import start_early

        start_early()  # the decode workers' server loads its stack while this process imports
    from dedupd.daemon import log
    from dedupd.daemon.service import Daemon, DaemonFailed
    from dedupd.reports.groups import would_quarantine

    conflict = next((why for bad, why in (
        (args.engine != "ray" and args.ray_address, "--ray-address needs --engine ray"),
        (args.engine != "ray" and args.ray_batch is not None, "--ray-batch needs --engine ray"),
        (args.json and (args.removable or args.print0),
         "--removable/--print0 print bare paths; --json lists them under would_quarantine: give one or the other"),
        (args.dry_run and args.policy == "report",
         "--dry-run previews quarantine; it cannot be combined with --policy report"),
    ) if bad), None)
    if conflict:
        print(f"dedupd scan: {conflict}", file=sys.stderr)
        return EXIT_USAGE
    if not args.dirs and not _config_file(args) and not os.environ.get("DEDUPD_ROOTS"):
        print("dedupd scan: give the folders to scan (`dedupd scan DIR...`), or a config naming them (--config "
              "FILE with roots)", file=sys.stderr)
        return EXIT_USAGE
    overrides: dict[str, Any] = {}
    if args.dirs:
        overrides["roots"] = [os.path.abspath(d) for d in args.dirs]
    if args.report_dir:
        overrides["report_dir"] = os.path.abspath(args.report_dir)
    if args.store_dir:
        overrides["store_dir"] = os.path.abspath(args.store_dir)
    overrides.update(_scan_overrides(args, overrides))
    config = _load_config(args, overrides)
    _require_folders(config, "store_dir", "report_dir", "quarantine_dir")
    log.setup(args.log_level or ("warning" if sys.stderr.isatty() else config.log.level), config.log.format)
    tty = sys.stderr.isatty()
    t0 = time.monotonic()
    events = os.path.join(config.report_dir, "events.jsonl")
    events_from = os.path.getsize(events) if os.path.isfile(events) else 0  # this scan's events follow

    def progress(s: dict[str, Any]) -> None:
        if tty:
            p = s["reconcile_progress"]
            sys.stderr.write(f"\rscanning: {p.get('walked', 0)} found, {s['files']} indexed, {s['queued']} queued   ")
            sys.stderr.flush()

    try:
        if args.engine == "ray":
            status = _scan_on_ray(args, config, tty)
        else:
            daemon = Daemon(config, serve=False, watch=False)
            daemon.install_signals()
            status = daemon.scan_once(progress if tty else None)  # no status built 4x a second for nothing
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
    status["unreadable_files"] = _unreadable_since(events, events_from)
    preview = would_quarantine(groups)
    found = EXIT_DUPLICATE if groups and args.fail_on_duplicate else EXIT_OK
    if args.removable or args.print0:  # for xargs: only the paths quarantine would move
        end = "\0" if args.print0 else "\n"
        sys.stdout.write("".join(p + end for p in preview["would_quarantine"]))
        return found
    if args.json:
        _print_json({**status, "duplicate_groups": groups, **preview})  # "groups" stays the count, as in status
        return found
    for g in groups:
        print(f"keep {g['keep']['path']}  ({human_bytes(g['keep'].get('bytes', 0))})"
              + (f"  [{g['kept_by']}]" if g.get("kept_by") else ""))
        for d in g["duplicates"]:
            how = _score(d) if d.get("direct") else f"via {d.get('via')}"
            print(f"  dup {d['path']}  ({human_bytes(d.get('bytes', 0))}, {how}){_mark(d, config)}")
    if groups:
        print()
    print(f"{status['files']} images indexed ({status['decoded']} decoded, {status['reused']} reused, "
          f"{status['unchanged']} unchanged since the last scan), {status['unreadable']} unreadable")
    unreadable = status["unreadable_files"]
    for u in unreadable[:UNREADABLE_SHOWN]:
        print(f"  unreadable {u['path']}: {u['reason']}")
    if len(unreadable) > UNREADABLE_SHOWN:
        print(f"  … and {len(unreadable) - UNREADABLE_SHOWN} more (all in --json and in events.jsonl)")
    print(f"{status['groups']} duplicate groups, {status['duplicates']} duplicates "
          f"({human_bytes(status['reclaimable_bytes'])} reclaimable), {status['quarantined']} quarantined "
          f"in {status['elapsed_s']} s")
    if config.dry_run:
        print(f"dry run: {len(preview['would_quarantine'])} file(s) would be quarantined, freeing "
              f"{human_bytes(preview['would_free_bytes'])}; nothing was moved")
    print(f"reports: {config.report_dir}/duplicates.json, groups.json, report.html, events.jsonl")
    return found


#: unreadable files ``scan`` names in its text summary (``--json`` lists all)
UNREADABLE_SHOWN = 10


def _unreadable_since(events: str, offset: int) -> list[dict[str, str]]:
    """``{"path", "reason"}`` of the ``unreadable`` events appended to ``events`` after ``offset``."""
    out = []
    with contextlib.suppress(OSError), open(events, "rb") as f:
        f.seek(offset)
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue  # a line cut short by a full disk
            if isinstance(e, dict) and e.get("event") == "unreadable":
                out.append({"path": str(e.get("path")), "reason": str(e.get("reason"))})
    return out


def _mark(d: dict[str, Any], config: Any) -> str:
    """The decision behind a duplicate, for ``scan``'s listing."""
    if d.get("distinct"):
        return "  [not a duplicate: your decision]"
    if d.get("protected"):
        return f"  [never moved: {d['protected']}]"
    if d.get("move") and config.dry_run:
        return "  [would be quarantined]"
    return ""


def _scan_overrides(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, Any]:
    """Config overrides from ``scan``'s one-shot flags (``--method``, ``--threshold``, ``--exclude``,
    ``--policy``, ``--quarantine-dir``, ``--dry-run``)."""
    out: dict[str, Any] = {}
    if args.policy:
        out["policy"] = args.policy
    if args.dry_run:
        out["dry_run"] = True
        out.setdefault("policy", "quarantine")
    if args.quarantine_dir:
        out["quarantine_dir"] = os.path.abspath(args.quarantine_dir)
    if args.reference:
        roots = overrides.get("roots") or [
            {"path": r.path, "recursive": r.recursive, "reference": r.reference} for r in _load_config(args).roots]
        out["roots"] = [*roots, *({"path": os.path.abspath(d), "reference": True} for d in args.reference)]
    if args.method or args.threshold is not None or args.exclude:
        base = _load_config(args, overrides)  # the configured methods and excludes the flags add to
        names = [m for group in args.method or () for m in group]
        if not names:
            names = [*base.hash_methods(), *(["cnn"] if base.cnn else [])]
        methods: dict[str, Any] = {}
        for name in names:
            spec: dict[str, Any] = {}
            if name == "cnn" and base.cnn is not None:
                spec = {"model": base.cnn.model, "threshold": base.cnn.threshold,
                        **({"weights": base.cnn.weights} if base.cnn.weights else {})}
            elif name != "cnn" and name in base.hash_methods():
                spec = {"threshold": base.hash_methods()[name]}
            if args.threshold is not None:
                t = args.threshold
                spec["threshold"] = int(t) if name != "cnn" and float(t).is_integer() else t
            methods[name] = spec
        if args.method or args.threshold is not None:
            out["methods"] = methods
        if args.exclude:
            out["exclude"] = [*base.exclude, *args.exclude]
    return out


def _scan_on_ray(args: argparse.Namespace, config: Any, tty: bool) -> dict[str, Any]:
    """Phase 1 of the scan on a Ray cluster, the rest here (:mod:`dedupd.engines.ray_scan`)."""
    from dedupd.engines.ray_scan import BATCH, scan_on_ray

    def progress(line: str) -> None:
        if tty:
            sys.stderr.write(f"\r{line}   ")
            sys.stderr.flush()

    try:
        with contextlib.redirect_stdout(sys.stderr):  # Ray echoes its nodes' logs on stdout: keep it for the result
            return scan_on_ray(config, address=args.ray_address, batch=args.ray_batch or BATCH, progress=progress,
                               daemon_hook=lambda daemon: daemon.install_signals())
    except KeyboardInterrupt:  # Ctrl-C during the Ray phase (the local phase reports "interrupted" itself)
        return {"state": "interrupted"}


def cmd_report(args: argparse.Namespace) -> int:
    """``dedupd report --html OUT``: the HTML report from the store, without a running daemon."""
    from dedupd.reports.html import report_from_store

    overrides: dict[str, Any] = {}
    if args.store_dir:
        overrides["store_dir"] = os.path.abspath(args.store_dir)
    if not (args.config or os.environ.get("DEDUPD_CONFIG")):
        overrides["roots"] = [os.sep]  # no config: report every file the store holds (default match settings)
    config = _load_config(args, overrides)
    _require_folders(config, "store_dir")
    out = os.path.abspath(args.html)
    if os.path.isdir(out):
        from dedupd.errors import DedupdError

        raise DedupdError(f"--html {out} is a folder; give the report's file name, e.g. "
                          f"{os.path.join(out, 'report.html')}")
    stats = report_from_store(config, out, thumbs_dir=os.path.abspath(args.thumbs_dir) if args.thumbs_dir else None)
    if args.json:
        _print_json({**stats, "html": out})
    else:
        print(f"{stats['groups']} duplicate groups, {stats['thumbnails']} thumbnails -> {out} "
              f"({stats['bytes'] / 1e6:.1f} MB, {stats['seconds']} s)")
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    """``dedupd review``: the review page on 127.0.0.1 until Ctrl-C (read-only without a daemon)."""
    from dedupd.review.server import Review, ReviewServer, open_source

    config = None
    if args.config or os.environ.get("DEDUPD_CONFIG") or args.store_dir:
        overrides: dict[str, Any] = {"store_dir": os.path.abspath(args.store_dir)} if args.store_dir else {}
        if not (args.config or os.environ.get("DEDUPD_CONFIG")):
            overrides["roots"] = [os.sep]  # no config: every file the store holds
        config = _load_config(args, overrides)
        _require_folders(config, "store_dir")
    source = open_source(_socket_path(args), config)

    def _stop(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the page as Ctrl-C does (workers stopped, temp files gone)

    import signal

    signal.signal(signal.SIGTERM, _stop)
    review = Review(source, max_pixels=config.max_pixels if config is not None else None)
    try:
        server = ReviewServer(review, args.port)
    except OSError as exc:
        from dedupd.errors import DedupdError

        review.close()
        raise DedupdError(f"cannot listen on 127.0.0.1 port {args.port}: {exc.strerror or exc}; pass --port 0 "
                          "(a free port) or another port") from None
    launcher: str | None = None
    try:
        print(f"dedupd review: {source.describe()}", flush=True)
        print(f"open {server.url}", flush=True)
        print("(Ctrl-C to stop)", flush=True)
        if not args.no_browser:
            launcher = _open_privately(server.url)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        from dedupd.reports.thumbnails import stop_workers

        if launcher is not None:
            shutil.rmtree(launcher, ignore_errors=True)
        server.server_close()
        stop_workers()
        review.close()
    return EXIT_OK


def _open_privately(url: str) -> str:
    """Open ``url`` (it carries the review token) in the browser through a redirect page only this
    user can read: a browser's command line is world-readable in /proc, the page's folder is 0700.
    Returns the folder, removed when the review ends."""
    import tempfile
    import webbrowser
    from html import escape

    folder = tempfile.mkdtemp(prefix="dedupd-review-")
    page = os.path.join(folder, "open.html")
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f'<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={escape(url)}">'
                f'<title>dedupd review</title><a href="{escape(url)}">open the review page</a>\n')
    webbrowser.open(f"file://{page}")
    return folder


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
            ("policy", s.get("policy", "") + (" (dry run: nothing is moved)" if s.get("dry_run") else "")),
            ("reconcile", (f"{p.get('walked', 0)} walked, {p.get('queued', 0)} queued, "
                           f"{'done' if p.get('done') else 'running'}")),
            ("uptime", _duration(s["uptime_s"])), ("store", human_bytes(s["store_bytes"])), ("pid", s.get("pid", "?"))]
    last = s.get("last_reconcile")
    if last:  # the last walk that ended (the "reconcile" row is the current one)
        rows.insert(-3, ("last walk", f"{last['outcome']} at {_clock(last['finished_at'])} in {last['seconds']} s: "
                                      f"{last.get('walked', 0)} walked, {last.get('queued', 0)} new or changed, "
                                      f"{last.get('forgotten', 0)} gone"
                                      + (f", {last['unlistable']} folder(s) not listable" if last.get("unlistable") else "")))
    for r in s.get("roots", ()):
        if r.get("vanished") and r.get("present"):
            rows.insert(1, ("root back", f"{r['path']} (vanished {r['vanished']} time(s) since start; back at "
                                         f"{_clock(r['back_at'])})" if r.get("back_at") else r["path"]))
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


def _clock(t: float | None) -> str:
    import time

    return "?" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"



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

    if args.timeout is not None and not args.wait:
        print("dedupd rescan: --timeout needs --wait", file=sys.stderr)
        return EXIT_USAGE
    timeout = 3600.0 if args.timeout is None else args.timeout
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
        if time.monotonic() - t0 > timeout:
            print(f"dedupd: the rescan did not finish within {timeout:g} s (state {s['state']}, "
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
    try:
        data = Client(_socket_path(args)).get("/v1/quarantine", state=args.state)
    except DaemonNotRunning:
        if not _config_file(args):
            raise
        data = _quarantine_offline(args)
    if args.json:
        _print_json(data)
        return EXIT_OK
    for e in data["entries"]:
        print(f"#{e['id']:<5} {e['state']:9s} {e['origin']} -> {e['dest']}  (kept {e['keeper']}; {e['reason']})")
    print(f"{len(data['entries'])} entries")
    return EXIT_OK


def _quarantine_offline(args: argparse.Namespace) -> dict[str, Any]:
    """The manifest in the config's store, without a daemon (read-only, as ``GET /v1/quarantine``)."""
    from dedupd.daemon.store import Store

    with Store.open(_load_config(args).store_dir, readonly=True, lock=False) as store:
        entries = [e.as_dict() for e in store.iter_quarantine(args.state)]
    return {"entries": entries, "total": len(entries)}


class _DecisionClient(Client):
    """A client whose "not running" error also names the ways without a daemon (``--store-dir``, ``--config``)."""

    def request(self, *a: Any, **kw: Any) -> Any:
        try:
            return super().request(*a, **kw)
        except DaemonNotRunning as exc:
            raise DaemonNotRunning(f"{exc}; after a `dedupd scan` without a daemon, give its --store-dir "
                                   "(or --config) to record the decision in that store") from None


def _decide(args: argparse.Namespace, online: Callable[[Client], Any], offline: Callable[[Any], Any]) -> Any:
    """A decision (``keep``, ``ignore``) through the daemon, or in a store directly: ``--store-dir``, else
    the config's ``store_dir`` when no daemon answers."""
    from dedupd.daemon.store import Store
    from dedupd.errors import DedupdError

    store_dir = os.path.abspath(args.store_dir) if args.store_dir else None
    if store_dir is None:
        try:
            return online(_DecisionClient(_socket_path(args)))
        except DaemonNotRunning:
            if not _config_file(args):
                raise
            store_dir = _load_config(args).store_dir
    if not os.path.isfile(os.path.join(store_dir, "data.mdb")):  # never create an empty store for a typo
        what = "is not a dedupd store" if os.path.isdir(store_dir) else "does not exist"
        raise DedupdError(f"the store {store_dir} {what}; give the --store-dir of a `dedupd scan` (or the config "
                          "of the daemon that wrote it)")
    with Store.open(store_dir, lock=True) as store:
        return offline(store)


def _stored_content(store: Any, path: str) -> tuple[str, bytes]:
    """``(path, digest)`` of an indexed file in ``store`` (its absolute or real path)."""
    from dedupd.errors import DedupdError

    for candidate in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
        rec = store.get_file(candidate)
        if rec is not None and rec.digest is not None and rec.state == "ok":
            return candidate, rec.digest
    raise DedupdError(f"{path} is not indexed in the store {store.path}; scan its folder first")


def cmd_ignore(args: argparse.Namespace) -> int:
    """``dedupd ignore A B ...``: these files are not duplicates; ``--list``, ``--remove``."""
    if sum(map(bool, (args.list, args.remove, args.remove_id))) > 1 or (args.list and args.paths) or (
            args.remove_id and args.paths) or (not args.paths and not args.list and not args.remove_id):
        print("dedupd ignore: give two or more paths, or --list, or --remove PATH..., or --remove-id N",
              file=sys.stderr)
        return EXIT_USAGE
    paths = [os.path.abspath(p) for p in args.paths]

    def online(client: Client) -> Any:
        if args.list:
            return client.get("/v1/ignore")
        if args.remove_id:
            return client.post("/v1/ignore/remove", {"ids": args.remove_id})
        if args.remove:
            return client.post("/v1/ignore/remove", {"paths": paths})
        return client.post("/v1/ignore", {"paths": paths})

    res = _decide(args, online, lambda store: _ignore_offline(args, store, paths))
    if args.json:
        _print_json(res)
    elif args.list:
        for d in res["sets"]:
            now = d["current"]
            print(f"#{d['id']:<4} not duplicates: {', '.join(d['paths'])}"
                  + ("" if sorted(now) == sorted(d["paths"]) else f"  (now: {', '.join(now) or 'none indexed'})"))
        print(f"{res['total']} set(s)")
    elif not (args.remove or args.remove_id) or res["removed"]:
        print(res["detail"])
    return _removed_nothing("ignore") if (args.remove or args.remove_id) and not res["removed"] else EXIT_OK


def _removed_nothing(command: str) -> int:
    """A ``--remove`` that found nothing to forget is an error (as ``restore`` of a file not in quarantine)."""
    print(f"dedupd {command}: nothing to remove: no recorded decision matches (see `dedupd {command} --list`)",
          file=sys.stderr)
    return EXIT_ERROR


def _ignore_offline(args: argparse.Namespace, store: Any, paths: list[str]) -> dict[str, Any]:
    from dedupd.core.review import distinct_contents
    from dedupd.errors import DedupdError

    if args.list:
        sets = [{"id": d.id, "paths": list(d.paths),
                 "current": sorted(p for x in d.digests for p in store.files_with_digest(x)),
                 "digests": sorted(x.hex() for x in d.digests), "created_at": d.created_at}
                for d in store.distinct_sets()]
        return {"sets": sets, "total": len(sets)}
    if args.remove or args.remove_id:
        wanted = list(args.remove_id or ())
        if args.remove:
            digests = {_stored_content(store, p)[1] for p in paths}
            wanted = [d.id for d in store.distinct_sets() if d.digests & digests]
        removed = store.remove_distinct(wanted)
        return {"ok": True, "removed": removed,
                "detail": f"{len(removed)} set(s) forgotten" if removed else "no such set"}
    named = [_stored_content(store, p) for p in paths]
    try:
        by_digest = distinct_contents(named)
    except ValueError as exc:
        raise DedupdError(str(exc)) from None
    sid = store.add_distinct(by_digest, [p for p, _ in named])
    return {"ok": True, "id": sid, "paths": [p for p, _ in named],
            "detail": f"recorded: {len(named)} files are not duplicates of each other (set {sid})"}


def cmd_keep(args: argparse.Namespace) -> int:
    """``dedupd keep PATH``: keep this copy of its group; ``--list``, ``--remove PATH...``."""
    if (args.list and (args.paths or args.remove)) or (not args.list and not args.paths) or (
            not args.list and not args.remove and len(args.paths) != 1):
        print("dedupd keep: give one path to keep, or --list, or --remove PATH...", file=sys.stderr)
        return EXIT_USAGE
    paths = [os.path.abspath(p) for p in args.paths]

    def online(client: Client) -> Any:
        if args.list:
            return client.get("/v1/keep")
        if args.remove:
            return client.post("/v1/keep/remove", {"paths": paths})
        return client.post("/v1/keep", {"path": paths[0]})

    def offline(store: Any) -> dict[str, Any]:
        if args.list:
            pins = [{"path": p.path, "current": store.files_with_digest(p.digest), "digest": p.digest.hex(),
                     "pinned_at": p.pinned_at} for p in store.pins()]
            return {"pins": pins, "total": len(pins)}
        if args.remove:
            n = len(store.unpin([_stored_content(store, p)[1] for p in paths]))
            return {"ok": True, "removed": n, "detail": f"{n} pin(s) removed" if n else "not pinned"}
        path, digest = _stored_content(store, paths[0])
        store.pin(digest, path)
        return {"ok": True, "path": path, "detail": f"{path} is kept whenever it is in a group"}

    res = _decide(args, online, offline)
    if args.json:
        _print_json(res)
    elif args.list:
        for p in res["pins"]:
            now = p["current"]
            print(f"keep {p['path']}" + ("" if now == [p["path"]] else f"  (now: {', '.join(now) or 'none indexed'})"))
        print(f"{res['total']} pin(s)")
    elif not args.remove or res["removed"]:
        print(res["detail"])
    return _removed_nothing("keep") if args.remove and not res["removed"] else EXIT_OK


# -- completion and manual page -----------------------------------------------------------------------

#: shtab's completers (``shtab.FILE`` / ``shtab.DIRECTORY``), written out: the parser stays free of shtab
_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files", "tcsh": "f"}
_DIR = {"bash": "_shtab_compgen_dirs", "zsh": "_files -/", "tcsh": "d"}
_PATH_ARGS = {"config": _FILE, "socket": _FILE, "paths": _FILE, "html": _FILE, "dirs": _DIR, "report_dir": _DIR,
              "store_dir": _DIR, "thumbs_dir": _DIR, "quarantine_dir": _DIR, "reference": _DIR}


def _complete_paths(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Tell shtab which arguments are files or folders (every subcommand's)."""
    for action in parser._actions:
        if action.dest in _PATH_ARGS:
            action.complete = _PATH_ARGS[action.dest]  # type: ignore[attr-defined]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _complete_paths(sub)
    return parser


def _optional(module: str, what: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        from dedupd.errors import DedupdError

        raise DedupdError(f"{what} needs the '{module.split('.')[0]}' package: pip install 'dedupd[shell]'") from None


def cmd_completion(args: argparse.Namespace) -> int:
    """``dedupd completion bash|zsh|tcsh``: a completion script generated from this parser."""
    shtab = _optional("shtab", "dedupd completion")
    sys.stdout.write(shtab.complete(_complete_paths(build_parser()), shell=args.shell))
    return EXIT_OK


def manpage() -> str:
    """The manual page (roff) generated from this parser (its epilog gives the examples and exit status)."""
    page = _optional("argparse_manpage.manpage", "dedupd manpage").Manpage(build_parser())
    page.source, page.manual = f"dedupd {__version__}", "dedupd manual"
    return str(page)


def cmd_manpage(args: argparse.Namespace) -> int:
    """``dedupd manpage``: the manual page, e.g. ``dedupd manpage > dedupd.1; man ./dedupd.1``."""
    sys.stdout.write(manpage())
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------------------

EPILOG = """\
examples:
  dedupd scan ~/Pictures                      index a folder once, print the duplicate sets
  dedupd run --config /etc/dedupd/dedupd.yaml run the daemon
  dedupd query --fail-on-duplicate new.jpg    exit 3 if new.jpg duplicates an indexed image
  dedupd groups --limit 20 | less             the daemon's duplicate groups
  dedupd scan --dry-run ~/Pictures            what quarantine would move (nothing is moved)
  dedupd scan --print0 ~/Pictures | xargs -0 ls -l
                                              the removable duplicates, for xargs
  dedupd ignore a.jpg b.jpg                   a and b are not duplicates (remembered)
  dedupd keep b.jpg                           keep b.jpg instead of its group's other copies
  source <(dedupd completion bash)            tab completion
  dedupd review                               decide about the groups in a browser (127.0.0.1)

exit status:
  0 done, 1 error (the message says which), 2 usage error, 3 duplicate found (--fail-on-duplicate),
  4 the daemon is not running, 130 interrupted, 141 output pipe closed
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dedupd", description="Find exact and near-duplicate images, and keep "
                                "finding them while folders change.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"dedupd {__version__}")
    conf = argparse.ArgumentParser(add_help=False)  # every command but completion/manpage/calibrate
    conf.add_argument("--config", "-c", type=_path, help="YAML config file (default: $DEDUPD_CONFIG)")
    conf.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sock = argparse.ArgumentParser(add_help=False)  # the daemon to talk to (clients, review)
    sock.add_argument("--socket", type=_path, help=f"daemon socket (default: from --config, else {DEFAULT_SOCKET})")
    js = argparse.ArgumentParser(add_help=False)  # commands that print a result
    js.add_argument("--json", action="store_true", help="machine-readable output")
    common = [conf, sock, js]  # the client commands'
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rn = sub.add_parser("run", parents=[conf], help="run the daemon (watch, index, report/quarantine)")
    rn.add_argument("--socket", type=_path, help="listen on this socket (overrides the config's socket_path)")
    rn.set_defaults(func=cmd_run)
    s = sub.add_parser("scan", parents=[conf, js], help="one-shot: index folders, write reports, exit")
    s.add_argument("dirs", nargs="*", type=_path, metavar="DIR", help="folders to scan (default: the config's roots)")
    s.add_argument("--report-dir", type=_path, help="where to write duplicates.json / groups.json")
    s.add_argument("--store-dir", type=_path, help="LMDB store (re-runs are incremental)")
    s.add_argument("--method", action="append", type=_methods, metavar="NAME",
                   help="match with this method instead of the config's (phash, dhash, ahash, whash, cnn; "
                        "repeat or comma-separate for several)")
    s.add_argument("--threshold", type=float, metavar="N",
                   help="max Hamming distance (hashes, 0-64) or min cosine similarity (cnn) for those methods")
    s.add_argument("--exclude", action="append", metavar="GLOB", help="also skip files or folders matching GLOB")
    s.add_argument("--policy", choices=["report", "quarantine"], help="report only, or move duplicates away")
    s.add_argument("--quarantine-dir", type=_path, metavar="DIR", help="where quarantine moves duplicates")
    s.add_argument("--reference", action="append", type=_path, metavar="DIR",
                   help="also scan DIR as a reference root: its files are kept first and never moved")
    s.add_argument("--dry-run", action="store_true",
                   help="preview quarantine: move nothing, mark what would move (and the bytes it frees)")
    s.add_argument("--fail-on-duplicate", action="store_true", help="exit 3 when any duplicate group is found")
    s.add_argument("--removable", action="store_true",
                   help="print only the duplicates quarantine would move, one path per line (for xargs)")
    s.add_argument("--print0", action="store_true", help="as --removable, each path ended by NUL (xargs -0)")
    s.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where files are decoded and pairs searched: this machine's pool (default) or a Ray "
                        "cluster (pip install 'dedupd[ray]'; see README, Beyond one machine)")
    s.add_argument("--ray-address", metavar="HOST:PORT", type=_bounded(str, bool, "a Ray address: give HOST:PORT"),
                   help="with --engine ray: the head node's address (default: $RAY_ADDRESS if set, else a private "
                        "Ray on this machine)")
    s.add_argument("--ray-batch", type=_int_in(1, None), metavar="N", help="with --engine ray: files per Ray task "
                   "(default 64)")
    s.set_defaults(func=cmd_scan)
    rp = sub.add_parser("report", parents=[conf, js], help="write the HTML duplicate report from the store (no daemon needed)")
    rp.add_argument("--html", required=True, type=_path, metavar="OUT", help="report file (thumbnails go to OUT's folder/thumbs)")
    rp.add_argument("--store-dir", type=_path, help="store to read (default: the config's store_dir)")
    rp.add_argument("--thumbs-dir", type=_path, help="thumbnail folder (default: thumbs/ next to OUT)")
    rp.set_defaults(func=cmd_report)
    sub.add_parser("status", parents=common, help="daemon state and counters").set_defaults(func=cmd_status)
    q = sub.add_parser("query", parents=common, help="is this file a duplicate of an indexed one?")
    q.add_argument("paths", nargs="+", type=_path, metavar="PATH")
    q.add_argument("--fail-on-duplicate", action="store_true",
                   help="exit 3 when a duplicate is found (else 1 if a file could not be checked, 0 otherwise)")
    q.set_defaults(func=cmd_query)
    g = sub.add_parser("groups", parents=common, help="list duplicate groups")
    g.add_argument("--offset", type=_int_in(0, None), default=0, help="skip this many groups (default 0)")
    g.add_argument("--limit", type=_int_in(1, 10000), default=100, help="list at most this many (1-10000, default 100)")
    g.set_defaults(func=cmd_groups)
    rs = sub.add_parser("rescan", parents=common, help="walk the roots again now")
    rs.add_argument("--wait", action="store_true", help="wait until the walk and its work are done, then summarize")
    rs.add_argument("--timeout", type=_positive_seconds, help="with --wait: give up after this many seconds "
                    "(default 3600)")
    rs.set_defaults(func=cmd_rescan)
    sub.add_parser("reload", parents=common, help="re-read the config (like SIGHUP)").set_defaults(
        func=cmd_simple_post("/v1/reload"))
    r = sub.add_parser("restore", parents=common, help="move quarantined files back")
    r.add_argument("paths", nargs="*", type=_path, metavar="PATH")
    r.add_argument("--all", action="store_true", help="restore every quarantined file")
    r.set_defaults(func=cmd_restore)
    qu = sub.add_parser("quarantine", parents=common, help="quarantine manifest")
    qu.add_argument("action", choices=["list"], nargs="?", default="list")
    qu.add_argument("--state", choices=["pending", "moved", "restored", "failed"], help="only entries in this state")
    qu.set_defaults(func=cmd_quarantine)
    ig = sub.add_parser("ignore", parents=common, help="these files are not duplicates (remembered by content)")
    ig.add_argument("paths", nargs="*", type=_path, metavar="PATH")
    ig.add_argument("--list", action="store_true", help="list the recorded sets")
    ig.add_argument("--remove", action="store_true", help="forget the sets holding these files")
    ig.add_argument("--remove-id", type=int, action="append", metavar="N", help="forget set N (see --list)")
    ig.add_argument("--store-dir", type=_path, help="record in this store directly (after `dedupd scan`; no daemon)")
    ig.set_defaults(func=cmd_ignore)
    kp = sub.add_parser("keep", parents=common, help="keep this copy of its duplicate group (never moved)")
    kp.add_argument("paths", nargs="*", type=_path, metavar="PATH")
    kp.add_argument("--list", action="store_true", help="list the kept (pinned) copies")
    kp.add_argument("--remove", action="store_true", help="forget the pins of these files")
    kp.add_argument("--store-dir", type=_path, help="record in this store directly (after `dedupd scan`; no daemon)")
    kp.set_defaults(func=cmd_keep)
    co = sub.add_parser("completion", help="print a shell completion script (bash, zsh, tcsh)")
    co.add_argument("shell", choices=["bash", "zsh", "tcsh"])
    co.set_defaults(func=cmd_completion)
    sub.add_parser("manpage", help="print the manual page (roff): dedupd manpage > dedupd.1").set_defaults(
        func=cmd_manpage)
    rv = sub.add_parser("review", parents=[conf, sock], help="review the groups in a browser: keep, quarantine, "
                        "restore, not a duplicate (read-only without a daemon)")
    rv.add_argument("--port", type=_port, default=0, help="port on 127.0.0.1 (default: a free one)")
    rv.add_argument("--no-browser", action="store_true", help="only print the address (with its token)")
    rv.add_argument("--store-dir", type=_path, help="store to show when no daemon runs (default: the config's store_dir)")
    rv.set_defaults(func=cmd_review)
    ca = sub.add_parser("calibrate", help="choose thresholds from a labelled sample (precision/recall per threshold)",
                        description="Sweep hash thresholds (and the crop/flip variant hashes) on a labelled folder "
                        "and print precision/recall per threshold plus the recommended `methods:` config lines. "
                        "The ground truth is imagededup's format; make_corpus.py's ground_truth.json is valid.")
    ca.add_argument("dir", type=_path, help="folder of the labelled images")
    ca.add_argument("--ground-truth", required=True, type=_path, help='JSON {"name": ["duplicate name", ...]}, names relative to DIR')
    ca.add_argument("--methods", default="phash,dhash", help="comma-separated hash methods (default phash,dhash)")
    ca.add_argument("--options", default="crop,flip", help="variant hashes to try: crop,flip (default both; '' none)")
    ca.add_argument("--precision", type=_precision, default=0.99, help="min pair precision of a match (default 0.99)")
    ca.add_argument("--strong-precision", type=_precision, default=0.999,
                    help="min pair precision of a strong match, which quarantine may move (default 0.999)")
    ca.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    ca.add_argument("--no-exif", action="store_true", help="ignore EXIF orientation (default: apply it, as the daemon)")
    ca.add_argument("--json", type=_path, help="also write the numbers to this JSON file")
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
    except OSError as exc:  # a path the system refused (permissions, full disk, a file in the way): no traceback
        print(f"dedupd: {args.command} failed: {_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        from dedupd.errors import DedupdError

        if isinstance(exc, DedupdError):
            print(f"dedupd: {exc}", file=sys.stderr)
            return EXIT_ERROR
        raise


_OS_HINTS = {
    errno.EACCES: "check its permissions, or choose another path",
    errno.EPERM: "check its permissions, or choose another path",
    errno.EROFS: "it is on a read-only filesystem: choose another path",
    errno.ENOSPC: "free space on its filesystem, or choose a path on another one",
    errno.EDQUOT: "your disk quota is used up: free space, or choose a path on another filesystem",
    errno.EEXIST: "a file is in the way: the path must be a folder",
    errno.ENOTDIR: "a file is in the way: the path must be a folder",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ENOENT: "check that the path exists",
}


def _os_error(exc: OSError) -> str:
    """``strerror: path[ -> path2]; hint`` for an uncaught ``OSError``."""
    where = "".join(f": {name}" if i == 0 else f" -> {name}"
                    for i, name in enumerate(n for n in (exc.filename, exc.filename2) if n is not None))
    hint = _OS_HINTS.get(exc.errno or 0, "check the path")
    return f"{exc.strerror or exc}{where}; {hint}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
