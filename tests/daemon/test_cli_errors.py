"""Bad input to the ``dedupd`` command, run as a real subprocess: one ``dedupd:`` line naming the file or
setting and what to do, no traceback, and the documented exit code (1 error, 2 usage, 4 not running)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.daemon.socket_helpers import clean_env, dedupd_cli


@pytest.fixture(autouse=True)
def private_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Default stores and sockets in a temp folder: a command that wrongly ran must not touch the user's."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(state))


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    """photos/ (two originals, an exact copy, a file that is not an image) scanned into store/."""
    base = tmp_path_factory.mktemp("errors")
    photos = base / "photos"
    photos.mkdir()
    for i in (50, 51):
        shutil.copyfile(corpus_dir / "base" / f"b00{i}.jpg", photos / f"b00{i}.jpg")
    shutil.copyfile(photos / "b0050.jpg", photos / "copy50.jpg")
    (photos / "notes.jpg").write_text("not an image")
    out = dedupd_cli("scan", str(photos), "--store-dir", str(base / "store"), "--report-dir", str(base / "reports"),
                     timeout=300)
    assert out.returncode == 0, out.stderr
    return base


def error_line(out, code: int = 1) -> str:
    """The one stderr line of a refused command (exit ``code``, no traceback)."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    return out.stderr.strip().splitlines()[-1]


# -- (2) no traceback for a path the system refuses ------------------------------------------------------


def test_an_os_error_is_one_line_naming_the_path(scanned: Path) -> None:
    (scanned / "a-file").write_text("")
    rep = scanned / "a-file" / "rep"
    line = error_line(dedupd_cli("scan", str(scanned / "photos"), "--store-dir", str(scanned / "store"),
                                 "--report-dir", str(rep), timeout=300))
    assert line.startswith("dedupd: scan failed: Not a directory: ") and str(rep) in line, line
    assert "the path must be a folder" in line, line


def test_folders_that_are_files_and_a_report_that_is_a_folder(scanned: Path) -> None:
    afile = scanned / "a-file.jpg"
    afile.write_text("")
    photos, store = str(scanned / "photos"), str(scanned / "store")
    line = error_line(dedupd_cli("scan", photos, "--store-dir", str(afile), "--report-dir", str(scanned / "r")))
    assert line == f"dedupd: store_dir {afile} is not a folder; give a folder (--store-dir or store_dir in the " \
                   "config; it is created if missing)"
    line = error_line(dedupd_cli("scan", photos, "--store-dir", store, "--report-dir", str(afile)))
    assert f"report_dir {afile} is not a folder" in line
    line = error_line(dedupd_cli("report", "--html", photos, "--store-dir", store))
    assert line == f"dedupd: --html {photos} is a folder; give the report's file name, e.g. {photos}/report.html"
    assert not list((scanned / "photos").glob(".dedupd-tmp-*"))


def test_review_port_out_of_range_and_in_use(scanned: Path) -> None:
    out = dedupd_cli("review", "--no-browser", "--port", "99999", "--store-dir", str(scanned / "store"))
    assert "argument --port: '99999' is not a port: give 0-65535" in error_line(out, 2)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = dedupd_cli("review", "--no-browser", "--port", str(port), "--store-dir", str(scanned / "store"),
                         "--socket", str(scanned / "none.sock"))
    assert error_line(out) == (f"dedupd: cannot listen on 127.0.0.1 port {port}: Address already in use; pass "
                               "--port 0 (a free port) or another port")


def test_calibrate_refuses_an_unwritable_json_before_the_sweep(scanned: Path) -> None:
    gt = scanned / "gt.json"
    gt.write_text(json.dumps({"b0050.jpg": ["copy50.jpg"]}))
    out = dedupd_cli("calibrate", str(scanned / "photos"), "--ground-truth", str(gt), "--json",
                     str(scanned / "nope" / "x.json"))
    line = error_line(out)
    assert line == (f"dedupd calibrate: --json {scanned}/nope/x.json: the folder {scanned}/nope does not exist; "
                    "create it or choose another path")
    assert out.stdout == ""  # refused before anything was decoded
    out = dedupd_cli("calibrate", str(scanned / "photos"), "--ground-truth", str(gt), "--json", str(scanned))
    assert f"--json {scanned} is a folder" in error_line(out)


