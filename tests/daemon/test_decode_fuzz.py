"""Fuzzing the decoders with mutated JPEG/PNG/GIF/TIFF/WebP bytes (hypothesis).

Two targets: the worker function (decode + every hash, in a :class:`DecodePool` worker, as the
daemon runs it) and ``POST /v1/query`` of a real daemon. Properties: every input ends with a result
or an error carrying a reason, within the per-file time limit; the pool and the daemon survive and
still answer a good image correctly afterwards. A short run is part of the normal suite; the large
one is ``@pytest.mark.stress`` (``make stress``). Counts are printed (``-s``).
"""

from __future__ import annotations

import collections
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dedupd.daemon.config.model import DEFAULT_MAX_PIXELS
from dedupd.daemon.encoder import EncodeSpec
from dedupd.daemon.workers import QUERY_TIMEOUT_S, DecodePool, encode_bytes
from tests.daemon.socket_helpers import SocketDaemon
from tests.daemon.untrusted import post_bytes, proc_status_kb, seed_images

SEEDS = seed_images()
FORMATS = sorted(SEEDS)
SPEC = EncodeSpec(methods=("phash", "dhash", "ahash", "whash"), max_pixels=DEFAULT_MAX_PIXELS)
#: the fuzz pool's per-file limit: a decode running longer is stopped (and counted)
PER_FILE_S = 15.0
#: 32-bit values that make header fields (sizes, offsets, counts) interesting
WORDS = (b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x01\x00\x00", b"\x00\x00\x40\x00",
         b"\x80\x00\x00\x00", b"\x00\x00\x27\x10")


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed image with 1-8 mutations: bit flips, byte sets, interesting words, inserted, deleted or
    repeated runs, truncation."""
    fmt = draw(st.sampled_from(FORMATS))
    data = bytearray(SEEDS[fmt])
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        op = draw(st.sampled_from(("flip", "byte", "word", "insert", "delete", "repeat", "truncate")))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "word":
            data[pos:pos + 4] = draw(st.sampled_from(WORDS))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "repeat":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 256))] * draw(st.integers(1, 16))
        else:
            del data[pos:]
    return fmt, bytes(data)


FUZZ_SETTINGS = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)


def fuzz_worker_function(examples: int, *, derandomize: bool) -> None:
    pool = DecodePool("fuzz", 2, task_timeout_s=PER_FILE_S)
    counts: collections.Counter[str] = collections.Counter()
    slowest = [0.0]
    try:
        @settings(max_examples=examples, derandomize=derandomize, **FUZZ_SETTINGS)
        @given(case=mutated())
        def one(case: tuple[str, bytes]) -> None:
            fmt, data = case
            t0 = time.monotonic()
            res = encode_bytes(pool, data, SPEC)
            took = time.monotonic() - t0
            slowest[0] = max(slowest[0], took)
            assert took < PER_FILE_S + 10, f"{fmt} case took {took:.1f} s"
            assert res.ok or (res.reason and res.reason.strip()), res
            if res.ok:
                assert res.hashes is not None and set(res.hashes) == set(SPEC.methods)
            counts["cases"] += 1
            counts[f"{fmt} {'ok' if res.ok else 'refused'}"] += 1
            if res.too_large:
                counts["too large"] += 1

        t0 = time.monotonic()
        one()
        elapsed = time.monotonic() - t0
        # the pool survived: a good image still decodes, with the same hashes as before the run
        for fmt in FORMATS:
            assert encode_bytes(pool, SEEDS[fmt], SPEC).ok
        print(f"\nworker fuzz: {counts['cases']} cases in {elapsed:.1f} s, slowest {slowest[0]:.2f} s, "
              f"worker crashes {pool.crashes}, stopped at the time limit {pool.timeouts}; "
              + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != "cases"))
    finally:
        pool.shutdown()


def test_fuzz_worker_function_short() -> None:
    fuzz_worker_function(800, derandomize=True)


@pytest.mark.stress
def test_fuzz_worker_function_large() -> None:
    fuzz_worker_function(20000, derandomize=False)


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Iterator[SocketDaemon]:
    base = tmp_path_factory.mktemp("fuzzq")
    root = base / "photos"
    root.mkdir()
    for i in range(3):
        shutil.copyfile(corpus_dir / "base" / f"b002{i}.jpg", root / f"b002{i}.jpg")
    d = SocketDaemon(base, [root], name="fuzz", methods={"phash": 10, "dhash": 10})
    try:
        d.start()
        d.wait_quiet()
        yield d
    finally:
        d.close()


def fuzz_query(d: SocketDaemon, examples: int, *, derandomize: bool) -> None:
    counts: collections.Counter[str] = collections.Counter()
    slowest = [0.0]
    hwm_before = proc_status_kb(d.pid, "VmHWM")

    @settings(max_examples=examples, derandomize=derandomize, **FUZZ_SETTINGS)
    @given(case=mutated())
    def one(case: tuple[str, bytes]) -> None:
        fmt, data = case
        t0 = time.monotonic()
        status, body = post_bytes(d.socket_path, data, timeout=QUERY_TIMEOUT_S + 30)
        took = time.monotonic() - t0
        slowest[0] = max(slowest[0], took)
        assert took < QUERY_TIMEOUT_S + 10
        # 400: mutated bytes that start with "{" are read as JSON; 413: a header above max_pixels
        assert status in (200, 400, 413, 422), (status, body)
        if status != 200:
            assert body["error"] and body["detail"], body
        else:
            # the configured methods (plus their crop variant hashes, "phash@c90"...)
            assert {k.split("@")[0] for k in body["hashes"]} == {"phash", "dhash"}
        counts["cases"] += 1
        counts[f"{status}"] += 1

    t0 = time.monotonic()
    one()
    elapsed = time.monotonic() - t0
    assert d.alive()
    s = d.status()
    assert s["state"] == "watching" and s["files"] == 3
    root = Path(d.config["roots"][0])
    status, body = post_bytes(d.socket_path, (root / "b0021.jpg").read_bytes())
    assert status == 200 and body["duplicates"][0]["path"] == str(root / "b0021.jpg")
    hwm_after = proc_status_kb(d.pid, "VmHWM")
    print(f"\n/v1/query fuzz: {counts['cases']} requests in {elapsed:.1f} s, slowest {slowest[0]:.2f} s, "
          f"daemon VmHWM {hwm_before // 1024} -> {hwm_after // 1024} MB; by status: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k != "cases"))


def test_fuzz_query_endpoint_short(fuzz_daemon: SocketDaemon) -> None:
    fuzz_query(fuzz_daemon, 500, derandomize=True)


@pytest.mark.stress
def test_fuzz_query_endpoint_large(fuzz_daemon: SocketDaemon) -> None:
    fuzz_query(fuzz_daemon, 8000, derandomize=False)
