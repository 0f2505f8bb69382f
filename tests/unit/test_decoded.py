"""link/decoded.py: the requests decoded lately, least recently used dropped first, none
with credentials, none changed by an association that used it."""

from __future__ import annotations

from pynetdicom import build_context
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)

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


def _request(user_identity: bool) -> bytes:
    """An A-ASSOCIATE-RQ as pynetdicom encodes it: contexts, role selection, both extended
    negotiations and, with ``user_identity``, a user name and password."""
    primitive = A_ASSOCIATE()
    primitive.calling_ae_title = "SCU"
    primitive.called_ae_title = "ARCHIVE"
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    context = build_context("1.2.840.10008.5.1.4.1.1.2")
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.3.4"
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid, role.scu_role, role.scp_role = "1.2.840.10008.5.1.4.1.1.2", True, True
    extended = SOPClassExtendedNegotiation()
    extended.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2"
    extended.service_class_application_information = b"\x01\x01"
    common = SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = "1.2.840.10008.5.1.4.1.1.2"
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
    items: list[object] = [maximum, implementation, role, extended, common]
    if user_identity:
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 2
        identity.primary_field = b"alice"
        identity.secondary_field = b"s3cret"
        items.append(identity)
    primitive.user_information = items  # type: ignore[assignment]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def test_a_request_with_a_user_identity_is_not_kept() -> None:
    kept = DecodedRequests()
    kept.keep(_request(user_identity=True), ("RQ", "Evt6"))
    assert len(kept) == 0
    kept.keep(_request(user_identity=False), ("RQ", "Evt6"))
    assert len(kept) == 1


def test_a_kept_request_is_unchanged_by_what_one_association_does_with_its_primitive() -> None:
    """A primitive made of a kept PDU is a copy: changing it (pynetdicom's AE-6 sets the
    result of a rejection on it; pynetdicom only reads it otherwise) leaves the PDU, and every
    primitive made of it later, as received.  The one primitive shared by the associations of
    a kept request (``internals.remember_primitive``) is tested in
    tests/system/test_association_request.py."""
    received = _request(user_identity=False)
    kept = DecodedRequests()
    decoded = A_ASSOCIATE_RQ()
    decoded.decode(received)
    kept.keep(received, (decoded, "Evt6"))
    found = kept.get(received)
    assert found is not None and isinstance(found[0], A_ASSOCIATE_RQ)
    first = found[0].to_primitive()
    first.calling_ae_title = "CHANGED"
    for context in first.presentation_context_definition_list:
        context.context_id = 99
        context.transfer_syntax.clear()
        context.result = 0
    for item in first.user_information:
        for name in vars(item):
            value = getattr(item, name)
            if isinstance(value, list):
                value.clear()
    first.user_information.clear()
    first.presentation_context_definition_list.clear()
    assert bytes(found[0].encode()) == received
    again = found[0].to_primitive()
    assert again.calling_ae_title == "SCU" and len(again.user_information) == 5
    assert again.presentation_context_definition_list[0].transfer_syntax
