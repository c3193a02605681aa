"""The daemon-log check used by every daemon test: only the forkserver's own death notice is excused."""

from tests.daemon.helpers import _orphaned_forkserver

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
