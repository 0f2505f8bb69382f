"""link/negotiated.py: kept outcomes, least recently used dropped first, taken only for the
very contexts they were negotiated against; requests with extended negotiation not kept."""

from __future__ import annotations

from pydicom.uid import UID
from pynetdicom import AE, build_context
from pynetdicom.association import Association
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)

from pyqrscp.link.negotiated import NegotiatedOutcomes, Outcome, outcome_key

SUPPORTED = [build_context("1.2.840.10008.1.1"), build_context("1.2.840.10008.5.1.4.1.1.2")]


def _outcome() -> Outcome:
    return Outcome(tuple(SUPPORTED), (), (), ())


def test_the_least_recently_used_outcome_goes_first() -> None:
    kept = NegotiatedOutcomes(kept=2)
    a, b, c = _outcome(), _outcome(), _outcome()
    kept.keep("a", a)
    kept.keep("b", b)
    assert kept.get("a", SUPPORTED) is a
    kept.keep("c", c)
    assert kept.get("b", SUPPORTED) is None
    assert kept.get("a", SUPPORTED) is a and kept.get("c", SUPPORTED) is c
    assert len(kept) == 2


def test_an_outcome_is_taken_only_for_the_same_supported_contexts() -> None:
    kept = NegotiatedOutcomes()
    kept.keep("a", _outcome())
    equal_but_other = [build_context("1.2.840.10008.1.1"),
                       build_context("1.2.840.10008.5.1.4.1.1.2")]
    assert kept.get("a", equal_but_other) is None
    assert kept.get("a", SUPPORTED[:1]) is None


def _acceptor_with(
        *items: SCP_SCU_RoleSelectionNegotiation | AsynchronousOperationsWindowNegotiation,
) -> Association:
    assoc = Association(AE(), "acceptor")
    primitive = A_ASSOCIATE()
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16384
    primitive.user_information = [maximum, *items]
    assoc.requestor.primitive = primitive
    assoc.acceptor.supported_contexts = SUPPORTED
    return assoc


def test_the_key_names_the_request_and_the_acceptance() -> None:
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = UID("1.2.840.10008.5.1.4.1.1.2")
    role.scp_role = True
    assoc = _acceptor_with(role)
    assert outcome_key(assoc, b"request") == outcome_key(_acceptor_with(role), b"request")
    assert outcome_key(assoc, b"request") != outcome_key(assoc, b"other request")
    assoc.acceptor.supported_contexts = SUPPORTED[:1]
    assert outcome_key(assoc, b"request") != outcome_key(_acceptor_with(role), b"request")


def test_a_request_with_extended_negotiation_is_not_kept() -> None:
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 2
    window.maximum_number_operations_performed = 2
    assert outcome_key(_acceptor_with(window), b"request") is None
    assert outcome_key(Association(AE(), "acceptor"), b"request") is None  # nothing received
