"""``make run``: a one-minute tour of dedupd on a demo photo library.

1. builds ``DIR/photos``: from the 13 photos shipped inside the package (``dedupd/demo_photos``,
   licences in its ``CREDITS.md``) plus duplicates made here (exact copies, smaller and re-encoded
   copies, a brightened edit, a small PNG export); or, with ``--source corpus`` (the default when
   ``DEDUPD_CORPUS`` is set or ``../shared/corpus`` exists), ~60 photos generated from the shared
   photo corpus;
2. writes ``DIR/config.yaml`` and starts ``dedupd run`` on it (a real daemon, a real socket);
3. prints where the HTML report is, then the counts and the duplicate groups, all from one
   snapshot of the daemon (so the numbers agree);
4. drops in new duplicates (a copy and a half-size copy of one photo) and shows they are found;
5. in a terminal, leaves the daemon running and prints commands to try against it, until Ctrl-C;
   when not interactive (no terminal, or ``CI=true`` as in ``.ci/run``) it stops the daemon and
   prints no commands.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image, ImageEnhance

from dedupd.client import ApiError, Client, DaemonNotRunning
from dedupd.units import human_bytes

CONFIG = """\
# dedupd demo config (written by `make run`); see config/dedupd.example.yaml for every key.
roots:
  - {photos}
store_dir: {state}/store
report_dir: {state}/reports
socket_path: {state}/dedupd.sock
policy: report
quarantine_dir: {state}/quarantine   # used only when you quarantine from `dedupd review`
methods:
  phash: {{threshold: 10}}
settle_ms: 300
log: {{format: console, level: warning}}
"""

#: duplicates made from the shipped photos: (photo, new file under photos/, how)
BUNDLED_COPIES: tuple[tuple[str, str, str], ...] = (
    ("coffee", "backup/coffee.jpg", "copy"),
    ("cat", "phone/cat_small.jpg", "half"),
    ("temple", "backup/temple.jpg", "copy"),
    ("temple", "phone/temple.jpg", "jpeg60"),
    ("astronaut", "edited/astronaut_bright.jpg", "brighter"),
    ("moose", "export/moose_small.png", "half-png"),
    ("hopper", "backup/hopper.jpg", "copy"),
    ("hopper", "phone/hopper_small.jpg", "half"),
)
#: the photo the tour copies in while the daemon watches (not in a group before)
DROP_IN = "panda"


def bundled_photos() -> list[Path]:
    """The photos shipped in the package (sorted)."""
    folder = resources.files("dedupd").joinpath("demo_photos")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".jpg"))


def make_copy(src: Path, dest: Path, how: str) -> None:
    """``dest`` as a duplicate of ``src``: a byte copy, or a changed image of the same photo."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if how == "copy":
        shutil.copyfile(src, dest)
        return
    with Image.open(src) as im:
        im = im.convert("RGB")
        if how == "half":
            im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS).save(dest, quality=88)
        elif how == "jpeg60":
            im.save(dest, quality=60)
        elif how == "brighter":
            ImageEnhance.Brightness(im).enhance(1.12).save(dest, quality=70)
        elif how == "half-png":
            im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS).save(dest)
        else:
            raise ValueError(f"unknown copy kind {how!r}")


def build_bundled(photos: Path) -> None:
    """The demo library from the shipped photos: originals in ``library/`` (older), duplicates beside."""
    originals = {p.stem: p for p in bundled_photos()}
    for src in originals.values():
        dest = photos / "library" / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        os.utime(dest, (1_600_000_000, 1_600_000_000))  # the originals are the oldest copies
    for name, rel, how in BUNDLED_COPIES:
        make_copy(originals[name], photos / rel, how)


def find_corpus() -> Path | None:
    """The shared photo corpus (``DEDUPD_CORPUS``, else ``../shared/corpus``), or None."""
    here = Path(__file__).resolve().parents[1]
    for cand in (os.environ.get("DEDUPD_CORPUS"), here.parent / "shared" / "corpus",
                 Path.cwd().parent / "shared" / "corpus"):
        if cand and (Path(cand) / "make_corpus.py").is_file():
            return Path(cand)
    return None


def build_from_corpus(corpus: Path, photos: Path, base: Path, count: int) -> None:
    subprocess.run([sys.executable, str(corpus / "make_corpus.py"), "--kind", "mixed", "--count", str(count),
                    "--nested", "--out", str(photos), "--meta-dir", str(base / "truth")], check=True,
                   stdout=subprocess.DEVNULL)


def interactive() -> bool:
    """A person is watching: both ends are terminals and this is not CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = pred()
            if value:
                return value
        except (DaemonNotRunning, ApiError, OSError) as exc:
            last_error = f" ({exc})"
        time.sleep(0.2)
    raise SystemExit(f"dedupd demo: timed out waiting for {what}{last_error}")


def snapshot(client: Client) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(status, groups) once the daemon is idle and its reports show the groups it answers with."""
    status = client.get("/v1/status")
    if status["state"] != "watching" or status["queued"]:
        return None
    groups = client.get("/v1/groups", limit=1000)
    again = client.get("/v1/status")
    if again["groups"] != groups["total"] or again["files"] != status["files"] or again["queued"]:
        return None  # reports not rewritten yet, or something changed in between
    return again, groups



def show_groups(groups: dict[str, Any], photos: Path, limit: int = 8) -> None:
    def rel(p: str) -> str:
        return os.path.relpath(p, photos)

    for g in groups["groups"][:limit]:
        print(f"  keep {rel(g['keep']['path'])}")
        for d in g["duplicates"]:
            how = ("exact copy" if d.get("method") == "exact" else f"{d['method']} distance {d.get('distance')}"
                   if d.get("direct") else f"via {rel(d.get('via') or '?')}")
            print(f"    dup {rel(d['path'])}  ({how})")
    if groups["total"] > limit:
        print(f"  ... and {groups['total'] - limit} more groups (all of them: in the report)")


