"""Daemon configuration: the model (:mod:`.model`), its validation (:mod:`.check`, :mod:`.values`)
and loading from YAML + environment + CLI overrides (:mod:`.load`)."""

from dedupd.daemon.config.load import config_from_mapping, default_paths, load_config
from dedupd.daemon.config.model import (
    CNN_MODEL_NAMES,
    DEFAULT_CNN_THRESHOLD,
    DEFAULT_EXCLUDE,
    DEFAULT_HASH_THRESHOLD,
    DEFAULT_INCLUDE,
    DEFAULT_KEEP,
    DEFAULT_REPORT_MODE,
    ENCODER_VERSION,
    HASH_METHOD_NAMES,
    KEEP_RULE_NAMES,
    CnnConfig,
    Config,
    KeepRule,
    LogConfig,
    RootConfig,
)

__all__ = [
    "CNN_MODEL_NAMES", "DEFAULT_CNN_THRESHOLD", "DEFAULT_EXCLUDE", "DEFAULT_HASH_THRESHOLD", "DEFAULT_INCLUDE",
    "DEFAULT_KEEP", "DEFAULT_REPORT_MODE", "ENCODER_VERSION", "HASH_METHOD_NAMES", "KEEP_RULE_NAMES", "CnnConfig", "Config",
    "KeepRule", "LogConfig", "RootConfig", "config_from_mapping", "default_paths", "load_config",
]
