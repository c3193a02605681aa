"""Fixtures of the detection-quality tests: the daemon subprocess factory of the daemon tests."""

from tests.daemon.conftest import daemon_factory  # noqa: F401  (re-exported fixture)
