"""Importing the library does no work: no torch, no model, no logging handlers; CNN fails clearly."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_hash_methods_work_without_torch_and_cnn_says_why(corpus_dir):
    res = run(f"""
        import sys
        sys.modules["torch"] = None          # as if torch were not installed
        sys.modules["torchvision"] = None
        from dedupd.methods import PHash, AHash, DHash, WHash
        print(PHash(verbose=False).encode_image(image_file={str(corpus_dir / 'base' / 'b0000.jpg')!r}))
        try:
            from dedupd.methods import CNN
            CNN()
        except Exception as exc:
            print("CNN-ERROR", type(exc).__name__, exc)
        """)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "857a7a85957ae195" in out
    assert "CNN-ERROR" in out
    assert "pip install" in out and "cnn" in out  # tells how to get it


def test_import_is_cheap_and_configures_no_logging():
    res = run("""
        import logging, sys
        before = list(logging.getLogger().handlers)
        import dedupd, dedupd.methods, dedupd.evaluation, dedupd.utils
        heavy = [m for m in ("torch", "torchvision", "matplotlib", "lmdb", "watchdog") if m in sys.modules]
        print("HEAVY", heavy)
        print("ROOT", logging.getLogger().handlers == before)
        print("DEDUPD", logging.getLogger("dedupd").handlers, logging.getLogger("dedupd.methods.hashing").handlers)
        """)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
    assert "ROOT True" in res.stdout
    assert "DEDUPD [] []" in res.stdout
