"""Report files and thumbnails get ``report_mode`` (less the umask): readable by whoever the
configuration says, whatever temp-file mode they were written with."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.daemon.helpers import REPO

pytestmark = pytest.mark.slow


def scan_modes(tmp_path: Path, corpus_dir: Path, umask: int, **config: object) -> dict[str, int]:
    """Run ``dedupd scan`` on a folder with one duplicate pair; ``{report file: mode}``."""
    photos, reports = tmp_path / "photos", tmp_path / "reports"
    photos.mkdir()
    shutil.copyfile(corpus_dir / "base" / "b0010.jpg", photos / "a.jpg")
    shutil.copyfile(corpus_dir / "base" / "b0010.jpg", photos / "copy of a.jpg")
    shutil.copyfile(corpus_dir / "base" / "b0011.jpg", photos / "b.jpg")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"roots": [str(photos)], "store_dir": str(tmp_path / "store"),
                                   "report_dir": str(reports), "workers": 1, **config}))
    done = subprocess.run([sys.executable, "-m", "dedupd", "scan", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
                          preexec_fn=lambda: os.umask(umask))
    assert done.returncode == 0, done.stderr
    modes = {str(p.relative_to(reports)): stat.S_IMODE(p.stat().st_mode) for p in reports.rglob("*") if p.is_file()}
    assert {"duplicates.json", "groups.json", "report.html", "events.jsonl"} <= set(modes)
    assert any(name.startswith("thumbs/") and name.endswith(".jpg") for name in modes), modes
    return {k: v for k, v in modes.items() if not k.endswith(".err")}


def test_reports_and_thumbnails_are_readable_by_default(tmp_path: Path, corpus_dir: Path) -> None:
    modes = scan_modes(tmp_path, corpus_dir, 0o022)
    assert set(modes.values()) == {0o644}, modes


def test_report_mode_limits_them_to_the_group(tmp_path: Path, corpus_dir: Path) -> None:
    modes = scan_modes(tmp_path, corpus_dir, 0o022, report_mode="0640")
    assert set(modes.values()) == {0o640}, modes


def test_the_umask_still_applies(tmp_path: Path, corpus_dir: Path) -> None:
    """A Docker ``UMASK=077`` (the entrypoint's umask) keeps reports private whatever report_mode says."""
    modes = scan_modes(tmp_path, corpus_dir, 0o077)
    assert set(modes.values()) == {0o600}, modes


def test_report_mode_is_validated(tmp_path: Path) -> None:
    from dedupd.daemon.config import config_from_mapping
    from dedupd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"report_mode: must be a permission mode.*\"0644\""):
        config_from_mapping({"roots": [str(tmp_path)], "report_mode": 644}, env={"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="report_mode: 0o40 does not let the daemon's own user read its own"):
        config_from_mapping({"roots": [str(tmp_path)], "report_mode": "0040"}, env={"HOME": str(tmp_path)})
    cfg = config_from_mapping({"roots": [str(tmp_path)]}, env={"HOME": str(tmp_path), "DEDUPD_REPORT_MODE": "0640"})
    assert cfg.report_mode == 0o640
