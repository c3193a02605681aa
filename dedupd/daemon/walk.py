"""Walking the watched roots: the startup and periodic reconcile (``scandir``/``stat`` injectable)."""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dedupd.daemon.config import Config, RootConfig

_VANISHED = (errno.ENOENT, errno.ENOTDIR)


@dataclass(frozen=True)
class Found:
    """A candidate file seen by the walk: its stat, or why it could not be stat'ed."""

    path: str
    st: os.stat_result | None
    error: str | None = None
    link: bool = False  # a symlink (to a file inside the roots)


def walk_root(
    root: RootConfig,
    config: Config,
    *,
    scandir: Callable[[str], Iterator[os.DirEntry[str]]] = os.scandir,
    stat: Callable[[str], os.stat_result] = os.stat,
    on_dir_error: Callable[[str, OSError], None] | None = None,
) -> Iterator[Found]:
    """Every wanted file under ``root``, depth first.

    Directories are never followed through symlinks (no loops); a symlink to a file is a file.
    Excluded directories (store, report, quarantine, hidden ones by the default ``exclude``) are
    skipped. A directory that vanishes mid-walk is treated as empty; other directory errors go to
    ``on_dir_error`` and the walk continues.
    """
    stack = [root.path]
    while stack:
        current = stack.pop()
        try:
            with scandir(current) as it:  # type: ignore[attr-defined]
                entries = list(it)
        except OSError as exc:
            if exc.errno not in _VANISHED and on_dir_error is not None:
                on_dir_error(current, exc)
            continue
        for entry in sorted(entries, key=lambda e: e.name, reverse=True):
            path = entry.path
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if root.recursive and not config.skips_dir(path):
                    stack.append(path)
                if config.wants_file(path):  # a folder named like an image: reported, not silently skipped
                    try:
                        yield Found(path, entry.stat(follow_symlinks=False), not_a_file_reason(stat_mod.S_IFDIR))
                    except OSError:
                        pass
                continue
            if not config.wants_file(path):
                continue
            if entry.is_symlink() and not link_target_inside(path, config):
                continue  # never index (or report on) files outside the roots through a symlink
            try:
                st = stat(path)
            except OSError as exc:
                if exc.errno == errno.ENOENT and entry.is_symlink():
                    yield Found(path, None, "dangling symlink")
                elif exc.errno == errno.ENOENT:
                    continue  # vanished between listing and stat
                else:
                    yield Found(path, None, f"cannot stat: {exc.strerror or exc}")
                continue
            if stat_mod.S_ISREG(st.st_mode):
                yield Found(path, st, link=entry.is_symlink())
            else:
                yield Found(path, st, not_a_file_reason(st.st_mode))


def not_a_file_reason(mode: int) -> str:
    """Why a wanted name that is not a regular file is skipped (it is never opened: a FIFO would block)."""
    if stat_mod.S_ISDIR(mode):
        return "a folder, not an image file"
    kind = ("a FIFO (named pipe)" if stat_mod.S_ISFIFO(mode) else "a socket" if stat_mod.S_ISSOCK(mode)
            else "a device" if stat_mod.S_ISCHR(mode) or stat_mod.S_ISBLK(mode) else "a special file")
    return f"not a regular file: {kind}"


def root_of(path: str, config: Config) -> RootConfig | None:
    """The configured root containing ``path`` (the most specific one), if any."""
    best: RootConfig | None = None
    for root in config.roots:
        base = root.path.rstrip("/") + "/"
        if path.startswith(base):
            rel = path[len(base):]
            if not root.recursive and "/" in rel:
                continue
            if best is None or len(root.path) > len(best.path):
                best = root
    return best


def link_target_inside(path: str, config: Config) -> bool:
    """For a symlink: True when its target resolves inside a root (a loop or a dangling link counts as
    inside, so it is reported as unreadable rather than silently skipped)."""
    try:
        real = os.path.realpath(path, strict=True)
    except OSError as exc:
        return exc.errno in (errno.ELOOP, errno.ENOENT)
    return root_of(real, config) is not None


def is_watched_dir(path: str, config: Config) -> bool:
    """True when folder ``path`` is a root or lies in one (honouring ``recursive``), and neither it
    nor a folder above it (below the root) is skipped."""
    path = path.rstrip("/")
    root = root_of(path + "/x", config)
    if root is None:
        return False
    while len(path) > len(root.path):
        if config.skips_dir(path):
            return False
        path = os.path.dirname(path)
    return True


def is_watched_file(path: str, config: Config) -> bool:
    """True when ``path`` lies in a root (honouring ``recursive``), wanted, not in a skipped dir,
    and (for a symlink) pointing inside a root."""
    root = root_of(path, config)
    if root is None or not config.wants_file(path):
        return False
    if os.path.islink(path) and not link_target_inside(path, config):
        return False
    parent = os.path.dirname(path)
    while len(parent) > len(root.path):
        if config.skips_dir(parent):
            return False
        parent = os.path.dirname(parent)
    return True
