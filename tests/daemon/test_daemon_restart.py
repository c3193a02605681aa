"""Restart and change: nothing is decoded twice; edits, deletes, renames and folder moves are tracked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from PIL import Image

from dedupd.methods import PHash
from tests.daemon.helpers import as_sets, image_files, relative_map, sha256

THRESHOLD = 10


def library_map(folder: Path) -> dict[str, set[str]]:
    return as_sets(PHash(verbose=False).find_duplicates(image_dir=str(folder), recursive=True,
                                                        max_distance_threshold=THRESHOLD))


def renamed(dups: dict[str, list[str]], mapping: dict[str, str]) -> dict[str, set[str]]:
    """``dups`` with paths renamed by ``mapping`` (old → new), as sets."""
    def m(p: str) -> str:
        return mapping.get(p, p)

    return {m(k): {m(v) for v in vs} for k, vs in dups.items()}


def test_restart_modify_delete_rename_move(mixed200: Path, tmp_path: Path, daemon_factory) -> None:
    watched = tmp_path / "photos"
    shutil.copytree(mixed200, watched)
    daemon = daemon_factory([watched], methods={"phash": {"threshold": THRESHOLD, "crop": False}})  # as the library: no crop hashes

    daemon.start()
    first = daemon.wait_quiet()
    assert first["files"] == 200 and first["decoded"] == first["encoded"]
    before = daemon.duplicates()
    assert relative_map(before, watched) == library_map(watched)
    daemon.stop()

    # restart: everything comes from the store, nothing is decoded or even re-digested
    daemon.start()
    s = daemon.wait_quiet()
    assert (s["files"], s["decoded"], s["reused"], s["unreadable"]) == (200, 0, 0, 0), s
    assert daemon.duplicates() == before

    with_dups = sorted(p for p, v in before.items() if v)
    by_folder: dict[str, list[str]] = {}
    for p in with_dups:
        by_folder.setdefault(os.path.dirname(p), []).append(p)

    # modify a file in place (new pixels): re-encoded, exactly one decode
    edited = with_dups[0]
    with Image.open(edited) as im:
        flipped = im.convert("RGB").transpose(Image.Transpose.ROTATE_180)
    with open(edited, "wb") as f:  # in place: same path, same inode, new content
        flipped.save(f, format="JPEG", quality=90)
    daemon.wait_until(lambda: daemon.status()["decoded"] == 1 and set(daemon.duplicates().get(edited, ["?"]))
                      != set(before[edited]), 15, "the edited file re-encoded and re-reported")

    # delete a file: gone from the index and from every list
    victim = next(p for p in with_dups if p != edited and edited not in before[p])
    os.remove(victim)
    daemon.wait_until(lambda: victim not in (d := daemon.duplicates()) and all(victim not in v for v in d.values()),
                      15, "the deleted file gone from duplicates.json")
    code, _ = daemon.api("GET", f"/v1/duplicates?path={victim}")
    assert code == 404
    assert daemon.status()["files"] == 199

    # rename a file in place, and move another one to a different folder: no decode
    current = daemon.duplicates()
    candidates = [p for p in with_dups if p not in (edited, victim) and os.path.exists(p)]
    ren_src = candidates[0]
    ren_dst = os.path.join(os.path.dirname(ren_src), "renamed " + os.path.basename(ren_src))
    mv_src = next(p for p in candidates[1:] if os.path.dirname(p) != os.path.dirname(ren_src))
    mv_dst = os.path.join(os.path.dirname(ren_src), "moved-" + os.path.basename(mv_src))
    os.rename(ren_src, ren_dst)
    os.rename(mv_src, mv_dst)
    mapping = {ren_src: ren_dst, mv_src: mv_dst}
    expected = renamed(current, mapping)
    daemon.wait_until(lambda: as_sets(daemon.duplicates()) == expected, 15, "renamed paths in duplicates.json")

    # move a file over another one (mv a b, b exists): b now has a's content, a is gone
    current = daemon.duplicates()
    pool = [p for p in with_dups if os.path.exists(p) and p not in (edited, ren_dst, mv_dst)]
    over_src = pool[0]
    over_dst = next(p for p in pool[1:] if p not in current[over_src] and sha256(p) != sha256(over_src))
    os.replace(over_src, over_dst)
    expected = {k: {v for v in vs if v != over_dst} for k, vs in current.items() if k != over_dst}
    expected = renamed({k: list(v) for k, v in expected.items()}, {over_src: over_dst})
    daemon.wait_until(lambda: as_sets(daemon.duplicates()) == expected, 15, "a file moved over another one")

    # move a whole folder (with sub-folders) to a new name inside the root: no decode
    current = daemon.duplicates()
    folders = sorted({os.path.dirname(p) for p in current if os.path.dirname(p) != str(watched)},
                     key=lambda d: -sum(1 for p in current if p.startswith(d + "/")))
    moved_dir = folders[0]
    inside = [p for p in current if p.startswith(moved_dir + "/")]
    assert len(inside) >= 5 and any(current[p] for p in inside)
    new_dir = str(watched / "moved folder")
    os.rename(moved_dir, new_dir)
    mapping = {p: new_dir + p[len(moved_dir):] for p in inside}
    expected = renamed(current, mapping)
    daemon.wait_until(lambda: as_sets(daemon.duplicates()) == expected, 15, "moved folder's paths in duplicates.json")

    s = daemon.wait_quiet()
    assert s["decoded"] == 1, f"renames and moves must not decode: {s}"
    assert s["files"] == 198 and s["unreadable"] == 0

    # a folder moved out of the root is forgotten; moved back in, it is found again
    current = daemon.duplicates()
    out_src = os.path.dirname(next(p for p in sorted(current) if current[p] and "moved folder" not in p
                                   and os.path.dirname(p) != str(watched)))
    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(out_src, outside / "away")
    daemon.wait_until(lambda: not any(k.startswith(out_src + "/") for k in daemon.duplicates()), 15,
                      "a folder moved out of the root forgotten")
    n_out = len(image_files(outside))
    os.rename(outside / "away", out_src)
    daemon.wait_until(lambda: as_sets(daemon.duplicates()) == as_sets(current), 30,
                      "a folder moved into the root indexed again")
    s = daemon.wait_quiet()
    # its files left the store when they left the roots: coming back they are new (at most one
    # decode each), exactly as a folder uploaded into the root
    assert 1 <= s["decoded"] - 1 <= n_out and s["files"] == 198

    assert relative_map(daemon.duplicates(), watched) == library_map(watched)
    assert not [e for e in daemon.events("unreadable")]
    final = daemon.duplicates()
    daemon.stop()

    # while stopped: rename a file; the restart's reconcile finds it by digest (reuse, no decode)
    some = next(p for p in final if final[p])
    os.rename(some, some + ".moved.jpg")
    daemon.start()
    s = daemon.wait_quiet()
    assert (s["decoded"], s["reused"], s["files"]) == (0, 1, 198), s
    assert as_sets(daemon.duplicates()) == renamed(final, {some: some + ".moved.jpg"})
    assert not daemon.errors_in_log()
    daemon.stop()
