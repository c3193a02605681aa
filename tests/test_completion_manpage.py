"""Shell completion (shtab) and the manual page (argparse-manpage) are generated from the CLI's parser:
they exist, know every subcommand, and work (bash completes; man renders)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dedupd.cli import build_parser

REPO = Path(__file__).resolve().parent.parent


def subcommands() -> list[str]:
    import argparse

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def dedupd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dedupd", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def test_bash_completion_completes_subcommands_options_and_paths(tmp_path: Path) -> None:
    out = dedupd("completion", "bash")
    assert out.returncode == 0, out.stderr
    script = tmp_path / "dedupd.bash"
    script.write_text(out.stdout)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photo.jpg").write_bytes(b"")

    def complete(*words: str) -> list[str]:
        probe = (f"source {script}; COMP_WORDS=(dedupd {' '.join(words)}); COMP_CWORD={len(words)}; "
                 "_shtab_dedupd; printf '%s\\n' \"${COMPREPLY[@]}\"")
        res = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, cwd=tmp_path, check=False)
        assert res.returncode == 0, res.stderr
        return sorted(filter(None, res.stdout.splitlines()))

    assert complete("") == sorted(subcommands())
    assert {"ignore", "keep", "scan", "completion", "manpage"} <= set(subcommands())
    assert complete("scan", "--dr") == ["--dry-run"]
    assert complete("ignore", "--re") == ["--remove", "--remove-id"]
    assert complete("scan", "ph") == ["photos"]  # a folder argument completes folders only
    assert "photo.jpg" in complete("ignore", "ph")  # a file argument completes files
    assert complete("completion", "") == ["bash", "tcsh", "zsh"]


def test_zsh_completion_and_manual_page_name_every_subcommand() -> None:
    zsh = dedupd("completion", "zsh")
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef dedupd")
    page = dedupd("manpage")
    assert page.returncode == 0 and page.stdout.startswith(".TH DEDUPD")
    for name in subcommands():
        assert f"\n    {name}:'" in zsh.stdout and f"_shtab_dedupd_{name}_options" in zsh.stdout, name
        assert f"'dedupd {name}'" in page.stdout, name
    assert "\\-\\-fail\\-on\\-duplicate" in page.stdout and "exit status" in page.stdout


@pytest.mark.skipif(shutil.which("man") is None or shutil.which("groff") is None, reason="man/groff not installed")
def test_the_manual_page_renders(tmp_path: Path) -> None:
    page = tmp_path / "dedupd.1"
    page.write_text(dedupd("manpage").stdout)
    out = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"}, check=False)
    assert out.returncode == 0, out.stderr
    assert "dedupd ignore" in out.stdout and "--dry-run" in out.stdout
