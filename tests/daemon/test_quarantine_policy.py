"""The daemon's quarantine policy in-process: stale plans, a full quarantine filesystem, restores.

Deterministic: a real Store in tmp_path, an index fed with chosen hashes (the files' bytes are
arbitrary, nothing is decoded), a fake clock for the back-off, and plans applied by hand between
the changes a running daemon would race with.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dedupd.daemon.config import Config, config_from_mapping
from dedupd.daemon.encoder import file_digest
from dedupd.daemon.index import FileInfo, MatchIndex
from dedupd.daemon.loader import matching_of
from dedupd.daemon.policy import QuarantinePlan, QuarantinePolicy, RestoreRequest, RestoreTimeout
from dedupd.daemon.quarantine import PARTIAL, Quarantine, safe_move
from dedupd.daemon.store import EncodingRecord, FileRecord, QuarantineEntry, Store

KEEPER_HASH = 0
NEAR = 0b111  # phash distance 3 from the keeper


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class World:
    """A store, an index and a policy over one root, as the daemon wires them."""

    def __init__(self, tmp_path: Path, qdir: Path, **config: Any) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "root"
        self.root.mkdir()
        self.mapping: dict[str, Any] = {
            "roots": [str(self.root)], "store_dir": str(tmp_path / "store"),
            "report_dir": str(tmp_path / "reports"), "policy": "quarantine", "quarantine_dir": str(qdir),
            "methods": {"phash": 10}, "keep": ["largest_pixels"], **config,
        }
        self.store = Store.open(self.mapping["store_dir"])
        cfg = self.config()
        self.index = MatchIndex(matching_of(cfg))
        self.quarantine = Quarantine(cfg, self.store)
        self.clock = Clock()
        self.moved: list[str] = []
        self.policy = QuarantinePolicy(self.quarantine, self.index, on_moved=self.moved.append,
                                       retry_s=2.0, retry_max_s=60.0, clock=self.clock)

    def config(self, **changes: Any) -> Config:
        return config_from_mapping({**self.mapping, **changes}, env={"HOME": str(self.tmp)})

    def reload(self, **changes: Any) -> None:
        """What a SIGHUP does to the parts the policy sees."""
        new = self.config(**changes)
        self.quarantine.config = new
        if matching_of(new) != self.index.matching:
            self.index.retune(matching_of(new))
            assert self.index.build_graph()  # the daemon builds it in the background

    def add(self, name: str, data: bytes, phash: int, pixels: int = 100) -> Path:
        """Write a file and index it as the pipeline would (store first, then the index)."""
        p = self.root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.index_file(p, phash, pixels)
        return p

    def index_file(self, p: Path, phash: int, pixels: int = 100) -> None:
        st = os.stat(p)
        digest = file_digest(str(p))
        enc = EncodingRecord(pixels, 1, "PNG", {"phash": phash}, self.config().hash_params_id())
        self.store.put_file(str(p), FileRecord.from_stat(st, digest), enc)
        self.index.add(str(p), FileInfo(digest, st.st_size, st.st_mtime_ns, pixels, 1), {"phash": phash})

    def plan(self) -> QuarantinePlan:
        plan = self.policy.plan()
        assert plan is not None
        return plan

    def entries(self, state: str | None = None) -> list[QuarantineEntry]:
        return list(self.store.iter_quarantine(state))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, tmp_path / "q")
    yield w
    w.store.close()


def test_plan_moves_direct_matches_only(world: World) -> None:
    keeper = world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    near = world.add("near.png", b"N" * 400, NEAR)
    chained = world.add("chained.png", b"C" * 300, NEAR | 0xFF << 8)  # 8 from near, 11 from keeper
    plan = world.plan()
    assert [(m.victim.path, m.keeper.path, m.reason) for m in plan.moves] == [
        (str(near), str(keeper), "phash distance 3 to kept copy")]
    assert world.policy.apply(plan) == 1
    assert not near.exists() and keeper.exists() and chained.exists()
    (e,) = world.entries("moved")
    assert (e.origin, e.keeper, e.reason) == (str(near), str(keeper), "phash distance 3 to kept copy")


# -- item 3: a plan applied after the files or the config changed ----------------------------------


@pytest.mark.parametrize("change", ["keeper_rewritten", "keeper_same_stat", "victim_rewritten", "keeper_gone"])
def test_stale_plan_does_not_move(world: World, change: str) -> None:
    keeper = world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    victim = world.add("dup.png", b"D" * 400, NEAR)
    plan = world.plan()
    target = victim if change == "victim_rewritten" else keeper
    if change == "keeper_gone":
        keeper.unlink()
    else:
        st = os.stat(target)
        target.write_bytes(b"a different picture".ljust(st.st_size, b"."))
        if change == "keeper_same_stat":  # same size and mtime: only the bytes tell
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    before = victim.read_bytes()
    assert world.policy.apply(plan) == 0
    assert victim.exists() and victim.read_bytes() == before
    assert world.entries() == [] and world.moved == []


def test_keeper_changed_in_the_middle_of_a_plan(world: World) -> None:
    """The kept copy is read once per plan, but a write (even one hidden by ``utime``) is still seen."""
    keeper = world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    victims = [world.add(f"dup{i}.png", bytes([i]) * 400, NEAR ^ (1 << (20 + i))) for i in range(3)]
    real = world.quarantine.move

    def move_then_edit_keeper(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        st = os.stat(keeper)
        keeper.write_bytes(b"X" * st.st_size)
        os.utime(keeper, ns=(st.st_atime_ns, st.st_mtime_ns))
        return out

    world.quarantine.move = move_then_edit_keeper  # type: ignore[method-assign]
    assert world.policy.apply(world.plan()) == 1
    assert [p.exists() for p in victims] == [False, True, True]


@pytest.mark.parametrize("reload", [{"methods": {"phash": 2}}, {"policy": "report"},
                                    {"methods": {"phash": 10, "dhash": 4}, "match": "all"}])
def test_plan_made_before_a_reload_is_checked_against_the_new_config(world: World, reload: dict) -> None:
    world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    victim = world.add("dup.png", b"D" * 400, NEAR)
    plan = world.plan()
    world.reload(**reload)  # SIGHUP between plan and move
    assert world.policy.apply(plan) == 0
    assert victim.exists() and world.entries() == []


def test_keep_rule_change_drops_the_plan(world: World) -> None:
    world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    victim = world.add("dup.png", b"D" * 4000, NEAR)
    plan = world.plan()
    world.reload(keep=["largest_file"])  # dup.png is now the copy to keep
    assert world.policy.apply(plan) == 0 and victim.exists()
    (move,) = world.plan().moves
    assert move.keeper.path == str(victim)


# -- item 2: a full quarantine filesystem ------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: another filesystem than tmp_path, so moves copy → fsync → verify → unlink."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def partials(*folders: Path) -> list[str]:
    return [os.path.join(d, n) for f in folders for d, _, names in os.walk(f) for n in names if n.endswith(PARTIAL)]


def test_failed_copy_leaves_no_partial_file(small_fs: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))  # more than the filesystem holds
    for attempt in range(3):
        with pytest.raises(OSError):
            safe_move(str(big), str(small_fs / "big.bin"), file_digest(str(big)))
        assert partials(small_fs) == [], f"attempt {attempt} left its partial copy"
        assert big.stat().st_size == 3 << 20
    assert os.listdir(small_fs) == []


def test_full_quarantine_fs_records_once_backs_off_and_resumes(small_fs: Path, tmp_path: Path) -> None:
    w = World(tmp_path, small_fs)
    try:
        w.add("keep.png", os.urandom(1000), KEEPER_HASH, pixels=900)
        victims = {}
        for i in range(8):  # 8 x 400 KiB: about four fit in 2 MiB
            data = os.urandom(400 << 10)
            victims[w.add(f"dups/{i}.png", data, NEAR ^ (1 << (20 + i)))] = data
        assert w.policy.apply(w.plan()) in (3, 4, 5)
        stuck = {p for p in victims if p.exists()}
        assert stuck and partials(small_fs) == []
        failed = w.entries("failed")
        assert len(failed) == 1, "the first failure pauses every move: the others are not even tried"
        assert w.policy.plan() is None, "paused: no plan before the back-off ends"
        # retries back off: 2 s, 4 s, 8 s ... and never add manifest entries or leftovers
        waits = []
        for _ in range(5):
            assert not w.policy.retry_due()
            start = w.clock.now
            while not w.policy.retry_due():
                w.clock.now += 0.5
            waits.append(w.clock.now - start)
            assert w.policy.apply(w.plan()) == 0
            assert partials(small_fs) == [] and len(w.entries("failed")) == 1
        assert waits == sorted(waits) and waits[-1] >= 4 * waits[0], waits
        for p in stuck:
            assert p.read_bytes() == victims[p], "a victim whose move failed stays untouched in place"
        # space comes back: the next retry moves everything, the failed entry becomes the move
        subprocess.run(["mount", "-o", "remount,size=16m", str(small_fs)], check=True)
        while not w.policy.retry_due():
            w.clock.now += 0.5
        assert w.policy.apply(w.plan()) == len(stuck)
        assert not any(p.exists() for p in victims)
        entries = w.entries()
        assert len(entries) == len(victims) and {e.state for e in entries} == {"moved"}
        assert partials(small_fs) == []
        for e in entries:
            assert Path(e.dest).read_bytes() == victims[Path(e.origin)]
    finally:
        w.store.close()


def test_other_failures_back_off_per_file_with_one_entry(world: World) -> None:
    world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    victim = world.add("dup.png", b"D" * 400, NEAR)
    blocker = Path(world.mapping["quarantine_dir"])
    blocker.write_text("a file where the quarantine folder should be")  # every move fails: ENOTDIR
    for _ in range(4):
        plan = world.policy.plan()
        if plan is not None:
            assert world.policy.apply(plan) == 0
        world.clock.now += 1.0
    assert victim.exists()
    (e,) = world.entries()
    assert e.state == "failed" and "move failed" in e.reason
    blocker.unlink()
    while not world.policy.retry_due():
        world.clock.now += 0.5
    assert world.policy.apply(world.plan()) == 1
    (e2,) = world.entries()
    assert (e2.id, e2.state) == (e.id, "moved")


# -- item 4: restores ---------------------------------------------------------------------------------


def test_restore_request_times_out_cleanly_when_not_started() -> None:
    req = RestoreRequest(None)
    with pytest.raises(RestoreTimeout, match="cancelled before it started: nothing was restored"):
        req.wait(0.05)
    assert not req.begin(), "a request the caller gave up on must never run"


def test_restore_result_never_changes_after_the_caller_got_it(world: World) -> None:
    world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    victims = [world.add(f"dup{i}.png", bytes([i]) * 400, NEAR ^ (1 << (20 + i))) for i in range(3)]
    world.policy.apply(world.plan())
    assert not any(p.exists() for p in victims)

    # the job starts, restores one file, and is slow on the next one: the caller times out meanwhile
    gate, first_done = threading.Event(), threading.Event()
    real = world.quarantine._restore_one
    calls = []

    def slow(e: QuarantineEntry) -> Any:
        calls.append(e.origin)
        out = real(e)
        first_done.set()
        gate.wait(10)
        return out

    world.quarantine._restore_one = slow  # type: ignore[method-assign]
    req = RestoreRequest(None)
    job = threading.Thread(target=world.policy.run, args=(req,))
    job.start()
    assert first_done.wait(10)
    with pytest.raises(RestoreTimeout, match="stopped before its next file"):
        req.wait(0.05)
    gate.set()
    job.join(10)
    assert len(calls) == 1, "after the timeout the job stops before its next file"
    assert sum(p.exists() for p in victims) == 1
    # a later, patient restore gets the rest, completely
    world.quarantine._restore_one = real  # type: ignore[method-assign]
    req = RestoreRequest(None)
    world.policy.run(req)
    result = req.wait(1)
    assert [r["ok"] for r in result] == [True, True] and all(p.exists() for p in victims)


def test_daemon_restore_raises_instead_of_returning_a_growing_list(tmp_path: Path) -> None:
    """``Daemon.restore`` with a busy pipeline: a clear error, and the queued job never runs."""
    from dedupd.daemon.pipeline import Pipeline
    from dedupd.daemon.service import Daemon

    w = World(tmp_path, tmp_path / "q")
    try:
        w.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
        victim = w.add("dup.png", b"D" * 400, NEAR)
        w.policy.apply(w.plan())
        assert not victim.exists()
        daemon = Daemon(w.quarantine.config, serve=False, watch=False)
        daemon.pipeline = Pipeline(w.quarantine.config, w.store, w.index, on_change=lambda: None,
                                   on_event=lambda *a, **k: None, retouch=lambda p: None)
        daemon.pipeline.policy = w.policy
        daemon.policy = w.policy
        with pytest.raises(RestoreTimeout):
            daemon.restore(None, timeout=0.1)  # nobody runs the pipeline: it is "busy"
        daemon.pipeline._handle(daemon.pipeline.queue.get_nowait())  # the pipeline gets to it later
        assert not victim.exists(), "a restore the caller was told failed must not happen later"
        assert [e.state for e in w.entries()] == ["moved"]
    finally:
        w.store.close()


def test_offline_restore_recovers_interrupted_moves_first(world: World) -> None:
    """``dedupd restore`` without a daemon: a move a crash left ``pending`` (file already in the
    quarantine) is settled first, so the file comes back."""
    keeper = world.add("keep.png", b"K" * 500, KEEPER_HASH, pixels=900)
    victim = world.add("dup.png", b"D" * 400, NEAR)
    data = victim.read_bytes()
    dest = world.quarantine.destination(str(victim))
    world.store.add_quarantine(QuarantineEntry(str(victim), dest, str(keeper), file_digest(str(victim)),
                                               "phash distance 3 to kept copy", "pending"))
    os.makedirs(os.path.dirname(dest))
    os.rename(victim, dest)  # the crash came right after the rename
    world.store.close()
    cfg_path = world.tmp / "dedupd.yaml"
    cfg_path.write_text(yaml.safe_dump({**world.mapping, "socket_path": str(world.tmp / "no-daemon.sock")}))
    res = subprocess.run([sys.executable, "-m", "dedupd", "restore", "--all", "--config", str(cfg_path)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(world.tmp)})
    world.store = Store.open(world.mapping["store_dir"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 file(s) restored" in res.stdout
    assert victim.read_bytes() == data and not os.path.exists(dest)
    assert [e.state for e in world.entries()] == ["restored"]


def test_restore_timeout_is_a_clear_http_error() -> None:
    """The socket answers 503 with the reason (a TimeoutError would just drop the connection)."""
    import types

    from dedupd.daemon.api.routes import Router
    from dedupd.daemon.api.transport import HttpError, Request

    def restore(paths: list[str] | None) -> list[dict[str, Any]]:
        raise RestoreTimeout("restore did not finish within 120 s (the daemon is busy); it was cancelled")

    router = Router(types.SimpleNamespace(restore=restore))  # type: ignore[arg-type]
    request = Request("POST", "/v1/restore", {}, b'{"all": true}', None, None)  # type: ignore[arg-type]
    with pytest.raises(HttpError) as err:
        router.restore(request)
    assert err.value.status == 503 and "did not finish within 120 s" in err.value.detail
