"""The daemon-log check used by every daemon test: only the forkserver's own death notice is excused."""

from tests.daemon.helpers import _exit_hook_race, _orphaned_forkserver

FORKSERVER = """Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/usr/lib/python3.11/multiprocessing/forkserver.py", line 258, in main
    fds = reduction.recvfds(s, MAXFDS_TO_SEND + 1)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/multiprocessing/reduction.py", line 159, in recvfds
    raise EOFError
EOFError""".splitlines()


def test_forkserver_losing_a_killed_parent_is_excused() -> None:
    assert _orphaned_forkserver(FORKSERVER, 0)


def test_other_tracebacks_are_not() -> None:
    assert not _orphaned_forkserver(FORKSERVER[:-1] + ["OSError: [Errno 28] No space left on device"], 0)
    daemon_bug = ["Traceback (most recent call last):", '  File "/x/dedupd/daemon/pipeline.py", line 9, in run',
                  "    step()", "EOFError"]
    assert not _orphaned_forkserver(daemon_bug, 0)


EXIT_RACE = """{"event": "dedupd stopped", "level": "info", "logger": "dedupd.daemon"}
Exception ignored in: <module 'threading' from '/usr/lib/python3.11/threading.py'>
Traceback (most recent call last):
  File "/usr/lib/python3.11/threading.py", line 1560, in _shutdown
    atexit_call()
  File "/usr/lib/python3.11/concurrent/futures/process.py", line 98, in _python_exit
    thread_wakeup.wakeup()
  File "/usr/lib/python3.11/concurrent/futures/process.py", line 84, in wakeup
    self._writer.send_bytes(b"")
OSError: [Errno 9] Bad file descriptor""".splitlines()


def test_the_exit_hook_race_after_a_clean_stop_is_excused_and_nothing_else() -> None:
    assert _exit_hook_race(EXIT_RACE, 2)
    running = ['{"event": "watching", "level": "info"}'] + EXIT_RACE[1:]  # not after a clean stop
    assert not _exit_hook_race(running, 2)
    assert not _exit_hook_race(EXIT_RACE[:-1] + ["OSError: [Errno 28] No space left on device"], 2)
    assert not _exit_hook_race(FORKSERVER, 0)
