"""``methods.<hash>.agree``: the framing check's setting, its default and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dedupd.daemon.loader import matching_of, reach_of
from tests.daemon.test_config import EXAMPLE, make, problems


@pytest.fixture
def root(tmp_path: Path) -> str:
    d = tmp_path / "photos"
    d.mkdir()
    return str(d)


def test_the_check_is_on_at_the_threshold_wherever_crop_hashes_are(root: str) -> None:
    assert make({"roots": [root]}).agree_bounds() == {"phash": 10}
    cfg = make({"roots": [root], "methods": {"phash": 8, "dhash": {"threshold": 12}, "ahash": 6}})
    assert cfg.agree_bounds() == {"phash": 8, "dhash": 12}  # ahash has no crop hashes by default
    assert matching_of(cfg).agree == {"phash": 8, "dhash": 12}
    # stored with each edge as a check score, never searched
    assert ("phash@agree", -1) in reach_of(cfg).radii and ("dhash@agree", -1) in reach_of(cfg).radii


@pytest.mark.parametrize(("spec", "want"), [
    ({"threshold": 10, "agree": 6}, {"phash": 6}),
    ({"threshold": 10, "agree": True}, {"phash": 10}),
    ({"threshold": 10, "agree": False}, {}),
    ({"threshold": 10, "crop": False}, {}),  # no crop hashes: no check (by default)
    ({"threshold": 10, "crop": 4, "agree": 12}, {"phash": 12}),
])
def test_agree_values(root: str, spec: dict, want: dict) -> None:
    cfg = make({"roots": [root], "methods": {"phash": spec}})
    assert cfg.agree_bounds() == want and matching_of(cfg).agree == want


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"agree": "yes"}, "methods.phash.agree: must be true (within the threshold, 10), false (no framing check) "
                       "or the max distance (0..64)"),
    ({"agree": 65}, "got 65"),
    ({"agree": -1}, "got -1"),
    ({"agree": 1.5}, "got 1.5"),
    ({"crop": False, "agree": True}, "methods.phash.agree: compares the crop hashes, which are off for phash: "
                                     "set methods.phash.crop: true, or agree: false"),
    ({"crop": False, "agree": 8}, "set methods.phash.crop: true"),
])
def test_bad_agree_values_are_clear_errors(root: str, spec: dict, fragment: str) -> None:
    found = problems({"roots": [root], "methods": {"phash": {"threshold": 10, **spec}}})
    assert any(fragment in line for line in found), found


def test_the_example_config_documents_agree_with_its_default(root: str) -> None:
    lines = [line.strip() for line in EXAMPLE.read_text().splitlines()]
    assert "# agree: true" in lines
    documented = yaml.safe_load("agree: true")  # the commented line, uncommented, is the default
    assert make({"roots": [root], "methods": {"phash": documented}}).agree_bounds() == make({"roots": [root]}).agree_bounds()
