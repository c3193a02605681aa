"""Config loading and validation: defaults, paths, overrides, and one error listing every problem."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dedupd.daemon.config import (
    DEFAULT_EXCLUDE,
    DEFAULT_INCLUDE,
    Config,
    KeepRule,
    RootConfig,
    config_from_mapping,
    default_paths,
    load_config,
)
from dedupd.daemon.config.check import ENV_VARS, TOP_KEYS
from dedupd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "dedupd.example.yaml"
ENV = {"HOME": "/home/u"}


@pytest.fixture
def root(tmp_path: Path) -> str:
    d = tmp_path / "photos"
    d.mkdir()
    return str(d)


def make(data: dict, env: dict | None = None, **kw) -> Config:
    return config_from_mapping(data, env=ENV if env is None else env, **kw)


def problems(data: dict, env: dict | None = None, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        make(data, env, **kw)
    return [line[4:] for line in str(info.value).splitlines()[1:]]


def write(tmp_path: Path, text: str, name: str = "dedupd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- defaults and paths ----------------------------------------------------------------------

def test_only_roots_gives_documented_defaults(root: str) -> None:
    cfg = make({"roots": [root]})
    assert cfg.roots == (RootConfig(root, True),)
    assert cfg.store_dir == "/home/u/.local/state/dedupd/store"
    assert cfg.report_dir == "/home/u/.local/state/dedupd/reports"
    assert cfg.socket_path == "/home/u/.local/state/dedupd/dedupd.sock"
    assert (cfg.socket_mode, cfg.socket_group, cfg.policy, cfg.quarantine_dir) == (0o660, None, "report", None)
    assert cfg.hash_methods() == {"phash": 10} and cfg.cnn is None and cfg.match == "any"
    assert cfg.keep == (KeepRule("largest_pixels"), KeepRule("largest_file"), KeepRule("oldest_mtime"))
    assert cfg.include == DEFAULT_INCLUDE and cfg.exclude == DEFAULT_EXCLUDE
    assert (cfg.settle_ms, cfg.workers, cfg.rescan_interval_s) == (1000, 1, 3600.0)
    assert (cfg.decode, cfg.exif_transpose, cfg.log.format, cfg.log.level) == ("exact", True, "auto", "info")
    assert (cfg.workers, cfg.scan_workers) == (1, 0)  # scan: every available CPU
    assert cfg.excluded_dirs() == (cfg.store_dir, cfg.report_dir)


@pytest.mark.parametrize(
    ("env", "store", "socket"),
    [
        ({"HOME": "/h"}, "/h/.local/state/dedupd/store", "/h/.local/state/dedupd/dedupd.sock"),
        ({"HOME": "/h", "XDG_STATE_HOME": "/xs", "XDG_RUNTIME_DIR": "/run/user/7"},
         "/xs/dedupd/store", "/run/user/7/dedupd/dedupd.sock"),
        ({"HOME": "/h", "XDG_STATE_HOME": "rel/ative", "XDG_RUNTIME_DIR": "also/rel"},
         "/h/.local/state/dedupd/store", "/h/.local/state/dedupd/dedupd.sock"),
        ({"HOME": "/h", "XDG_STATE_HOME": "/xs", "STATE_DIRECTORY": "/var/lib/dedupd:/other",
          "RUNTIME_DIRECTORY": "/run/dedupd", "XDG_RUNTIME_DIR": "/run/user/7"},
         "/var/lib/dedupd/store", "/run/dedupd/dedupd.sock"),
    ],
)
def test_default_paths_follow_systemd_then_xdg_then_home(env: dict, store: str, socket: str) -> None:
    paths = default_paths(env)
    assert paths["store_dir"] == store and paths["socket_path"] == socket
    assert paths["report_dir"] == os.path.join(os.path.dirname(store), "reports")


def test_default_paths_without_home_use_the_password_database() -> None:
    import pwd

    home = pwd.getpwuid(os.getuid()).pw_dir
    assert default_paths({})["store_dir"] == os.path.join(home, ".local/state/dedupd/store")


def test_loading_has_no_side_effects(tmp_path: Path, root: str) -> None:
    cfg = make({"roots": [root], "store_dir": str(tmp_path / "s"), "report_dir": str(tmp_path / "r"),
                "policy": "quarantine", "quarantine_dir": str(tmp_path / "q")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
    assert cfg.excluded_dirs() == tuple(str(tmp_path / n) for n in "srq")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf" / "pics").mkdir(parents=True)
    path = write(tmp_path / "conf", "roots: [pics, {path: ./pics/../pics2, recursive: false}]\n"
                 "store_dir: state/store\nquarantine_dir: ~/q\n")
    (tmp_path / "conf" / "pics2").mkdir()
    cfg = load_config(path, env={"HOME": "/home/u"})
    base = str(tmp_path / "conf")
    assert cfg.roots == (RootConfig(f"{base}/pics"), RootConfig(f"{base}/pics2", False))
    assert cfg.store_dir == f"{base}/state/store"
    assert cfg.quarantine_dir == os.path.expanduser("~/q")
    assert cfg.source == str(path)


def test_config_is_frozen(root: str) -> None:
    cfg = make({"roots": [root]})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.policy = "quarantine"  # type: ignore[misc]


# -- every problem at once ---------------------------------------------------------------------

def test_one_error_lists_every_problem_with_its_key(tmp_path: Path, root: str) -> None:
    found = problems({
        "roots": [str(tmp_path / "missing"), root], "polcy": "report", "methods": {"phash": {"threshold": 70}},
        "workers": 0, "log": {"level": "loud"}, "match": "most",
    })
    assert found == [
        "polcy: unknown key (did you mean 'policy'?); remove or rename it",
        f"roots[0]: directory {tmp_path}/missing does not exist; create it or fix the path",
        "methods.phash.threshold: must be an int between 0 and 64, got 70",
        "match: must be one of 'any', 'all', got 'most'",
        "workers: must be an int between 1 and 1024, got 0",
        "log.level: must be one of 'debug', 'info', 'warning', 'error', got 'loud'",
    ]


def test_error_header_names_the_file_and_count(tmp_path: Path) -> None:
    path = write(tmp_path, "roots: []\nsettle_ms: -1\n")
    with pytest.raises(ConfigError, match=re.escape(f"invalid configuration in {path} (2 problems):")):
        load_config(path, env=ENV)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"method": {}}, "method: unknown key (did you mean 'methods'?)"),
        ({"methods": {"phsh": {}}}, "methods.phsh: unknown key (did you mean 'phash'?)"),
        ({"methods": {"phash": {"treshold": 3}}}, "methods.phash.treshold: unknown key (did you mean 'threshold'?)"),
        ({"log": {"lvl": "info"}}, "log.lvl: unknown key"),
        ({"frobnicate": 1}, "frobnicate: unknown key; remove or rename it"),
    ],
)
def test_unknown_keys_are_errors_with_suggestions(root: str, data: dict, expected: str) -> None:
    assert any(p.startswith(expected) for p in problems({"roots": [root], **data}))


def test_unknown_key_inside_a_root_item(root: str) -> None:
    assert problems({"roots": [{"path": root, "recurse": False}]}) == [
        "roots[0].recurse: unknown key (did you mean 'recursive'?); remove or rename it"
    ]


@pytest.mark.parametrize(
    ("roots", "expected"),
    [
        (None, "roots: is required"),
        ([], "roots: must be a non-empty list"),
        (5, "roots: must be a non-empty list"),
        ([3], "roots[0]: must be a directory path"),
        ([{"recursive": True}], "roots[0].path: must be a directory path"),
        ([{"path": "ROOT", "recursive": "yes"}], "roots[0].recursive: must be true or false, got 'yes'"),
    ],
)
def test_bad_roots(root: str, roots: object, expected: str) -> None:
    if isinstance(roots, list) and roots and isinstance(roots[0], dict) and roots[0].get("path") == "ROOT":
        roots = [{**roots[0], "path": root}]
    data = {} if roots is None else {"roots": roots}
    assert problems(data)[0].startswith(expected)


def test_a_single_root_string_is_a_one_item_list(root: str) -> None:
    assert make({"roots": root}).roots == (RootConfig(root),)


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"x")
    assert problems({"roots": [str(tmp_path / "f.jpg")]}) == [
        f"roots[0]: {tmp_path}/f.jpg is not a directory; give the directory that contains the images"
    ]


def test_duplicate_and_nested_roots(root: str) -> None:
    inner = os.path.join(root, "inner")
    os.mkdir(inner)
    assert [p.split(":")[0] for p in problems({"roots": [root, inner, root]})] == ["roots[1]", "roots[2]"]
    cfg = make({"roots": [{"path": root, "recursive": False}, inner]})  # a flat root may contain another
    assert len(cfg.roots) == 2


def test_state_dirs_may_sit_inside_a_root_but_not_contain_one(tmp_path: Path, root: str) -> None:
    cfg = make({"roots": [root], "store_dir": f"{root}/.dedupd/store", "report_dir": f"{root}/reports"})
    assert cfg.in_excluded_dir(f"{root}/reports/duplicates.json") and not cfg.in_excluded_dir(f"{root}/reportsx")
    found = problems({"roots": [root], "report_dir": str(tmp_path)})
    assert found == [(f"report_dir: {tmp_path} contains the watched root roots[0] {root}; choose a directory "
                      "outside the roots (it is never watched)")]


@pytest.mark.parametrize(
    ("value", "mode"), [("0660", 0o660), ("660", 0o660), ("0o640", 0o640), (0o600, 0o600), (0o777, 0o777)]
)
def test_socket_mode_accepts_octal_strings_and_ints(root: str, value: object, mode: int) -> None:
    assert make({"roots": [root], "socket_mode": value}).socket_mode == mode


def test_unquoted_yaml_socket_mode(tmp_path: Path, root: str) -> None:
    assert load_config(write(tmp_path, f"roots: [{root}]\nsocket_mode: 0660\n"), env=ENV).socket_mode == 0o660
    with pytest.raises(ConfigError, match=r"socket_mode: .*got 660; write it quoted in octal"):
        load_config(write(tmp_path, f"roots: [{root}]\nsocket_mode: 660\n"), env=ENV)


@pytest.mark.parametrize("value", ["rw", "0999", True, -1, "0400", 0o1777])
def test_bad_socket_modes(root: str, value: object) -> None:
    assert problems({"roots": [root], "socket_mode": value})[0].startswith("socket_mode:")


@pytest.mark.parametrize(("value", "group"), [("media", "media"), ("1001", 1001), (0, 0), (None, None)])
def test_socket_group(root: str, value: object, group: object) -> None:
    assert make({"roots": [root], "socket_group": value}).socket_group == group


def test_quarantine_policy_requires_a_directory(tmp_path: Path, root: str) -> None:
    assert problems({"roots": [root], "policy": "quarantine"})[0].startswith(
        "quarantine_dir: is required when policy is 'quarantine'")
    assert problems({"roots": [root], "policy": "delete"}) == [
        "policy: must be one of 'report', 'quarantine', got 'delete'"]
    cfg = make({"roots": [root], "policy": "quarantine", "quarantine_dir": str(tmp_path / "q")})
    assert cfg.quarantine_dir in cfg.excluded_dirs()


# -- methods -----------------------------------------------------------------------------------

def test_methods_keep_order_and_accept_shorthands(root: str) -> None:
    cfg = make({"roots": [root], "methods": {"dhash": 4, "phash": None, "whash": {"threshold": 0}}})
    assert list(cfg.hash_methods().items()) == [("dhash", 4), ("phash", 10), ("whash", 0)]


@given(st.one_of(st.integers(-100, 200), st.booleans(), st.floats(allow_nan=False), st.text(max_size=3)))
@settings(max_examples=60, deadline=None)
def test_hash_threshold_valid_only_for_ints_0_to_64(value: object) -> None:
    data = {"roots": ["/"], "methods": {"ahash": {"threshold": value}}}
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 64
    if ok:
        assert make(data).hash_methods() == {"ahash": value}
    else:
        assert problems(data) == [f"methods.ahash.threshold: must be an int between 0 and 64, got {value!r}"]


def test_empty_or_wrong_methods(root: str) -> None:
    assert problems({"roots": [root], "methods": {}})[0].startswith("methods: must map at least one of")
    assert problems({"roots": [root], "methods": ["phash"]})[0].startswith("methods: must map")
    assert problems({"roots": [root], "methods": {"phash": "x"}})[0].startswith("methods.phash: must be a mapping")


def test_cnn_by_name_and_defaults(root: str) -> None:
    cfg = make({"roots": [root], "methods": {"cnn": None}})
    assert cfg.hash_methods() == {} and cfg.cnn is not None
    assert (cfg.cnn.model, cfg.cnn.threshold, cfg.cnn.weights) == ("mobilenet_v3_small", 0.9, None)
    cfg = make({"roots": [root], "methods": {"phash": 8, "cnn": {"model": "efficientnet_lite0", "threshold": -1}}})
    assert cfg.cnn is not None and cfg.cnn.threshold == -1.0 and cfg.cnn.model_id == "efficientnet_lite0"


def test_cnn_torchscript_path_and_weights_resolve_against_the_file(tmp_path: Path, root: str) -> None:
    (tmp_path / "m.pt").write_bytes(b"x")
    (tmp_path / "w.pth").write_bytes(b"x")
    path = write(tmp_path, f"roots: [{root}]\nmethods: {{cnn: {{model: m.pt, weights: ./w.pth, threshold: 0.5}}}}\n")
    cfg = load_config(path, env=ENV)
    assert cfg.cnn is not None
    assert (cfg.cnn.model, cfg.cnn.weights) == (str(tmp_path / "m.pt"), str(tmp_path / "w.pth"))
    assert cfg.cnn.model_id == f"{tmp_path}/m.pt@{tmp_path}/w.pth"


def test_bad_cnn_settings(tmp_path: Path, root: str) -> None:
    found = problems({"roots": [root], "methods": {"cnn": {"model": "mobilenet_v3", "threshold": 1.5,
                                                           "weights": "nope.pth"}}}, base_dir=str(tmp_path))
    assert found[0].startswith("methods.cnn.model: must be 'mobilenet_v3_small' or 'efficientnet_lite0' or "
                               "'efficientnet_lite0_copy' or "
                               f"the path of a TorchScript file; {tmp_path}/mobilenet_v3 is not a file")
    assert found[0].endswith("(did you mean 'mobilenet_v3_small'?)")
    assert found[1] == "methods.cnn.threshold: must be a number between -1.0 and 1.0 (min cosine similarity), got 1.5"
    assert found[2].startswith(f"methods.cnn.weights: '{tmp_path}/nope.pth' is not a file")
    assert problems({"roots": [root], "methods": {"cnn": {"threshold": True}}})[0].startswith("methods.cnn.threshold")


def test_encoder_ids_change_with_decode_options(root: str) -> None:
    a = make({"roots": [root], "methods": {"cnn": {}}})
    b = make({"roots": [root], "methods": {"cnn": {}}, "decode": "fast"})
    c = make({"roots": [root], "exif_transpose": False})
    assert len({a.hash_params_id(), b.hash_params_id(), c.hash_params_id()}) == 3
    assert a.cnn_model_id() != b.cnn_model_id() and c.cnn_model_id() is None


# -- keep, patterns, numbers -------------------------------------------------------------------

def test_keep_rules(root: str) -> None:
    cfg = make({"roots": [root], "keep": [{"prefer": "*/originals/*"}, "shortest_path", "newest_mtime"]})
    assert cfg.keep == (KeepRule("prefer", "*/originals/*"), KeepRule("shortest_path"), KeepRule("newest_mtime"))
    assert make({"roots": [root], "keep": []}).keep == ()
    found = problems({"roots": [root], "keep": ["largest", {"prefer": ""}, {"prefer": "*", "x": 1}, 5]})
    rules = "must be one of 'largest_pixels', 'largest_file', 'oldest_mtime', 'newest_mtime', 'shortest_path'"
    assert found == [
        (f"keep[0]: {rules}, got 'largest' (did you mean 'largest_file'?)"),
        "keep[1].prefer: must be a glob on the absolute path such as '*/originals/*', got ''",
        "keep[2].x: unknown key; remove or rename it",
        f"keep[3]: {rules}, got 5",
    ]


def test_include_exclude(root: str) -> None:
    cfg = make({"roots": [root], "include": "*.jpg", "exclude": []})
    assert (cfg.include, cfg.exclude) == (("*.jpg",), ())
    assert problems({"roots": [root], "include": []})[0].startswith("include: must be a non-empty list")
    assert problems({"roots": [root], "exclude": ["*.tmp", ""]}) == [
        "exclude[1]: must be a non-empty glob pattern string, got ''"]


def test_default_include_matches_the_decoder_extensions() -> None:
    from dedupd.imaging import IMAGE_EXTENSIONS

    assert {p.removeprefix("*") for p in DEFAULT_INCLUDE} == IMAGE_EXTENSIONS


def test_wants_file_and_skips_dir(root: str) -> None:
    cfg = make({"roots": [root], "store_dir": f"{root}/state", "exclude": [*DEFAULT_EXCLUDE, "*/private/*"]})
    assert cfg.wants_file(f"{root}/a/IMG_1.JPG") and cfg.wants_file(f"{root}/b.webp")
    for name in ("a.jpg.part", ".a.jpg", "a.jpg~", "a.txt", "state/x.jpg", "private/x.jpg", "x.crdownload"):
        assert not cfg.wants_file(f"{root}/{name}"), name
    assert cfg.skips_dir(f"{root}/.thumbnails") and cfg.skips_dir(f"{root}/state")
    assert not cfg.skips_dir(f"{root}/2024")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("settle_ms", 1.5, "settle_ms: must be an int between 0 and 86400000, got 1.5"),
        ("workers", True, "workers: must be an int between 1 and 1024, got True"),
        ("rescan_interval_s", -1, "rescan_interval_s: must be a number of seconds >= 0 (0 disables), got -1"),
        ("decode", "quick", "decode: must be one of 'exact', 'fast', got 'quick'"),
        ("exif_transpose", "yes", "exif_transpose: must be true or false, got 'yes'"),
        ("scan_workers", 0, "scan_workers: must be 'auto' (every available CPU) or an int between 1 and 1024, got 0"),
        ("scan_workers", "all", "scan_workers: must be 'auto' (every available CPU) or an int between 1 and 1024, "
                                "got 'all'"),
        ("log", "debug", "log: must be a mapping such as {format: auto, level: info}, got 'debug'"),
        ("store_dir", 5, "store_dir: must be a path, got 5"),
    ],
)
def test_scalar_problems(root: str, key: str, value: object, message: str) -> None:
    assert problems({"roots": [root], key: value}) == [message]


def test_numbers_and_log_accept_valid_values(root: str) -> None:
    cfg = make({"roots": [root], "settle_ms": 0, "workers": 8, "rescan_interval_s": 0.5,
                "log": {"format": "json", "level": "WARN"}})
    assert (cfg.settle_ms, cfg.workers, cfg.rescan_interval_s) == (0, 8, 0.5)
    assert (cfg.log.format, cfg.log.level) == ("json", "warning")


# -- environment and CLI overrides -------------------------------------------------------------

def test_env_overrides_the_file(tmp_path: Path, root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(tmp_path)
    env = {"HOME": "/h", "DEDUPD_STORE_DIR": "rel/store", "DEDUPD_POLICY": "quarantine",
           "DEDUPD_QUARANTINE_DIR": "/q", "DEDUPD_LOG_LEVEL": "DEBUG", "DEDUPD_WORKERS": "4",
           "DEDUPD_ROOTS": f"{root}:{other}", "DEDUPD_METHODS": "{dhash: {threshold: 3}}",
           "DEDUPD_SOCKET_MODE": "0600", "DEDUPD_EXIF_TRANSPOSE": "false", "DEDUPD_SOCKET_GROUP": "",
           "DEDUPD_CONFIG": "/ignored.yaml", "DEDUPD_RESCAN_INTERVAL_S": "0"}
    path = write(tmp_path / "other", "roots: [/nonexistent]\nstore_dir: /from/file\nworkers: 2\n")
    cfg = load_config(path, env=env)
    assert cfg.roots == (RootConfig(root), RootConfig(str(other)))
    assert cfg.store_dir == str(tmp_path / "rel/store")  # env paths are relative to cwd
    assert (cfg.policy, cfg.quarantine_dir, cfg.log.level, cfg.workers) == ("quarantine", "/q", "debug", 4)
    assert cfg.hash_methods() == {"dhash": 3} and cfg.socket_mode == 0o600 and not cfg.exif_transpose
    assert cfg.rescan_interval_s == 0 and cfg.socket_group is None


def test_every_env_variable_is_named_after_its_key() -> None:
    for name, key in ENV_VARS.items():
        assert name == "DEDUPD_" + key.upper().replace(".", "_")
        assert key.split(".")[0] in TOP_KEYS


def test_env_problems_name_the_variable(root: str) -> None:
    found = problems({"roots": [root]}, env={"DEDUPD_POLCY": "x", "DEDUPD_WORKERS": "[1", "DEDUPD_SETTLE_MS": "soon"})
    assert found[0] == "DEDUPD_POLCY: unknown environment variable (did you mean DEDUPD_POLICY?); unset or rename it"
    assert found[1].startswith("DEDUPD_WORKERS: is not valid YAML")
    assert found[2] == ("settle_ms: must be an int between 0 and 86400000, got 'soon' (set by DEDUPD_SETTLE_MS)")


def test_unrelated_dedupd_variables_are_left_alone(root: str) -> None:
    env = {"DEDUPD_CORPUS": "/x", "DEDUPD_MOBILENET_WEIGHTS": "/w.pth", "DEDUPD_TEST_PODMAN": "1"}
    assert make({"roots": [root]}, env).roots[0].path == root


def test_cli_overrides_win_over_env_and_file(tmp_path: Path, root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"HOME": "/h", "DEDUPD_LOG_LEVEL": "error", "DEDUPD_REPORT_DIR": "/env/reports"}
    overrides = {"log.level": "debug", "report_dir": "out", "methods.phash.threshold": 5, "store_dir": None,
                 "roots": [root]}
    cfg = load_config(write(tmp_path, "roots: [/nonexistent]\nstore_dir: /file/store\n"), env=env,
                      overrides=overrides)
    assert (cfg.log.level, cfg.report_dir, cfg.store_dir) == ("debug", str(tmp_path / "out"), "/file/store")
    assert cfg.hash_methods() == {"phash": 5} and cfg.roots == (RootConfig(root),)


def test_cli_override_problems(root: str) -> None:
    found = problems({"roots": [root]}, overrides={"polcy": "x", "methods.phash.threshold": 99})
    assert found == ["polcy: unknown override key (did you mean 'policy'?)",
                     "methods.phash.threshold: must be an int between 0 and 64, got 99 (set by a command-line option)"]


def test_no_file_uses_env_and_overrides(root: str) -> None:
    assert load_config(None, env={"HOME": "/h", "DEDUPD_ROOTS": root}).roots == (RootConfig(root),)
    with pytest.raises(ConfigError, match="roots: is required"):
        load_config(None, env={"HOME": "/h"})


def test_input_mapping_is_not_mutated(root: str) -> None:
    data = {"roots": [{"path": root}], "methods": {"cnn": {"model": "efficientnet_lite0"}}}
    snapshot = yaml.safe_dump(data)
    make(data, overrides={"methods.cnn.threshold": 0.5})
    assert yaml.safe_dump(data) == snapshot


# -- files -------------------------------------------------------------------------------------

def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file .*missing.yaml"):
        load_config(tmp_path / "missing.yaml", env=ENV)
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(write(tmp_path, "roots: [a\n"), env=ENV)
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), env=ENV)
    with pytest.raises(ConfigError, match="roots: is required"):
        load_config(write(tmp_path, ""), env=ENV)


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(write(tmp_path, "roots: !!python/object/apply:os.system ['true']\n"), env=ENV)


def test_example_config_is_valid_and_documents_every_key(tmp_path: Path, root: str) -> None:
    text = EXAMPLE.read_text()
    assert "/srv/photos" in text
    cfg = load_config(write(tmp_path, text.replace("/srv/photos", root)), env=ENV)
    assert cfg.roots == (RootConfig(root, True),)
    defaults = make({"roots": [root]})
    assert dataclasses.replace(cfg, source=None) == defaults  # the example shows the defaults
    for key in TOP_KEYS:
        assert re.search(rf"^#? ?{key}:", text, re.MULTILINE), f"{key} is not documented in the example"
    for name in ("threshold", "model", "weights", "recursive", "prefer", "format", "level"):
        assert f"{name}:" in text
