"""The ``dedupd`` client commands against a real daemon subprocess: output, ``--json``, exit codes.

Exit codes: 0 ok, 1 error, 2 daemon not running (or usage), 3 duplicate found with
``query --fail-on-duplicate``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dedupd.client import Client
from tests.daemon.helpers import REPO
from tests.daemon.socket_helpers import SocketDaemon, dedupd_cli, near_duplicate

MAX_UPLOAD = 400_000


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path):
    base = tmp_path_factory.mktemp("cli")
    bases = corpus_dir / "base"
    root = base / "photos"
    root.mkdir()
    for i in range(20, 24):
        shutil.copyfile(bases / f"b00{i}.jpg", root / f"b00{i}.jpg")
    shutil.copyfile(bases / "b0020.jpg", root / "copy20.jpg")
    near_duplicate(bases / "b0021.jpg", root / "near21.jpg")
    uploads = base / "uploads"  # outside the roots, like an upload waiting to be accepted
    uploads.mkdir()
    d = SocketDaemon(base, [root], name="cli", server_env={"DEDUPD_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)})
    try:
        d.start()
        d.wait_quiet()
        yield type("Lib", (), {"d": d, "root": root, "uploads": uploads, "bases": bases, "base": base})
        d.stop()
        assert not d.errors_in_log(), d.log_tail()
    finally:
        d.close()


def test_status_table_and_json(lib) -> None:
    out = lib.d.run_cli("status")
    assert out.returncode == 0, out.stderr
    table = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert table["state"] == "watching" and table["files"] == "6" and table["groups"] == "2"
    assert {"encoded", "decoded", "unreadable", "queued", "reconcile", "uptime", "store"} <= set(table)
    out = lib.d.run_cli("status", "--json")
    assert out.returncode == 0
    s = json.loads(out.stdout)
    assert set(s) == set(Client(lib.d.socket_path).get("/v1/status"))  # the same object as the endpoint
    assert s["files"] == 6 and s["state"] == "watching"


def test_query_a_file_outside_the_roots(lib) -> None:
    near = near_duplicate(lib.bases / "b0022.jpg", lib.uploads / "incoming.jpg")
    out = lib.d.run_cli("query", str(near))
    assert out.returncode == 0, out.stderr
    assert f"{near}: 1 duplicate(s)" in out.stdout
    assert f"{lib.root / 'b0022.jpg'}  (phash distance " in out.stdout
    out = lib.d.run_cli("query", "--fail-on-duplicate", str(near))
    assert out.returncode == 3
    out = lib.d.run_cli("query", "--json", str(near))
    res = json.loads(out.stdout)
    assert res["path"] == str(near) and res["indexed"] is False
    assert [(m["path"], m["method"]) for m in res["duplicates"]] == [(str(lib.root / "b0022.jpg"), "phash")]
    assert isinstance(res["duplicates"][0]["distance"], int)


def test_query_relative_path_and_exact_copy(lib) -> None:
    shutil.copyfile(lib.root / "b0020.jpg", lib.uploads / "same.jpg")
    out = lib.d.run_cli("query", "same.jpg", cwd=str(lib.uploads))
    assert out.returncode == 0, out.stderr
    assert "same.jpg: 2 duplicate(s)" in out.stdout and "(exact copy)" in out.stdout


def test_query_of_an_indexed_file_does_not_list_itself(lib) -> None:
    """An upload service asks about a file already in the watched folder: only other copies count."""
    indexed = lib.root / "b0020.jpg"
    out = lib.d.run_cli("query", "--json", str(indexed))
    assert out.returncode == 0, out.stderr
    others = [m["path"] for m in json.loads(out.stdout)["duplicates"]]
    assert others and str(indexed) not in others, others  # its exact copy stays listed


def test_output_into_a_closed_pipe_ends_quietly(lib) -> None:
    """``dedupd groups | head -1``: no BrokenPipeError traceback, exit 141 as a shell tool ends."""
    for args in (("groups",), ("status",), ("quarantine", "list", "--json")):
        cmd = [sys.executable, "-m", "dedupd", *args, "--socket", lib.d.socket_path]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stdout.close()  # the reader went away before anything was read
            err = proc.stderr.read().decode()
            code = proc.wait(timeout=60)
        assert code in (0, 141), err
        assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_query_an_image_without_duplicates(lib) -> None:
    unique = near_duplicate(lib.bases / "b0200.jpg", lib.uploads / "unique.jpg")
    for extra in ((), ("--fail-on-duplicate",)):
        out = lib.d.run_cli("query", *extra, str(unique))
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == f"{unique}: no duplicates"


def test_query_several_files_with_errors(lib) -> None:
    dup = near_duplicate(lib.bases / "b0023.jpg", lib.uploads / "dup23.jpg")
    text = lib.uploads / "notes.jpg"
    text.write_text("not an image")
    big = max(lib.bases.glob("*.jpg"), key=lambda p: p.stat().st_size)
    assert big.stat().st_size > MAX_UPLOAD
    missing = lib.uploads / "missing.jpg"
    out = lib.d.run_cli("query", "--json", str(dup), str(text), str(big), str(missing))
    assert out.returncode == 1, out.stderr  # some files could not be checked
    res = {r["path"]: r for r in json.loads(out.stdout)}
    assert res[str(dup)]["duplicates"][0]["path"] == str(lib.root / "b0023.jpg")
    assert res[str(text)]["error"] == "unreadable image"
    assert res[str(big)]["error"] == "payload too large"
    assert res[str(missing)]["error"] == "cannot read"
    out = lib.d.run_cli("query", "--fail-on-duplicate", str(text), str(dup))
    assert out.returncode == 3  # a duplicate wins over an error for upload hooks
    assert f"{text}: unreadable image:" in out.stdout
    out = lib.d.run_cli("query", str(missing))
    assert out.returncode == 1 and "cannot read: No such file or directory" in out.stdout
    assert "Traceback" not in out.stderr


def test_groups(lib) -> None:
    out = lib.d.run_cli("groups")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("2 groups\n")
    assert f"keep {lib.root / 'b0021.jpg'}" in out.stdout and f"dup  {lib.root / 'near21.jpg'}" in out.stdout
    out = lib.d.run_cli("groups", "--json", "--offset", "1", "--limit", "1")
    data = json.loads(out.stdout)
    assert data["total"] == 2 and data["offset"] == 1 and len(data["groups"]) == 1
    out = lib.d.run_cli("groups", "--limit", "0")  # refused before asking the daemon (which says 400)
    assert out.returncode == 2 and "argument --limit: 0 is out of range: give 1-10000" in out.stderr


def test_rescan_and_reload(lib) -> None:
    out = lib.d.run_cli("rescan")
    assert (out.returncode, out.stdout.strip()) == (0, "rescan started")
    out = lib.d.run_cli("reload", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == {
        "ok": True, "detail": "reloaded: nothing changed", "changed": [], "restart_needed": []}
    lib.d.wait_quiet()
    out = lib.d.run_cli("rescan", "--wait", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["state"] == "watching" and summary["walked"] == summary["files"] == 6, summary
    out = lib.d.run_cli("rescan", "--wait")
    assert out.stdout.startswith("rescan done in ") and "6 files walked" in out.stdout, out.stdout


def test_quarantine_list_and_restore_in_report_mode(lib) -> None:
    out = lib.d.run_cli("quarantine", "list")
    assert (out.returncode, out.stdout.strip()) == (0, "0 entries")
    out = lib.d.run_cli("restore", "--all")
    assert (out.returncode, out.stdout.strip()) == (0, "0 file(s) restored")
    out = lib.d.run_cli("restore", str(lib.root / "never-quarantined.jpg"))
    assert out.returncode == 1 and "NOT restored" in out.stdout


def test_socket_found_from_config_and_environment(lib) -> None:
    out = lib.d.cli("status", "--json")  # --config FILE: its socket_path
    assert out.returncode == 0, out.stderr
    out = dedupd_cli("status", "--json", env={"DEDUPD_SOCKET_PATH": lib.d.socket_path})
    assert out.returncode == 0, out.stderr
    # a config the client cannot validate (its roots are gone here) still names the socket
    odd = lib.base / "client.yaml"
    odd.write_text(f"roots: [/no/such/root]\nsocket_path: {lib.d.socket_path}\n")
    out = dedupd_cli("status", "--config", str(odd))
    assert out.returncode == 0, out.stderr


def test_usage_errors(lib) -> None:
    out = lib.d.run_cli("restore")
    assert out.returncode == 2 and "--all" in out.stderr
    out = lib.d.run_cli("restore", "--all", "/x.jpg")
    assert out.returncode == 2
    assert lib.d.run_cli("groups", "--limit", "many").returncode == 2  # argparse's own
    out = lib.d.run_cli("--help")
    assert "exit status:" in out.stdout and "4 the daemon is not running" in out.stdout


COMMANDS = [("status",), ("status", "--json"), ("query", "{img}"), ("query", "--fail-on-duplicate", "{img}"),
            ("groups",), ("rescan",), ("reload",), ("quarantine", "list"), ("restore", "--all")]


@pytest.mark.parametrize("kind", ["missing", "stale"])
def test_daemon_not_running_is_one_line_and_exit_4(tmp_path: Path, corpus_dir: Path, kind: str) -> None:
    sock = tmp_path / "dedupd.sock"
    holder = None
    if kind == "stale":  # a socket file nobody listens on (left by a crash)
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.bind(str(sock))
    img = corpus_dir / "base" / "b0001.jpg"
    try:
        for cmd in COMMANDS:
            args = [a.format(img=img) for a in cmd]
            out = dedupd_cli(*args, "--socket", str(sock))
            assert out.returncode == 4, (cmd, out.stdout, out.stderr)  # 2 stays argparse's usage error
            assert out.stdout == ""
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and "not running" in lines[0] and str(sock) in lines[0], (cmd, out.stderr)
    finally:
        if holder is not None:
            holder.close()


def test_daemon_not_running_with_a_config(tmp_path: Path) -> None:
    cfg = tmp_path / "dedupd.yaml"
    cfg.write_text(f"roots: [{tmp_path}]\nsocket_path: {tmp_path}/s.sock\n")
    out = dedupd_cli("status", "--config", str(cfg))
    assert out.returncode == 4 and out.stderr.count("\n") == 1 and f"{tmp_path}/s.sock" in out.stderr


# -- quarantine policy: list and restore through the daemon --------------------------------------------


def test_quarantine_list_and_restore(tmp_path: Path, corpus_dir: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    keep, dup = root / "a.jpg", root / "b.jpg"
    shutil.copyfile(corpus_dir / "base" / "b0030.jpg", keep)
    shutil.copyfile(keep, dup)
    os.utime(keep, (1_600_000_000, 1_600_000_000))  # older: kept by oldest_mtime
    data = dup.read_bytes()
    d = SocketDaemon(tmp_path, [root], name="q", policy="quarantine", quarantine_dir=str(tmp_path / "quarantine"))
    try:
        d.start()
        d.wait_until(lambda: d.status()["quarantined"] == 1, 30, "the copy to be quarantined")
        assert not dup.exists() and keep.exists()
        out = d.run_cli("quarantine", "list")
        assert out.returncode == 0, out.stderr
        assert "moved" in out.stdout and f"{dup} -> " in out.stdout and f"kept {keep}" in out.stdout
        entries = json.loads(d.run_cli("quarantine", "list", "--json").stdout)["entries"]
        assert [(e["origin"], e["keeper"], e["state"]) for e in entries] == [(str(dup), str(keep), "moved")]
        out = d.run_cli("restore", str(dup))
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"restored: {dup}" in out.stdout and "1 file(s) restored" in out.stdout
        assert dup.read_bytes() == data
        out = d.run_cli("quarantine", "list", "--state", "restored", "--json")
        assert [e["origin"] for e in json.loads(out.stdout)["entries"]] == [str(dup)]
        d.wait_until(lambda: d.status()["in_quarantine"] == 0, 30, "the restore counted")
        row = next(line for line in d.run_cli("status").stdout.splitlines() if line.startswith("quarantined"))
        assert "0 in quarantine now (1 moved, 1 restored since start)" in row, row
        out = d.run_cli("restore", "--all", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["restored"] == 0
        d.stop()
    finally:
        d.close()


# -- responsiveness during a large ingest ------------------------------------------------------------


@pytest.mark.slow
def test_query_answers_during_a_2000_image_ingest(tmp_path: Path, dataset, corpus_dir: Path) -> None:
    mixed = dataset("mixed", "--count", "2000") / "images"
    root = tmp_path / "library"
    (root / "anchor").mkdir(parents=True)
    anchor = root / "anchor" / "orig.jpg"
    shutil.copyfile(corpus_dir / "base" / "b0042.jpg", anchor)
    near = near_duplicate(corpus_dir / "base" / "b0042.jpg", tmp_path / "uploads" / "near.jpg")
    near_bytes = near.read_bytes()
    d = SocketDaemon(tmp_path, [root], name="ingest", workers=2)
    try:
        d.start()  # index the anchor, then stop, add 2,000 images and restart: a large start-up ingest
        d.stop()
        shutil.copytree(mixed, root / "ingest")
        total = 1 + sum(1 for p in (root / "ingest").rglob("*") if p.is_file())
        t_start = time.monotonic()
        d.start(wait=False)
        d.wait_until(lambda: d.try_status() is not None, 60, "the socket to answer")
        client = Client(d.socket_path)
        api_lat: list[float] = []
        cli_lat: list[float] = []
        seen_files: list[int] = []
        while True:
            before = client.get("/v1/status")
            if before["state"] == "watching":
                break
            t0 = time.perf_counter()
            res = client.query_bytes(near_bytes)
            lat = time.perf_counter() - t0
            after = client.get("/v1/status")
            m = next((m for m in res["duplicates"] if m["path"] == str(anchor)), None)
            assert m is not None and m["method"] == "phash" and m["distance"] <= 10, res
            if after["files"] >= total or after["state"] == "watching":
                break
            api_lat.append(lat)
            seen_files.append(after["files"])
            if len(api_lat) % 5 == 1:
                t0 = time.perf_counter()
                out = d.run_cli("query", "--fail-on-duplicate", "--json", str(near))
                cli_elapsed = time.perf_counter() - t0
                assert out.returncode == 3, out.stdout + out.stderr
                assert any(m["path"] == str(anchor) for m in json.loads(out.stdout)["duplicates"])
                if client.get("/v1/status")["files"] < total:
                    cli_lat.append(cli_elapsed)
            time.sleep(0.02)
        final = d.wait_ready(120)
        ingest_s = time.monotonic() - t_start
        assert final["files"] >= total - final["unreadable"]
        assert len(api_lat) >= 10 and len(cli_lat) >= 2, (len(api_lat), len(cli_lat))
        assert seen_files[-1] - seen_files[0] >= total // 4  # the queries spanned a good part of the ingest

        def row(name: str, xs: list[float]) -> str:
            xs = sorted(xs)
            p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
            return (f"  {name:34s} n={len(xs):3d}  median {statistics.median(xs) * 1000:7.1f} ms  "
                    f"p95 {p95 * 1000:7.1f} ms  max {xs[-1] * 1000:7.1f} ms")

        print(f"\nquery latency while ingesting {total} images ({ingest_s:.1f} s; indexed during the queries: "
              f"{seen_files[0]} -> {seen_files[-1]}):")
        print(row("POST /v1/query (bytes, client)", api_lat))
        print(row("`dedupd query` (new process)", cli_lat))
        assert statistics.median(api_lat) < 2.0
        d.stop()
    finally:
        d.close()
