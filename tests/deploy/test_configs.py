"""The shipped configs load with the daemon's own loader and say what their comments promise.

Each ``config/*.yaml`` is loaded with :func:`dedupd.daemon.config.load_config`, the function
``dedupd run --config`` uses, after its roots (and quarantine folder) are replaced by existing
temporary directories: the real paths (/srv/photos, /data) do not exist on a test machine, and
the loader rightly refuses roots that do not exist. Every other key is loaded as written.
The YAML snippets in docs/deploy.md that are dedupd configs are loaded the same way.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from dedupd.core.keep import Candidate, choose_keeper
from dedupd.daemon.config import Config, config_from_mapping, load_config
from dedupd.reports.groups import keep_rules

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "config").glob("*.yaml"))
DEPLOY_DOC = REPO / "docs" / "deploy.md"
#: The environment of a service with no DEDUPD_* overrides and no usable HOME.
CLEAN_ENV = {"HOME": "/nonexistent", "STATE_DIRECTORY": "/var/lib/dedupd", "RUNTIME_DIRECTORY": "/run/dedupd"}


def with_local_dirs(data: dict, tmp_path: Path) -> tuple[dict, dict[str, str]]:
    """``data`` with each root and the quarantine folder mapped to a new temp dir; returns the mapping too."""
    data = dict(data)
    mapping: dict[str, str] = {}

    def local(path: str) -> str:
        if path not in mapping:
            d = tmp_path / "fs" / path.strip("/").replace("/", "__")
            d.mkdir(parents=True)
            mapping[path] = str(d)
        return mapping[path]

    roots = data["roots"] if isinstance(data["roots"], list) else [data["roots"]]
    data["roots"] = [{**r, "path": local(r["path"])} if isinstance(r, dict) else local(r) for r in roots]
    if data.get("quarantine_dir"):
        data["quarantine_dir"] = local(data["quarantine_dir"])
    return data, mapping


def load_shipped(path: Path, tmp_path: Path) -> tuple[Config, dict, dict[str, str]]:
    raw = yaml.safe_load(path.read_text())
    data, mapping = with_local_dirs(raw, tmp_path)
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(data))
    return load_config(copy, env=CLEAN_ENV), raw, mapping


def test_the_expected_configs_ship() -> None:
    names = {p.name for p in CONFIGS}
    assert {"dedupd.example.yaml", "nas.yaml", "docker.yaml", "systemd.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_with_the_daemon_loader(path: Path, tmp_path: Path) -> None:
    cfg, raw, mapping = load_shipped(path, tmp_path)
    assert [r.path for r in cfg.roots] == list(mapping.values())[: len(cfg.roots)]
    # explicit paths are taken as written (nothing relative, nothing from HOME)
    for key in ("store_dir", "report_dir", "socket_path"):
        if key in raw:
            assert getattr(cfg, key) == raw[key]
        assert not getattr(cfg, key).startswith("/nonexistent")


def test_config_typo_is_an_error(tmp_path: Path) -> None:
    """The loader used above is strict: the same check would catch a mistake in a shipped file."""
    raw = yaml.safe_load((REPO / "config" / "docker.yaml").read_text())
    data, _ = with_local_dirs(raw, tmp_path)
    data["setle_ms"] = 100
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(Exception, match="setle_ms"):
        load_config(tmp_path / "bad.yaml", env=CLEAN_ENV)


def test_systemd_config_uses_the_unit_directories(tmp_path: Path) -> None:
    cfg, _, _ = load_shipped(REPO / "config" / "systemd.yaml", tmp_path)
    assert cfg.store_dir == "/var/lib/dedupd/store" and cfg.report_dir == "/var/lib/dedupd/reports"
    assert cfg.socket_path == "/run/dedupd/dedupd.sock" and cfg.socket_group == "dedupd"
    assert cfg.policy == "report"
    # the same as the defaults systemd's StateDirectory=/RuntimeDirectory= give (written out for the CLI)
    data, _ = with_local_dirs(yaml.safe_load((REPO / "config" / "systemd.yaml").read_text()), tmp_path / "b")
    for key in ("store_dir", "report_dir", "socket_path"):
        del data[key]
    defaults = config_from_mapping(data, env=CLEAN_ENV)
    assert (defaults.store_dir, defaults.report_dir, defaults.socket_path) == (
        cfg.store_dir, cfg.report_dir, cfg.socket_path)


def test_nas_config_quarantines_and_keeps_originals(tmp_path: Path) -> None:
    cfg, raw, mapping = load_shipped(REPO / "config" / "nas.yaml", tmp_path)
    assert cfg.policy == "quarantine" and cfg.quarantine_dir == mapping[raw["quarantine_dir"]]
    assert cfg.match == "all" and len(cfg.hash_methods()) >= 2
    rules = keep_rules(cfg.keep)
    root = cfg.roots[0].path

    def cand(rel: str, pixels: int, size: int, mtime: int) -> Candidate:
        return Candidate(os.path.join(root, rel), pixels, size, mtime)

    original = cand("2023/Originals/IMG_0001.JPG", 12_000_000, 4_000_000, 2)
    edited = cand("2023/edits/IMG_0001.jpg", 24_000_000, 9_000_000, 1)  # bigger and older, still not kept
    assert choose_keeper([edited, original], rules) == original
    lower = cand("2023/originals/IMG_0001.jpg", 12_000_000, 4_000_000, 2)
    assert choose_keeper([edited, lower], rules) == lower
    # without an original in the group, the biggest picture wins
    small = cand("2023/web/IMG_0001.jpg", 1_000_000, 300_000, 0)
    assert choose_keeper([small, edited], rules) == edited
    # Synology's thumbnail folders are never indexed
    assert cfg.skips_dir(os.path.join(root, "2023", "@eaDir"))
    assert cfg.wants_file(os.path.join(root, "2023", "IMG_0001.JPG"))
    assert not cfg.wants_file(os.path.join(root, "2023", "IMG_0001.JPG.part"))


def test_docker_config_matches_the_image_layout(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "config" / "docker.yaml").read_text())
    assert raw["roots"] == ["/data"] and raw["policy"] == "report"
    for key in ("store_dir", "report_dir"):
        assert raw[key].startswith("/var/lib/dedupd/"), key
    assert raw["socket_path"] == "/run/dedupd/dedupd.sock"
    assert "quarantine_dir" not in raw
    cfg, _, _ = load_shipped(REPO / "config" / "docker.yaml", tmp_path)
    assert cfg.cnn is None  # the hash-only image has no torch


def doc_config_snippets() -> list[str]:
    if not DEPLOY_DOC.exists():
        return []
    blocks = re.findall(r"```ya?ml\n(.*?)```", DEPLOY_DOC.read_text(), re.DOTALL)
    return [b for b in blocks if re.search(r"^roots:", b, re.MULTILINE)]


def test_deploy_doc_has_config_snippets() -> None:
    assert DEPLOY_DOC.exists(), "docs/deploy.md is missing"
    assert doc_config_snippets(), "docs/deploy.md shows no dedupd config (a ```yaml block with roots:)"


@pytest.mark.parametrize("snippet", doc_config_snippets(), ids=lambda s: s.split("\n", 1)[0][:40])
def test_deploy_doc_config_snippets_load(snippet: str, tmp_path: Path) -> None:
    data, _ = with_local_dirs(yaml.safe_load(snippet), tmp_path)
    (tmp_path / "snippet.yaml").write_text(yaml.safe_dump(data))
    load_config(tmp_path / "snippet.yaml", env=CLEAN_ENV)
