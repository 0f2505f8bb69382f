"""PDU framing and DIMSE message assembly (``pdus.py``), shared by the C-MOVE sender and the
held channel."""

from __future__ import annotations

import struct
import tracemalloc

import pytest

from pyqrscp.dimse import pdus
from pyqrscp.dimse.commands import parse_command, store_request
from pyqrscp.dimse.pdus import (
    BATCH_BYTES,
    P_DATA_TF,
    MessageAssembler,
    message,
    message_stream,
    p_data_pdu,
    pdvs,
)
from pyqrscp.errors import PeerUnavailable


def split_pdus(stream: bytes) -> list[bytes]:
    """P-DATA-TF bodies of a byte stream of PDUs."""
    bodies = []
    offset = 0
    while offset < len(stream):
        pdu_type, length = struct.unpack_from(">BxI", stream, offset)
        assert pdu_type == P_DATA_TF
        bodies.append(stream[offset + 6:offset + 6 + length])
        offset += 6 + length
    return bodies


def assemble(stream: bytes) -> MessageAssembler:
    assembler = MessageAssembler()
    for body in split_pdus(stream):
        for context_id, header, fragment, _end in pdvs(body):
            assembler.add(context_id, header, fragment)
    return assembler


@pytest.mark.parametrize("peer_max_pdu", [0, 16384, 4096, 130])
def test_a_message_round_trips_at_any_pdu_size(peer_max_pdu: int) -> None:
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    dataset = bytes(range(256)) * 100
    stream = message(5, command, dataset, peer_max_pdu)
    if peer_max_pdu:
        # PS3.8 D.1: the maximum length limits the PDU's variable field (its PDV items)
        assert max(len(body) for body in split_pdus(stream)) == peer_max_pdu
    assembled = assemble(stream)
    assert assembled.complete and assembled.context_id == 5
    assert assembled.command == parse_command(command)
    assert assembled.dataset == dataset


def test_a_command_without_a_dataset_completes_with_the_command() -> None:
    command = bytearray(store_request("1.2.840.10008.1.1", "1.2.3", 1))
    offset = command.index(struct.pack("<HH", 0x0000, 0x0800))
    command[offset + 8:offset + 10] = struct.pack("<H", 0x0101)
    assembled = assemble(message(1, bytes(command), None, 0))
    assert assembled.complete and assembled.dataset is None


def test_the_command_is_whole_before_the_dataset_arrives() -> None:
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    bodies = split_pdus(message(1, command, b"x" * 1000, 300))
    assembler = MessageAssembler()
    for context_id, header, fragment, _end in pdvs(bodies[0]):
        assembler.add(context_id, header, fragment)
    assert assembler.command is not None and not assembler.complete


@pytest.mark.parametrize("bad", ["dataset first", "context changes", "command after command"])
def test_out_of_order_fragments_are_refused(bad: str) -> None:
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    assembler = MessageAssembler()
    if bad == "dataset first":
        with pytest.raises(PeerUnavailable):
            assembler.add(1, 0x00, b"data")
        return
    assembler.add(1, 0x03, command)
    with pytest.raises(PeerUnavailable):
        if bad == "context changes":
            assembler.add(3, 0x00, b"data")
        else:
            assembler.add(1, 0x03, command)


def test_pdvs_report_where_each_ends_and_refuse_bad_lengths() -> None:
    body = struct.pack(">IBB", 4, 1, 0x02) + b"ab" + struct.pack(">IBB", 3, 3, 0x01) + b"c"
    assert list(pdvs(body)) == [(1, 0x02, b"ab", 8), (3, 0x01, b"c", 15)]
    assert p_data_pdu(body[8:]) == struct.pack(">BxI", P_DATA_TF, 7) + body[8:]
    with pytest.raises(PeerUnavailable):
        list(pdvs(struct.pack(">IBB", 1, 1, 0x02)))
    with pytest.raises(PeerUnavailable):
        list(pdvs(struct.pack(">IBB", 40, 1, 0x02) + b"short"))


