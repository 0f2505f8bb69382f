"""pyqrscp's own C-STORE sender against an in-process pynetdicom storage SCP and DCMTK storescp."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import DCMTK_ENV, free_port, make_ct, run_tool
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless
from pynetdicom import AE, evt

from pyqrscp.dimse.acse import MAX_CONTEXTS, propose
from pyqrscp.dimse.contexts import UNCOMPRESSED
from pyqrscp.dimse.conversion import convert
from pyqrscp.errors import PeerUnavailable, SubOperationFailed
from pyqrscp.link.sender import StoreAssociation
from pyqrscp.services.retrieve import stored_dataset


class Received:
    """What the in-process SCP saw: per instance the dataset bytes and the command."""

    def __init__(self) -> None:
        self.datasets: dict[str, bytes] = {}
        self.syntaxes: dict[str, str] = {}
        self.originators: list[tuple[str, int | None]] = []
        self.calling: list[str] = []
        self.lock = threading.Lock()

    def handle(self, event: Any) -> int:
        with self.lock:
            uid = str(event.request.AffectedSOPInstanceUID)
            self.datasets[uid] = event.request.DataSet.getvalue()
            self.syntaxes[uid] = str(event.context.transfer_syntax)
            self.originators.append((str(event.request.MoveOriginatorApplicationEntityTitle or ""),
                                     event.request.MoveOriginatorMessageID))
            self.calling.append(str(event.assoc.requestor.ae_title).strip())
        return 0x0000


@pytest.fixture
def scp_factory() -> Iterator[Any]:
    servers: list[Any] = []

    def start(syntaxes: list[str]) -> tuple[int, Received]:
        received = Received()
        ae = AE(ae_title="DEST")
        ae.require_called_aet = True
        ae.add_supported_context(CTImageStorage, syntaxes)
        server = ae.start_server(("127.0.0.1", 0), block=False,
                                 evt_handlers=[(evt.EVT_C_STORE, received.handle)])
        assert server is not None
        servers.append(server)
        return int(server.server_address[1]), received

    yield start
    for server in servers:
        server.shutdown()


def _open(port: int, pairs: set[tuple[str, str]]) -> StoreAssociation:
    return StoreAssociation.open("127.0.0.1", port, "ARCHIVE", "DEST",
                                 propose(pairs, list(UNCOMPRESSED)), acse_timeout=10,
                                 dimse_timeout=10)


def _send(sub: StoreAssociation, path: Path, message_id: int = 1) -> int:
    stored_syntax, data = stored_dataset(path)
    ds = pydicom.dcmread(path)
    context = sub.context_for(CTImageStorage, stored_syntax, list(UNCOMPRESSED))
    assert context is not None
    if context.transfer_syntax != stored_syntax:
        data = memoryview(convert(data, stored_syntax, context.transfer_syntax))
    return sub.send_c_store(context, str(ds.SOPInstanceUID), data, message_id, "MOVESCU",
                            7).status


def test_propose_orders_uncompressed_then_one_context_per_stored_syntax() -> None:
    contexts = propose({(CTImageStorage, ExplicitVRLittleEndian), (CTImageStorage, RLELossless)},
                       [str(ImplicitVRLittleEndian), str(ExplicitVRLittleEndian)])
    assert [(cx.context_id, cx.transfer_syntaxes) for cx in contexts] == [
        (1, (ImplicitVRLittleEndian, ExplicitVRLittleEndian)), (3, (ExplicitVRLittleEndian,)),
        (5, (RLELossless,))]


def test_propose_needs_no_own_context_when_only_the_stored_syntax_is_proposed() -> None:
    contexts = propose({(CTImageStorage, ImplicitVRLittleEndian)}, [str(ImplicitVRLittleEndian)])
    assert [cx.transfer_syntaxes for cx in contexts] == [(ImplicitVRLittleEndian,)]


def test_a_receiver_that_takes_the_stored_syntax_gets_the_bytes_unchanged(
        scp_factory: Any, tmp_path: Path) -> None:
    """The receiver prefers explicit VR little endian but also takes implicit: an instance
    stored implicit travels as stored instead of being converted."""
    port, received = scp_factory([ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ds = pydicom.dcmread(make_ct(tmp_path, rows=8))
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    path = tmp_path / "implicit.dcm"
    ds.save_as(path, enforce_file_format=True)
    sub = _open(port, {(CTImageStorage, ImplicitVRLittleEndian)})
    try:
        assert _send(sub, path) == 0
    finally:
        sub.release()
    assert received.syntaxes[str(ds.SOPInstanceUID)] == ImplicitVRLittleEndian
    assert received.datasets[str(ds.SOPInstanceUID)] == stored_dataset(path)[1]


def test_propose_caps_at_128_contexts() -> None:
    pairs = {(f"1.2.3.{i}", ExplicitVRLittleEndian) for i in range(300)}
    contexts = propose(pairs, list(UNCOMPRESSED))
    assert len(contexts) == MAX_CONTEXTS and contexts[-1].context_id == 255


def test_stored_dataset_skips_the_file_meta(tmp_path: Path) -> None:
    path = make_ct(tmp_path)
    syntax, data = stored_dataset(path)
    assert syntax == ExplicitVRLittleEndian
    whole = path.read_bytes()
    assert whole.endswith(data) and bytes(data[:2]) == b"\x08\x00"


def test_stored_dataset_of_a_missing_file_fails_one_sub_operation(tmp_path: Path) -> None:
    with pytest.raises(SubOperationFailed):
        stored_dataset(tmp_path / "gone.dcm")


@pytest.mark.timeout(30)
def test_a_link_or_fifo_in_place_of_a_stored_file_is_not_served(tmp_path: Path) -> None:
    """A link could name a file outside every area; a FIFO would block the sender."""
    (tmp_path / "link.dcm").symlink_to(make_ct(tmp_path))
    os.mkfifo(tmp_path / "fifo.dcm")
    with pytest.raises(SubOperationFailed, match="symbolic link"):
        stored_dataset(tmp_path / "link.dcm")
    with pytest.raises(SubOperationFailed, match="not a regular file"):
        stored_dataset(tmp_path / "fifo.dcm")


def test_bytes_arrive_identical_with_move_originator(scp_factory: Any, tmp_path: Path) -> None:
    port, received = scp_factory([ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    paths = [make_ct(tmp_path, rows=64) for _ in range(3)]
    sub = _open(port, {(CTImageStorage, ExplicitVRLittleEndian)})
    try:
        assert [_send(sub, path, n) for n, path in enumerate(paths, 1)] == [0, 0, 0]
    finally:
        sub.release()
    for path in paths:
        uid = str(pydicom.dcmread(path).SOPInstanceUID)
        assert received.datasets[uid] == stored_dataset(path)[1]
        assert received.syntaxes[uid] == ExplicitVRLittleEndian
    assert received.originators == [("MOVESCU", 7)] * 3
    assert set(received.calling) == {"ARCHIVE"}


def test_converts_when_the_receiver_takes_implicit_only(scp_factory: Any,
                                                       tmp_path: Path) -> None:
    port, received = scp_factory([ImplicitVRLittleEndian])
    path = make_ct(tmp_path)
    sub = _open(port, {(CTImageStorage, ExplicitVRLittleEndian)})
    try:
        assert _send(sub, path) == 0
    finally:
        sub.release()
    uid = str(pydicom.dcmread(path).SOPInstanceUID)
    assert received.syntaxes[uid] == ImplicitVRLittleEndian
    original = pydicom.dcmread(path)
    decoded = pydicom.filereader.read_dataset(BytesIO(received.datasets[uid]), True, True)
    assert decoded.PixelData == original.PixelData
    assert decoded.SOPInstanceUID == original.SOPInstanceUID


def test_rle_stored_for_an_uncompressed_receiver(scp_factory: Any, tmp_path: Path) -> None:
    """Decoded when pydicom can (RLE needs NumPy), else one failed sub-operation that says why."""
    port, received = scp_factory([ExplicitVRLittleEndian])
    original = pydicom.dcmread(make_ct(tmp_path, rows=8))
    original.BitsStored, original.HighBit = 16, 15  # random 16-bit pixels survive decoding as is
    pixels = original.PixelData
    original.compress(RLELossless, encoding_plugin="pydicom")
    path = tmp_path / "rle.dcm"
    original.save_as(path, enforce_file_format=True)
    sub = _open(port, {(CTImageStorage, RLELossless)})
    try:
        if importlib.util.find_spec("numpy") is None:
            with pytest.raises(SubOperationFailed, match="cannot convert RLE Lossless"):
                _send(sub, path)
            assert received.datasets == {}
            return
        assert _send(sub, path) == 0
    finally:
        sub.release()
    data = received.datasets[str(original.SOPInstanceUID)]
    assert pydicom.filereader.read_dataset(BytesIO(data), False, True).PixelData == pixels


def test_unreachable_or_rejecting_destination_raises_peer_unavailable(scp_factory: Any) -> None:
    port, _ = scp_factory([ExplicitVRLittleEndian])
    with pytest.raises(PeerUnavailable, match="rejected"):
        StoreAssociation.open("127.0.0.1", port, "ARCHIVE", "NOT-DEST",
                              propose({(CTImageStorage, ExplicitVRLittleEndian)}, UNCOMPRESSED),
                              acse_timeout=10)
    with pytest.raises(PeerUnavailable, match="cannot connect"):
        _open(free_port(), {(CTImageStorage, ExplicitVRLittleEndian)})


def test_no_accepted_context_for_an_unoffered_class(scp_factory: Any) -> None:
    port, _ = scp_factory([ExplicitVRLittleEndian])
    sub = _open(port, {(CTImageStorage, ExplicitVRLittleEndian),
                       ("1.2.840.10008.5.1.4.1.1.4", ExplicitVRLittleEndian)})
    try:
        assert sub.context_for("1.2.840.10008.5.1.4.1.1.4", ExplicitVRLittleEndian,
                               UNCOMPRESSED) is None
        assert sub.context_for(CTImageStorage, ImplicitVRLittleEndian,
                               UNCOMPRESSED) is not None
    finally:
        sub.release()


@pytest.mark.skipif(shutil.which("storescp") is None, reason="DCMTK storescp not installed")
def test_storescp_receives_byte_identical_files(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    port = free_port()
    paths = [make_ct(tmp_path, rows=32) for _ in range(5)]
    process = subprocess.Popen(["storescp", "-aet", "DEST", "-od", str(tmp_path / "out"),
                                str(port)], env=DCMTK_ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if run_tool("echoscu", "-to", "2", "-aec", "DEST", "localhost",
                        str(port)).returncode == 0:
                break
        sub = _open(port, {(CTImageStorage, ExplicitVRLittleEndian)})
        try:
            assert [_send(sub, path, n) for n, path in enumerate(paths, 1)] == [0] * 5
        finally:
            sub.release()
    finally:
        process.terminate()
        process.wait(timeout=20)
    received = {stored_dataset(path)[1] for path in (tmp_path / "out").iterdir()}
    assert received == {stored_dataset(path)[1] for path in paths}
