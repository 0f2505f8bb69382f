"""link/decoded.py: the requests decoded lately, least recently used dropped first."""

from __future__ import annotations

from pyqrscp.link.decoded import LONGEST_KEPT, DecodedRequests


def test_the_least_recently_used_request_goes_first() -> None:
    kept = DecodedRequests(kept=2)
    kept.keep(b"a", ("A", "Evt6"))
    kept.keep(b"b", ("B", "Evt6"))
    assert kept.get(b"a") == ("A", "Evt6")  # a is now the most recent
    kept.keep(b"c", ("C", "Evt6"))
    assert kept.get(b"b") is None
    assert kept.get(b"a") == ("A", "Evt6") and kept.get(b"c") == ("C", "Evt6")
    assert len(kept) == 2


def test_a_long_request_is_not_kept() -> None:
    kept = DecodedRequests()
    kept.keep(bytes(LONGEST_KEPT + 1), ("X", "Evt6"))
    assert len(kept) == 0 and kept.get(bytes(LONGEST_KEPT + 1)) is None
