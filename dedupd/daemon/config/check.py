"""Validation behind :class:`dedupd.daemon.config.Config`: raw mapping + overrides → checked fields.

Every check appends to one problem list instead of raising, so the final
:class:`~dedupd.errors.ConfigError` lists everything wrong at once. A problem caused by an
environment variable or a CLI override says so, because the file alone would look fine.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from dedupd.daemon.config.model import (
    CNN_MODEL_NAMES,
    DEFAULT_AGREE,
    DEFAULT_CNN_CONFIRM,
    DEFAULT_CNN_STRONG,
    DEFAULT_CNN_THRESHOLD,
    DEFAULT_EXCLUDE,
    DEFAULT_HASH_OPTIONS,
    DEFAULT_HASH_THRESHOLD,
    DEFAULT_INCLUDE,
    DEFAULT_KEEP,
    DEFAULT_MAX_PIXELS,
    DEFAULT_REPORT_MODE,
    DEFAULT_VARIANT_LIMITS,
    HASH_METHOD_NAMES,
    HASH_OPTION_KEYS,
    KEEP_RULE_NAMES,
    MAX_MAX_PIXELS,
    CnnConfig,
    KeepRule,
    LogConfig,
    RootConfig,
)
from dedupd.daemon.config.values import (
    Problems,
    choice,
    int_in,
    non_negative_number,
    path_inside,
    show,
    string_list,
    unknown_keys,
)
from dedupd.errors import ConfigError

TOP_KEYS: tuple[str, ...] = (
    "roots", "store_dir", "report_dir", "report_mode", "socket_path", "socket_mode", "socket_group", "policy",
    "quarantine_dir", "methods", "match", "keep", "include", "exclude", "settle_ms", "workers",
    "rescan_interval_s", "decode", "exif_transpose", "max_pixels", "log", "dry_run", "report_interval_s",
    "graph_margin", "scan_workers",
)
_DIR_KEYS = ("store_dir", "report_dir", "socket_path", "quarantine_dir")

#: Dotted key → how its ``DEDUPD_*`` value is read: raw path, raw string, ``os.pathsep`` list, YAML.
_ENV_KINDS: dict[str, str] = {
    "roots": "pathlist", "store_dir": "path", "report_dir": "path", "socket_path": "path",
    "quarantine_dir": "path", "socket_mode": "str", "report_mode": "str", "socket_group": "str", "policy": "str",
    "match": "str", "decode": "str", "log.format": "str", "log.level": "str", "settle_ms": "yaml",
    "workers": "yaml", "rescan_interval_s": "yaml", "exif_transpose": "yaml", "methods": "yaml",
    "keep": "yaml", "include": "yaml", "exclude": "yaml", "max_pixels": "yaml", "dry_run": "yaml",
    "report_interval_s": "yaml", "graph_margin": "yaml", "scan_workers": "yaml",
}
#: ``DEDUPD_STORE_DIR`` → ``store_dir``, ``DEDUPD_LOG_LEVEL`` → ``log.level``, ...
ENV_VARS: dict[str, str] = {"DEDUPD_" + k.upper().replace(".", "_"): k for k in _ENV_KINDS}
#: ``DEDUPD_*`` names that are not config fields and are left alone (read by the CLI itself, and
#: the socket server's limits, see :mod:`dedupd.daemon.api.transport`).
ENV_IGNORED: frozenset[str] = frozenset({"DEDUPD_CONFIG", "DEDUPD_MAX_UPLOAD_BYTES", "DEDUPD_REQUEST_TIMEOUT_S",
                                         "DEDUPD_HEADER_TIMEOUT_S"})


def _abs(value: Any, base: str) -> Any:
    if not isinstance(value, str) or not value:
        return value
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _absolutize(raw: dict[str, Any], base: str) -> None:
    """Make path values in ``raw`` absolute against ``base``, copying nested containers (never mutating input)."""
    for key in _DIR_KEYS:
        if key in raw:
            raw[key] = _abs(raw[key], base)
    roots = raw.get("roots")
    if isinstance(roots, (str, Mapping)):
        roots = [roots]
    if isinstance(roots, list):
        raw["roots"] = [
            {**r, "path": _abs(r["path"], base)} if isinstance(r, Mapping) and "path" in r else _abs(r, base)
            for r in roots
        ]
    methods = raw.get("methods")
    if isinstance(methods, Mapping) and isinstance(methods.get("cnn"), Mapping):
        cnn = dict(methods["cnn"])
        if "weights" in cnn:
            cnn["weights"] = _abs(cnn["weights"], base)
        if "model" in cnn and cnn["model"] not in CNN_MODEL_NAMES:
            cnn["model"] = _abs(cnn.get("model"), base)
        raw["methods"] = {**methods, "cnn": cnn}


def _set(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        child = dict(child) if isinstance(child, Mapping) else {}
        node[part] = child
        node = child
    node[leaf] = value


def _get(raw: Mapping[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def _env_overrides(env: Mapping[str, str], p: Problems) -> list[tuple[str, Any, str]]:
    out = []
    for name in sorted(n for n in env if n.startswith("DEDUPD_")):
        text = env[name]
        if name in ENV_IGNORED or text == "":  # empty = unset, as shells make it easy to blank a variable
            continue
        key = ENV_VARS.get(name)
        if key is None:
            # a near miss of a config variable is a typo worth stopping for; any other DEDUPD_*
            # name belongs to something else (tests, tools, the server's limits) and is left alone
            hint = difflib.get_close_matches(name, ENV_VARS, n=1, cutoff=0.85)
            if hint:
                p.add(name, f"unknown environment variable (did you mean {hint[0]}?); unset or rename it")
            continue
        kind = _ENV_KINDS[key]
        if kind == "pathlist":
            value: Any = [part for part in text.split(os.pathsep) if part]
        elif kind == "yaml":
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                p.add(name, f"is not valid YAML ({getattr(exc, 'problem', None) or exc}); quote or fix the value")
                continue
        else:
            value = text
        out.append((key, value, name))
    return out


def _merge_overrides(raw: dict[str, Any], items: Iterable[tuple[str, Any, str]], p: Problems) -> None:
    cwd = os.getcwd()
    for dotted, value, origin in items:
        if dotted.split(".")[0] not in TOP_KEYS:
            hint = difflib.get_close_matches(dotted, TOP_KEYS, n=1)
            p.add(dotted, "unknown override key" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
            continue
        patch: dict[str, Any] = {}
        _set(patch, dotted, value)
        _absolutize(patch, cwd)  # paths from the command line or environment are relative to cwd
        _set(raw, dotted, _get(patch, dotted))
        p.origins[dotted] = origin


def build_fields(
    data: Any,
    base_dir: str,
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
    defaults: Mapping[str, str],
    source: str | None,
) -> dict[str, Any]:
    """Merge ``data``, ``DEDUPD_*`` variables in ``env`` and ``overrides``; validate; return Config kwargs.

    Raises:
        ConfigError: listing every problem (each line starts with the key path).
    """
    p = Problems()
    where = f" in {source}" if source else ""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"invalid configuration{where}: the top level must be a mapping of keys such as "
                          f"'roots: [/srv/photos]', got {show(data)}")
    raw = {str(k): v for k, v in data.items()}
    _absolutize(raw, base_dir)
    _merge_overrides(raw, _env_overrides(env, p), p)
    _merge_overrides(raw, ((k, v, "a command-line option") for k, v in overrides.items() if v is not None), p)
    unknown_keys(raw, TOP_KEYS, "", p)
    fields = _check(raw, defaults, p)
    if p.items:
        n = len(p.items)
        raise ConfigError(f"invalid configuration{where} ({n} problem{'s' if n > 1 else ''}):\n  - "
                          + "\n  - ".join(p.items))
    return fields


def _check(raw: Mapping[str, Any], defaults: Mapping[str, str], p: Problems) -> dict[str, Any]:
    roots = _roots(raw.get("roots"), p)
    f: dict[str, Any] = {"roots": tuple(r for _, r in roots)}
    for key in ("store_dir", "report_dir", "socket_path"):
        value = raw.get(key)
        if value is None:
            value = defaults[key]
        elif not isinstance(value, str) or not value:
            p.add(key, f"must be a path, got {show(value)}")
        f[key] = value
    f["socket_mode"] = _mode("socket_mode", raw.get("socket_mode", 0o660), 0o660, "read and write the socket", p)
    f["report_mode"] = _mode("report_mode", raw.get("report_mode", DEFAULT_REPORT_MODE), DEFAULT_REPORT_MODE,
                             "read its own reports", p)
    f["socket_group"] = _socket_group(raw.get("socket_group"), p)
    f["policy"] = choice(raw.get("policy", "report"), "policy", ("report", "quarantine"), p)
    quarantine = raw.get("quarantine_dir")
    if quarantine is not None and (not isinstance(quarantine, str) or not quarantine):
        p.add("quarantine_dir", f"must be a path, got {show(quarantine)}")
        quarantine = None
    elif quarantine is None and f["policy"] == "quarantine" and raw.get("dry_run") is not True:
        p.add("quarantine_dir", "is required when policy is 'quarantine': set the directory duplicates are "
              "moved to (ideally on the same filesystem as the roots)")
    f["quarantine_dir"] = quarantine
    for key in ("store_dir", "report_dir", "quarantine_dir"):
        value = f[key]
        for i, root in roots:
            if isinstance(value, str) and path_inside(value, root.path):
                p.add(key, f"{value} contains the watched root roots[{i}] {root.path}; "
                      "choose a directory outside the roots (it is never watched)")
    f["hash_thresholds"], f["cnn"] = _methods(raw.get("methods"), p)
    f["hash_strong"], f["hash_options"] = _hash_extras(raw.get("methods"), p)
    f["hash_agree"] = _hash_agree(raw.get("methods"), f["hash_options"], p)
    f["match"] = choice(raw.get("match", "any"), "match", ("any", "all"), p)
    f["keep"] = _keep(raw.get("keep", list(DEFAULT_KEEP)), p)
    f["include"] = string_list(raw.get("include", list(DEFAULT_INCLUDE)), "include", p, allow_empty=False)
    f["exclude"] = string_list(raw.get("exclude", list(DEFAULT_EXCLUDE)), "exclude", p, allow_empty=True)
    f["settle_ms"] = int_in(raw.get("settle_ms", 1000), "settle_ms", 0, 86_400_000, p)
    f["workers"] = int_in(raw.get("workers", 1), "workers", 1, 1024, p)
    f["rescan_interval_s"] = non_negative_number(raw.get("rescan_interval_s", 3600), "rescan_interval_s", p)
    f["decode"] = choice(raw.get("decode", "exact"), "decode", ("exact", "fast"), p)
    scan_workers = raw.get("scan_workers", "auto")
    if scan_workers == "auto":
        f["scan_workers"] = 0
    elif isinstance(scan_workers, int) and not isinstance(scan_workers, bool) and 1 <= scan_workers <= 1024:
        f["scan_workers"] = scan_workers
    else:
        p.add("scan_workers", f"must be 'auto' (every available CPU) or an int between 1 and 1024, got "
                              f"{show(scan_workers)}")
        f["scan_workers"] = 0
    exif = raw.get("exif_transpose", True)
    if not isinstance(exif, bool):
        p.add("exif_transpose", f"must be true or false, got {show(exif)}")
    f["exif_transpose"] = exif is True
    f["max_pixels"] = int_in(raw.get("max_pixels", DEFAULT_MAX_PIXELS), "max_pixels", 1, MAX_MAX_PIXELS, p)
    f["report_interval_s"] = non_negative_number(raw.get("report_interval_s", 0.5), "report_interval_s", p)
    f["graph_margin"] = int_in(raw.get("graph_margin", 2), "graph_margin", 0, 32, p)
    f["log"] = _log(raw.get("log"), p)
    dry_run = raw.get("dry_run", False)
    if not isinstance(dry_run, bool):
        p.add("dry_run", f"must be true or false, got {show(dry_run)}")
    f["dry_run"] = dry_run is True
    return f


def _roots(value: Any, p: Problems) -> list[tuple[int, RootConfig]]:
    if value is None:
        p.add("roots", "is required: list the directories to watch, e.g. 'roots: [/srv/photos]'")
        return []
    if not isinstance(value, list) or not value:
        p.add("roots", f"must be a non-empty list of directories, got {show(value)}")
        return []
    out: list[tuple[int, RootConfig]] = []
    for i, item in enumerate(value):
        key, recursive, reference = f"roots[{i}]", True, False
        if isinstance(item, Mapping):
            unknown_keys(item, ("path", "recursive", "reference"), key, p)
            recursive = item.get("recursive", True)
            if not isinstance(recursive, bool):
                p.add(f"{key}.recursive", f"must be true or false, got {show(recursive)}")
            reference = item.get("reference", False)
            if not isinstance(reference, bool):
                p.add(f"{key}.reference", f"must be true or false (true: originals, never moved), got {show(reference)}")
            item, key = item.get("path"), f"{key}.path"
        if not isinstance(item, str) or not item:
            p.add(key, f"must be a directory path (or {{path: DIR, recursive: BOOL, reference: BOOL}}), "
                  f"got {show(item)}")
        elif not os.path.exists(item):
            p.add(key, f"directory {item} does not exist; create it or fix the path")
        elif not os.path.isdir(item):
            p.add(key, f"{item} is not a directory; give the directory that contains the images")
        elif isinstance(recursive, bool) and isinstance(reference, bool):
            out.append((i, RootConfig(item, recursive, reference)))
    for n, (i, a) in enumerate(out):
        for j, b in out[:n]:
            if a.path == b.path:
                p.add(f"roots[{i}]", f"{a.path} is listed twice (also roots[{j}]); remove one")
                break  # one problem per root is enough
            if (b.recursive and path_inside(b.path, a.path)) or (a.recursive and path_inside(a.path, b.path)):
                p.add(f"roots[{i}]", f"{a.path} overlaps recursive roots[{j}] {b.path}; remove the inner one")
                break
    return out


def _mode(key: str, value: Any, default: int, owner_needs: str, p: Problems) -> int:
    """A permission mode written in octal; the daemon's own user keeps read and write."""
    mode = -1
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str):
        digits = value.strip().removeprefix("0o")
        if digits and all(c in "01234567" for c in digits):
            mode = int(digits, 8)
    example = f"\"{default:04o}\""
    if not 0 <= mode <= 0o777:
        p.add(key, f"must be a permission mode from 0000 to 0777, got {show(value)}; write it quoted in "
              f"octal, e.g. {example} (unquoted {default:o} is the decimal number {default:o})")
        return default
    if mode & 0o600 != 0o600:
        p.add(key, f"{oct(mode)} does not let the daemon's own user {owner_needs}; include 0600, e.g. {example}")
    return mode


