"""Prints the conformance tally (cases compared, cases differing, documented) after the run."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.conformance.outcome import TALLY

    if TALLY["cases"]:
        terminalreporter.write_line(
            f"conformance with imagededup: {TALLY['cases']} cases compared, {TALLY['differ']} differ "
            f"({TALLY['documented']} of them documented in docs/compatibility.md)"
        )