def test_ae_titles_end_at_their_first_nul_and_are_padded_with_spaces() -> None:
    header = b"\x01\x00\x00\x00\x00\x44\x00\x01\x00\x00"
    rest = b"\x10\x00\x00\x15" + b"1.2.840.10008.3.1.1.1"
    pdu = header + b"ARCHIVE".ljust(16, b"\x00") + b"AB\x00CD\x00" + b"\x00" * 10 + rest
    padded = pdus.pad_ae_titles(pdu)
    assert pdus.ae_titles(padded) == (b"ARCHIVE".ljust(16), b"AB".ljust(16))
    assert padded[:10] == header and padded[42:] == rest
    assert pdus.pad_ae_titles(padded) == padded


@pytest.mark.parametrize("peer_max_pdu", [0, 16384, 130])
def test_messages_are_framed_as_dcmtk_and_pynetdicom_frame_them(peer_max_pdu: int) -> None:
    """One PDV per P-DATA-TF, the command set's PDUs first, then the dataset's: what every
    path that frames a message itself sends (C-FIND/C-MOVE/C-GET/C-STORE responses, C-STORE
    requests of sub-operations); some peers (gdcmscu) read nothing else correctly."""
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    dataset = bytes(range(256)) * 20
    from_stream = [list(pdvs(body)) for body in split_pdus(message(3, command, dataset,
                                                                     peer_max_pdu))]
    from_primitives = [[(context_id, data[0], data[1:])
                        for context_id, data in primitive.presentation_data_value_list]
                       for primitive in pdus.p_data_primitives(3, command, dataset,
                                                               peer_max_pdu)]
    for framed in ([[pdv[:3] for pdv in pdu] for pdu in from_stream], from_primitives):
        assert all(len(pdu) == 1 for pdu in framed)
        headers = [pdu[0][1] for pdu in framed]
        commands = [header for header in headers if header & 0x01]
        assert headers[:len(commands)] == commands  # every command PDV before the dataset
        assert commands[-1] == 0x03 and headers[-1] == 0x02
        assert [header & 0x02 for header in headers].count(0x02) == 2  # one last per part


def test_a_p_data_tf_of_several_pdvs_is_sent_as_one_pdu_per_pdv() -> None:
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    dataset = b"\x08\x00\x18\x00\x04\x00\x00\x001.2 "
    items = [struct.pack(">IB", len(command) + 2, 1) + b"\x03" + command,
             struct.pack(">IB", len(dataset) + 2, 1) + b"\x02" + dataset]
    packed = p_data_pdu(b"".join(items))
    assert [list(pdvs(body)) for body in split_pdus(pdus.one_pdv_per_pdu(packed))] == [
        [(1, 0x03, command, len(items[0]))], [(1, 0x02, dataset, len(items[1]))]]
    single = p_data_pdu(items[0])
    assert pdus.one_pdv_per_pdu(single) == single
    release_rq = struct.pack(">BxI4x", pdus.RELEASE_RQ, 4)
    assert pdus.one_pdv_per_pdu(release_rq) == release_rq


def test_a_message_primitive_sent_one_pdv_per_pdu_is_framed_as_the_stream() -> None:
    """A short message queued as one primitive leaves as the same PDUs as the framed stream."""
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    dataset = b"\x08\x00\x18\x00\x04\x00\x00\x001.2 "
    primitive = pdus.message_primitive(5, command, dataset)
    packed = p_data_pdu(b"".join(struct.pack(">I", len(data) + 1) + bytes([context_id]) + data
                                 for context_id, data in primitive.presentation_data_value_list))
    assert pdus.one_pdv_per_pdu(packed) == message(5, command, dataset, 0)
    assert len(pdus.message_primitive(5, command, None).presentation_data_value_list) == 1


@pytest.mark.parametrize("peer_max_pdu", [7, 8, 100, 300])
def test_framing_for_a_tiny_peer_maximum_costs_a_batch_of_memory(peer_max_pdu: int) -> None:
    """A peer announcing 7 bytes gets one data byte per PDU; framing 2 MiB for it must not cost
    an object per PDU (it cost 134 MiB for 512 KiB), only a bounded batch at a time."""
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    dataset = bytes(range(256)) * 8192
    tracemalloc.start()
    try:
        sent = 0
        for batch in message_stream(1, command, dataset, peer_max_pdu):
            sent += len(batch)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent > len(dataset)
    assert peak < 8 * BATCH_BYTES, f"{peak} bytes to frame {len(dataset)}"


