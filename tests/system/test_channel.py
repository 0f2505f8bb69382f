"""The held channel (``channel.py``): after the first C-STORE of a stream pyqrscp reads the
association's socket itself and pushes back whatever it does not serve.  These tests drive
pyqrscp served in-process on port 0 with pynetdicom and with hand-made PDUs (pyqrscp's own SCU,
whose socket we write to directly) at the seams: other services between stores, two messages in
one PDU, an abort or a malformed PDU inside a held message, an oversized PDU."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import (
    have_dcmtk,
    index_db,
    make_ct,
    pyqrscp_in_process,
    run_tool,
    stored_files,
    write_config,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from pyqrscp.dimse.acse import ProposedContext
from pyqrscp.dimse.commands import store_request
from pyqrscp.dimse.pdus import (
    ABORT,
    P_DATA_TF,
    RELEASE_RQ,
    message_buffers,
    p_data_stream,
    pdu_header,
)
from pyqrscp.link.sender import StoreAssociation
from pyqrscp.services.retrieve import stored_dataset

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")

STUDY = "1.2.826.0.1.3680043.9.7781.1"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str]]]:
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'area'} RW (10, 10gb) ANY"])
    with pyqrscp_in_process(config) as running:
        yield running.port, tmp_path / "area", running.log


def instances(tmp_path: Path, count: int, rows: int = 64) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return [make_ct(folder, study_uid=STUDY, series_uid=f"{STUDY}.1",
                    sop_uid=f"{STUDY}.1.{len(list(folder.iterdir())) + 1}", rows=rows)
            for _ in range(count)]


def dataset_bytes(path: Path) -> bytes:
    """A Part-10 file's dataset, as sent on the wire and as stored."""
    return bytes(stored_dataset(path)[1])


def stored_uids(area: Path) -> set[str]:
    with index_db(area) as db:
        return {row[0] for row in db.execute("SELECT sop_instance_uid FROM instance")}


def stored_file(area: Path, uid: str) -> Path:
    with index_db(area) as db:
        row = db.execute("SELECT file_name FROM instance WHERE sop_instance_uid=?",
                         (uid,)).fetchone()
    return area / str(row[0])


@contextmanager
def own_scu(port: int) -> Iterator[StoreAssociation]:
    contexts = [ProposedContext(1, CTImageStorage, (ExplicitVRLittleEndian,)),
                ProposedContext(3, Verification, (ImplicitVRLittleEndian,))]
    assoc = StoreAssociation.open("127.0.0.1", port, "OWNSCU", "ARCHIVE", contexts,
                                  dimse_timeout=30)
    try:
        yield assoc
    finally:
        assoc.close()


def message_parts(path: Path, message_id: int, max_pdv: int = 4096) -> list[bytes]:
    """The P-DATA-TF PDUs (header and fragment pieces) of one C-STORE of ``path``."""
    ds = dcmread(path)
    command = store_request(CTImageStorage, str(ds.SOPInstanceUID), message_id)
    return [bytes(piece) for batch in message_buffers(1, command, dataset_bytes(path),
                                                      max_pdv + 6)
            for piece in batch]


def store_first(assoc: StoreAssociation, path: Path) -> None:
    """One normal C-STORE: pynetdicom hands it to pyqrscp, which then holds the socket."""
    context = assoc.accepted[1]
    ds = dcmread(path)
    response = assoc.send_c_store(context, str(ds.SOPInstanceUID), dataset_bytes(path), 1)
    assert response.status == 0x0000