def _socket_group(value: Any, p: Problems) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        return value
    p.add("socket_group", f"must be a group name or numeric gid, got {show(value)}")
    return None


def _methods(value: Any, p: Problems) -> tuple[tuple[tuple[str, int], ...], CnnConfig | None]:
    if value is None:
        return ((("phash", DEFAULT_HASH_THRESHOLD),), None)
    if not isinstance(value, Mapping) or not value:
        p.add("methods", f"must map at least one of {', '.join(HASH_METHOD_NAMES)}, cnn to its settings, "
              f"e.g. {{phash: {{threshold: 10}}}}; got {show(value)}")
        return ((), None)
    unknown_keys(value, (*HASH_METHOD_NAMES, "cnn"), "methods", p)
    hashes: list[tuple[str, int]] = []
    for name, spec in value.items():
        if name not in HASH_METHOD_NAMES:
            continue
        key = f"methods.{name}"
        if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
            spec = {} if spec is None else {"threshold": spec}  # `phash:` or `phash: 8` shorthands
        if not isinstance(spec, Mapping):
            p.add(key, f"must be a mapping such as {{threshold: 10}}, got {show(spec)}")
            continue
        unknown_keys(spec, ("threshold", "strong", "agree", *HASH_OPTION_KEYS), key, p)
        hashes.append((name, int_in(spec.get("threshold", DEFAULT_HASH_THRESHOLD), f"{key}.threshold", 0, 64, p)))
    cnn = _cnn(value["cnn"], p) if "cnn" in value else None
    return tuple(hashes), cnn


