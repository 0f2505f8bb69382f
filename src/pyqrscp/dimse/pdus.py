"""PDUs on a socket pyqrscp reads and writes itself (PS3.8 9.3): whole-PDU reads, P-DATA-TF
framing, and DIMSE messages assembled from presentation data values (PDVs).

Used by the C-STORE SCU of C-MOVE sub-associations (``sender.py``) and by a service thread
holding an accepted association's socket (``channel.py``).  Datasets travel as the bytes given.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence
from typing import Protocol

from pynetdicom.pdu_primitives import P_DATA

from pyqrscp.dimse.commands import COMMAND_DATA_SET_TYPE, NO_DATASET, command_us, parse_command
from pyqrscp.errors import PeerUnavailable

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
PDU_TYPES = frozenset({ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, P_DATA_TF, RELEASE_RQ,
                       RELEASE_RP, ABORT})
UNLIMITED_PDU = 1 << 20
"""What pyqrscp sends per PDU to a peer that announces 0 (no limit)."""
_PDU_HEADER = struct.Struct(">BxI")
_P_DATA_HEADER = struct.Struct(">BxIIBB")
BATCH_BYTES = 1 << 20
"""About how many bytes of PDUs are framed at a time."""
_STRIDED_BELOW = 256
_PDV_HEADER = struct.Struct(">IBB")
_PDV_LENGTH = struct.Struct(">I")
_COMMAND, _LAST = 0x01, 0x02
Buffer = bytes | memoryview


def read_exactly(sock: socket.socket, size: int, consumed: list[bytes] | None = None) -> bytes:
    """``size`` bytes; :class:`PeerUnavailable` when the connection closes first.  With
    ``consumed``, what was read is appended to it, also when the read fails half-way."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    try:
        while filled < size:
            received = sock.recv_into(view[filled:])
            if received == 0:
                raise PeerUnavailable("connection closed by peer")
            filled += received
    except BaseException:
        if consumed is not None:
            consumed.append(bytes(buffer[:filled]))
        raise
    data = bytes(buffer)
    if consumed is not None:
        consumed.append(data)
    return data


def read_pdu(sock: socket.socket, limit: int = 1 << 26) -> tuple[int, bytes]:
    """``(PDU type, body)`` of the next PDU; :class:`PeerUnavailable` for an abort, a closed
    connection or a PDU longer than ``limit``."""
    pdu_type, length = _PDU_HEADER.unpack(read_exactly(sock, 6))
    if length > limit:
        raise PeerUnavailable(f"peer announced a {length}-byte PDU")
    body = read_exactly(sock, length)
    if pdu_type == ABORT:
        raise PeerUnavailable("peer aborted the association")
    return pdu_type, body


def pdu_header(pdu_type: int, length: int) -> bytes:
    return _PDU_HEADER.pack(pdu_type, length)


def max_pdv(peer_max_pdu: int) -> int:
    """The longest fragment one PDV may carry to a peer announcing ``peer_max_pdu`` (0: no
    limit; PS3.8 D.1: the limit is on the PDU's variable field, PDV headers included)."""
    return (peer_max_pdu or UNLIMITED_PDU) - 6


def fragments(data: bytes, max_pdv: int) -> Iterator[tuple[bytes, bool]]:
    """``(fragment, is_last)`` pieces of one message part, each at most ``max_pdv`` bytes."""
    view = memoryview(data)
    size = max(max_pdv, 1)
    for start in range(0, max(len(view), 1), size):
        yield bytes(view[start:start + size]), start + size >= len(view)


