"""The start-up bulk load (``load_index``: chunked reads, roots decided per folder, hash columns
filled in one copy each, the garbage collector paused) gives exactly the index that adding each
stored file one at a time gives: same files, same facts, same near edges, same duplicates."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from dedupd.daemon.config import config_from_mapping
from dedupd.daemon.index import FileInfo, MatchIndex
from dedupd.daemon.loader import load_index, matching_of
from dedupd.daemon.store import EncodingRecord, FileRecord, Store
from dedupd.daemon.walk import root_of
from tests.daemon.test_graph_store import PARAMS, contents, graph


def _one_at_a_time(store: Store, cfg) -> MatchIndex:
    """The reference: every ok file under a root with an encoding, added through ``MatchIndex.add``."""
    index = MatchIndex(matching_of(cfg))
    for path, rec in store.iter_files():
        enc = store.get_encoding(rec.digest) if rec.digest is not None else None
        if rec.state != "ok" or enc is None or root_of(path, cfg) is None:
            continue
        index.add(path, FileInfo(rec.digest, rec.size, rec.mtime_ns, enc.width, enc.height), enc.hashes)
    return index


def test_bulk_load_equals_adding_each_file(tmp_path: Path) -> None:
    deep, flat = tmp_path / "deep", tmp_path / "flat"
    deep.mkdir()
    flat.mkdir()
    cfg = config_from_mapping({
        "roots": [str(deep), {"path": str(flat), "recursive": False}], "store_dir": str(tmp_path / "store"),
        "report_dir": str(tmp_path / "r"), "socket_path": str(tmp_path / "s"), "methods": {"phash": 10, "dhash": 10}})
    hashes = contents(7, 160)
    digests = sorted(hashes)
    long_dir = deep / ("d" * 240) / ("e" * 240)  # > 447 bytes: stored under a hashed key
    odd = os.fsdecode(os.fsencode(str(deep)) + b"/caf\xe9-\xff.jpg")  # not UTF-8
    placed: list[tuple[str, bytes | None]] = [
        *((str(deep / f"a{k:03d}.jpg"), d) for k, d in enumerate(digests[:120])),
        *((str(deep / "sub" / f"b{k:03d}.jpg"), d) for k, d in enumerate(digests[100:140])),  # identical digests
        *((str(flat / f"c{k:03d}.jpg"), d) for k, d in enumerate(digests[140:150])),
        (str(flat / "sub" / "nested.jpg"), digests[150]),  # under a non-recursive root: not loaded
        (str(flat / "zz.jpg"), digests[150]),  # the same folder as loaded files, after the subfolder
        (str(tmp_path / "deepx" / "outside.jpg"), digests[151]),  # a sibling whose name starts like a root
        (str(tmp_path / "elsewhere" / "outside.jpg"), digests[152]),
        (str(long_dir / "long.jpg"), digests[153]),
        (str(long_dir / "long-copy.jpg"), digests[0]),
        (odd, digests[154]),
        (str(deep / "broken.jpg"), None),  # unreadable: no digest, not loaded
    ]
    with Store.open(cfg.store_dir) as store:
        records = []
        for k, (path, d) in enumerate(placed):
            if d is None:
                records.append((path, FileRecord(5, 5, 1, k, None, state="unreadable", error="truncated"), None))
            else:
                records.append((path, FileRecord(100 + k, 10**18 + k, 1, k, d, encoded_at=1.0),
                                EncodingRecord(640 + k, 480, "JPEG", hashes[d], PARAMS)))
        store.put_files(records)
        reference = _one_at_a_time(store, cfg)
        loaded = load_index(store, cfg)
        assert gc.isenabled()
    assert loaded.files == reference.files
    assert odd in loaded.files and str(long_dir / "long.jpg") in loaded.files
    assert not {str(flat / "sub" / "nested.jpg"), str(deep / "broken.jpg")} & set(loaded.files)
    assert not any("outside" in p for p in loaded.files)
    assert loaded.content_count == reference.content_count
    assert loaded.near_edges() == reference.near_edges()
    assert graph(loaded) == graph(reference)
    assert loaded.adjacency() == reference.adjacency()
    # exact copies are duplicates, and so are near ones (the rule is the same)
    assert str(deep / "sub" / "b000.jpg") in {p for p, _ in loaded.duplicates_of(str(deep / "a100.jpg"))}
    assert sum(map(len, graph(loaded).values())) > 100
    for column, tree in loaded._trees.items():  # the bulk-filled hash columns answer as the added ones
        other = reference._trees[column]
        assert sorted((loaded._cids.keys[i], v) for i, v in tree) == sorted(
            (reference._cids.keys[i], v) for i, v in other)
        for d in digests[:20]:
            if column in hashes[d]:
                assert sorted(loaded._search(column, hashes[d][column], 10)) == sorted(
                    reference._search(column, hashes[d][column], 10))


def test_overlapping_gc_pauses_resume_the_collector_only_after_the_last() -> None:
    import threading

    from dedupd.daemon.gcpause import gc_paused

    assert gc.isenabled()
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def other() -> None:
        first_in.wait(5)
        with gc_paused():
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())  # the first pause still runs
        second_done.set()

    t = threading.Thread(target=other)
    t.start()
    with gc_paused():
        first_in.set()
        assert second_done.wait(5)
        assert not gc.isenabled()
    t.join()
    assert seen == [False, False] and gc.isenabled()
    gc.disable()  # a collector the caller turned off stays off
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_many_copies_of_one_content_through_add_rename_remove(tmp_path: Path) -> None:
    """A content's paths are kept as a tuple while few, as a set from 8 on: both ways alike."""
    cfg = config_from_mapping({"roots": [str(tmp_path)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "r"), "socket_path": str(tmp_path / "s"),
                               "methods": {"phash": 10}})
    index = MatchIndex(matching_of(cfg))
    digest, other = b"d" * 16, b"e" * 16
    index.add("/p/near.jpg", FileInfo(other, 1, 1, 8, 8), {"phash": 0b111})
    names = [f"/p/{k:02d}.jpg" for k in range(12)]
    for k, name in enumerate(names):
        index.add(name, FileInfo(digest, 1, 1, 8, 8), {"phash": 0})
        index.add(name, FileInfo(digest, 1, 1, 8, 8), {"phash": 0})  # again: no second entry
        assert {p for p, _ in index.duplicates_of(name)} == {*names[:k + 1], "/p/near.jpg"} - {name}
    assert index.content_count == 2 and len(index.neighbours()["/p/near.jpg"]) == 12
    assert index.rename(names[0], "/p/renamed.jpg")
    names[0] = "/p/renamed.jpg"
    for name in names[3:]:
        index.remove(name)
    kept = set(names[:3])
    for name in kept:
        assert {p for p, _ in index.duplicates_of(name)} == (kept - {name}) | {"/p/near.jpg"}
    for name in names[:3]:
        index.remove(name)
    assert index.content_count == 1 and index.duplicates_of("/p/near.jpg") == []