def _hash_specs(value: Any) -> Iterable[tuple[str, Mapping[str, Any], int]]:
    """``(name, settings, threshold or 64 when invalid)`` of each hash method under ``methods``
    (``phash:`` and ``phash: 8`` shorthands expanded; the default config's pHash when absent)."""
    if value is None:
        value = {"phash": {}}
    if not isinstance(value, Mapping):
        return
    for name, spec in value.items():
        if spec is None or (isinstance(spec, int) and not isinstance(spec, bool)):
            spec = {} if spec is None else {"threshold": spec}  # `phash:` or `phash: 8` shorthands
        if name not in HASH_METHOD_NAMES or not isinstance(spec, Mapping):
            continue
        threshold = spec.get("threshold", DEFAULT_HASH_THRESHOLD)
        yield name, spec, (threshold if isinstance(threshold, int) and not isinstance(threshold, bool)
                           and 0 <= threshold <= 64 else 64)


def _hash_extras(value: Any, p: Problems) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, tuple[tuple[str, int], ...]], ...]]:
    """``methods.<hash>.strong`` (max distance of a strong match) and the variant options
    (``crop``, ``flip``: true, or the max distance of a match through them) of each hash method."""
    strong: list[tuple[str, int]] = []
    options: list[tuple[str, tuple[tuple[str, int], ...]]] = []
    for name, spec, top in _hash_specs(value):
        key = f"methods.{name}"
        if "strong" in spec:
            strong.append((name, int_in(spec["strong"], f"{key}.strong", 0, top, p)))
        opts = []
        for opt, internal in HASH_OPTION_KEYS.items():
            flag = spec.get(opt, DEFAULT_HASH_OPTIONS.get(name, {}).get(internal, False))
            if flag is True:
                opts.append((internal, min(top, DEFAULT_VARIANT_LIMITS[internal])))
            elif isinstance(flag, int) and not isinstance(flag, bool):
                opts.append((internal, int_in(flag, f"{key}.{opt}", 0, top, p)))
            elif flag is not False and flag is not None:
                p.add(f"{key}.{opt}", f"must be true, false or the max distance (0..{top}) of a match through "
                      f"the {opt} hashes, got {show(flag)}")
        if opts:
            options.append((name, tuple(opts)))
    return tuple(strong), tuple(options)