def p_data_stream(context_id: int, data: Buffer, is_command: bool, max_pdv: int
                  ) -> Iterator[bytes]:
    """P-DATA-TF PDUs of one message part, one PDV each, the last one flagged, in batches of
    about :data:`BATCH_BYTES` (whatever the peer's maximum PDU length, the memory used is
    one batch: a peer announcing 7 bytes gets 13-byte PDUs, framed without an object each)."""
    view = memoryview(data)
    size = max(max_pdv, 1)
    kind = _COMMAND if is_command else 0x00
    per_batch = max(1, BATCH_BYTES // (size + 12)) * size
    start = 0
    while True:
        end = min(len(view), start + per_batch)
        yield _framed(context_id, view[start:end], kind, size, last=end == len(view))
        if end == len(view):
            return
        start = end


def _framed(context_id: int, data: memoryview, kind: int, size: int, last: bool) -> bytes:
    """PDUs of ``data``: fragments of ``size`` bytes (the final one shorter or flagged last).
    Small fragments are laid out with strided slice assignment, one per header byte and one per
    fragment byte, instead of one object per PDU."""
    count = max(1, -(-len(data) // size))
    regular = count - 1
    final = data[regular * size:]
    final_header = kind | (_LAST if last else 0x00)
    tail = _P_DATA_HEADER.pack(P_DATA_TF, len(final) + 6, len(final) + 2, context_id,
                               final_header) + final
    if regular == 0:
        return tail
    header = _P_DATA_HEADER.pack(P_DATA_TF, size + 6, size + 2, context_id, kind)
    if size >= _STRIDED_BELOW:
        return b"".join([b"".join(header + data[n * size:(n + 1) * size]
                                  for n in range(regular)), tail])
    body = bytes(data[:regular * size])
    frame = len(header) + size
    out = bytearray(regular * frame)
    for offset, byte in enumerate(header):
        out[offset::frame] = bytes([byte]) * regular
    for offset in range(size):
        out[len(header) + offset::frame] = body[offset::size]
    out += tail
    return bytes(out)


def message_stream(context_id: int, command: bytes, dataset: Buffer | None,
                   peer_max_pdu: int) -> Iterator[bytes]:
    """One DIMSE message as P-DATA-TF PDUs for a peer whose maximum PDU is ``peer_max_pdu``
    (0: no limit), in batches to send one after the other (each framed as it is reached: the
    dataset is never copied whole)."""
    limit = max_pdv(peer_max_pdu)
    yield from p_data_stream(context_id, command, True, limit)
    if dataset is not None:
        yield from p_data_stream(context_id, dataset, False, limit)


GATHER_FROM = 4096
"""Fragments at least this long are sent as views of the data (:func:`message_buffers`);
shorter ones (a peer announcing a tiny maximum PDU length) are framed into one copy."""
GATHER_BUFFERS = 512
"""Most buffers in one batch of :func:`message_buffers` (the system's limit per ``sendmsg``
is 1,024 on Linux)."""


def message_buffers(context_id: int, command: bytes, dataset: Buffer | None,
                    peer_max_pdu: int, gather: bool = True) -> Iterator[list[Buffer]]:
    """One DIMSE message as batches of buffers, each batch for one write, as every sender of
    pyqrscp frames it.  ``gather`` (the socket writes several buffers in one call, see
    ``link/writes.py``): :func:`message_stream` without copying the data, each PDU's 12-byte
    header followed by a view of its fragment, command and dataset in the same batch (one
    gathered write sends a small message whole).  Without ``gather``, and for fragments
    shorter than :data:`GATHER_FROM`, the batches of :func:`message_stream`, one buffer
    each."""
    limit = max_pdv(peer_max_pdu)
    if not gather or limit < GATHER_FROM:
        for framed in message_stream(context_id, command, dataset, peer_max_pdu):
            yield [framed]
        return
    batch: list[Buffer] = []
    size = 0
    parts = [(memoryview(command), _COMMAND)]
    if dataset is not None:
        parts.append((memoryview(dataset), 0x00))
    for view, kind in parts:
        for start in range(0, max(len(view), 1), limit):
            fragment = view[start:start + limit]
            flags = kind | (_LAST if start + limit >= len(view) else 0x00)
            batch += [_P_DATA_HEADER.pack(P_DATA_TF, len(fragment) + 6, len(fragment) + 2,
                                          context_id, flags), fragment]
            size += len(fragment)
            if len(batch) >= GATHER_BUFFERS or size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def message(context_id: int, command: bytes, dataset: bytes | None, peer_max_pdu: int
            ) -> bytes:
    """:func:`message_stream` in one piece (for short messages)."""
    return b"".join(message_stream(context_id, command, dataset, peer_max_pdu))


def p_data_primitives(context_id: int, command: bytes, dataset: bytes | None,
                      peer_max_pdu: int) -> Iterator[P_DATA]:
    """The same message as :func:`message`, as P-DATA primitives for pynetdicom's DUL
    (``dul.send_pdu``), one PDV per PDU."""
    limit = max_pdv(peer_max_pdu)
    parts = [(command, _COMMAND)] + ([(dataset, 0x00)] if dataset is not None else [])
    for data, kind in parts:
        for fragment, last in fragments(data, limit):
            primitive = P_DATA()
            primitive.presentation_data_value_list.append(
                (context_id, bytes([kind | (_LAST if last else 0x00)]) + fragment))
            yield primitive


def message_primitive(context_id: int, command: bytes, dataset: bytes | None) -> P_DATA:
    """A whole DIMSE message as one P-DATA primitive: the command and the dataset each one
    last-fragment PDV, for a sender that frames one PDV per PDU (:func:`one_pdv_per_pdu`).
    Only for a message that fits the peer's maximum PDU."""
    return messages_primitive(context_id, [(command, dataset)])


def messages_primitive(context_id: int, messages: Sequence[tuple[bytes, bytes | None]]
                       ) -> P_DATA:
    """Several whole DIMSE messages, in order, as one P-DATA primitive (as
    :func:`message_primitive`; each command and dataset must fit one PDV)."""
    primitive = P_DATA()
    values = primitive.presentation_data_value_list
    for command, dataset in messages:
        values.append((context_id, bytes([_COMMAND | _LAST]) + command))
        if dataset is not None:
            values.append((context_id, bytes([_LAST]) + dataset))
    return primitive


def one_pdv_per_pdu(pdu: bytes) -> bytes:
    """A P-DATA-TF carrying several PDVs as one P-DATA-TF per PDV, as DCMTK and pynetdicom frame
    messages (PS3.8 allows several, but GDCM's ``gdcmscu`` then loses a C-FIND response); any
    other PDU unchanged.  Lets a sender queue one primitive for a command and its dataset."""
    if len(pdu) < 10 or pdu[0] != P_DATA_TF or 10 + _PDV_LENGTH.unpack_from(pdu, 6)[0] >= len(pdu):
        return pdu
    parts: list[bytes] = []
    offset = 6
    while offset + 4 <= len(pdu):
        end = offset + 4 + _PDV_LENGTH.unpack_from(pdu, offset)[0]
        parts += [pdu_header(P_DATA_TF, end - offset), pdu[offset:end]]
        offset = end
    return b"".join(parts)


def pdvs(body: bytes) -> Iterator[tuple[int, int, bytes, int]]:
    """``(context ID, message control header, fragment, end offset)`` of each PDV of a
    P-DATA-TF body; a truncated PDV ends the walk."""
    offset = 0
    while offset + 6 <= len(body):
        length, context_id, header = _PDV_HEADER.unpack_from(body, offset)
        end = offset + 4 + length
        if length < 2 or end > len(body):
            raise PeerUnavailable("malformed presentation data value")
        yield context_id, header, body[offset + 6:end], end
        offset = end


def p_data_pdu(body: bytes) -> bytes:
    """A P-DATA-TF PDU around PDV bytes (what is left of a PDU after a message ended)."""
    return pdu_header(P_DATA_TF, len(body)) + body


class DatasetSink(Protocol):
    """Where a message's dataset fragments go as they arrive (``spool.ReceivedDataset``)."""

    @property
    def overrun(self) -> bool:
        """Has the peer sent so much past the limit that it must be aborted?"""

    def write(self, fragment: bytes, /) -> int:
        ...

    def discard(self) -> None:
        """Drop whatever was kept."""


class MessageAssembler:
    """Fragments in, one DIMSE message out: the command as soon as it is whole (so a caller can
    decide before the dataset arrives), then the dataset (into ``sink`` when one is set before
    the dataset begins, else in memory)."""

    def __init__(self) -> None:
        self.context_id: int | None = None
        self.command: dict[int, bytes] | None = None
        self._command_bytes = bytearray()
        self._dataset: list[bytes] = []
        self.sink: DatasetSink | None = None
        self.complete = False
        self.has_dataset = False
        """CommandDataSetType (0000,0800) other than 0x0101 (False until the command is whole)."""

    def add(self, context_id: int, header: int, fragment: bytes) -> None:
        """One PDV; :class:`PeerUnavailable` for one that breaks PS3.8 Annex E order."""
        if self.context_id is None:
            self.context_id = context_id
        elif context_id != self.context_id:
            raise PeerUnavailable("presentation context changed within a message")
        if header & _COMMAND:
            if self.command is not None:
                raise PeerUnavailable("command fragment after the command ended")
            self._command_bytes += fragment
            if header & _LAST:
                self.command = parse_command(bytes(self._command_bytes))
                self.has_dataset = command_us(self.command, COMMAND_DATA_SET_TYPE,
                                              NO_DATASET) != NO_DATASET
                self.complete = not self.has_dataset
        else:
            if self.command is None or not self.has_dataset:
                raise PeerUnavailable("dataset fragment without a command announcing it")
            if self.sink is not None:
                self.sink.write(fragment)
            else:
                self._dataset.append(fragment)
            self.complete = bool(header & _LAST)

    @property
    def dataset(self) -> bytes | DatasetSink | None:
        if not self.has_dataset:
            return None
        return self.sink if self.sink is not None else b"".join(self._dataset)


_ASSOCIATE_RQ_ITEMS = 74
"""Where an A-ASSOCIATE-RQ PDU's variable items begin (PS3.8 Table 9-11)."""
USER_INFORMATION, USER_IDENTITY = 0x50, 0x58
_ITEM_HEADER = struct.Struct(">BxH")
_AE_TITLE_FIELDS = ((10, 26), (26, 42))
"""Called and Calling AE Title of an A-ASSOCIATE-RQ PDU, by offset from its first byte."""


def ae_titles(pdu: bytes) -> tuple[bytes, bytes]:
    """``(called, calling)`` AE Title fields of an A-ASSOCIATE-RQ PDU exactly as received."""
    return pdu[10:26], pdu[26:42]


def pad_ae_titles(pdu: bytes) -> bytes:
    """An A-ASSOCIATE-RQ PDU whose AE titles end at their first NUL byte, the rest spaces.

    DCMTK reads each 16-byte field as a C string, so a NUL ends the title; some stacks
    (pynetdicom2) pad with NULs instead of the spaces PS3.8 prescribes.  Other PDUs and
    titles without a NUL are returned unchanged.
    """
    if len(pdu) < 42 or pdu[0] != ASSOCIATE_RQ or 0 not in pdu[10:42]:
        return pdu
    fixed = bytearray(pdu)
    for start, end in _AE_TITLE_FIELDS:
        title = fixed[start:end].split(b"\x00", 1)[0]
        fixed[start:end] = title.ljust(end - start)
    return bytes(fixed)


def variable_items(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(item type, value)`` of each item or sub-item laid end to end in ``data`` (PS3.8
    9.3.2: a type byte, a reserved byte, a 16-bit length); a truncated last item is cut short."""
    offset = 0
    while offset + 4 <= len(data):
        item_type, length = _ITEM_HEADER.unpack_from(data, offset)
        yield item_type, data[offset + 4:offset + 4 + length]
        offset += 4 + length


def carries_user_identity(pdu: bytes) -> bool:
    """Does an A-ASSOCIATE-RQ PDU hold a User Identity sub-item (PS3.7 D.3.3.7: a user name,
    a password, a Kerberos ticket, a SAML assertion or a JWT) in its user information item?
    Read from the bytes, without decoding the rest of the request."""
    return any(sub_type == USER_IDENTITY
               for item_type, value in variable_items(pdu[_ASSOCIATE_RQ_ITEMS:])
               if item_type == USER_INFORMATION
               for sub_type, _ in variable_items(value))
