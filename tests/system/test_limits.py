"""One peer gets a bounded share: the size of what it sends is checked as the bytes arrive.

A C-STORE dataset is bounded by the per-study quota and ``--max-store-size`` (0xA700 when it
ends, an abort when it goes on), and never held in memory whole (a large one is spooled into
the storage area); identifiers and N-ACTION information are bounded by ``--max-request-size``.
Memory is the real process's peak RSS (VmHWM, reset through ``/proc/PID/clear_refs``).
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import RunningServer, index_db, poll_until, pyqrscp_process, wait_for_log, write_config
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE, build_role
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

INDEX = "pyqrscp-index.sqlite3"
MIB = 1 << 20
ENDLESS_CAP = 256 * MIB
"""What the endless peer sends at most (the server must end it well before)."""
MEMORY_BOUND_MIB = 32

MOVE_FIRST = pytest.mark.pynetdicom_internals(
    reason=("pynetdicom's C-MOVE opens the sub-association before any final status: a refused "
            "identifier to a destination that does not answer gets 0xA801"))


# -- the server --------------------------------------------------------------------------------

class Archive:
    """A pyqrscp process serving ``SMALL`` (1 MiB per study) and ``LARGE`` (1 GiB)."""

    def __init__(self, server: RunningServer, base: Path) -> None:
        self.server = server
        self.base = base

    @property
    def port(self) -> int:
        return self.server.port

    def reset_peak(self) -> None:
        Path(f"/proc/{self.server.process.pid}/clear_refs").write_text("5")

    def peak_growth_mib(self, before: float) -> float:
        return self.peak_mib() - before

    def peak_mib(self) -> float:
        status = Path(f"/proc/{self.server.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    def leftovers(self, area: str) -> list[str]:
        """Files in the area that no index row names (temp and spool files included)."""
        folder = self.base / area
        with index_db(folder) as db:
            known = {name for (name,) in db.execute("SELECT file_name FROM instance")}
        return sorted(name for name in os.listdir(folder)
                      if name.startswith(".pyqrscp-tmp-")
                      or (name.endswith(".dcm") and name not in known))

    def indexed(self, area: str, sop_uid: str) -> str | None:
        with index_db(self.base / area) as db:
            row = db.execute("SELECT file_name FROM instance WHERE sop_instance_uid = ?",
                             (sop_uid,)).fetchone()
        return None if row is None else str(row[0])


def start(base: Path, *extra: str) -> Iterator[Archive]:
    config = write_config(base, [f"SMALL {base / 'small'} RW (10, 1mb) ANY",
                                 f"LARGE {base / 'large'} RW (10, 1gb) ANY"])
    with pyqrscp_process(config, *extra) as server:
        yield Archive(server, base)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    yield from start(tmp_path_factory.mktemp("limits"))


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """Small configured maxima: 2,000,000-byte datasets, 100,000-byte requests."""
    yield from start(tmp_path_factory.mktemp("strict"), "--max-store-size", "2000000",
                     "--max-request-size", "100000")


def ct(pixel_bytes: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "LIMIT", "Limit^Peer", "CT"
    side = int((pixel_bytes // 2) ** 0.5)
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = os.urandom(side * side * 2)
    return ds


def client() -> AE:
    ae = AE(ae_title="PEER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def store(port: int, called: str, *datasets: Dataset) -> list[Dataset]:
    """C-STORE each dataset on one association (the first through pynetdicom, the following
    ones through the held channel); their response statuses."""
    assoc = client().associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()


def echo_works(port: int) -> bool:
    assoc = client().associate("127.0.0.1", port, ae_title="LARGE")
    try:
        return bool(assoc.is_established and assoc.send_c_echo().Status == 0)
    finally:
        assoc.release()


# -- a raw peer whose dataset never ends --------------------------------------------------------

def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _associate_rq(called: str) -> bytes:
    context = _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, CTImageStorage.encode())
                    + _item(0x40, ExplicitVRLittleEndian.encode()))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + called.encode().ljust(16) + b"ENDLESS".ljust(16)
            + bytes(32) + _item(0x10, b"1.2.840.10008.3.1.1.1") + context + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _store_rq(sop_uid: str, message_id: int) -> bytes:
    def element(number: int, value: bytes) -> bytes:
        return struct.pack("<HHI", 0, number, len(value)) + value

    def uid(text: str) -> bytes:
        return text.encode() + (b"\0" if len(text) % 2 else b"")

    body = b"".join([element(0x0002, uid(CTImageStorage)),
                     element(0x0100, struct.pack("<H", 0x0001)),
                     element(0x0110, struct.pack("<H", message_id)),
                     element(0x0700, struct.pack("<H", 0)),
                     element(0x0800, struct.pack("<H", 0)), element(0x1000, uid(sop_uid))])
    return element(0x0000, struct.pack("<I", len(body))) + body


def _pdv(data: bytes, header: int) -> bytes:
    return struct.pack(">BxIIBB", 4, len(data) + 6, len(data) + 2, 1, header) + data


def _pdu(sock: socket.socket) -> tuple[int, bytes]:
    """The next PDU; (0, b"") once the connection is closed or reset."""
    data = b""
    try:
        while len(data) < 6 or len(data) < 6 + struct.unpack(">I", data[2:6])[0]:
            chunk = sock.recv(1 << 16)
            if not chunk:
                return 0, b""
            data += chunk
    except ConnectionResetError:
        return 0, b""
    return data[0], data[6:]


def _status(body: bytes) -> int:
    at = body.index(struct.pack("<HHI", 0, 0x0900, 2))
    return int(struct.unpack_from("<H", body, at + 8)[0])


def send_endless(port: int, following: bool) -> tuple[int, int]:
    """(bytes of dataset sent, type of the PDU answered: 7 A-ABORT, 0 closed) of a C-STORE
    whose dataset never ends, into SMALL; first on its association or after a stored one."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(_associate_rq("SMALL"))
        assert _pdu(sock)[0] == 0x02
        if following:
            small = ct(4096)
            sock.sendall(_pdv(_store_rq(small.SOPInstanceUID, 1), 3)
                         + _pdv(encode(small, False, True) or b"", 2))
            kind, body = _pdu(sock)
            assert kind == 0x04 and _status(body) == 0
        sock.sendall(_pdv(_store_rq(generate_uid(), 2), 3))
        fragment, sent = _pdv(os.urandom(16384 - 6), 0), 0
        try:
            while sent < ENDLESS_CAP:
                sock.sendall(fragment)
                sent += len(fragment)
        except OSError:
            return sent, 0
        sock.settimeout(20)
        try:
            return sent, _pdu(sock)[0]
        except TimeoutError:
            return sent, -1


