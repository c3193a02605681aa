"""Loading the daemon configuration: YAML file + ``DEDUPD_*`` environment + CLI overrides → :class:`Config`.

Loading has no side effects (no directory is created, nothing is logged); it only reads the
file and ``stat``\\ s the paths it validates. Every problem is collected and reported at once in
one :class:`~dedupd.errors.ConfigError`, each line naming the key path and what to do.

Precedence (lowest to highest): built-in defaults, the YAML file, ``DEDUPD_*`` variables, CLI
overrides. All three feed the same raw mapping before validation (see :mod:`.check`).

Default locations (deterministic; computed from the environment mapping passed in):

* ``state`` = ``$STATE_DIRECTORY`` (first entry; set by systemd's ``StateDirectory=``), else
  ``$XDG_STATE_HOME/dedupd``, else ``$HOME/.local/state/dedupd``.
* ``store_dir`` = ``state/store``; ``report_dir`` = ``state/reports``.
* ``socket_path`` = ``$RUNTIME_DIRECTORY/dedupd.sock`` (systemd's ``RuntimeDirectory=``), else
  ``$XDG_RUNTIME_DIR/dedupd/dedupd.sock``, else ``state/dedupd.sock``.

Relative paths in the file are resolved against the file's directory; relative paths given by
environment variables or CLI overrides against the current directory. ``~`` is expanded.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from typing import Any

import yaml

from dedupd.daemon.config.check import build_fields
from dedupd.daemon.config.model import Config
from dedupd.errors import ConfigError


def config_from_mapping(
    data: Any,
    *,
    base_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> Config:
    """Validate an already parsed mapping (e.g. ``yaml.safe_load`` output).

    Args:
        data: the top-level mapping (``None`` = empty).
        base_dir: directory that relative paths in ``data`` are resolved against (default: cwd).
        env: environment for ``DEDUPD_*`` overrides and default paths (default: ``os.environ``).
        overrides: CLI overrides keyed by dotted path (``"log.level"``); ``None`` values are ignored.
        source: name of the file ``data`` came from, used in error messages.

    Raises:
        ConfigError: listing every problem found.
    """
    env = os.environ if env is None else env
    fields = build_fields(data, base_dir or os.getcwd(), env, overrides or {}, default_paths(env), source)
    return Config(**fields, source=source)


def default_paths(env: Mapping[str, str]) -> dict[str, str]:
    """Default ``store_dir``, ``report_dir`` and ``socket_path`` for ``env`` (see module docstring).

    Relative values of the XDG variables are ignored, as the XDG base-directory spec requires.
    """

    def absolute(name: str) -> str | None:
        value = env.get(name, "").split(":")[0]
        return value if os.path.isabs(value) else None

    home = env.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    xdg_state = absolute("XDG_STATE_HOME")
    state = absolute("STATE_DIRECTORY") or os.path.join(
        xdg_state or os.path.join(home, ".local", "state"), "dedupd"
    )
    runtime = absolute("RUNTIME_DIRECTORY")
    xdg_runtime = absolute("XDG_RUNTIME_DIR")
    if runtime:
        socket = os.path.join(runtime, "dedupd.sock")
    elif xdg_runtime:
        socket = os.path.join(xdg_runtime, "dedupd", "dedupd.sock")
    else:
        socket = os.path.join(state, "dedupd.sock")
    return {
        "store_dir": os.path.normpath(os.path.join(state, "store")),
        "report_dir": os.path.normpath(os.path.join(state, "reports")),
        "socket_path": os.path.normpath(socket),
    }


def load_config(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read the YAML file at ``path`` (``None``: no file, defaults + env + overrides) and validate.

    Args:
        path: the config file; its directory anchors relative paths inside it.
        env: environment for ``DEDUPD_*`` overrides and default paths (default: ``os.environ``).
        overrides: CLI overrides keyed by dotted path (``{"store_dir": ..., "log.level": "debug"}``).

    Raises:
        ConfigError: the file cannot be read or parsed, or any value is invalid (all listed).
    """
    if path is None:
        return config_from_mapping({}, env=env, overrides=overrides)
    name = os.path.abspath(os.fsdecode(path))
    try:
        with open(name, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {name}: {exc.strerror or exc}; check the path") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {name} is not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {name} is not valid YAML: {exc}") from exc
    return config_from_mapping(data, base_dir=os.path.dirname(name), env=env, overrides=overrides, source=name)
