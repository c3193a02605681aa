"""The daemon's lifecycle: start-up, the main loop, reload, and one ordered, time-boxed shutdown.

Start-up: open the store (single-writer lock) → settle crashed quarantine moves → load the index
from the store → start pipeline, settle, reporter, socket server and watcher → reconcile with the
disk in the background (state ``reconciling``) → ``watching``. READY=1 goes to systemd as soon as
the socket answers. Signal handlers only set flags; the main loop acts on them.
"""

from __future__ import annotations

import logging
import os
import signal
import stat as stat_mod
import threading
import time
from collections.abc import Callable
from typing import Any

from dedupd.daemon.config import Config
from dedupd.daemon.loader import load_index, matching_of
from dedupd.daemon.notify import Notifier
from dedupd.daemon.pipeline import Pipeline, Work
from dedupd.daemon.quarantine import Quarantine
from dedupd.daemon.settle import Settler
from dedupd.daemon.store import Store
from dedupd.daemon.walk import is_watched_file, walk_root
from dedupd.daemon.watcher import Watcher
from dedupd.reports.files import EventLog, build_groups, write_reports

logger = logging.getLogger("dedupd.daemon")


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
        self._rescan_requested = threading.Event()
        self._dirty = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reconcile_progress: dict[str, Any] = {"walked": 0, "queued": 0, "done": False}
        self.report_counts = {"groups": 0, "duplicates": 0}
        self.store: Store | None = None
        self.server: Any = None
        self._last_rescan = 0.0
        self._reconciler: threading.Thread | None = None
        self._sigint_count = 0
        self._root_ids: dict[str, tuple[int, int] | None] = {}  # root → (dev, inode); None while missing
        self._roots_checked = 0.0

    # -- start-up -----------------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        if self.serve:  # claim the socket first: a second daemon refuses before touching any store
            from dedupd.daemon.api.transport import ApiServer

            self.server = ApiServer(self, cfg)
            self.server.claim()
        try:
            self.store = Store.open(cfg.store_dir, lock=True)
        except BaseException:
            if self.server is not None:
                self.server.stop()
            raise
        os.makedirs(cfg.report_dir, exist_ok=True)
        self.events = EventLog(os.path.join(cfg.report_dir, "events.jsonl"))
        self.quarantine = Quarantine(cfg, self.store, on_event=self.events.append)
        recovered = self.quarantine.recover()
        if recovered:
            logger.warning("settled %d quarantine moves interrupted by a crash", recovered)
        self._load_index()
        self.settler = Settler(cfg.settle_ms / 1000, self._settled)
        self.pipeline = Pipeline(cfg, self.store, self.index, on_change=self._dirty.set,
                                 on_event=self.events.append, retouch=self.settler.touch)
        self.pipeline.start_pool()
        self._spawn("graph", self._build_graph)
        self._spawn("pipeline", self.pipeline.run)
        self._spawn("settle", self.settler.run)
        self._spawn("reporter", self._report_loop)
        if self.server is not None:
            self.server.start()
        self.watcher = Watcher(cfg, self) if self.watch else None
        if self.watcher is not None:
            self.watcher.start()
        self.start_reconcile()
        self.notifier.ready(self.status_line())
        logger.info("dedupd started", extra={"files": len(self.index.files), "roots": [r.path for r in cfg.roots]})

    def _spawn(self, name: str, target: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=target, name=f"dedupd-{name}", daemon=True)
        t.start()
        self._threads.append(t)
        return t

    def _load_index(self) -> None:
        assert self.store is not None
        cfg = self.config
        mismatch = self.store.encoder_mismatch(cfg.hash_methods(), cfg.cnn_model_id(), hash_params=cfg.hash_params_id())
        self._refresh_all = mismatch.any
        # files and hash columns load at once (queries work); the duplicate graph among them is
        # an all-pairs scan (46 s for 200k files here), built in the background after start-up
        self.index = load_index(self.store, cfg, build_graph=False)
        self.store.set_encoders(cfg.hash_methods(), cfg.cnn_model_id(), hash_params=cfg.hash_params_id())
        self._dirty.set()

    def _build_graph(self) -> None:
        t0 = time.monotonic()
        if not self.index.build_graph(self.stop_event.is_set):
            return
        logger.info("duplicate graph built", extra={"files": len(self.index.files),
                                                    "seconds": round(time.monotonic() - t0, 2)})
        self._dirty.set()

    # -- reconcile ----------------------------------------------------------------------------

    def start_reconcile(self) -> None:
        if self._reconciler is not None and self._reconciler.is_alive():
            return
        self.state = "reconciling"
        self._last_rescan = time.monotonic()
        self.reconcile_progress = {"walked": 0, "queued": 0, "done": False}
        self._reconciler = self._spawn("reconcile", self._reconcile)

    def _reconcile(self) -> None:
        assert self.store is not None
        cfg, prog = self.config, self.reconcile_progress
        seen: set[str] = set()
        refresh = self._refresh_all
        for root in cfg.roots:
            for found in walk_root(root, cfg, on_dir_error=lambda d, e: logger.warning("cannot list %s: %s", d, e)):
                if self.stop_event.is_set():
                    return
                seen.add(found.path)
                prog["walked"] += 1
                rec = self.store.get_file(found.path)
                unchanged = found.st is not None and rec is not None and rec.same_stat(found.st) and not refresh
                # an unchanged "ok" record that is not indexed (its encoding was lost) is re-checked
                if unchanged and not (rec.state == "ok" and found.path not in self.index.files):
                    continue
                self.pipeline.put(Work("upsert", found.path))
                prog["queued"] += 1
        gone = [p for p, _ in self.store.iter_files() if p not in seen]
        if gone:
            # re-checked on the pipeline thread: a file may have arrived (via the watcher) after the
            # walk passed its folder; only what is really gone or no longer wanted is forgotten
            def forget_gone() -> None:
                self.pipeline.forget([p for p in gone if not (os.path.isfile(p) and is_watched_file(p, cfg))])

            self.pipeline.put(Work("call", call=forget_gone))
        self._refresh_all = False
        prog["done"] = True
        prog["forgotten"] = len(gone)

    # -- watcher sink (watchdog thread) ------------------------------------------------------

    def _settled(self, path: str) -> None:
        self.pipeline.put(Work("upsert", path))

    def touched(self, path: str) -> None:
        self.settler.touch(path)

    def deleted(self, path: str) -> None:
        self.settler.cancel(path)
        self.pipeline.put(Work("delete", path))

    def deleted_dir(self, path: str) -> None:
        self.settler.cancel(path)  # a folder named like an image is recorded (as unreadable) too
        self.settler.cancel_prefix(path)
        self.pipeline.put(Work("delete_dir", path))

    def moved(self, src: str, dst: str) -> None:
        # the store's record of ``src`` (an edit of it may still be settling) goes with it; the move
        # then has ``dst`` checked against the disk once settled, so no old name or content remains
        self.settler.cancel(src)
        self.pipeline.put(Work("move", src, dst))

    def moved_dir(self, src: str, dst: str) -> None:
        for p in self.settler.cancel_prefix(src):
            self.settler.touch(dst.rstrip("/") + "/" + p[len(src.rstrip("/")) + 1:])
        self.pipeline.put(Work("move_dir", src, dst))

    def arrived_dir(self, path: str) -> None:
        """A folder moved in from outside the roots (or from an excluded folder): walk it."""
        self.pipeline.put(Work("scan_dir", path))

    def overflowed(self) -> None:
        self._rescan_requested.set()

    def missing_roots(self) -> list[str]:
        roots = {r.path for r in self.config.roots}
        return sorted(p for p, ident in self._root_ids.items() if ident is None and p in roots)

    def check_roots(self) -> None:
        """Notice a root that vanished (forget its files, drop its dead watch) or reappeared or was
        replaced by a new folder (watch it again, walk it). Called from the main loop: one stat per root."""
        for root in self.config.roots:
            try:
                st = os.stat(root.path)
                ident: tuple[int, int] | None = (st.st_dev, st.st_ino) if stat_mod.S_ISDIR(st.st_mode) else None
            except OSError:
                ident = None
            if root.path not in self._root_ids:
                self._root_ids[root.path] = ident  # first look (start-up)
                if ident is None:
                    logger.warning("watched folder %s is missing; watching it once it appears", root.path)
                continue
            known = self._root_ids[root.path]
            if ident == known:
                continue
            self._root_ids[root.path] = ident
            if known is not None:
                logger.warning("watched folder %s vanished or was replaced: its files are forgotten; it is "
                               "watched again (and walked) once it is there", root.path, extra={"root": root.path})
                self.events.append("root_missing", path=root.path)
                if self.watcher is not None:
                    self.watcher.unwatch(root.path)
                self.settler.cancel_prefix(root.path)
                self.pipeline.put(Work("delete_dir", root.path))
            if ident is not None:
                logger.info("watched folder %s is back: watching and walking it", root.path,
                            extra={"root": root.path})
                self.events.append("root_back", path=root.path)
                if self.watcher is not None:
                    self.watcher.rewatch(root.path)
                self.pipeline.put(Work("scan_dir", root.path))

    # -- reports and policy -------------------------------------------------------------------

    def quiet(self) -> bool:
        """Nothing queued, settling or still being linked: reports and policy see the whole picture."""
        return self.index.graph_ready and self.pipeline.pending() == 0 and self.settler.pending() == 0

    def _report_loop(self) -> None:
        pause = 0.2
        while not self.stop_event.is_set():
            if not self._dirty.wait(timeout=0.5):
                continue
            # coalesce bursts; on big libraries wait at least twice as long as the last write took,
            # so report writing never takes more than a third of the time during a heavy ingest
            self.stop_event.wait(pause)
            if not self.index.graph_ready:
                continue  # dirty stays set: written once the start-up graph is complete
            self._dirty.clear()
            t0 = time.monotonic()
            try:
                if self.config.policy == "quarantine" and self.quiet():
                    self._plan_quarantine()
                self.report_counts = write_reports(self.config.report_dir, self.index, self.config, self.store)
            except Exception:
                logger.exception("writing reports failed")
            pause = max(0.2, 2 * (time.monotonic() - t0))

    def _plan_quarantine(self) -> None:
        exempt = self.quarantine.exempt()
        plans = []
        for group in build_groups(self.index, self.config.keep):
            keeper = group["keep"]["path"]
            for d in group["duplicates"]:
                info = self.index.files.get(d["path"])
                if not d["direct"] or info is None or (d["path"], info.digest) in exempt:
                    continue
                reason = f"{d['method']} {'similarity' if d['method'] == 'cnn' else 'distance'} " \
                         f"{d.get('similarity', d.get('distance'))} to kept copy"
                plans.append((d["path"], keeper, info.digest, reason))
        if plans:
            self.pipeline.put(Work("call", call=lambda: self._apply_quarantine(plans)))

    def _apply_quarantine(self, plans: list[tuple[str, str, bytes, str]]) -> None:
        done = 0
        for victim, keeper, digest, reason in plans:
            if self.config.policy != "quarantine" or self.stop_event.is_set():
                break  # reloaded to another policy, or stopping: each move so far is complete
            if keeper not in self.index.files:
                continue
            outcome = self.quarantine.move(victim, keeper, digest, reason)
            if outcome.ok:
                self.index.remove(victim)
                self.pipeline.counters.quarantined += 1
                done += 1
        if done:
            self._dirty.set()

    def restore(self, paths: list[str] | None) -> list[dict[str, Any]]:
        """Restore quarantined files (runs on the pipeline thread, waits for the result)."""
        result: list[dict[str, Any]] = []
        finished = threading.Event()

        def job() -> None:
            try:
                for o in self.quarantine.restore(paths):
                    result.append({"path": o.path, "ok": o.ok, "detail": o.detail})
                    if o.ok:
                        self.pipeline.counters.restored += 1
                        self.settler.touch(o.path)
            finally:
                finished.set()

        self.pipeline.put(Work("call", call=job))
        finished.wait(timeout=120)
        return result

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        c = self.pipeline.counters
        store_bytes = 0
        try:
            store_bytes = os.path.getsize(os.path.join(self.config.store_dir, "data.mdb"))
        except OSError:
            pass
        return {
            "state": self.state,
            "files": len(self.index.files),
            "encoded": self.index.content_count,
            "decoded": c.decoded,
            "reused": c.reused,
            "unreadable": c.unreadable,
            "queued": self.pipeline.pending() + self.settler.pending(),
            "groups": self.report_counts["groups"],
            "duplicates": self.report_counts["duplicates"],
            "quarantined": c.quarantined,
            "restored": c.restored,
            "reconcile_progress": dict(self.reconcile_progress),
            "uptime_s": round(time.time() - self.started_at, 1),
            "store_bytes": store_bytes,
            "policy": self.config.policy,
            "missing_roots": self.missing_roots(),
            "pid": os.getpid(),
        }

    def status_line(self) -> str:
        s = self.status()
        return f"{s['state']}: {s['files']} files, {s['groups']} groups, {s['queued']} queued"

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

    def request_reload(self) -> None:
        self._reload_requested.set()

    def request_rescan(self) -> None:
        self._rescan_requested.set()

    def run(self) -> None:
        """Start, loop until a stop signal, shut down."""
        self.start()
        last_ping = last_status = 0.0
        try:
            while not self.stop_event.wait(0.1):
                now = time.monotonic()
                if self._reload_requested.is_set():
                    self._reload_requested.clear()
                    self.reload()
                interval = self.config.rescan_interval_s
                if self._rescan_requested.is_set() or (interval and now - self._last_rescan > interval):
                    self._rescan_requested.clear()
                    self.start_reconcile()
                if now - self._roots_checked >= 0.5:
                    self._roots_checked = now
                    self.check_roots()
                if self.state == "reconciling" and self.reconcile_progress.get("done") and self.quiet():
                    self.state = "watching"
                    logger.info("watching", extra={"files": len(self.index.files)})
                wd = self.notifier.watchdog_interval
                if wd and now - last_ping >= wd:
                    self.notifier.watchdog()
                    last_ping = now
                if now - last_status >= 2:
                    self.notifier.status(self.status_line())
                    last_status = now
        finally:
            self.shutdown()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the reconcile is done and every queued file is processed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self.reconcile_progress.get("done") and self.quiet()):
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def reload(self) -> None:
        """Re-read the config (SIGHUP): thresholds, policy, keep-rule, roots; keep the store."""
        if self._config_loader is None:
            return
        self.notifier.reloading()
        try:
            new = self._config_loader()
        except Exception as exc:
            logger.error("reload failed, keeping the running config: %s", exc)
            self.notifier.ready(self.status_line())
            return
        old, self.config = self.config, new
        self.quarantine.config = new
        self.pipeline.put(Work("call", call=lambda: self.pipeline.reconfigure(new)))
        if matching_of(new) != matching_of(old):
            self.index.retune(matching_of(new))
        if (new.roots, new.include, new.exclude) != (old.roots, old.include, old.exclude) and self.watcher:
            self.watcher.stop()
            self.watcher = Watcher(new, self)
            self.watcher.start()
            self.start_reconcile()
        if new.hash_methods().keys() != old.hash_methods().keys() or new.cnn_model_id() != old.cnn_model_id():
            self._refresh_all = True
            self.start_reconcile()
        self._dirty.set()
        logger.info("configuration reloaded", extra={"source": new.source})
        self.notifier.ready(self.status_line())

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop in order: watcher → settle → pipeline (finishes its batch) → reports → server → store."""
        self.state = "stopping"
        self.notifier.stopping()
        self.stop_event.set()
        if getattr(self, "watcher", None) is not None:
            self.watcher.stop()
        if hasattr(self, "settler"):
            self.settler.stop()
        if hasattr(self, "pipeline"):
            self.pipeline.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if hasattr(self, "index") and self.store is not None and self.index.graph_ready:
            try:
                self.report_counts = write_reports(self.config.report_dir, self.index, self.config, self.store)
            except Exception:
                logger.exception("final report write failed")
        if self.server is not None:
            self.server.stop()
        if self.store is not None:
            self.store.close()
            self.store = None
        logger.info("dedupd stopped")

    # -- one-shot scan ------------------------------------------------------------------------

    def scan_once(self, progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Reconcile, process everything, write the reports, stop. Returns the final status."""
        self.start()
        try:
            while not self.wait_idle(timeout=0.25):
                if progress is not None:
                    progress(self.status())
                if self.stop_event.is_set():
                    break
            self.state = "done"
            if self.config.policy == "quarantine":
                self._plan_quarantine()
                self.wait_idle(timeout=600)
            self.report_counts = write_reports(self.config.report_dir, self.index, self.config, self.store)
            return self.status()
        finally:
            self.shutdown()

