"""Logging for the daemon and the CLI only (the library never configures logging).

structlog on top of the standard library: JSON lines when stderr is not a terminal (journald,
Docker), readable console lines on a terminal. Every event carries its fields (path, method,
distance, action...). Library modules keep logging through ``logging.getLogger(__name__)`` and
land in the same output.
"""

from __future__ import annotations

import logging
import sys
import threading

import structlog


def setup(level: str = "info", fmt: str = "auto") -> None:
    """Configure root logging and structlog once for this process."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer = (
        structlog.processors.JSONRenderer(ensure_ascii=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # format_exc_info: a logged exception carries its type, message and traceback as text
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("watchdog", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    inotify_log = logging.getLogger("watchdog.observers.inotify")
    if not any(isinstance(f, _StoppedEmitterRead) for f in inotify_log.filters):
        inotify_log.addFilter(_StoppedEmitterRead())
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    threading.excepthook = _log_thread_exception


class _StoppedEmitterRead(logging.Filter):
    """Drop watchdog's "queue_events() called when the thread is inactive" error.

    watchdog logs it when an inotify event is read just as its emitter stops (the daemon shutting
    down, or a watch removed because its folder went away): the event belongs to a watch nobody
    follows any more, so nothing is lost, and an ERROR line there would only alarm.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception that ends a thread goes to the log (JSON under systemd), not raw stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("dedupd.daemon").critical(
        "thread %s died", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        extra={"thread_name": name})


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
