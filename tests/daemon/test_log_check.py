"""The daemon-log check used by every daemon test: only the forkserver's own death notice is excused."""

from pathlib import Path

from tests.daemon.helpers import DaemonProcess, _orphaned_forkserver

FORKSERVER = """Traceback (most recent call last):
  File "<string>", line 1, in <module>
  File "/usr/lib/python3.11/multiprocessing/forkserver.py", line 258, in main
    fds = reduction.recvfds(s, MAXFDS_TO_SEND + 1)
          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/multiprocessing/reduction.py", line 159, in recvfds
    raise EOFError
EOFError""".splitlines()


#: a child the server forked for the daemon, which was killed before sending the child's
#: preparation data (seen in CI: test_equivalence's kill -9 while a decode worker was starting)
FORKED_CHILD = """Traceback (most recent call last):
  File "/usr/lib/python3.11/multiprocessing/forkserver.py", line 274, in main
    code = _serve_one(child_r, fds,
           ^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/multiprocessing/forkserver.py", line 313, in _serve_one
    code = spawn._main(child_r, parent_sentinel)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/multiprocessing/spawn.py", line 130, in _main
    preparation_data = reduction.pickle.load(from_parent)
                       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
EOFError: Ran out of input""".splitlines()


def test_forkserver_losing_a_killed_parent_is_excused() -> None:
    assert _orphaned_forkserver(FORKSERVER, 0)
    assert _orphaned_forkserver(FORKED_CHILD, 0)


def test_other_tracebacks_are_not() -> None:
    assert not _orphaned_forkserver(FORKSERVER[:-1] + ["OSError: [Errno 28] No space left on device"], 0)
    daemon_bug = ["Traceback (most recent call last):", '  File "/x/dedupd/daemon/pipeline.py", line 9, in run',
                  "    step()", "EOFError"]
    assert not _orphaned_forkserver(daemon_bug, 0)
    assert not _orphaned_forkserver(FORKED_CHILD[:-1] + ["ValueError: unsupported pickle protocol: 9"], 0)



EXIT_RACE = """Exception ignored in: <module 'threading' from '/usr/lib/python3.11/threading.py'>
Traceback (most recent call last):
  File "/usr/lib/python3.11/threading.py", line 1560, in _shutdown
    atexit_call()
  File "/usr/lib/python3.11/concurrent/futures/process.py", line 98, in _python_exit
    thread_wakeup.wakeup()
  File "/usr/lib/python3.11/concurrent/futures/process.py", line 84, in wakeup
    self._writer.send_bytes(b"")
OSError: [Errno 9] Bad file descriptor""".splitlines()


def test_the_exit_hook_traceback_after_a_clean_stop_is_a_failure(tmp_path: Path) -> None:
    """It was excused, as a race inside the interpreter; it was the daemon's (pool threads left
    ending at the exit: tests/daemon/test_daemon_exit.py), and fails a test again."""
    assert not _orphaned_forkserver(EXIT_RACE, 1)
    d = DaemonProcess(tmp_path, [tmp_path])
    try:
        d.log_path.write_text('{"event": "dedupd stopped", "level": "info", "logger": "dedupd.daemon"}\n'
                              + "\n".join(EXIT_RACE) + "\n")
        assert d.errors_in_log() == ["Traceback (most recent call last):"]
    finally:
        d.close()
