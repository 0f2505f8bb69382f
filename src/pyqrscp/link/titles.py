"""The AE titles of an association as pyqrscp compares and logs them: text without the
padding spaces of the wire (pynetdicom keeps them as given)."""

from __future__ import annotations

from pynetdicom.association import Association


def calling_aet(assoc: Association) -> str:
    """The requestor's (calling) AE title."""
    return str(assoc.requestor.ae_title).strip()


def called_aet(assoc: Association) -> str:
    """The acceptor's (called) AE title."""
    return str(assoc.acceptor.ae_title).strip()


def call_from(sub_association: Association, calling_aet: str) -> None:
    """For ``EVT_CONN_OPEN`` of an association pyqrscp requests through pynetdicom's public
    API (its A-ASSOCIATE-RQ is built from the requestor's primitive right after): call from
    ``calling_aet`` instead of the AE's own title, as dcmqrscp calls a C-MOVE destination from
    the move's called AE title."""
    sub_association.requestor.ae_title = calling_aet
    primitive = sub_association.requestor.primitive
    if primitive is not None:
        primitive.calling_ae_title = calling_aet
