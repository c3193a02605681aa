"""What a caller of the imagededup API can observe about one call, and how two such outcomes differ.

An :class:`Outcome` is the call's *signature*: the exception class (or none), the returned value,
the categories of the warnings it emitted, and the progress bars ``verbose=True`` wrote to a
stderr that is not a terminal. :func:`differences` compares the reference's outcome with dedupd's
under the compatibility contract: dedupd may raise a subclass of the reference's exception, never
an unrelated one; values must have the same types (a ``str`` subclass counts as ``str``) and
equal values (floats within a relative tolerance); warnings must have the same categories in the
same order; the bars must count the same totals.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Cases compared in this session, cases that differ, and those of them documented as deliberate.
TALLY: dict[str, int] = {"cases": 0, "differ": 0, "documented": 0}

#: Relative tolerance for floats (CNN similarities computed by different but equivalent kernels).
REL_TOL = 1e-4
ABS_TOL = 1e-5


@dataclass
class Outcome:
    """The observable result of one call."""

    exc: type[BaseException] | None
    value: Any
    warnings: list[type[Warning]] = field(default_factory=list)
    bars: list[str] = field(default_factory=list)
    message: str = ""

    def describe(self) -> str:
        head = f"raised {self.exc.__name__}: {self.message[:120]}" if self.exc else f"returned {_short(self.value)}"
        return f"{head}; warnings={[w.__name__ for w in self.warnings]}; bars={self.bars}"


class _NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


#: tqdm's final state of a bar: "100%|##########| 12/12 [...]" or, without a total, "0it [...]".
_BAR = re.compile(r"(?:(\d+)%\|[^|]*\|\s*(\d+)/(\d+)|(\d+)it\s*\[)")


def progress_bars(text: str) -> list[str]:
    """The final state of each progress bar in ``text`` as ``"pct% n/total"`` (or ``"n it"``).

    A bar redraws itself after carriage returns and ends with a newline; other lines (log records)
    are ignored.
    """
    bars = []
    for line in text.split("\n"):
        last = line.split("\r")[-1] if "\r" in line else line
        m = _BAR.search(last)
        if not m:
            continue
        bars.append(f"{m.group(1)}% {m.group(2)}/{m.group(3)}" if m.group(1) else f"{m.group(4)} it")
    return bars


def capture(call: Callable[[], Any]) -> Outcome:
    """Run ``call`` with warnings recorded and stderr replaced by a non-terminal buffer."""
    err = _NotATerminal()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            value = call()
            exc: type[BaseException] | None = None
            message = ""
        except Exception as e:  # noqa: BLE001 - the exception class is the outcome
            value, exc, message = None, type(e), str(e)
    cats = [w.category for w in caught if not _foreign(w)]
    return Outcome(exc, value, cats, progress_bars(err.getvalue()), message)


def _foreign(w: warnings.WarningMessage) -> bool:
    """Warnings from third-party internals (torch, sklearn, numpy deprecations) are not the API's."""
    return issubclass(w.category, DeprecationWarning | ResourceWarning) or "torch" in str(w.filename)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def _kind(value: Any) -> str:
    """The type a caller can observe; a ``str`` subclass (numpy's ``str_``) is a ``str``."""
    if isinstance(value, str):
        return "str"
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def value_differences(ref: Any, ours: Any, path: str = "value") -> list[str]:
    """Type-and-value differences between two returned values, one line each (first few only)."""
    if _kind(ref) != _kind(ours):
        return [f"{path}: type {_kind(ref)} (reference) vs {_kind(ours)} (dedupd)"]
    if isinstance(ref, np.ndarray):
        if ref.dtype != ours.dtype or ref.shape != ours.shape:
            return [f"{path}: array {ref.dtype}{ref.shape} vs {ours.dtype}{ours.shape}"]
        if ref.dtype.kind in "fc":
            ok = np.allclose(ref, ours, rtol=REL_TOL, atol=ABS_TOL * max(1.0, float(np.abs(ref).max(initial=0))), equal_nan=True)
        else:
            ok = np.array_equal(ref, ours)
        return [] if ok else [f"{path}: array values differ"]
    if isinstance(ref, dict):
        if list(map(str, ref)) != list(map(str, ours)):
            if set(map(str, ref)) == set(map(str, ours)):
                return [f"{path}: same keys in a different order"]
            return [f"{path}: keys {sorted(map(str, ref))[:6]} vs {sorted(map(str, ours))[:6]}"]
        out: list[str] = []
        for (k, v), (k2, v2) in zip(ref.items(), ours.items()):
            out += value_differences(k, k2, f"{path} key {k!r}")
            out += value_differences(v, v2, f"{path}[{k!r}]")
            if len(out) > 3:
                break
        return out
    if isinstance(ref, list | tuple | set | frozenset):
        if len(ref) != len(ours):
            return [f"{path}: length {len(ref)} vs {len(ours)}"]
        a, b = (sorted(ref, key=repr), sorted(ours, key=repr)) if isinstance(ref, set | frozenset) else (ref, ours)
        out = []
        for n, (x, y) in enumerate(zip(a, b)):
            out += value_differences(x, y, f"{path}[{n}]")
            if len(out) > 3:
                break
        return out
    if isinstance(ref, float | np.floating):
        return [] if _close(float(ref), float(ours)) else [f"{path}: {ref!r} vs {ours!r}"]
    if isinstance(ref, str | int | bool | bytes | np.integer | np.bool_) or ref is None:
        return [] if ref == ours else [f"{path}: {_short(ref)} vs {_short(ours)}"]
    return []  # other objects (models, figures): the type match above is the contract


def differences(ref: Outcome, ours: Outcome, compare_value: bool = True) -> list[str]:
    """Every way dedupd's outcome breaks the contract with the reference's (empty: conformant)."""
    out = []
    if ref.exc is not None or ours.exc is not None:
        if ref.exc is None:
            out.append(f"dedupd raised {ours.exc.__name__} ({ours.message[:100]}) where the reference returned")
        elif ours.exc is None:
            out.append(f"reference raised {ref.exc.__name__} ({ref.message[:100]}) where dedupd returned")
        elif not issubclass(ours.exc, ref.exc):
            out.append(f"exception {ours.exc.__name__} is not a {ref.exc.__name__} (reference: {ref.message[:100]})")
    elif compare_value:
        out += value_differences(ref.value, ours.value)
    if ref.warnings != ours.warnings:
        out.append(f"warnings {[w.__name__ for w in ref.warnings]} vs {[w.__name__ for w in ours.warnings]}")
    if ref.bars != ours.bars:
        out.append(f"progress on a non-terminal stderr {ref.bars} vs {ours.bars}")
    return out
