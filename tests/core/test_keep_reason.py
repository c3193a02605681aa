"""Why a copy is kept (report.html's "kept: ..."): the first keep rule that sets it apart."""

from __future__ import annotations

from dedupd.core.keep import Candidate, choose_keeper, keep_reason

RULES = ["largest_pixels", "largest_file", "oldest_mtime"]


def test_the_deciding_rule_is_named_with_its_numbers():
    big, small = Candidate("/p/big.jpg", 12_000_000, 3_000_000, 5), Candidate("/p/small.jpg", 3_000_000, 900_000, 1)
    assert choose_keeper([big, small], RULES) == big
    assert keep_reason(big.path, [big, small], RULES) == "most pixels (12,000,000 vs 3,000,000)"
    same_px = Candidate("/p/b.jpg", 12_000_000, 2_000_000, 9)
    assert keep_reason(big.path, [big, same_px], RULES) == "largest file (3,000,000 vs 2,000,000 bytes)"
    twin = Candidate("/p/twin.jpg", 12_000_000, 3_000_000, 7)
    assert keep_reason(big.path, [big, twin], RULES) == "oldest modification time"


def test_prefer_ties_and_other_keepers():
    a, b = Candidate("/x/Originals/a.jpg", 1, 1, 1), Candidate("/x/b.jpg", 1, 1, 1)
    assert keep_reason(a.path, [a, b], [{"prefer": "*/Originals/*"}, *RULES]) == "matches prefer: */Originals/*"
    c = Candidate("/x/c.jpg", 1, 1, 1)
    assert keep_reason(b.path, [b, c], RULES) == "all keep rules tie: first in alphabetical order"
    # a keeper the rules would not pick was chosen otherwise (a user's choice, a reference root)
    assert keep_reason(c.path, [b, c], RULES).startswith("chosen over the keep rules")
    assert keep_reason(b.path, [b], RULES) == "the only copy"
