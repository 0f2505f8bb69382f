"""SOP Class Extended Negotiation answers for the Q/R SOP classes."""

from __future__ import annotations

from pyqrscp.services.negotiation import extended_response

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def test_relational_and_combined_date_time_are_granted_as_asked() -> None:
    assert extended_response({STUDY_FIND: b"\x01\x01\x01\x01"}) == {STUDY_FIND: b"\x01\x01"}
    assert extended_response({STUDY_FIND: b"\x00\x01"}) == {STUDY_FIND: b"\x00\x01"}
    assert extended_response({STUDY_FIND: b"\x01"}) == {STUDY_FIND: b"\x01"}


def test_retrieve_gets_relational_only() -> None:
    assert extended_response({STUDY_MOVE: b"\x01\x01"}) == {STUDY_MOVE: b"\x01"}


def test_other_sop_classes_and_empty_items_get_no_answer() -> None:
    assert extended_response({CT_STORAGE: b"\x01", STUDY_FIND: b""}) == {}