@pytest.mark.pynetdicom_internals(
    reason="bounding and spooling a dataset as it arrives is the DIMSE provider's hook")
@pytest.mark.parametrize("following", [False, True], ids=["first", "following"])
def test_endless_dataset_is_aborted_past_the_limit_with_bounded_memory(
        archive: Archive, following: bool) -> None:
    archive.reset_peak()
    before = archive.peak_mib()
    aborts = archive.server.log_text().count("Aborting the association")
    sent, answer = send_endless(archive.port, following)
    assert sent < ENDLESS_CAP or answer == 0x07, "the server let the dataset go on"
    assert archive.peak_growth_mib(before) < MEMORY_BOUND_MIB
    assert echo_works(archive.port)
    poll_until(lambda: archive.server.log_text().count("Aborting the association") > aborts,
               "the abort's log line")
    assert archive.server.log_text().count("Aborting the association") == aborts + 1
    assert archive.leftovers("small") == []


# -- finished datasets ---------------------------------------------------------------------------

@pytest.mark.pynetdicom_internals(
    reason="bounding and spooling a dataset as it arrives is the DIMSE provider's hook")
@pytest.mark.parametrize("following", [False, True], ids=["first", "following"])
def test_dataset_past_the_quota_gets_a700_as_it_arrives(archive: Archive,
                                                        following: bool) -> None:
    """48 MiB into a 1 MiB-per-study area: refused with the reason, never held whole."""
    datasets = [ct(4096)] * following + [ct(48 * MIB)]
    archive.reset_peak()
    before = archive.peak_mib()
    statuses = store(archive.port, "SMALL", *datasets)
    assert archive.peak_growth_mib(before) < MEMORY_BOUND_MIB
    assert statuses[-1].Status == 0xA700
    assert "per-study quota of 1048576 bytes" in statuses[-1].ErrorComment
    assert archive.indexed("small", datasets[-1].SOPInstanceUID) is None
    assert archive.leftovers("small") == []


@pytest.mark.pynetdicom_internals(
    reason="bounding and spooling a dataset as it arrives is the DIMSE provider's hook")
@pytest.mark.parametrize("following", [False, True], ids=["first", "following"])
def test_large_store_is_spooled_not_held_in_memory(archive: Archive, tmp_path: Path,
                                                   following: bool) -> None:
    datasets = [ct(4096)] * following + [ct(64 * MIB)]
    archive.reset_peak()
    before = archive.peak_mib()
    statuses = store(archive.port, "LARGE", *datasets)
    assert archive.peak_growth_mib(before) < MEMORY_BOUND_MIB
    assert [int(s.Status) for s in statuses] == [0] * len(datasets)
    stored = archive.indexed("large", datasets[-1].SOPInstanceUID)
    assert stored is not None
    assert dcmread(archive.base / "large" / stored).PixelData == datasets[-1].PixelData
    assert archive.leftovers("large") == []


