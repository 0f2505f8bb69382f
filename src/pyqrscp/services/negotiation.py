"""SOP Class Extended Negotiation for the Q/R SOP classes (PS3.4 C.5): relational queries and
retrievals are granted when asked for, and combined date-time matching (C-FIND), which
pyqrscp always does.  Other options (fuzzy semantic PN matching, timezone adjustment,
enhanced multi-frame conversion) are answered "not supported"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pydicom.uid import UID
from pynetdicom.association import Association

FIND_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.2.1",
                              "1.2.840.10008.5.1.4.1.2.3.1"})
RETRIEVE_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.1.3",
    "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3",
    "1.2.840.10008.5.1.4.1.2.3.2", "1.2.840.10008.5.1.4.1.2.3.3"})


K = TypeVar("K", bound=str)
"""A SOP Class UID as pynetdicom gives it (a ``UID``) or as text."""


def extended_response(requested: Mapping[K, bytes]) -> dict[K, bytes]:
    """pynetdicom's ``EVT_SOP_EXTENDED`` answer: per Q/R SOP class asked for, byte 0
    (relational) as asked, byte 1 for C-FIND (combined date-time matching) as asked, the
    rest 0; SOP classes that are not Q/R get no answer."""
    answers: dict[K, bytes] = {}
    for sop_class, info in requested.items():
        uid = str(sop_class)
        if uid not in FIND_SOP_CLASSES and uid not in RETRIEVE_SOP_CLASSES or not info:
            continue
        granted = [info[0] & 1]
        if uid in FIND_SOP_CLASSES and len(info) > 1:
            granted.append(info[1] & 1)
        answers[sop_class] = bytes(granted)
    return answers


def is_relational(assoc: Association, sop_class: str) -> bool:
    """Were relational queries (C-FIND) or retrievals (C-MOVE/C-GET) granted for this SOP
    class on this association?"""
    granted = assoc.acceptor.sop_class_extended.get(UID(sop_class), b"")
    return bool(granted[:1]) and granted[0] & 1 == 1
