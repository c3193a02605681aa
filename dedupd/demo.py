"""``make run``: a one-minute tour on a demo folder generated from the shared photo corpus.

1. generates ~60 real photos with known duplicates into ``DIR/photos`` (shared/corpus/make_corpus.py);
2. writes ``DIR/config.yaml`` and starts ``dedupd run`` on it (a real daemon, real socket);
3. shows the status and the duplicate groups it found;
4. drops in new duplicates (a copy, a resized copy) and shows they are reported within seconds;
5. stops the daemon (or leaves it running with ``--keep-running``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from dedupd.client import Client, DaemonNotRunning

CONFIG = """\
# dedupd demo config (written by `make run`); see config/dedupd.example.yaml for every key.
roots:
  - {photos}
store_dir: {state}/store
report_dir: {state}/reports
socket_path: {state}/dedupd.sock
policy: report
methods:
  phash: {{threshold: 10}}
settle_ms: 300
log: {{format: console, level: warning}}
"""


def find_corpus() -> Path:
    here = Path(__file__).resolve().parents[1]
    for cand in (os.environ.get("DEDUPD_CORPUS"), here.parent / "shared" / "corpus", Path.cwd().parent / "shared" / "corpus"):
        if cand and (Path(cand) / "make_corpus.py").is_file():
            return Path(cand)
    sys.exit("dedupd demo: the shared photo corpus was not found next to the repository (../shared/corpus); "
             "set DEDUPD_CORPUS to the folder that holds make_corpus.py")


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def wait_for(client: Client, pred, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        try:
            last = client.get("/v1/status")
            if pred(last):
                return last
        except (DaemonNotRunning, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"dedupd demo: timed out waiting for the daemon (last status: {last})")


def show_groups(client: Client, limit: int = 5) -> None:
    data = client.get("/v1/groups", limit=limit)
    print(f"{data['total']} duplicate groups (showing {min(limit, data['total'])}):")
    for g in data["groups"]:
        print(f"  keep {g['keep']['path']}")
        for d in g["duplicates"]:
            how = f"{d['method']} {d.get('distance', d.get('similarity'))}" if d.get("direct") else f"via {d.get('via')}"
            print(f"    dup {d['path']}  ({how})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=".demo", help="demo folder (recreated)")
    ap.add_argument("--count", type=int, default=60, help="photos to generate")
    ap.add_argument("--keep-running", action="store_true", help="leave the daemon running at the end")
    args = ap.parse_args(argv)

    base = Path(args.dir).absolute()
    photos, state = base / "photos", base / "state"
    if base.exists():
        shutil.rmtree(base)
    state.mkdir(parents=True)
    corpus = find_corpus()
    say(f"generating {args.count} photos with known duplicates into {photos}")
    subprocess.run([sys.executable, str(corpus / "make_corpus.py"), "--kind", "mixed", "--count", str(args.count),
                    "--nested", "--out", str(photos), "--meta-dir", str(base / "truth")], check=True,
                   stdout=subprocess.DEVNULL)
    config = base / "config.yaml"
    config.write_text(CONFIG.format(photos=photos, state=state))

    say(f"starting: dedupd run --config {config}")
    log = open(state / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dedupd", "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    client = Client(str(state / "dedupd.sock"), timeout=10)
    try:
        t0 = time.monotonic()
        s = wait_for(client, lambda s: s["state"] == "watching", 120)
        print(f"indexed {s['files']} images in {time.monotonic() - t0:.1f} s: {s['groups']} groups, "
              f"{s['unreadable']} unreadable")
        show_groups(client)

        say("dropping in new duplicates: an exact copy and a half-size copy of one photo")
        original = sorted(p for p in photos.rglob("*.jpg"))[0]
        shutil.copyfile(original, photos / "copy_of_first.jpg")
        with Image.open(original) as im:
            im.resize((im.width // 2, im.height // 2)).save(photos / "smaller_first.jpg", quality=90)
        before = s["files"]
        t1 = time.monotonic()
        wait_for(client, lambda s: s["files"] >= before + 2 and s["queued"] == 0, 30)
        print(f"reported within {time.monotonic() - t1:.1f} s of arrival:")
        res = client.request("GET", "/v1/duplicates", params={"path": str(photos / "smaller_first.jpg")})
        for d in res["duplicates"]:
            print(f"  {Path(res['path']).name} ~ {d['path']}  ({d['method']} {d.get('distance', d.get('similarity'))})")

        say("reports")
        for name in ("duplicates.json", "groups.json", "events.jsonl"):
            print(f"  {state / 'reports' / name}")
        print(f"\ntry: .venv/bin/dedupd status --config {config}")
        print(f"     .venv/bin/dedupd groups --config {config}")
        print(f"     .venv/bin/dedupd query --config {config} SOME_IMAGE.jpg")
        return 0
    finally:
        if args.keep_running:
            print(f"\ndaemon still running (pid {proc.pid}); stop it with: kill {proc.pid}")
        else:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            print(f"\ndaemon stopped (exit {code}); log: {state / 'daemon.log'}")


if __name__ == "__main__":
    sys.exit(main())
