"""Encoding defaults of ``dedupd scan`` and the daemon: EXIF orientation applied (a photo and its
rotated-by-metadata copy are grouped) while the library keeps imagededup's hashes; a scan uses
every available CPU unless ``scan_workers`` says otherwise; the CPU count respects cgroup quotas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from dedupd.cpus import available_cpus, cgroup_cpu_limit
from dedupd.daemon.config import load_config
from dedupd.daemon.service import Daemon
from dedupd.imaging import EXIF_ORIENTATION
from dedupd.methods import PHash
from tests.daemon.helpers import REPO


def _exif_rotated_copy(src: Path, dest: Path) -> None:
    """Pixels turned 90 degrees counter-clockwise, Orientation 6: displays as ``src`` does."""
    with Image.open(src) as im:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(dest, quality=92, exif=exif)
    with Image.open(dest) as shown, Image.open(src) as orig:
        assert ImageOps.exif_transpose(shown).size == orig.size  # displays upright, like the original


@pytest.fixture(scope="module")
def rotated_folder(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("exif") / "photos"
    folder.mkdir()
    bases = sorted((corpus_dir / "base").glob("*.jpg"))[:4]
    for b in bases:
        shutil.copy(b, folder / b.name)
    _exif_rotated_copy(bases[0], folder / "phone_export.jpg")
    return folder


def _scan(folder: Path, work: Path, extra: str = "") -> dict[str, list[str]]:
    work.mkdir(parents=True)
    cfg = work / "cfg.yaml"
    cfg.write_text(f"roots: [{folder}]\nstore_dir: {work / 'store'}\nreport_dir: {work / 'reports'}\n"
                   f"socket_path: {work / 's'}\n{extra}")
    out = subprocess.run([sys.executable, "-m", "dedupd", "scan", "--config", str(cfg), "--json"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads((work / "reports" / "duplicates.json").read_text())


def test_scan_groups_an_exif_rotated_copy_by_default(rotated_folder: Path, tmp_path: Path) -> None:
    original = sorted(p for p in rotated_folder.iterdir() if p.name != "phone_export.jpg")[0]
    dups = _scan(rotated_folder, tmp_path / "default")
    assert str(rotated_folder / "phone_export.jpg") in dups.get(str(original), []), dups
    # as imagededup hashes (orientation ignored) the two are far apart: the default is what groups them
    off = _scan(rotated_folder, tmp_path / "off", "exif_transpose: false\n")
    assert str(rotated_folder / "phone_export.jpg") not in off.get(str(original), [])


def test_library_keeps_reference_hashes_and_offers_exif(rotated_folder: Path) -> None:
    ref = pytest.importorskip("imagededup.methods", reason="the test extra installs imagededup")
    rotated = rotated_folder / "phone_export.jpg"
    original = sorted(p for p in rotated_folder.iterdir() if p.name != "phone_export.jpg")[0]
    ours = PHash(verbose=False)
    assert ours.encode_image(image_file=rotated) == ref.PHash(verbose=False).encode_image(image_file=str(rotated))
    turned = PHash(verbose=False, exif_transpose=True)
    assert turned.hamming_distance(turned.encode_image(image_file=rotated), turned.encode_image(image_file=original)) <= 4
    assert ours.hamming_distance(ours.encode_image(image_file=rotated), ours.encode_image(image_file=original)) > 10
    # files without an Orientation tag hash the same either way
    assert turned.encode_image(image_file=original) == ours.encode_image(image_file=original)


@pytest.mark.parametrize("setting,expected", [("", None), ("scan_workers: 1\n", 1)])
def test_scan_uses_every_available_cpu_unless_configured(tmp_path: Path, rotated_folder: Path, setting: str,
                                                         expected: int | None) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"roots: [{rotated_folder}]\nstore_dir: {tmp_path / 'store'}\nreport_dir: {tmp_path / 'r'}\n"
                   f"socket_path: {tmp_path / 's'}\nworkers: 1\n{setting}")
    daemon = Daemon(load_config(cfg), serve=False, watch=False)
    status = daemon.scan_once()
    assert status["state"] == "done" and status["files"] == 5
    assert daemon.config.workers == (expected or available_cpus())


def _cgroup(tmp_path: Path, proc_lines: str, files: dict[str, str]) -> float | None:
    tmp_path.mkdir(parents=True)
    proc = tmp_path / "cgroup"
    proc.write_text(proc_lines)
    for rel, text in files.items():
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel).write_text(text)
    return cgroup_cpu_limit(tmp_path / "fs", proc)


def test_cgroup_quotas_v1_v2_and_unlimited(tmp_path: Path) -> None:
    assert _cgroup(tmp_path / "a", "0::/app/worker\n", {"app/worker/cpu.max": "max 100000\n",
                                                         "app/cpu.max": "150000 100000\n"}) == 1.5
    assert _cgroup(tmp_path / "b", "0::/\n", {"cpu.max": "max 100000\n"}) is None
    assert _cgroup(tmp_path / "c", "4:cpu,cpuacct:/docker/abc\n0::/\n",
                   {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
                    "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}) == 2.5
    assert _cgroup(tmp_path / "d", "4:cpu,cpuacct:/x\n", {"cpu,cpuacct/x/cpu.cfs_quota_us": "-1\n",
                                                          "cpu,cpuacct/x/cpu.cfs_period_us": "100000\n"}) is None
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