def _hash_agree(value: Any, options: tuple[tuple[str, tuple[tuple[str, int], ...]], ...], p: Problems
                ) -> tuple[tuple[str, int], ...]:
    """``methods.<hash>.agree``: the framing check's max distance per hash method (true: the
    threshold; false: no check). It compares the crop hashes, so it needs ``crop`` on; by default
    it is on wherever ``crop`` is."""
    out: list[tuple[str, int]] = []
    cropped = {m for m, opts in options if any(o == "crop" for o, _ in opts)}
    for name, spec, top in _hash_specs(value):
        key = f"methods.{name}.agree"
        flag = spec.get("agree", DEFAULT_AGREE if name in cropped else False)
        if flag is False or flag is None:
            continue
        if flag is not True and (isinstance(flag, bool) or not isinstance(flag, int) or not 0 <= flag <= 64):
            p.add(key, f"must be true (within the threshold, {top}), false (no framing check) or the max "
                  f"distance (0..64) of the crop hashes of the same framing for a match beyond `strong`, "
                  f"got {show(flag)}")
            continue
        if name not in cropped:
            p.add(key, f"compares the crop hashes, which are off for {name}: set methods.{name}.crop: true, "
                  "or agree: false")
            continue
        out.append((name, top if flag is True else flag))
    return tuple(out)


