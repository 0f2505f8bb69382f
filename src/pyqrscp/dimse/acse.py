"""The association requestor's half of the ACSE (PS3.8 9.3.2, 9.3.3) as bytes: which
presentation contexts to propose, the A-ASSOCIATE-RQ PDU, and what an A-ASSOCIATE-AC accepted.

Sans-IO: the C-STORE SCU of C-MOVE sub-associations (``link/sender.py``) sends and reads them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from pyqrscp.dimse.pdus import ASSOCIATE_RQ, variable_items

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
MAX_CONTEXTS = 128


@dataclass(frozen=True, slots=True)
class ProposedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AcceptedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntax: str


def propose(pairs: Iterable[tuple[str, str]], uncompressed: Sequence[str]
            ) -> list[ProposedContext]:
    """Per SOP class one context with the ``uncompressed`` syntaxes (``-x...`` order), plus one
    context per stored syntax on its own, so that a receiver that takes it gets the stored bytes
    unchanged (in the shared context it picks its own preference); at most 128 (odd IDs 1..255).
    """
    pairs = sorted(set(pairs))
    shared = tuple(uncompressed)
    wanted = [(sop_class, shared) for sop_class in sorted({c for c, _ in pairs})]
    wanted += [(sop_class, (ts,)) for sop_class, ts in pairs if (ts,) != shared]
    return [ProposedContext(2 * index + 1, sop_class, syntaxes)
            for index, (sop_class, syntaxes) in enumerate(wanted[:MAX_CONTEXTS])]


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(body)) + body


def associate_rq(calling_aet: str, called_aet: str, contexts: Sequence[ProposedContext],
                 max_pdu: int) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) proposing ``contexts``, with pynetdicom's
    implementation UID and version (the names pyqrscp's accepted associations also use)."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode())]
    for cx in contexts:
        sub = _item(0x30, cx.abstract_syntax.encode()) + b"".join(
            _item(0x40, ts.encode()) for ts in cx.transfer_syntaxes)
        items.append(_item(0x20, struct.pack(">B3x", cx.context_id) + sub))
    items.append(_item(0x50, _item(0x51, struct.pack(">I", max_pdu))
                       + _item(0x52, str(PYNETDICOM_IMPLEMENTATION_UID).encode())
                       + _item(0x55, str(PYNETDICOM_IMPLEMENTATION_VERSION).encode())))
    body = struct.pack(">H2x16s16s32x", 1, called_aet.encode("ascii").ljust(16),
                       calling_aet.encode("ascii").ljust(16)) + b"".join(items)
    return struct.pack(">BxI", ASSOCIATE_RQ, len(body)) + body


def parse_associate_ac(body: bytes, proposed: Sequence[ProposedContext]
                       ) -> tuple[dict[int, AcceptedContext], int]:
    """Accepted contexts by ID, and the peer's maximum PDU length (0: no limit)."""
    by_id = {cx.context_id: cx for cx in proposed}
    accepted: dict[int, AcceptedContext] = {}
    max_pdu = 0
    for item_type, value in variable_items(body[68:]):
        if item_type == 0x21 and len(value) >= 4 and value[2] == 0 and value[0] in by_id:
            syntaxes = [v for t, v in variable_items(value[4:]) if t == 0x40]
            if syntaxes:
                ts = syntaxes[0].decode("ascii").rstrip("\x00 ")
                accepted[value[0]] = AcceptedContext(value[0], by_id[value[0]].abstract_syntax, ts)
        elif item_type == 0x50:
            for sub_type, sub_value in variable_items(value):
                if sub_type == 0x51 and len(sub_value) == 4:
                    max_pdu = struct.unpack(">I", sub_value)[0]
    return accepted, max_pdu