def test_content_ids_are_reused_without_mixing_contents(tmp_path: Path) -> None:
    """A removed content's id in the hash columns goes to the next new content: queries then
    find the new content, never the old one, and the old one's duplicates lose it."""
    cfg = config_from_mapping({"roots": [str(tmp_path)], "store_dir": str(tmp_path / "store"),
                               "report_dir": str(tmp_path / "r"), "socket_path": str(tmp_path / "s"),
                               "methods": {"phash": 4}})
    index = MatchIndex(matching_of(cfg))
    index.add("/p/a.jpg", FileInfo(b"a" * 16, 1, 1, 8, 8), {"phash": 0})
    index.add("/p/b.jpg", FileInfo(b"b" * 16, 1, 1, 8, 8), {"phash": 0b11})
    index.add("/p/c.jpg", FileInfo(b"c" * 16, 1, 1, 8, 8), {"phash": 2**64 - 1})
    assert [p for p, _ in index.duplicates_of("/p/a.jpg")] == ["/p/b.jpg"]
    index.remove("/p/b.jpg")
    index.add("/p/d.jpg", FileInfo(b"d" * 16, 1, 1, 8, 8), {"phash": 2**64 - 2})  # b's id, c's neighbour
    assert index._contents[b"d" * 16].cid == 1
    assert index.duplicates_of("/p/a.jpg") == []
    assert [p for p, _ in index.duplicates_of("/p/c.jpg")] == ["/p/d.jpg"]
    assert [p for p, _ in index.query({"phash": 1})] == ["/p/a.jpg"]
    assert [p for p, _ in index.query({"phash": 2**64 - 3})] == ["/p/c.jpg", "/p/d.jpg"]


def _mapped_rss_kb(name: str) -> int:
    """This process's resident kB of the mappings of files whose path ends with ``name``."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                inside = line.rstrip().endswith(name)
            elif inside and line.startswith("Rss:"):
                total += int(head[1])
    return total


def test_release_mapped_drops_the_store_pages_and_reads_still_work(tmp_path: Path) -> None:
    """After a bulk read, :func:`release_mapped` leaves none of ``data.mdb``'s pages resident in
    this process (they were, after the read), and the store reads the same records afterwards,
    on the writer's handle too."""
    from dedupd.daemon.loader import release_mapped

    hashes = contents(3, 300)
    with Store.open(tmp_path / "store") as store:
        store.put_files([(f"/p/{k}.jpg", FileRecord(1, 1, 1, k, d, encoded_at=1.0),
                          EncodingRecord(8, 8, "JPEG", h, PARAMS)) for k, (d, h) in enumerate(hashes.items())])
        before = sorted(store.iter_encodings_brief())
        resident = _mapped_rss_kb("/store/data.mdb")
        assert resident > 0
        assert release_mapped(store) > 0
        assert _mapped_rss_kb("/store/data.mdb") < resident and _mapped_rss_kb("/store/data.mdb") == 0
        assert sorted(store.iter_encodings_brief()) == before
        store.put_files([("/p/new.jpg", FileRecord(1, 1, 1, 1, b"n" * 16, encoded_at=1.0),
                          EncodingRecord(8, 8, "JPEG", {"phash": 1}, PARAMS))])
        assert len(list(store.iter_encodings_brief())) == len(before) + 1