def cli_command() -> str:
    """How to call the CLI from the current folder (the venv's console script when it exists)."""
    script = Path(sys.executable).with_name("dedupd")
    if not script.is_file():
        return f"{sys.executable} -m dedupd"
    rel = os.path.relpath(script)
    return str(script) if rel.startswith("..") else rel


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=".demo", help="demo folder (recreated)")
    ap.add_argument("--source", choices=["auto", "bundled", "corpus"], default="auto",
                    help="photos: shipped with dedupd, or generated from the shared corpus (auto: the corpus if "
                         "DEDUPD_CORPUS is set or ../shared/corpus exists)")
    ap.add_argument("--count", type=int, default=60, help="photos to generate from the corpus")
    ap.add_argument("--keep-running", action="store_true",
                    help="leave the daemon running when the demo ends (it prints how to stop it)")
    args = ap.parse_args(argv)

    base = Path(args.dir).absolute()
    photos, state = base / "photos", base / "state"
    if base.exists():
        shutil.rmtree(base)
    state.mkdir(parents=True)
    corpus = find_corpus() if args.source in ("auto", "corpus") else None
    if args.source == "corpus" and corpus is None:
        sys.exit("dedupd demo: --source corpus, but the shared photo corpus was not found (../shared/corpus); "
                 "set DEDUPD_CORPUS to the folder that holds make_corpus.py, or use --source bundled")
    if corpus is not None:
        say(f"generating {args.count} photos with known duplicates from {corpus} into {photos}")
        build_from_corpus(corpus, photos, base, args.count)
    else:
        say(f"building a photo library in {photos}: {len(bundled_photos())} photos shipped with dedupd "
            f"(dedupd/demo_photos/CREDITS.md) and {len(BUNDLED_COPIES)} copies of some of them")
        build_bundled(photos)
    config = base / "config.yaml"
    config.write_text(CONFIG.format(photos=photos, state=state))
    report = state / "reports" / "report.html"

    say(f"starting: dedupd run --config {config}")
    for signum in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal, a `kill`: stop the daemon as Ctrl-C does
        signal.signal(signum, _interrupt)
    log = open(state / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dedupd", "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = Client(str(state / "dedupd.sock"), timeout=10, retry_s=1)
    keep = False
    try:
        t0 = time.monotonic()
        status, groups = wait_for(lambda: snapshot(client) if report.exists() else None, 180, "the first index")
        say(f"report: {report}")
        print(f"  open it in a browser: {report.as_uri()}")
        dups = sum(len(g["duplicates"]) for g in groups["groups"])
        freed = sum(d.get("bytes") or 0 for g in groups["groups"] for d in g["duplicates"] if d.get("direct"))
        say(f"indexed {status['files']} images in {time.monotonic() - t0:.1f} s: {groups['total']} duplicate groups, "
            f"{dups} duplicates ({human_bytes(freed)} to reclaim), {status['unreadable']} unreadable")
        show_groups(groups, photos)

        say("dropping in new duplicates while the daemon watches: an exact copy and a half-size copy")
        original = next((p for p in sorted(photos.rglob("*.jpg")) if p.stem == DROP_IN), None) \
            or sorted(photos.rglob("*.jpg"))[0]
        t1 = time.monotonic()
        make_copy(original, photos / "new" / f"{original.stem}_copy.jpg", "copy")
        make_copy(original, photos / "new" / f"{original.stem}_small.jpg", "half")
        before = status["files"]
        status, groups = wait_for(lambda: (s := snapshot(client)) and s[0]["files"] >= before + 2 and s, 60,
                                  "the new files")
        print(f"found within {time.monotonic() - t1:.1f} s; now {status['files']} images, "
              f"{groups['total']} duplicate groups:")
        res = client.get("/v1/duplicates", path=str(photos / "new" / f"{original.stem}_small.jpg"))
        for d in res["duplicates"]:
            how = "exact copy" if d["method"] == "exact" else f"{d['method']} distance {d.get('distance')}"
            print(f"  new/{original.stem}_small.jpg ~ {os.path.relpath(d['path'], photos)}  ({how})")
        print(f"  the report shows them too: {report}")

        if args.keep_running:
            keep = True
            print(f"\ndaemon left running (pid {proc.pid}); stop it with: kill {proc.pid}")
            return 0
        if not interactive():
            print("\n(not a terminal: stopping the daemon; run `make run` in a terminal to keep it running "
                  "and try the CLI and the review page against it)")
            return 0
        cli = cli_command()
        say("the daemon keeps running; in another terminal try:")
        print(f"  {cli} status --config {os.path.relpath(config)}")
        print(f"  {cli} groups --config {os.path.relpath(config)}")
        print(f"  {cli} query --config {os.path.relpath(config)} {os.path.relpath(original)}")
        print(f"  {cli} review --config {os.path.relpath(config)}      # decide in your browser")
        print("\nCtrl-C stops the daemon.", flush=True)
        try:
            code = proc.wait()
            print(f"dedupd demo: the daemon ended (exit {code}); log: {state / 'daemon.log'}")
            return 1
        except KeyboardInterrupt:
            print()
            return 0
    finally:
        if not keep and proc.poll() is None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave the daemon behind
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            print(f"daemon stopped (exit {code}); log: {state / 'daemon.log'}", flush=True)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
