"""The daemon's lifecycle: start-up, the main loop, reload, and one ordered, time-boxed shutdown.

Start-up: open the store (single-writer lock) → settle crashed quarantine moves → load the index
from the store (files and hash columns; the persisted duplicate graph is loaded, or derived, on the
``graph`` thread: see :mod:`dedupd.daemon.graph`) → start pipeline, settle, reporter, socket
server and watcher → reconcile with the disk in the background (state ``reconciling``) →
``watching``. READY=1 goes to systemd as soon as the socket answers. Signal handlers only set
flags; the main loop acts on them.

Reports are written by the ``reporter`` thread from a snapshot of the graph (taken under the index
lock in O(files + duplicate edges), written outside it), at most every ``report_interval_s`` after
a change; the socket API reads the index itself, so it is always current. Thumbnails are made by
worker processes in the background and appear in a later report. The shutdown gives the final
report write a time box instead of waiting for it.

Supervision: every long-lived thread is started by :meth:`Daemon._spawn`, which logs its death;
the main loop feeds systemd's watchdog only while :meth:`Daemon.healthy` (every worker thread
alive, the pipeline not stalled), and a dead thread stops the daemon with a non-zero exit so that
systemd restarts it. A pipeline that keeps failing (full disk) stays up and shows ``degraded``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from dedupd.cpus import available_cpus
from dedupd.daemon.config import Config
from dedupd.daemon.encoder import EncodeResult
from dedupd.daemon.graph import GraphKeeper
from dedupd.daemon.idleseal import IdleSealer
from dedupd.daemon.intake import Intake
from dedupd.daemon.loader import matching_of, release_memory
from dedupd.daemon.notify import Notifier
from dedupd.daemon.pipeline import Pipeline, Work, encode_spec
from dedupd.daemon.policy import QuarantinePolicy, RestoreRequest, SelectedQuarantine
from dedupd.daemon.quarantine import Quarantine
from dedupd.daemon.reconcile import Reconciler
from dedupd.daemon.settle import Settler
from dedupd.daemon.store import Store
from dedupd.daemon.watcher import Watcher
from dedupd.daemon.workers import encode_bytes, join_process_pools, query_pool
from dedupd.reports.atomic import sweep_stale_temps
from dedupd.reports.files import EventLog, ReportWriter, write_reports
from dedupd.reports.html import THUMBS_DIR
from dedupd.reports.offline import ReportChild, child_min_files
from dedupd.reports.thumbnails import stop_workers as stop_thumbnail_workers

logger = logging.getLogger("dedupd.daemon")

#: a pipeline step running longer than this (no heartbeat) counts as stuck: the watchdog starves
STALL_S = 300.0
#: the GIL is handed over this often (CPython's default is 5 ms): with the graph, report and walk
#: threads busy, a socket request needs the GIL dozens of times, and at 5 ms per hand-over a
#: ``dedupd status`` took up to 0.7 s during a reload of 100k files
SWITCH_INTERVAL_S = 0.001
#: at the end of a shutdown, how long the pools' manager threads (discarded pools' too) may take to end
POOL_JOIN_S = 3.0
#: a change waits this long before its report is written, so that the rest of a burst joins it
REPORT_COALESCE_S = 0.1
#: a due duplicates.json / report.html write lets groups.json writes go first for at most this long
SLOW_YIELD_S = 5.0
#: at start-up the walk of the roots waits at most this long for the first groups.json (see
#: ``Daemon._walk_after_first_report``)
WALK_WAIT_S = 60.0
#: the final report write at shutdown is given this long (the reports written before stay in place)
FINAL_REPORT_S = 5.0
#: a scan stops when one step has failed this often for a reason that may last (a full disk: the
#: retries wait 0.5 + 1 + 2 s), where the daemon retries until it goes through
SCAN_FAULT_ATTEMPTS = 4
#: settings a running daemon cannot adopt; a reload that changes them says a restart is needed
RESTART_ONLY = ("store_dir", "report_dir", "socket_path", "socket_mode", "socket_group")
#: Config fields named as in the YAML file
_CONFIG_KEY = {"hash_thresholds": "methods", "cnn": "methods", "hash_strong": "methods", "hash_options": "methods",
               "hash_agree": "methods"}


#: the threads that must live as long as the daemon (reconcile and graph builds end by themselves)
_LONG_LIVED = frozenset({"dedupd-pipeline", "dedupd-settle", "dedupd-reporter", "dedupd-reports-slow"})  # reporter: not in a scan


class DaemonFailed(RuntimeError):
    """A daemon thread died: the daemon stopped so that its supervisor (systemd) restarts it."""


class Daemon:
    """One running dedupd: owns every thread and resource; :meth:`run` or :meth:`scan_once`."""

    def __init__(self, config: Config, *, serve: bool = True, watch: bool = True,
                 config_loader: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.serve = serve
        self.watch = watch
        self._config_loader = config_loader
        self.state = "starting"
        self.started_at = time.time()
        self.notifier = Notifier()
        self.stop_event = threading.Event()
        self._reload_requested = threading.Event()
        self._reload_lock = threading.Lock()
        self._reload_waiters: list[tuple[threading.Event, dict[str, Any]]] = []
        self._rescan_requested = threading.Event()
        self._dirty = threading.Event()
        self._changed_at: float | None = None  # the first indexed change not yet in groups.json (monotonic)
        self._first_report = threading.Event()  # the first groups.json write was attempted
        self._threads: list[threading.Thread] = []
        self.dead_threads: list[str] = []  # names of threads that died of an exception
        self._one_shot = False  # scan_once: no reporter thread
        self._encoders_pending = False  # new encoder settings, recorded once a full reconcile is done
        self.report_counts = {"groups": 0, "duplicates": 0}
        self.report_error: str | None = None
        self._reporting_since: float | None = None  # a report write in progress since (monotonic)
        self._slow_since: float | None = None  # the same for duplicates.json / report.html
        self._slow_budget = 0.0  # how long the running slow write may still wait for groups.json writes
        self.store: Store | None = None
        self.server: Any = None
        self._last_rescan = 0.0
        self._sigint_count = 0
        self.query_workers = query_pool()  # decodes for /v1/query, apart from the ingest pool
        self._roots_checked = 0.0
        self.watcher: Watcher | None = None

    # -- start-up -----------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        if self.serve:  # claim the socket first: a second daemon refuses before touching any store
            from dedupd.daemon.api.routes import Router, warm_up
            from dedupd.daemon.api.transport import ApiServer

            self.server = ApiServer(cfg, Router(self), warm_up=lambda: warm_up(self))
            self.server.claim()
        try:
            self.store = Store.open(cfg.store_dir, lock=True)
        except BaseException:
            if self.server is not None:
                self.server.stop()
            raise
        os.makedirs(cfg.report_dir, exist_ok=True)
        _sweep(cfg.report_dir)  # before the first report write: what a killed write left
        self.events = EventLog(os.path.join(cfg.report_dir, "events.jsonl"), cfg.report_mode)
        self.reports = ReportWriter(cfg.report_dir)
        self.reports.yield_to = self._groups_first
        self.reports.child = ReportChild()  # duplicates.json and report.html outside this interpreter
        self.reports.child_min_files = child_min_files()  # (at scale)
        self.quarantine = Quarantine(cfg, self.store, on_event=self.events.append)
        recovered = self.quarantine.recover()
        if recovered:
            logger.warning("settled %d quarantine moves interrupted by a crash", recovered)
        self.in_quarantine = sum(1 for _ in self.store.iter_quarantine("moved"))  # then kept current
        refresh = self._load_index()
        self.settler = Settler(cfg.settle_ms / 1000, lambda path: self.pipeline.put(Work("upsert", path)))
        self.pipeline = Pipeline(cfg, self.store, self.index, on_change=self._changed,
                                 on_event=self.events.append, retouch=self.settler.touch)
        self.pipeline.on_reconfigure = self._regraph
        self.policy = QuarantinePolicy(self.quarantine, self.index, on_moved=self._quarantined,
                                       on_restored=self._restored, on_change=self._dirty.set,
                                       stopping=self.stop_event.is_set)
        self.pipeline.policy = self.policy
        self.reconciler = Reconciler(self.store, self.index, self.pipeline.put, self._spawn, self.stop_event.is_set,
                                     self.pipeline.links)
        self.reconciler.refresh = refresh
        self.intake = Intake(self.settler, self.pipeline, self.events, config=lambda: self.config,
                             watcher=lambda: self.watcher, rescan=self._rescan_requested.set)
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._spawn("graph", self._build_graph)
        if self.server is not None:  # answers (status, queries) while the decoders start
            self.server.start()
        if self._one_shot:  # a scan walks while its decoders start: the first batch is then a full one
            self.start_reconcile()
        self.pipeline.start_pool()  # a bad CNN setting fails here, before any file is decoded
        self._spawn("pipeline", self.pipeline.run)
        self._spawn("settle", self.settler.run)
        if not self._one_shot:  # a scan writes its reports once, at the end, from the complete graph
            self._spawn("reporter", self._report_loop)
            self._spawn("reports-slow", self._slow_report_loop)
            self.idle_sealer = IdleSealer(self, self._idle,
                                          lambda: self.pipeline.pending() == 0 and not self.stop_event.is_set())
            self._spawn("idle-seal", lambda: self.idle_sealer.run(self.stop_event))
        self.watcher = Watcher(cfg, self.intake) if self.watch else None
        if self.watcher is not None:
            self.watcher.start()
        self._spawn("sweep-thumbs", lambda: _sweep(os.path.join(cfg.report_dir, THUMBS_DIR)))  # (1M names)
        if not self._one_shot:
            self._last_rescan = time.monotonic()  # (the periodic rescan counts from now)
            self._spawn("walk-start", self._walk_after_first_report)
        self.notifier.ready(self.status_line())
        logger.info("dedupd started", extra={"files": len(self.index.files), "roots": [r.path for r in cfg.roots]})

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        """Start a daemon thread whose death by exception is logged and stops the daemon."""

        def supervised() -> None:
            try:
                target()
            except BaseException:
                logger.critical("daemon thread %s died; stopping so that the service is restarted", name,
                                exc_info=True, extra={"thread_name": name})
                self.dead_threads.append(name)
                self.stop_event.set()

        t = threading.Thread(target=supervised, name=f"dedupd-{name}", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def healthy(self) -> bool:
        """Every worker thread alive, the pipeline not stuck in one step and no report write hung (a
        dead network mount): feed the watchdog."""
        if self.dead_threads:
            return False
        if not all(t.is_alive() for t in self._threads if t.name in _LONG_LIVED):
            return False
        now = time.monotonic()
        return now - self.pipeline.heartbeat < STALL_S and all(
            since is None or now - since < STALL_S for since in (self._reporting_since, self._slow_since))

    def _load_index(self) -> bool:
        """Load the index from the store; True when the stored encodings need a refresh."""
        assert self.store is not None
        cfg = self.config
        mismatch = self.store.encoder_mismatch(cfg.hash_keys(), cfg.cnn_model_id(), hash_params=cfg.hash_params_id())
        # the new settings are recorded only once every file has been looked at under them: a
        # crash before that re-runs the refresh (files already re-encoded are skipped cheaply)
        self._encoders_pending = mismatch.any or not self.store.meta().get("hash_params")
        # files and hash columns load at once (queries work); the duplicate graph among them is
        # loaded from the store's edges (or derived, if they do not serve the config) afterwards,
        # on the graph thread
        self.graph = GraphKeeper(self.store, cfg)
        self.index = self.graph.load()  # the sealed snapshot of the last clean stop, else the store
        gc.freeze()  # the loaded index lives as long as the daemon: later collections need not walk it
        self._dirty.set()
        return mismatch.any

    def _build_graph(self) -> None:
        if not self.graph.run(self.index, self.stop_event.is_set):
            return  # stopping, or superseded by a newer build (a reload changed the thresholds)
        self._dirty.set()

    def _regraph(self, config: Config) -> None:
        """On the pipeline thread, between batches: adopt a reloaded config's duplicate rule."""
        if matching_of(config) == self.index.matching:
            self.graph.config = config
            return
        self.graph.retune(self.index, config)
        self._spawn("graph", self._build_graph)

    # -- reconcile ----------------------------------------------------------------------------

    def start_reconcile(self) -> None:
        """Walk the roots in the background (once more after the running walk, if one runs)."""
        self._last_rescan = time.monotonic()
        if self.reconciler.start(self.config):
            self.state = "reconciling"

    def _walk_after_first_report(self) -> None:
        """Start-up: walk the roots once the stored graph is linked and the first ``groups.json``
        written, at most :data:`WALK_WAIT_S` later (at once when the graph must be derived: that
        takes minutes). At a million files the walk's stat and store read per file took half the
        interpreter from the edge linking and the report, which held every group back ~20 s."""
        deadline = time.monotonic() + WALK_WAIT_S
        while not self._first_report.is_set() and time.monotonic() < deadline and not self.stop_event.is_set():
            graph = getattr(self, "graph", None)
            if graph is not None and graph.state == "deriving":
                break
            self._first_report.wait(0.05)
        if not self.stop_event.is_set():
            self.start_reconcile()

    @property
    def reconcile_progress(self) -> dict[str, Any]:
        return self.reconciler.progress

    # -- reports and policy -------------------------------------------------------------------

    def quiet(self) -> bool:
        """Nothing queued, settling or still being linked: reports and policy see the whole picture."""
        return self.index.graph_ready and self.pipeline.pending() == 0 and self.settler.pending() == 0

    def _idle(self) -> bool:
        """Quiet, the graph complete and ``groups.json`` written: the idle seal may be written."""
        return (self.quiet() and self.graph.state == "ready" and not self._dirty.is_set()
                and self._reporting_since is None and self.report_error is None)

    def _changed(self) -> None:
        """The pipeline indexed a change: groups.json is owed (the time is logged with the write)."""
        if self._changed_at is None:
            self._changed_at = time.monotonic()
        self._dirty.set()

    def _report_loop(self) -> None:
        backoff = 0.0  # after a failed write: wait this long before the next attempt
        last_write = 0.0
        while not self.stop_event.is_set():
            if not self._dirty.wait(timeout=0.5):
                if self.policy.retry_due():
                    self._dirty.set()  # a failed quarantine move's back-off ended: re-plan
                continue
            # debounce: at most one write per report_interval_s, and a short pause that coalesces
            # the rest of a burst; a steady ingest is then reported steadily, not after it ends
            due = max(last_write + self.config.report_interval_s, time.monotonic() + REPORT_COALESCE_S) + backoff
            if self.stop_event.wait(max(0.0, due - time.monotonic())):
                break
            if not self.index.graph_ready:
                continue  # dirty stays set: written once the start-up graph is complete
            self._dirty.clear()
            self._reporting_since = started = time.monotonic()
            since, self._changed_at = self._changed_at, None
            try:
                if self.config.policy == "quarantine" and self.quiet():
                    self._plan_quarantine()
                self.report_counts = self.reports.write_groups(self.index, self.config, self.store)
                if self.reports.adopted:
                    self._dirty.set()  # the adopted groups.json's lines are built next
                self.report_error = None
                if since is not None:
                    logger.debug("groups.json written after a change", extra={
                        "since_change_s": round(time.monotonic() - since, 3),
                        "write_s": round(time.monotonic() - started, 3)})
            except Exception as exc:
                # e.g. the report folder's disk is full: keep the old reports, try again later
                if self.report_error is None:
                    logger.exception("writing reports failed; retrying", extra={"dir": self.config.report_dir})
                self.report_error = f"{type(exc).__name__}: {exc}"
                self._dirty.set()
                backoff = min(30.0, max(1.0, 2 * backoff))
            else:
                backoff = 0.0
            finally:
                self._reporting_since = None
                # from the start of this write: a change that came during a slow write (a second at
                # a million files) is written right after it, not report_interval_s later on top
                last_write = started
                self._first_report.set()

    def _slow_report_loop(self) -> None:
        """``duplicates.json`` and ``report.html``: O(files) to write, so on their own thread (a new
        file's group reaches groups.json meanwhile), at most every max(report_interval_s,
        :data:`dedupd.reports.files.SLOW_SPACING` x their write time), and not while a groups.json
        write is due or running, for at most their last write time and ``SLOW_YIELD_S`` (a steady
        ingest does not starve them; a small library's report is not held up)."""
        failing: str | None = None
        yielding = 0.0  # since when a due write waits for groups.json writes
        while not self.stop_event.wait(0.1):
            if not (self.index.graph_ready and self.reports.slow_due_now()):
                continue
            # groups.json writes go first, for at most as long as this write itself took last time
            # (a million keys: seconds; a small library: not at all), SLOW_YIELD_S at most
            budget = min(SLOW_YIELD_S, self.reports.slow_seconds)
            if self._dirty.is_set() or self._reporting_since is not None:
                yielding = yielding or time.monotonic()
                if time.monotonic() - yielding < budget:
                    continue  # a groups.json write is due or running: it goes first (a new file waits for it)
            yielding = 0.0
            self._slow_budget = budget
            self._slow_since = time.monotonic()
            try:
                self.reports.write_slow(self.index, self.config, self.store, on_thumbnails=self._thumbnails_ready)
                failing = None
            except Exception as exc:
                if self.stop_event.is_set():
                    break  # its child was stopped with the daemon: the final report follows
                if failing is None:
                    logger.exception("writing duplicates.json/report.html failed; retrying",
                                     extra={"dir": self.config.report_dir})
                failing = self.report_error = f"{type(exc).__name__}: {exc}"
                self.reports.slow_pending = True
                self.stop_event.wait(5.0)
            finally:
                self._slow_since = None

    def _groups_first(self) -> None:
        """Between pieces of ``duplicates.json``: wait while a groups.json write is due or running
        (in all per slow write at most its last write time, and ``SLOW_YIELD_S``)."""
        t0 = time.monotonic()
        while (self._reporting_since is not None or (self._dirty.is_set() and self.index.graph_ready)) \
                and time.monotonic() - t0 < self._slow_budget and not self.stop_event.is_set():
            time.sleep(0.01)
        self._slow_budget = max(0.0, self._slow_budget - (time.monotonic() - t0))

    def _thumbnails_ready(self) -> None:
        """The pool made thumbnails the last ``report.html`` showed as placeholders: it is owed again
        (the groups did not change, so the groups writer would not ask for it)."""
        self.reports.slow_pending = True

    def _plan_quarantine(self) -> None:
        plan = self.policy.plan()
        if plan is not None:
            self.pipeline.put(Work("quarantine", plan=plan))  # moved on the pipeline thread, re-verified

    def _quarantined(self, path: str) -> None:
        self.pipeline.counters.quarantined += 1
        self.in_quarantine += 1

    def _restored(self, path: str) -> None:
        self.pipeline.counters.restored += 1
        self.in_quarantine -= 1
        self.settler.touch(path)

    def encode_upload(self, data: bytes) -> EncodeResult:
        """Decode and encode image bytes from a client in a query worker process, never in this one.

        Never raises for bad bytes: the result carries the reason (``too_large`` above
        ``max_pixels``). Raises :class:`~dedupd.daemon.workers.DecodeBusy` when every query
        decoder stays busy.
        """
        return encode_bytes(self.query_workers, data, encode_spec(self.config))

    def decisions_changed(self) -> None:
        """A decision was recorded over the socket (ignore, keep): reports and the plan follow it."""
        self._dirty.set()

    def restore(self, paths: list[str] | None, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Restore quarantined files on the pipeline thread and return the complete result.

        Raises:
            RestoreTimeout: not finished within ``timeout`` s (the job then stops before its next file).
        """
        request = RestoreRequest(paths)
        self.pipeline.put(Work("restore", plan=request))
        return request.wait(timeout)

    def quarantine_selected(self, paths: list[str], timeout: float = 120.0) -> list[dict[str, Any]]:
        """Quarantine the files a user chose (any policy) on the pipeline thread; one result per path.

        Raises:
            RestoreTimeout: not finished within ``timeout`` s (the job then stops before its next file).
        """
        request = SelectedQuarantine(paths)
        self.pipeline.put(Work("quarantine", plan=request))
        return request.wait(timeout)

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        c = self.pipeline.counters
        store_bytes = 0
        try:
            store_bytes = os.path.getsize(os.path.join(self.config.store_dir, "data.mdb"))
        except OSError:
            pass
        fault = self.pipeline.fault
        problems = {
            **({"pipeline": fault.as_dict()} if fault is not None else {}),
            **({"reports": self.report_error} if self.report_error else {}),
            **({"events": f"{self.events.failing} ({self.events.dropped} dropped)"} if self.events.failing else {}),
            **({"dead_threads": list(self.dead_threads)} if self.dead_threads else {}),
            **({"roots": "watched folder(s) missing or unreadable: "
                         + ", ".join(f"{m} ({self.intake.why_missing(m)})" for m in missing)
                         + "; their files are forgotten until they are back (remount or recreate them, or make "
                         "them readable by the user running dedupd)"} if (missing := self.intake.missing_roots()) else {}),
        }
        graph = getattr(self, "graph", None)
        return {
            "state": "degraded" if problems and self.state in ("reconciling", "watching") else self.state,
            "problems": problems,
            "files": len(self.index.files),
            "encoded": self.index.content_count,
            "decoded": c.decoded,
            "reused": c.reused,
            "unreadable": c.unreadable,
            "queued": self.pipeline.pending() + self.settler.pending(),
            "groups": self.report_counts["groups"],
            "duplicates": self.report_counts["duplicates"],
            "failed": c.failed,
            "events_dropped": self.events.dropped,
            "quarantined": c.quarantined,  # moves since start; in_quarantine: files there now
            "in_quarantine": self.in_quarantine,
            "restored": c.restored,
            "reconcile_progress": dict(self.reconcile_progress),
            "graph": "ready" if self.index.graph_ready else (graph.state if graph is not None else "building"),
            "uptime_s": round(time.time() - self.started_at, 1),
            "store_bytes": store_bytes,
            "policy": self.config.policy,
            "dry_run": self.config.dry_run,
            "missing_roots": missing,
            "roots": self.intake.roots(),
            "last_reconcile": self.reconciler.last,
            "pid": os.getpid(),
        }

    def status_line(self) -> str:
        s = self.status()
        line = f"{s['state']}: {s['files']} files, {s['groups']} groups, {s['queued']} queued"
        if s["problems"]:
            line += "; " + "; ".join(f"{k}: {v.get('error') if isinstance(v, dict) else v}"
                                     for k, v in s["problems"].items())
        return line

    # -- main loop ----------------------------------------------------------------------------

    def install_signals(self) -> None:
        def on_term(signum: int, _frame: Any) -> None:
            if signum == signal.SIGINT:
                self._sigint_count += 1
                if self._sigint_count > 1:
                    os._exit(130)  # second Ctrl-C: the user insists
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, lambda *_: self._reload_requested.set())

    def request_reload(self, wait: float = 0.0) -> dict[str, Any] | None:
        """Ask the main loop to reload; with ``wait``, block up to that long for the outcome."""
        done = threading.Event()
        outcome: dict[str, Any] = {}
        with self._reload_lock:
            self._reload_waiters.append((done, outcome))
        self._reload_requested.set()
        if not wait:
            return None
        if not done.wait(wait):
            return {"ok": False, "error": f"the reload did not finish within {wait:.0f} s; see the daemon's log"}
        return outcome

    def request_rescan(self) -> None:
        self._rescan_requested.set()

    def run(self) -> None:
        """Start, loop until a stop signal, shut down.

        Raises:
            DaemonFailed: a daemon thread died (logged); the caller exits non-zero.
        """
        last_ping = last_status = 0.0
        try:
            self.start()
            while not self.stop_event.wait(0.1):
                now = time.monotonic()
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    with self._reload_lock:
                        waiters, self._reload_waiters = self._reload_waiters, []
                    outcome = self.reload()
                    for done, result in waiters:
                        result.update(outcome)
                        done.set()
                interval = self.config.rescan_interval_s
                if self._rescan_requested.is_set() or (interval and now - self._last_rescan > interval):
                    self._rescan_requested.clear()
                    self.start_reconcile()
                if now - self._roots_checked >= 0.5:
                    self._roots_checked = now
                    self.intake.check_roots()
                self._after_reconcile()
                wd = self.notifier.watchdog_interval
                if wd and now - last_ping >= wd and self.healthy():
                    self.notifier.watchdog()
                    last_ping = now
                if now - last_status >= 2:
                    self.notifier.status(self.status_line())
                    last_status = now
        finally:
            self.shutdown()
        if self.dead_threads:
            raise DaemonFailed(f"daemon thread(s) died: {', '.join(self.dead_threads)} (see the log)")

    def _after_reconcile(self) -> None:
        """Main loop: once a walk is done and its work processed → ``watching``; record the encoder
        settings it refreshed; start the walk a reload asked for meanwhile."""
        if self.state != "reconciling" or not self.reconciler.done or not self.quiet():
            return
        if self.reconciler.due:
            self.start_reconcile()
            return
        self._record_encoders()
        self.state = "watching"
        release_memory(self.store)  # what the walk read and freed
        logger.info("watching", extra={"files": len(self.index.files)})

    def _record_encoders(self) -> None:
        """After a complete walk with everything processed: the store now serves this config's encoders."""
        if self._encoders_pending and self.reconciler.complete and self.store is not None:
            cfg = self.config
            self.store.set_encoders(cfg.hash_keys(), cfg.cnn_model_id(), hash_params=cfg.hash_params_id())
            self._encoders_pending = False

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the reconcile is done and every queued file is processed (False: timed out,
        or the daemon is stopping)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self.reconciler.done and self.quiet()):
            if self.stop_event.is_set() or (deadline is not None and time.monotonic() > deadline):
                return False
            time.sleep(0.01)  # a few cheap counters: a scan's end is seen at once, not up to 50 ms later
        return True

    def reload(self) -> dict[str, Any]:
        """Re-read the config (SIGHUP, ``dedupd reload``): thresholds, policy, keep-rule, roots, methods;
        keep the store. Returns the outcome: ``ok``, and ``changed``/``restart_needed`` or ``error``."""
        if self._config_loader is None:
            return {"ok": False, "error": "this daemon was started without a config file to re-read"}
        self.notifier.reloading()
        try:
            new = self._config_loader()
        except Exception as exc:
            logger.error("reload failed, keeping the running config: %s", exc)
            self.notifier.ready(self.status_line())
            return {"ok": False, "error": f"{exc}; the running config is kept"}
        old = self.config
        fixed = [k for k in RESTART_ONLY if getattr(new, k) != getattr(old, k)]
        if fixed:
            logger.warning("reload: %s changed but take(s) effect only after a restart (systemctl restart dedupd); "
                           "keeping the running values until then", ", ".join(fixed), extra={"keys": fixed})
            new = dataclasses.replace(new, **{k: getattr(old, k) for k in fixed})
        changed = list(dict.fromkeys(_CONFIG_KEY.get(f.name, f.name) for f in dataclasses.fields(new)
                                     if f.name != "source" and getattr(new, f.name) != getattr(old, f.name)))
        self.config = new
        self.quarantine.config = new
        self.pipeline.put(Work("reconfigure", config=new))
        # new thresholds: the pipeline thread adopts them between batches (_regraph): within the
        # stored reach a refilter, else a re-derivation, both in the background in lock-released
        # steps (never on this loop: the watchdog and the socket keep going)
        if (new.roots, new.include, new.exclude) != (old.roots, old.include, old.exclude) and self.watcher:
            self.watcher.stop()
            self.watcher = Watcher(new, self.intake)
            self.watcher.start()
            self.start_reconcile()
        if set(new.hash_keys()) != set(old.hash_keys()) or new.cnn_model_id() != old.cnn_model_id():
            self.reconciler.refresh = self._encoders_pending = True
            self.start_reconcile()
        elif new.max_pixels != old.max_pixels:  # files refused under the old limit, or above the new one
            self.start_reconcile()
        self._dirty.set()
        logger.info("configuration reloaded", extra={"source": new.source, "changed": changed})
        self.notifier.ready(self.status_line())
        return {"ok": True, "changed": changed, "restart_needed": fixed}

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop in order: watcher → settle → pipeline (finishes its batch) → reports → server → store."""
        complete = self.state not in ("interrupted", "failed") and not self.dead_threads  # else the graph may be partial
        self.state = "stopping"
        self.notifier.stopping()
        self.stop_event.set()
        if hasattr(self, "reports") and self.reports.child is not None:
            self.reports.child.kill()  # a running duplicates.json / report.html write (the final one follows)
        if self.watcher is not None:
            self.watcher.stop()
        if hasattr(self, "settler"):
            self.settler.stop()
        if hasattr(self, "pipeline"):
            self.pipeline.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            logger.error("threads still running at shutdown: %s", ", ".join(stuck))
        sealable = hasattr(self, "index") and self.store is not None and self.index.graph_ready and complete
        if sealable:
            self._final_report(FINAL_REPORT_S)
        if hasattr(self, "reports") and self.reports.child is not None:
            self.reports.child.kill(refuse=True)  # an abandoned final write's child
        if self.server is not None:
            self.server.stop()
        if sealable and not stuck:
            try:  # nothing commits now: the next start may adopt groups.json if nothing changes meanwhile
                self.reports.seal(self.index, self.config, self.store)
            except Exception:
                logger.exception("could not seal groups.json (the next start writes it in full)")
            try:  # the index as flat arrays: the next start need not read every record
                self.graph.save(self.index)
            except Exception:
                logger.exception("could not write the index snapshot (the next start loads the store)")
        self.query_workers.shutdown()
        stop_thumbnail_workers()
        if self.store is not None:
            self.store.close()
            self.store = None
        _join_leftover_threads(POOL_JOIN_S)
        logger.info("dedupd stopped")

    def _final_report(self, timeout: float) -> None:
        """Write the reports once more, waiting at most ``timeout`` s (a huge library, a hung mount):
        the write is atomic per file, so stopping meanwhile leaves the previous reports intact.
        Thumbnails not made yet are not waited for (the next start makes them)."""
        if not self._dirty.is_set() and not self.reports.slow_pending:
            return  # the last written reports are current
        store, abandoned = self.store, threading.Event()

        def final() -> None:
            try:
                self.report_counts = self.reports.write(self.index, self.config, store, slow=True,
                                                        on_thumbnails=lambda: None, lazy=True)
            except Exception:
                if not abandoned.is_set():  # past the time box the store is closed under it: expected
                    logger.exception("final report write failed")

        t = threading.Thread(target=final, name="dedupd-final-report", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            abandoned.set()
            logger.warning("the final report write did not finish within %.0f s; the previous reports stay "
                           "(the next start writes them again)", timeout)

    # -- one-shot scan ------------------------------------------------------------------------

    def scan_once(self, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Reconcile, process everything, write the reports, stop. Returns the final status.

        A scan decodes with ``scan_workers`` processes (default: every CPU this process may use),
        not the daemon's ``workers``.
        """
        self._one_shot = True
        self.config = dataclasses.replace(self.config, workers=self.config.scan_workers or available_cpus())
        try:
            self.start()
            self.intake.check_roots()  # the daemon's loop does this; a status without it says "not present"
            while not self.wait_idle(timeout=0.25):
                if progress is not None:
                    progress(self.status())
                if self.stop_event.is_set():
                    break
                self._give_up_on_lasting_fault()
            if self.stop_event.is_set() or not self.reconciler.complete:
                # stopped early: the graph and the queue are partial; reports would be wrong
                self.state = "interrupted"
                return self.status()
            if self.dead_threads:
                raise DaemonFailed(f"daemon thread(s) died: {', '.join(self.dead_threads)} (see the log)")
            self._record_encoders()
            self.state = "done"
            unreadable = {m: self.intake.why_missing(m) for m in self.intake.missing_roots()}
            if self.config.policy == "quarantine":
                self._plan_quarantine()
                self.wait_idle()
            self._stop_pipeline()  # its idle decoders go before the thumbnails' start (peak memory)
            self.report_counts = write_reports(self.config.report_dir, self.index, self.config, self.store)
            # written from the complete graph: the shutdown need not write them again
            self._dirty.clear()
            self.reports.slow_pending = False
            if unreadable:  # (only those that went while it ran: a missing root is refused at the start)
                raise DaemonFailed("could not scan " + ", ".join(f"{m} ({why})" for m, why in unreadable.items())
                                   + ": make it readable by the user running dedupd"
                                   + (" (the reports cover the other folders)" if len(unreadable) < len(self.config.roots)
                                      else ""))
            return self.status()
        finally:
            self.shutdown()

    def _give_up_on_lasting_fault(self) -> None:
        """A scan does not wait out a full disk or a failing store as the daemon does: after
        :data:`SCAN_FAULT_ATTEMPTS` failed attempts of one step it stops, reports unwritten.

        Raises:
            DaemonFailed: naming the step and its error (the store's error names its folder).
        """
        fault = self.pipeline.fault
        if fault is not None and fault.transient and fault.attempts >= SCAN_FAULT_ATTEMPTS:
            self.state = "failed"  # the shutdown then writes no report from the partial graph
            raise DaemonFailed(f"scan stopped: {fault.step} failed {fault.attempts} times: {fault.error}; "
                               "reports were not written (what was indexed is kept: run the scan again)")

    def _stop_pipeline(self) -> None:
        """End the pipeline thread and its decode pool (a scan, once everything is processed)."""
        self.pipeline.stop()
        self.pipeline.queue.put(Work("wake"))  # a kind it ignores: its loop sees the stop now, not in 0.2 s
        for t in self._threads:
            if t.name == "dedupd-pipeline":
                t.join(POOL_JOIN_S)  # idle workers end at once; the shutdown deals with anything stuck
        with contextlib.suppress(queue.Empty):  # the wake-up, if the loop saw the stop without it
            self.pipeline.queue.get_nowait()


def _join_leftover_threads(timeout: float) -> None:
    """Wait (bounded) for what still runs: the manager threads of process pools shut down without
    waiting (a discarded pool after a crash or a hung decode; daemon threads, when the pool was
    started from one), their workers killed if they do not end in time; then the non-daemon
    threads. A manager thread still ending when the interpreter exits makes Python 3.11's exit hook
    write to a wake-up pipe that the thread closes at the same moment: an "OSError: [Errno 9] Bad
    file descriptor" traceback on stderr after a clean stop (see :mod:`dedupd.daemon.workers`)."""
    deadline = time.monotonic() + timeout
    stuck = join_process_pools(timeout)
    if stuck:
        logger.warning("process pool threads still running after their workers were killed: %s", ", ".join(stuck))
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon and t is not threading.main_thread():
            t.join(max(0.0, deadline - time.monotonic()))


def _sweep(folder: str) -> None:
    """Remove the temp files that writes cut short by a crash left in ``folder``, and say so."""
    removed, size = sweep_stale_temps(folder)
    if removed:
        logger.warning("removed %d temp files left by report writes cut short (a crash): %.1f MB",
                       removed, size / 1e6, extra={"dir": folder, "files": removed})