# -- (5) options that do something, or are not accepted ----------------------------------------------------


def test_run_listens_on_its_socket_option(tmp_path: Path, scanned: Path) -> None:
    sockdir = Path(tempfile.mkdtemp(prefix="dd-", dir="/tmp"))  # AF_UNIX paths are short
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"roots: [{scanned / 'photos'}]\nstore_dir: {tmp_path / 'store'}\n"
                   f"report_dir: {tmp_path / 'reports'}\nsocket_path: {sockdir / 'config.sock'}\n")
    custom = sockdir / "custom.sock"
    proc = subprocess.Popen([sys.executable, "-m", "dedupd", "run", "--config", str(cfg), "--socket", str(custom)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env())
    try:
        deadline = time.monotonic() + 60
        while dedupd_cli("status", "--socket", str(custom)).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, "the daemon did not answer on --socket"
            time.sleep(0.2)
        assert not (sockdir / "config.sock").exists()
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.mark.parametrize("args", [("run", "--json"), ("review", "--json"), ("scan", "--socket", "/x.sock"),
                                  ("report", "--html", "x.html", "--socket", "/x.sock")])
def test_options_that_would_do_nothing_are_usage_errors(args: tuple[str, ...]) -> None:
    assert "unrecognized arguments: " + args[-1 if args[-1] == "--json" else -2] in error_line(dedupd_cli(*args), 2)


# -- (6) an empty path is a usage error, never the current folder ------------------------------------------


@pytest.mark.parametrize("args", [("scan", ""), ("scan", "--store-dir", ""), ("scan", "--report-dir", ""),
                                  ("restore", ""), ("keep", ""), ("ignore", "", "a.jpg"), ("query", ""),
                                  ("review", "--store-dir", ""), ("report", "--html", ""), ("status", "--config", ""),
                                  ("status", "--socket", ""), ("calibrate", "", "--ground-truth", "gt.json")])
def test_an_empty_path_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = dedupd_cli(*args, cwd=str(tmp_path))
    assert "empty path: give a file or folder (is a shell variable unset?)" in error_line(out, 2)
    assert not list(tmp_path.iterdir())  # nothing scanned or written here


# -- (7) a client's config file that does not exist ---------------------------------------------------------


@pytest.mark.parametrize("args", [("status",), ("groups",), ("query", "x.jpg"), ("quarantine", "list"),
                                  ("restore", "--all"), ("keep", "--list"), ("ignore", "--list"), ("rescan",),
                                  ("reload",), ("review", "--no-browser")])
def test_a_client_names_its_missing_config_file(tmp_path: Path, args: tuple[str, ...]) -> None:
    nope = tmp_path / "nope.yaml"
    want = f"dedupd: cannot read config file {nope}: No such file or directory; check the path"
    assert error_line(dedupd_cli(*args, "--config", str(nope))) == want
    assert error_line(dedupd_cli(*args, env={"DEDUPD_CONFIG": str(nope)})) == want


# -- (8) the quarantine manifest and the decisions without a daemon, from --config ---------------------------


def test_quarantine_list_keep_and_ignore_with_a_config_and_no_daemon(tmp_path: Path, corpus_dir: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(corpus_dir / "base" / "b0060.jpg", photos / "a.jpg")
    shutil.copyfile(photos / "a.jpg", photos / "b.jpg")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"roots: [{photos}]\nstore_dir: {tmp_path / 'store'}\nreport_dir: {tmp_path / 'reports'}\n"
                   f"quarantine_dir: {tmp_path / 'q'}\npolicy: quarantine\nsocket_path: {tmp_path / 'none.sock'}\n")
    out = dedupd_cli("scan", "--config", str(cfg), timeout=300)
    assert out.returncode == 0 and "1 quarantined" in out.stdout, out.stdout + out.stderr
    (moved,) = [p for p in (photos / "a.jpg", photos / "b.jpg") if not p.exists()]
    (kept,) = {photos / "a.jpg", photos / "b.jpg"} - {moved}
    out = dedupd_cli("quarantine", "list", "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert f"moved     {moved} -> " in out.stdout and f"(kept {kept}; " in out.stdout and "1 entries" in out.stdout
    out = dedupd_cli("quarantine", "list", "--state", "restored", "--json", "--config", str(cfg))
    assert json.loads(out.stdout) == {"entries": [], "total": 0}
    out = dedupd_cli("keep", str(kept), "--config", str(cfg))
    assert out.returncode == 0 and f"{kept} is kept whenever it is in a group" in out.stdout, out.stderr
    out = dedupd_cli("keep", "--list", "--config", str(cfg))
    assert out.returncode == 0 and f"keep {kept}" in out.stdout and "1 pin(s)" in out.stdout, out.stderr
    out = dedupd_cli("ignore", "--list", "--config", str(cfg))
    assert out.returncode == 0 and "0 set(s)" in out.stdout, out.stderr


def test_a_decision_in_a_store_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    nope = tmp_path / "nonexist"
    for args in (("keep", str(tmp_path / "x.jpg")), ("keep", "--list"), ("ignore", "--list")):
        line = error_line(dedupd_cli(*args, "--store-dir", str(nope)))
        assert line == (f"dedupd: the store {nope} does not exist; give the --store-dir of a `dedupd scan` (or the "
                        "config of the daemon that wrote it)")
    assert not nope.exists()
    nope.mkdir()
    assert f"the store {nope} is not a dedupd store" in error_line(dedupd_cli("keep", "--list", "--store-dir", str(nope)))
    assert list(nope.iterdir()) == []


# -- (9) calibrate refuses input it cannot measure anything with --------------------------------------------


def test_calibrate_without_a_labelled_pair_bad_labels_and_bad_precision(scanned: Path) -> None:
    photos = str(scanned / "photos")
    other = scanned / "other-folder.json"  # the ground truth of another folder
    other.write_text(json.dumps({"x1.jpg": ["x2.jpg"], "b0050.jpg": ["x3.jpg"]}))
    line = error_line(dedupd_cli("calibrate", photos, "--ground-truth", str(other)))
    assert line == (f"dedupd calibrate: {other} labels no duplicate pair among the files in {photos} (1 of its names "
                    "are not there): give the ground truth of this folder, names relative to it")
    numbers = scanned / "numbers.json"
    numbers.write_text(json.dumps({"b0050.jpg": [1]}))
    line = error_line(dedupd_cli("calibrate", photos, "--ground-truth", str(numbers)))
    assert line.startswith(f"dedupd calibrate: {numbers}: expected a JSON object mapping each file name to a list "
                           "of its duplicates' file names")
    good = scanned / "good.json"
    good.write_text(json.dumps({"b0050.jpg": ["copy50.jpg"]}))
    for option, value in (("--precision", "2"), ("--precision", "-1"), ("--precision", "0"),
                          ("--strong-precision", "1.5")):
        out = dedupd_cli("calibrate", photos, "--ground-truth", str(good), option, value)
        assert f"argument {option}: '{value}' is not a precision: give a number above 0 and at most 1" \
            in error_line(out, 2)


# -- (12) messages that point the right way; (14) a --remove that removes nothing is an error ----------------


def test_scan_method_and_folder_messages(tmp_path: Path) -> None:
    out = dedupd_cli("scan", str(tmp_path), "--method", "phash,foo")
    assert ("argument --method: unknown method 'foo': choose from phash, dhash, ahash, whash, cnn (repeat or "
            "comma-separate for several)") in error_line(out, 2)
    out = dedupd_cli("scan", cwd=str(tmp_path))
    assert error_line(out, 2) == ("dedupd scan: give the folders to scan (`dedupd scan DIR...`), or a config naming "
                                  "them (--config FILE with roots)")


def test_decisions_that_change_nothing_exit_1_offline(scanned: Path) -> None:
    store = ("--store-dir", str(scanned / "store"))
    out = dedupd_cli("ignore", "--remove-id", "99", *store)
    assert error_line(out) == ("dedupd ignore: nothing to remove: no recorded decision matches (see `dedupd ignore "
                               "--list`)") and out.stdout == ""
    out = dedupd_cli("keep", "--remove", str(scanned / "photos" / "b0051.jpg"), *store)
    assert error_line(out) == "dedupd keep: nothing to remove: no recorded decision matches (see `dedupd keep --list`)"
    out = dedupd_cli("keep", "--remove", str(scanned / "photos" / "b0051.jpg"), "--json", *store)
    assert out.returncode == 1 and json.loads(out.stdout)["removed"] == 0


def test_decisions_through_the_daemon_outside_its_roots_and_that_change_nothing(tmp_path: Path,
                                                                               corpus_dir: Path) -> None:
    from tests.daemon.socket_helpers import SocketDaemon

    root = tmp_path / "photos"
    root.mkdir()
    shutil.copyfile(corpus_dir / "base" / "b0070.jpg", root / "a.jpg")
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(root / "a.jpg", outside)
    d = SocketDaemon(tmp_path, [root], name="decide")
    try:
        d.start()
        d.wait_quiet()
        line = error_line(d.run_cli("keep", str(outside)))
        assert line == ("dedupd: forbidden: only files the daemon watches (inside its roots, not excluded) can be "
                        "kept or marked not duplicates: name the copy inside a root (HTTP 403)")
        assert "dedupd ignore: nothing to remove" in error_line(d.run_cli("ignore", "--remove-id", "99"))
        assert "dedupd keep: nothing to remove" in error_line(d.run_cli("keep", "--remove", str(root / "a.jpg")))
        d.stop()
    finally:
        d.close()


# -- (13) conflicting or out-of-range flags are usage errors, before any work ------------------------------


@pytest.mark.parametrize("args, message", [
    (("scan", "X", "--removable", "--json"), "dedupd scan: --removable/--print0 print bare paths; --json lists them "
                                             "under would_quarantine: give one or the other"),
    (("scan", "X", "--print0", "--json"), "--json lists them under would_quarantine"),
    (("scan", "X", "--dry-run", "--policy", "report"),
     "dedupd scan: --dry-run previews quarantine; it cannot be combined with --policy report"),
    (("scan", "X", "--ray-batch", "8"), "dedupd scan: --ray-batch needs --engine ray"),
    (("scan", "X", "--engine", "ray", "--ray-batch", "0"), "argument --ray-batch: 0 is out of range: give 1 or more"),
    (("rescan", "--timeout", "5"), "dedupd rescan: --timeout needs --wait"),
    (("rescan", "--wait", "--timeout", "-1"), "argument --timeout: '-1' is not a timeout: give seconds above 0"),
    (("groups", "--limit", "0"), "argument --limit: 0 is out of range: give 1-10000"),
    (("groups", "--limit", "-1"), "argument --limit: -1 is out of range: give 1-10000"),
    (("groups", "--offset", "-1"), "argument --offset: -1 is out of range: give 0 or more"),
])
def test_conflicting_and_out_of_range_flags(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    args = tuple(str(tmp_path) if a == "X" else a for a in args)
    out = dedupd_cli(*args, "--socket", str(tmp_path / "none.sock")) if args[0] != "scan" else dedupd_cli(*args)
    assert message in error_line(out, 2)  # 2, not 4: refused before looking for a daemon
    assert not list(tmp_path.iterdir())


# -- (15) the files a scan could not read are named ----------------------------------------------------------


def test_scan_names_its_unreadable_files(tmp_path: Path, corpus_dir: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(corpus_dir / "base" / "b0080.jpg", photos / "good.jpg")
    for i in range(12):
        (photos / f"junk{i:02d}.jpg").write_text("not an image")
    common = [str(photos), "--store-dir", str(tmp_path / "store"), "--report-dir", str(tmp_path / "reports")]
    out = dedupd_cli("scan", *common, timeout=300)
    assert out.returncode == 0, out.stderr
    named = [line for line in out.stdout.splitlines() if line.startswith("  unreadable ")]
    assert len(named) == 10 and named[0].startswith(f"  unreadable {photos}/junk"), out.stdout
    assert "not an image" in named[0]
    assert "  … and 2 more (all in --json and in events.jsonl)" in out.stdout
    (photos / "junk99.jpg").write_text("not an image either")
    res = json.loads(dedupd_cli("scan", *common, "--json", timeout=300).stdout)
    assert [u["path"] for u in res["unreadable_files"]] == [str(photos / "junk99.jpg")] and res["unreadable"] == 1