def pdu_by_pdu(context_id: int, data: bytes, is_command: bool, max_pdv: int) -> list[bytes]:
    """P-DATA-TF PDUs of one message part framed one at a time: the reference framing."""
    pieces: list[bytes] = []
    for chunk, last in pdus.fragments(data, max_pdv):
        header = (0x01 if is_command else 0x00) | (0x02 if last else 0x00)
        pieces += [struct.pack(">BxIIBB", P_DATA_TF, len(chunk) + 6, len(chunk) + 2,
                               context_id, header), chunk]
    return pieces


def test_streamed_framing_equals_pdu_by_pdu_framing() -> None:
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    for peer_max_pdu in (7, 9, 261, 262, 263, 4096):
        for size in (0, 1, 255, 256, 257, 5000):
            dataset = bytes(range(256)) * 40
            dataset = dataset[:size]
            expected = b"".join(pdu_by_pdu(1, command, True, peer_max_pdu - 6)
                                + pdu_by_pdu(1, dataset, False, peer_max_pdu - 6))
            assert b"".join(message_stream(1, command, dataset, peer_max_pdu)) == expected
            assembled = assemble(expected)
            assert assembled.dataset == dataset


@pytest.mark.parametrize("peer_max_pdu", [0, 7, 4101, 4102, 16384, 65536])
def test_gathered_buffers_are_the_framed_message_without_copying_the_dataset(
        peer_max_pdu: int) -> None:
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    for size in (0, 1, 4095, 4096, 4097, 16378, 200_000):
        dataset = (bytes(range(256)) * (size // 256 + 1))[:size]
        view = memoryview(dataset)[:]
        batches = list(pdus.message_buffers(1, command, view, peer_max_pdu))
        flat = [buffer for batch in batches for buffer in batch]
        assert b"".join(flat) == pdus.message(1, command, dataset, peer_max_pdu)
        assert all(len(batch) <= pdus.GATHER_BUFFERS for batch in batches)
        if pdus.max_pdv(peer_max_pdu) >= pdus.GATHER_FROM and size:
            assert all(buffer.obj is dataset for buffer in flat[3:] if len(buffer) > 12
                       and isinstance(buffer, memoryview))
            assert sum(len(b) for b in flat if isinstance(b, memoryview)) == size + len(command)


def test_a_dataset_of_many_pdus_comes_in_batches_of_at_most_512_buffers() -> None:
    dataset = bytes(300 * 4096)
    batches = list(pdus.message_buffers(3, b"\0" * 8, dataset, 4096 + 6))
    assert len(batches) > 1 and all(len(batch) <= pdus.GATHER_BUFFERS for batch in batches)
    assert b"".join(b for batch in batches for b in batch) == pdus.message(3, b"\0" * 8,
                                                                           dataset, 4102)


def _item(item_type: int, body: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(body)) + body


@pytest.mark.parametrize(("user_items", "expected"), [
    (_item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3"), False),
    (_item(0x51, struct.pack(">I", 16384)) + _item(0x58, b"\x02\x00\x00\x05alice\x00\x02pw"),
     True),
])
def test_a_user_identity_is_found_among_the_user_information_sub_items(
        user_items: bytes, expected: bool) -> None:
    body = (struct.pack(">HH", 1, 0) + b"ARCHIVE".ljust(16) + b"SCU".ljust(16) + bytes(32)
            + _item(0x10, b"1.2.840.10008.3.1.1.1")
            + _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, b"1.2.840.10008.1.1"))
            + _item(0x50, user_items))
    pdu = struct.pack(">BxI", pdus.ASSOCIATE_RQ, len(body)) + body
    assert pdus.carries_user_identity(pdu) is expected
    assert not pdus.carries_user_identity(pdu.replace(b"\x58\x00", b"\x59\x00"))


@pytest.mark.parametrize("peer_max_pdu", [0, 130, 16384])
def test_without_gathering_each_batch_is_one_buffer_of_the_framed_stream(
        peer_max_pdu: int) -> None:
    """A socket that cannot gather (TLS) gets the framed copies, one write a batch."""
    command = store_request("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", 7)
    dataset = bytes(range(256)) * 5000
    batches = list(pdus.message_buffers(1, command, memoryview(dataset), peer_max_pdu,
                                        gather=False))
    assert [batch[0] for batch in batches if len(batch) == 1] == list(
        message_stream(1, command, dataset, peer_max_pdu))