def server_closes(sock: socket.socket, timeout: float = 20) -> bytes:
    """Read until the server closes the connection; what it sent last (an A-ABORT, say)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return received


def test_other_services_between_stores_keep_working(server: tuple[int, Path, list[str]],
                                                    tmp_path: Path) -> None:
    port, area, _log = server
    files = instances(tmp_path, 6)
    ae = AE(ae_title="MIXED")
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    statuses = [assoc.send_c_store(path).Status for path in files[:3]]
    statuses.append(assoc.send_c_echo().Status)
    statuses += [assoc.send_c_store(path).Status for path in files[3:5]]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    found = [(status.Status, identifier) for status, identifier in
             assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)]
    statuses.append(assoc.send_c_store(files[5]).Status)
    assoc.release()
    assert statuses == [0x0000] * 7
    assert [status for status, _ in found] == [0xFF00, 0x0000]
    assert found[0][1] is not None and found[0][1].StudyInstanceUID == STUDY
    assert assoc.is_released
    for path in files:
        uid = str(dcmread(path).SOPInstanceUID)
        assert dataset_bytes(stored_file(area, uid)) == dataset_bytes(path)


@pytest.mark.pynetdicom_internals(
    reason=("pynetdicom 3.0 aborts when one P-DATA-TF ends one message and begins the next; the "
            "held channel reads them apart"))
def test_two_messages_in_one_pdu_are_both_served(server: tuple[int, Path, list[str]],
                                                 tmp_path: Path) -> None:
    port, area, _log = server
    first, second, third = instances(tmp_path, 3)
    with own_scu(port) as assoc:
        store_first(assoc, first)
        two = message_parts(second, 2)
        three = message_parts(third, 3)
        # the last PDV of message 2 and the command PDV of message 3 travel in one PDU
        last_of_two = two[-2][6:] + two[-1]
        command_of_three = three[0][6:] + three[1]
        shared = last_of_two + command_of_three
        assoc.sock.sendall(b"".join(two[:-2]) + pdu_header(P_DATA_TF, len(shared)) + shared
                           + b"".join(three[2:]))
        responses = [assoc._read_command(), assoc._read_command()]
        assoc.release()
    assert [struct.unpack("<H", r[0x0120])[0] for r in responses] == [2, 3]
    assert [struct.unpack("<H", r[0x0900])[0] for r in responses] == [0x0000, 0x0000]
    for path in (first, second, third):
        uid = str(dcmread(path).SOPInstanceUID)
        assert dataset_bytes(stored_file(area, uid)) == dataset_bytes(path)


def test_an_abort_inside_a_held_message_keeps_nothing_of_it(
        server: tuple[int, Path, list[str]], tmp_path: Path) -> None:
    port, area, log = server
    first, cut = instances(tmp_path, 2, rows=128)
    with own_scu(port) as assoc:
        store_first(assoc, first)
        parts = message_parts(cut, 2)
        assoc.sock.sendall(b"".join(parts[:len(parts) // 2])
                           + struct.pack(">BxI2xBB", ABORT, 4, 0, 0))
        server_closes(assoc.sock)
    assert run_tool("echoscu", "-aec", "ARCHIVE", "127.0.0.1", str(port)).returncode == 0
    assert stored_uids(area) == {str(dcmread(first).SOPInstanceUID)}
    assert stored_files(area) == {
        stored_file(area, str(dcmread(first).SOPInstanceUID)).relative_to(area).as_posix()}
    assert any("Association Aborted" in line for line in log)


@pytest.mark.pynetdicom_internals(
    reason="the PDU length limit is the channel's socket hook")
def test_an_oversized_pdu_while_held_closes_only_that_connection(
        server: tuple[int, Path, list[str]], tmp_path: Path) -> None:
    port, area, _log = server
    (first,) = instances(tmp_path, 1)
    with own_scu(port) as assoc:
        store_first(assoc, first)
        assoc.sock.sendall(pdu_header(P_DATA_TF, 1 << 30) + b"\x00" * 64)
        server_closes(assoc.sock)
    assert run_tool("echoscu", "-aec", "ARCHIVE", "127.0.0.1", str(port)).returncode == 0
    assert stored_uids(area) == {str(dcmread(first).SOPInstanceUID)}


def test_a_malformed_pdv_while_held_is_left_to_pynetdicom(
        server: tuple[int, Path, list[str]], tmp_path: Path) -> None:
    port, area, _log = server
    first, second = instances(tmp_path, 2)
    with own_scu(port) as assoc:
        store_first(assoc, first)
        body = struct.pack(">IBB", 1, 1, 0x03)  # a PDV length below its own header
        assoc.sock.sendall(pdu_header(P_DATA_TF, len(body)) + body)
        answer = server_closes(assoc.sock)
    assert answer[:1] == bytes([ABORT])  # pynetdicom aborts on the undecodable PDU
    assert run_tool("echoscu", "-aec", "ARCHIVE", "127.0.0.1", str(port)).returncode == 0
    result = run_tool("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), str(second))
    assert result.returncode == 0, result.stderr
    assert stored_uids(area) == {str(dcmread(p).SOPInstanceUID) for p in (first, second)}


def test_a_malformed_command_after_a_held_store_neither_hangs_nor_kills_the_thread(
        server: tuple[int, Path, list[str]], tmp_path: Path) -> None:
    """A C-ECHO-RQ whose CommandDataSetType is four bytes long: pushed back to pynetdicom,
    which deals with it; the association still answers its release."""
    port, area, log = server
    first, second = instances(tmp_path, 2)
    with own_scu(port) as assoc:
        store_first(assoc, first)
        command = b"".join([
            _element(0x0002, b"1.2.840.10008.1.1\x00"), _element(0x0100, struct.pack("<H", 0x30)),
            _element(0x0110, struct.pack("<H", 2)), _element(0x0800, struct.pack("<I", 0x0101))])
        command = _element(0x0000, struct.pack("<I", len(command))) + command
        assoc.sock.sendall(b"".join(p_data_stream(3, command, True, 4000)))
        assoc.sock.sendall(struct.pack(">BxI4x", RELEASE_RQ, 4))
        answer = server_closes(assoc.sock)
    assert answer, "the server answered nothing: the association thread is gone"
    assert not any("Exception in thread" in line or "Traceback" in line for line in log)
    result = run_tool("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(port), str(second))
    assert result.returncode == 0, result.stderr
    assert stored_uids(area) == {str(dcmread(p).SOPInstanceUID) for p in (first, second)}


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value
