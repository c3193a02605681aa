"""Small value checkers for config validation; each records a problem instead of raising."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Problems:
    """Collected problems, plus where overridden keys came from (``{"workers": "DEDUPD_WORKERS"}``)."""

    items: list[str] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, message: str) -> None:
        """Record ``key: message``, noting the override that set ``key`` (or a parent) if any."""
        origin = next(
            (o for k, o in self.origins.items() if key == k or key.startswith((k + ".", k + "["))), None
        )
        self.items.append(f"{key}: {message}" + (f" (set by {origin})" if origin else ""))


def show(value: Any) -> str:
    """A short rendering of a bad value for a message."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _hint(value: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_keys(mapping: Mapping[Any, Any], known: Iterable[str], prefix: str, p: Problems) -> None:
    """Report each key of ``mapping`` not in ``known``, with a suggestion when one is close."""
    known = tuple(known)
    for key in mapping:
        if key not in known:
            path = f"{prefix}.{key}" if prefix else str(key)
            p.add(path, "unknown key" + _hint(str(key), known) + "; remove or rename it")


def choice(value: Any, key: str, choices: tuple[str, ...], p: Problems) -> str | None:
    """``value`` if it is one of ``choices``, else record a problem and return None."""
    if isinstance(value, str) and value in choices:
        return value
    hint = _hint(value, choices) if isinstance(value, str) else ""
    p.add(key, f"must be one of {', '.join(map(repr, choices))}, got {show(value)}{hint}")
    return None


def int_in(value: Any, key: str, lo: int, hi: int, p: Problems) -> int:
    """``value`` if it is an int (not a bool) in ``[lo, hi]``, else record a problem and return ``lo``."""
    if isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi:
        return value
    p.add(key, f"must be an int between {lo} and {hi}, got {show(value)}")
    return lo


def non_negative_number(value: Any, key: str, p: Problems) -> float:
    """``value`` as a float if it is a number >= 0, else record a problem and return 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    p.add(key, f"must be a number of seconds >= 0 (0 disables), got {show(value)}")
    return 0.0


def string_list(value: Any, key: str, p: Problems, *, allow_empty: bool) -> tuple[str, ...]:
    """A list of non-empty strings (a single string is taken as a one-item list)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or (not value and not allow_empty):
        need = "a list" if allow_empty else "a non-empty list"
        p.add(key, f"must be {need} of glob patterns such as ['*.jpg', '*.png'], got {show(value)}")
        return ()
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str) and item:
            out.append(item)
        else:
            p.add(f"{key}[{i}]", f"must be a non-empty glob pattern string, got {show(item)}")
    return tuple(out)


def path_inside(outer: str, inner: str) -> bool:
    """True when absolute ``inner`` equals ``outer`` or lies below it (string comparison, no I/O)."""
    outer = outer.rstrip(os.sep) or os.sep
    return inner == outer or inner.startswith(outer if outer == os.sep else outer + os.sep)
