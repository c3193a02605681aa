"""``python -m tests.daemon.exit_probe run --config FILE``: ``dedupd run`` with a probe of its exit.

Python 3.11's exit hook (``concurrent.futures.process._python_exit``) checks that a pool's wake-up
pipe is open, then writes to it, without the pool's lock; a pool's manager thread still ending at
that moment closes the pipe in between: ``OSError: [Errno 9] Bad file descriptor`` (or ``handle is
closed``, depending on where the close lands). That happens when the exit's main thread is
pre-empted between the check and the write (a loaded machine). The probe makes that pre-emption
certain: the hook's main thread pauses 0.2 s between them. It also prints how many pool manager
threads still run when the exit hooks start (none should).
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import process

PAUSE_S = 0.2


def install() -> None:
    exiting = threading.Event()
    plain = process._ThreadWakeup.wakeup

    def wakeup(self: process._ThreadWakeup) -> None:
        if exiting.is_set() and threading.current_thread() is threading.main_thread() and not self._closed:
            time.sleep(PAUSE_S)  # pre-empted between the check and the write
            self._writer.send_bytes(b"")
        else:
            plain(self)

    def at_exit() -> None:  # registered after concurrent.futures' hook: runs before it
        running = [t.name for t in list(process._threads_wakeups) if t.is_alive()]
        print(f"exit-probe: {len(running)} pool manager threads running at exit {running}", file=sys.stderr,
              flush=True)
        exiting.set()

    process._ThreadWakeup.wakeup = wakeup  # type: ignore[method-assign]
    threading._register_atexit(at_exit)  # type: ignore[attr-defined]


if __name__ == "__main__":
    install()
    from dedupd.cli import main

    sys.exit(main())
