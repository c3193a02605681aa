"""The one byte formatter used by the CLI, the demo and the HTML report."""

import pytest

from dedupd.units import human_bytes


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (5 * 1024**2, "5.0 MiB"), (3.25 * 1024**3, "3.2 GiB"), (2 * 1024**4, "2.0 TiB"),
    (5000 * 1024**4, "5000.0 TiB"), (-2048, "-2.0 KiB"),
])
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text