@pytest.mark.pynetdicom_internals(
    reason="bounding and spooling a dataset as it arrives is the DIMSE provider's hook")
def test_large_store_that_pydicom_must_parse_stays_out_of_memory(archive: Archive) -> None:
    """A header the fast walk leaves to pydicom (here big endian) is parsed from the spool
    file itself, not from a copy of it in memory."""
    dataset = ct(64 * MIB)
    dataset.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ae = client()
    ae.add_requested_context(CTImageStorage, ExplicitVRBigEndian)
    archive.reset_peak()
    before = archive.peak_mib()
    assoc = ae.associate("127.0.0.1", archive.port, ae_title="LARGE")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    assert archive.peak_growth_mib(before) < MEMORY_BOUND_MIB
    assert int(status.Status) == 0
    assert archive.indexed("large", dataset.SOPInstanceUID) is not None


@pytest.mark.parametrize("following", [False, True], ids=["first", "following"])
def test_max_store_size_refuses_with_a700(strict: Archive, following: bool) -> None:
    datasets = [ct(4096)] * following + [ct(3 * MIB)]
    statuses = store(strict.port, "LARGE", *datasets)
    assert statuses[-1].Status == 0xA700
    assert "--max-store-size (2000000 bytes)" in statuses[-1].ErrorComment
    assert strict.indexed("large", datasets[-1].SOPInstanceUID) is None
    assert strict.leftovers("large") == []
    assert store(strict.port, "LARGE", ct(MIB))[0].Status == 0


# -- requests ------------------------------------------------------------------------------------

def long_identifier() -> Dataset:
    """An IMAGE-level identifier listing 3,000 SOP Instance UIDs (about 190 KB)."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.StudyInstanceUID = generate_uid()
    identifier.SeriesInstanceUID = generate_uid()
    identifier.SOPInstanceUID = [generate_uid() for _ in range(3000)]
    return identifier


def _statuses(responses: Any) -> list[Dataset]:
    return [status for status, _identifier in responses if status is not None]


@pytest.mark.parametrize("service", ["find", pytest.param("move", marks=MOVE_FIRST), "get"])
def test_identifier_past_max_request_size_gets_a900(strict: Archive, service: str) -> None:
    model = {"find": StudyRootQueryRetrieveInformationModelFind,
             "move": StudyRootQueryRetrieveInformationModelMove,
             "get": StudyRootQueryRetrieveInformationModelGet}[service]
    ae = client()
    ae.add_requested_context(model, ImplicitVRLittleEndian)  # a UI value over 64 KiB
    assoc = ae.associate("127.0.0.1", strict.port, ae_title="LARGE",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)])
    assert assoc.is_established
    try:
        if service == "find":
            statuses = _statuses(assoc.send_c_find(long_identifier(), model))
        elif service == "move":
            statuses = _statuses(assoc.send_c_move(long_identifier(), "PEER", model))
        else:
            statuses = _statuses(assoc.send_c_get(long_identifier(), model))
        assert [int(s.Status) for s in statuses] == [0xA900]
        assert "identifier exceeds --max-request-size" in statuses[0].ErrorComment
        short = Dataset()
        short.QueryRetrieveLevel = "STUDY"
        short.StudyInstanceUID = generate_uid()
        if service == "find":  # the association keeps serving
            assert [int(s.Status) for s in _statuses(assoc.send_c_find(short, model))] == [0]
    finally:
        assoc.release()
    wait_for_log(strict.server, "identifier exceeds --max-request-size (100000 bytes)")


def test_storage_commitment_past_max_request_size_gets_0213(strict: Archive) -> None:
    request = Dataset()
    request.TransactionUID = generate_uid()
    items = []
    for _ in range(1500):  # about 150 KB
        item = Dataset()
        item.ReferencedSOPClassUID = CTImageStorage
        item.ReferencedSOPInstanceUID = generate_uid()
        items.append(item)
    request.ReferencedSOPSequence = items
    ae = client()
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", strict.port, ae_title="LARGE")
    assert assoc.is_established
    try:
        status, _reply = assoc.send_n_action(request, 1, StorageCommitmentPushModel,
                                             "1.2.840.10008.1.20.1.1")
    finally:
        assoc.release()
    assert status.Status == 0x0213
    wait_for_log(strict.server, "Storage Commitment request from PEER")
    wait_for_log(strict.server, "action information exceeds --max-request-size")
