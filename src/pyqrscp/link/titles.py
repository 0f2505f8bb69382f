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