def _cnn(spec: Any, p: Problems) -> CnnConfig | None:
    spec = {} if spec is None else spec
    if not isinstance(spec, Mapping):
        p.add("methods.cnn", f"must be a mapping such as {{model: mobilenet_v3_small, threshold: 0.9}}, got {show(spec)}")
        return None
    unknown_keys(spec, ("model", "threshold", "weights", "strong", "confirm"), "methods.cnn", p)
    model = spec.get("model", CNN_MODEL_NAMES[0])
    if not isinstance(model, str) or not model:
        p.add("methods.cnn.model", f"must be {' or '.join(map(repr, CNN_MODEL_NAMES))} or the path of a "
              f"TorchScript file, got {show(model)}")
    elif model not in CNN_MODEL_NAMES and not os.path.isfile(model):
        hint = difflib.get_close_matches(os.path.basename(model), CNN_MODEL_NAMES, n=1)
        p.add("methods.cnn.model", f"must be {' or '.join(map(repr, CNN_MODEL_NAMES))} or the path of a "
              f"TorchScript file; {model} is not a file" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    threshold = spec.get("threshold", DEFAULT_CNN_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1.0 <= threshold <= 1.0:
        p.add("methods.cnn.threshold", f"must be a number between -1.0 and 1.0 (min cosine similarity), "
              f"got {show(threshold)}")
        threshold = DEFAULT_CNN_THRESHOLD
    weights = spec.get("weights")
    if weights is not None and (not isinstance(weights, str) or not os.path.isfile(weights)):
        p.add("methods.cnn.weights", f"{show(weights)} is not a file; give the path of the downloaded weights "
              "(.pth) or remove the key to use torchvision's cache")
    strong = spec.get("strong", max(DEFAULT_CNN_STRONG, float(threshold)))
    if isinstance(strong, bool) or not isinstance(strong, (int, float)) or not float(threshold) <= strong <= 1.0:
        p.add("methods.cnn.strong", f"must be a number from the threshold ({threshold}) to 1.0 (min cosine "
              f"similarity of a CNN-only match that quarantine may act on), got {show(strong)}")
        strong = max(DEFAULT_CNN_STRONG, float(threshold))
    confirm = spec.get("confirm", max(DEFAULT_CNN_CONFIRM, float(threshold)))
    if isinstance(confirm, bool) or not isinstance(confirm, (int, float)) or not float(threshold) <= confirm <= 1.0:
        p.add("methods.cnn.confirm", f"must be a number from the threshold ({threshold}) to 1.0 (min cosine "
              f"similarity with which the CNN makes a borderline hash match strong), got {show(confirm)}")
        confirm = max(DEFAULT_CNN_CONFIRM, float(threshold))
    return CnnConfig(model if isinstance(model, str) else "", float(threshold), weights, float(strong),
                     float(confirm))


def _keep(value: Any, p: Problems) -> tuple[KeepRule, ...]:
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, list):
        p.add("keep", f"must be a list of rules such as [largest_pixels, {{prefer: '*/originals/*'}}], got {show(value)}")
        return ()
    rules = []
    for i, rule in enumerate(value):
        key = f"keep[{i}]"
        if isinstance(rule, Mapping):
            unknown_keys(rule, ("prefer",), key, p)
            glob = rule.get("prefer")
            if isinstance(glob, str) and glob:
                rules.append(KeepRule("prefer", glob))
            elif "prefer" in rule or not rule:
                p.add(f"{key}.prefer", f"must be a glob on the absolute path such as '*/originals/*', got {show(glob)}")
        elif choice(rule, key, KEEP_RULE_NAMES, p) is not None:
            rules.append(KeepRule(rule))
    return tuple(rules)


def _log(value: Any, p: Problems) -> LogConfig:
    if value is None:
        return LogConfig()
    if not isinstance(value, Mapping):
        p.add("log", f"must be a mapping such as {{format: auto, level: info}}, got {show(value)}")
        return LogConfig()
    unknown_keys(value, ("format", "level"), "log", p)
    level = value.get("level", "info")
    if isinstance(level, str):  # accept INFO, Warn... as log libraries do
        normal = {"warn": "warning"}.get(level.lower(), level.lower())
        level = normal if normal in ("debug", "info", "warning", "error") else level
    fmt = choice(value.get("format", "auto"), "log.format", ("auto", "json", "console"), p)
    lvl = choice(level, "log.level", ("debug", "info", "warning", "error"), p)
    return LogConfig(fmt or "auto", lvl or "info")
