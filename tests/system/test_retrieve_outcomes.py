"""C-MOVE (and C-GET cancel) outcomes against pyqrscp served in-process on port 0 (the SIGTERM
test runs the real ``pyqrscp`` process): cancel, partial
failure, unreachable destination, and a long move under CPU load (pynetdicom's sender lost
C-STORE-RSPs there, see docs/performance.md)."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    DCMTK_ENV,
    POLL_DEADLINE,
    free_port,
    have_dcmtk,
    index_db,
    make_ct,
    poll_until,
    pyqrscp_in_process,
    pyqrscp_process,
    run_tool,
)
from helpers import write_config as write_dcmqrscp_config
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet as STUDY_GET,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelMove as STUDY_MOVE,
)

from pyqrscp.cli.index import main as index_main
from pyqrscp.dimse.acse import ProposedContext, associate_rq
from pyqrscp.dimse.commands import (
    AFFECTED_SOP_INSTANCE_UID,
    MESSAGE_ID,
    command_text,
    command_us,
    parse_command,
    store_response,
)
from pyqrscp.dimse.pdus import (
    ASSOCIATE_AC,
    ASSOCIATE_RQ,
    message_stream,
    p_data_stream,
    pdvs,
    read_pdu,
)
from pyqrscp.services.retrieve import Responder

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")

STUDY = "1.2.826.0.1.3680043.9.7780.1"
LONG_ACSE_TIMEOUT = 300
"""-ta far beyond every deadline of these tests: what ends an association within them is not
the ACSE timeout."""
SUCCESS, CANCEL, WARNING = 0x0000, 0xFE00, 0xB000
ALL_FAILED, DESTINATION_UNKNOWN = 0xA702, 0xA801


@dataclass
class Archive:
    port: int
    area: Path
    uids: list[str]
    destination_port: int
    process: subprocess.Popen[str] | None = None
    log: list[str] = field(default_factory=list)

    def wait_for_log(self, *parts: str) -> str:
        """The first server log line holding every part (the log is read by another thread)."""
        def line() -> str | None:
            return next((found for found in list(self.log) if all(p in found for p in parts)),
                        None)
        try:
            return poll_until(line, f"a log line with {parts}")
        except AssertionError as error:
            raise AssertionError(f"{error}:\n" + "\n".join(self.log)) from None

    def file_of(self, uid: str) -> Path:
        with index_db(self.area) as db:
            row = db.execute("SELECT file_name FROM instance WHERE sop_instance_uid=?",
                             (uid,)).fetchone()
        return self.area / str(row[0])


@contextmanager
def archive(tmp_path: Path, count: int, rows: int = 8, *server_flags: str,
            max_associations: int = 16, real_process: bool = False) -> Iterator[Archive]:
    """An ARCHIVE area holding one study of ``count`` instances (registered with
    ``pyqrscp index``, run in this process), served in-process on port 0 (by the real
    ``pyqrscp`` process with ``real_process``); DEST is a free port, DOWN a closed one."""
    files = tmp_path / "files"
    files.mkdir()
    uids = [f"{STUDY}.1.{n}" for n in range(1, count + 1)]
    for n, uid in enumerate(uids, 1):
        make_ct(files, study_uid=STUDY, series_uid=f"{STUDY}.1", sop_uid=uid,
                instance_number=n, rows=rows)
    destination_port = free_port()
    config = write_dcmqrscp_config(
        tmp_path, [f"ARCHIVE {tmp_path / 'area'} RW (10, 10gb) ANY"],
        [f"dest = (DEST, localhost, {destination_port})",
         f"down = (DOWN, localhost, {free_port()})"])
    config.write_text(config.read_text().replace("MaxAssociations = 16",
                                                 f"MaxAssociations = {max_associations}"))
    assert index_main(["-c", str(config), "ARCHIVE", str(files)]) == 0
    if real_process:
        with pyqrscp_process(config, *server_flags) as running:
            yield Archive(running.port, tmp_path / "area", uids, destination_port,
                          running.process, running.log)
        return
    with pyqrscp_in_process(config, *server_flags) as server:
        yield Archive(server.port, tmp_path / "area", uids, destination_port, None, server.log)


@dataclass
class Destination:
    """An in-process storage SCP; with ``hold`` it keeps the first C-STORE until released."""

    received: list[str] = field(default_factory=list)
    hold: bool = False
    first: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def handle(self, event: Any) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        self.first.set()
        if self.hold:
            self.release.wait(timeout=30)
        return 0x0000


@contextmanager
def destination(port: int, hold: bool = False) -> Iterator[Destination]:
    dest = Destination(hold=hold)
    ae = AE(ae_title="DEST")
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, dest.handle)])
    assert server is not None
    try:
        yield dest
    finally:
        dest.release.set()
        server.shutdown()


def _identifier() -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = STUDY
    return identifier


@contextmanager
def requestor(port: int) -> Iterator[Any]:
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(STUDY_MOVE)
    ae.dimse_timeout = 120
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()


def final_response(responses: Iterator[tuple[Dataset, Dataset | None]]
                   ) -> tuple[Dataset, Dataset | None]:
    last: tuple[Dataset, Dataset | None] = (Dataset(), None)
    for last in responses:
        if last[0].get("Status") != 0xFF00:
            break
    return last


def failed_uids(identifier: Dataset) -> list[str]:
    """FailedSOPInstanceUIDList as a list (pydicom gives one value as a plain string)."""
    value = identifier.get("FailedSOPInstanceUIDList") or []
    return [str(value)] if isinstance(value, str) else [str(uid) for uid in value]


def move(port: int, destination_aet: str = "DEST") -> tuple[Dataset, Dataset | None]:
    with requestor(port) as assoc:
        return final_response(assoc.send_c_move(_identifier(), destination_aet, STUDY_MOVE))


def test_cancel_stops_between_sub_operations_with_counts(tmp_path: Path) -> None:
    with archive(tmp_path, 20) as arc, destination(arc.destination_port, hold=True) as dest, \
            requestor(arc.port) as assoc:
        responses = assoc.send_c_move(_identifier(), "DEST", STUDY_MOVE, msg_id=9)
        assert dest.first.wait(timeout=30)
        context_id = next(cx.context_id for cx in assoc.accepted_contexts
                          if cx.abstract_syntax == STUDY_MOVE)
        assoc.send_c_cancel(9, context_id)
        dest.release.set()
        status, identifier = final_response(responses)
    assert status.Status == CANCEL
    completed = status.NumberOfCompletedSuboperations
    # the C-CANCEL reaches the server while the held sub-operation (or the next) is running
    assert 1 <= completed <= 3
    assert (status.NumberOfFailedSuboperations, status.NumberOfWarningSuboperations,
            status.NumberOfRemainingSuboperations) == (0, 0, 20 - completed)
    assert identifier is not None and failed_uids(identifier) == []
    assert len(set(dest.received)) == completed and set(dest.received) <= set(arc.uids)


C_CANCEL_COMMAND_FIELD = struct.pack("<HHIH", 0x0000, 0x0100, 2, 0x0FFF)
"""(0000,0100) CommandField = C-CANCEL-RQ as it appears in an implicit VR command set."""


def is_c_cancel(pdu: Any) -> bool:
    """Does this P-DATA-TF carry a C-CANCEL-RQ command?"""
    return any(C_CANCEL_COMMAND_FIELD in item.presentation_data_value
               for item in getattr(pdu, "presentation_data_value_items", []))


def test_get_cancel_stops_between_sub_operations_with_counts(tmp_path: Path) -> None:
    """C-GET runs on a held channel: the C-CANCEL-RQ arrives on the socket pyqrscp reads."""
    received: list[str] = []
    first, release, cancel_sent = threading.Event(), threading.Event(), threading.Event()

    def handle(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        first.set()
        release.wait(timeout=30)
        return 0x0000

    def on_sent(event: Any) -> None:
        if is_c_cancel(event.pdu):
            cancel_sent.set()

    with archive(tmp_path, 20) as arc:
        ae = AE(ae_title="GETSCU")
        ae.add_requested_context(STUDY_GET)
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        ae.dimse_timeout = 120
        assoc = ae.associate("127.0.0.1", arc.port, ae_title="ARCHIVE",
                             ext_neg=[build_role(CTImageStorage, scp_role=True)],
                             evt_handlers=[(evt.EVT_C_STORE, handle),
                                           (evt.EVT_PDU_SENT, on_sent)])
        assert assoc.is_established
        context_id = next(cx.context_id for cx in assoc.accepted_contexts
                          if cx.abstract_syntax == STUDY_GET)

        def cancel() -> None:
            if first.wait(timeout=POLL_DEADLINE):
                assoc.send_c_cancel(9, context_id)
                # the C-CANCEL is on the wire before the C-STORE-RSP
                cancel_sent.wait(timeout=POLL_DEADLINE)
            release.set()

        canceller = threading.Thread(target=cancel)
        canceller.start()
        status, identifier = final_response(assoc.send_c_get(_identifier(), STUDY_GET,
                                                             msg_id=9))
        canceller.join()
        assoc.release()
    assert status.Status == CANCEL
    completed = status.NumberOfCompletedSuboperations
    assert 1 <= completed <= 2
    assert (status.NumberOfFailedSuboperations, status.NumberOfWarningSuboperations,
            status.NumberOfRemainingSuboperations) == (0, 0, 20 - completed)
    assert len(received) == completed and set(received) <= set(arc.uids)


@pytest.mark.pynetdicom_internals(reason="the held channel sends the next request itself")
def test_a_get_sends_the_next_request_before_it_counts_the_last_response(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a held channel, the pending C-GET-RSP and the next C-STORE-RQ go out the moment a
    Success C-STORE-RSP is read, before the loop counts it and reports it: the requestor waits
    for the server's read and write only.  Here the report of each sub-operation waits until
    the next request has reached the requestor (a server that sent it only after the report
    would hold every wait to its end); the responses keep their order and counts."""
    arrived: dict[str, threading.Event] = {}
    late: list[str] = []
    original = Responder.pending

    def arrival(uid: str) -> threading.Event:
        return arrived.setdefault(uid, threading.Event())

    def handle(event: Any) -> int:
        arrival(str(event.request.AffectedSOPInstanceUID)).set()
        return 0x0000

    with archive(tmp_path, 3) as arc:
        def pending(responder: Responder, progress: Any) -> None:
            if progress.remaining:
                following = arc.uids[progress.completed]
                if not arrival(following).wait(timeout=20):
                    late.append(following)
            original(responder, progress)

        monkeypatch.setattr(Responder, "pending", pending)
        with get_requestor(arc.port, handle) as assoc:
            responses = [(int(status.Status), status.get("NumberOfRemainingSuboperations"),
                          int(status.NumberOfCompletedSuboperations))
                         for status, _ in assoc.send_c_get(_identifier(), STUDY_GET)]
    assert late == []
    assert responses == [(0xFF00, 2, 1), (0xFF00, 1, 2), (0xFF00, 0, 3), (SUCCESS, None, 3)]
    assert all(arrival(uid).is_set() for uid in arc.uids)


@contextmanager
def get_requestor(port: int, handle: Any, dimse_timeout: float = 120,
                  handlers: Sequence[tuple[Any, Any]] = ()) -> Iterator[Any]:
    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(STUDY_GET)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.dimse_timeout = dimse_timeout
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, handle), *handlers])
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def test_a_late_cancel_does_not_cancel_the_next_get_with_the_same_message_id(
        tmp_path: Path) -> None:
    """A C-CANCEL-RQ read while the last sub-operation's response is awaited belongs to that
    C-GET only (pynetdicom numbers every C-GET 1).  The handler writes it to the socket before
    it returns, so it precedes the C-STORE-RSP on the stream: no pause needed."""
    sent: list[int] = []

    def handle(event: Any) -> int:
        sent.append(1)
        if len(sent) == 2:  # the first C-GET's last sub-operation: cancel it, too late
            command = b"".join(struct.pack("<HHI", 0, element, len(value)) + value for
                               element, value in ((0x0100, b"\xff\x0f"), (0x0120, b"\x01\x00"),
                                                  (0x0800, b"\x01\x01")))
            command = struct.pack("<HHII", 0, 0, 4, len(command)) + command
            event.assoc.dul.socket.socket.sendall(b"".join(p_data_stream(get_context, command,
                                                                         True, 4000)))
        return 0x0000

    with archive(tmp_path, 2) as arc, get_requestor(arc.port, handle) as assoc:
        get_context = next(cx.context_id for cx in assoc.accepted_contexts
                           if cx.abstract_syntax == STUDY_GET)
        first, _ = final_response(assoc.send_c_get(_identifier(), STUDY_GET, msg_id=1))
        second, _ = final_response(assoc.send_c_get(_identifier(), STUDY_GET, msg_id=1))
    assert first.Status in (SUCCESS, CANCEL)
    assert second.Status == SUCCESS and second.NumberOfCompletedSuboperations == 2
    assert len(sent) == 4


def test_a_get_receiver_that_never_answers_is_aborted_after_the_dimse_timeout(
        tmp_path: Path) -> None:
    """-td 2: the held C-GET gives up after 2 s and the association ends then, giving its
    MaxAssociations slot back (not after the ACSE timeout, which pynetdicom would wait while
    the channel is still held: -ta is far beyond the test's deadline here)."""
    ended = threading.Event()

    def handle(event: Any) -> int:
        ended.wait(timeout=POLL_DEADLINE)  # answers only after the server gave up
        return 0x0000

    def on_received(event: Any) -> None:
        if isinstance(event.pdu, A_ABORT_RQ):
            ended.set()

    with archive(tmp_path, 1, 8, "-td", "2", "-ta", str(LONG_ACSE_TIMEOUT),
                 max_associations=1) as arc:
        with get_requestor(arc.port, handle, handlers=[(evt.EVT_PDU_RECV, on_received),
                                                       (evt.EVT_CONN_CLOSE,
                                                        lambda _event: ended.set())]) as assoc:
            status, _ = final_response(assoc.send_c_get(_identifier(), STUDY_GET))
            assert "Status" not in status  # no final response: the association was aborted
            poll_until(lambda: assoc.is_aborted, "the association's abort")
        poll_until(lambda: run_tool("echoscu", "-aec", "ARCHIVE", "127.0.0.1",
                                    str(arc.port)).returncode == 0,
                   "an echo in the one MaxAssociations slot")  # the slot is free again


def test_sigterm_during_a_held_get_stops_after_the_grace_period(tmp_path: Path) -> None:
    """The grace period ends with an abort from the main thread while the C-GET still holds
    its channel, and the receiver neither reads nor closes: pynetdicom must close the
    connection at once, not after its ARTIM timeout (the ACSE timeout, far beyond the
    test's deadline here)."""
    first, release = threading.Event(), threading.Event()
    outcome: dict[str, int | None] = {}

    def handle(event: Any) -> int:
        event.assoc.dul.kill_dul()  # the receiver stops reading its socket, keeps it open
        first.set()
        release.wait(timeout=60)  # and hangs in its first sub-operation
        return 0x0000

    with archive(tmp_path, 1, 8, "-td", "60", "-ta", str(LONG_ACSE_TIMEOUT),
                 real_process=True) as arc:
        process = arc.process
        assert process is not None

        def stop_server() -> None:
            first.wait(timeout=30)
            process.send_signal(signal.SIGTERM)
            try:  # the grace period (10 s) and a generous margin, far below the ACSE timeout
                outcome["exit"] = process.wait(POLL_DEADLINE)
            except subprocess.TimeoutExpired:
                outcome["exit"] = None
            release.set()

        stopper = threading.Thread(target=stop_server)
        stopper.start()
        with get_requestor(arc.port, handle, dimse_timeout=5) as assoc:
            final_response(assoc.send_c_get(_identifier(), STUDY_GET))
            if assoc.dul.socket is not None and assoc.dul.socket.socket is not None:
                assoc.dul.socket.socket.close()  # its DUL, killed above, never will
        stopper.join()
    assert outcome["exit"] == 0


def test_a_file_deleted_behind_the_index_fails_its_sub_operation(tmp_path: Path) -> None:
    with archive(tmp_path, 3) as arc, destination(arc.destination_port) as dest:
        arc.file_of(arc.uids[1]).unlink()
        status, identifier = move(arc.port)
    assert status.Status == WARNING
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (2, 1)
    assert identifier is not None
    assert failed_uids(identifier) == [arc.uids[1]]
    assert sorted(dest.received) == sorted([arc.uids[0], arc.uids[2]])


def test_every_file_gone_is_a_failure(tmp_path: Path) -> None:
    with archive(tmp_path, 2) as arc, destination(arc.destination_port) as dest:
        for uid in arc.uids:
            arc.file_of(uid).unlink()
        status, identifier = move(arc.port)
    assert status.Status == ALL_FAILED
    assert status.NumberOfFailedSuboperations == 2
    assert identifier is not None and sorted(failed_uids(identifier)) == sorted(arc.uids)
    assert dest.received == []


@pytest.mark.pynetdicom_internals(
    reason=("pynetdicom's C-MOVE answers 0xA801 when the destination does not answer (pyqrscp's "
            "own: 0xA702 with the counts)"))
def test_configured_destination_down_is_a702_with_counts_unknown_one_a801(
        tmp_path: Path) -> None:
    with archive(tmp_path, 2) as arc:
        status, identifier = move(arc.port, "DOWN")
        unknown, _ = move(arc.port, "NOWHERE")
        line = arc.wait_for_log("to DOWN", "0xA702")
    assert status.Status == ALL_FAILED and "connect" in status.ErrorComment
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations,
            status.NumberOfWarningSuboperations) == (0, 2, 0)
    assert identifier is not None and sorted(failed_uids(identifier)) == sorted(arc.uids)
    assert "2 sub-operation(s) failed" in line
    assert unknown.Status == DESTINATION_UNKNOWN and "NOWHERE" in unknown.ErrorComment


@pytest.mark.slow
def test_long_move_under_cpu_load_loses_no_response(tmp_path: Path) -> None:
    """2,000 sub-operations with every core busy: all succeed (pynetdicom's send_c_store lost a
    C-STORE-RSP in most such runs and waited 60 s: with -td 30 such a wait fails its
    sub-operation, so the counts show it)."""
    with archive(tmp_path, 2000, 4, "-td", "30") as arc:
        receiver = subprocess.Popen(["storescp", "--ignore", "-aet", "DEST",
                                     str(arc.destination_port)], env=DCMTK_ENV,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                   for _ in range(os.cpu_count() or 2)]
        try:
            poll_until(lambda: run_tool("echoscu", "-to", "2", "-aec", "DEST", "localhost",
                                        str(arc.destination_port)).returncode == 0,
                       "storescp to answer")
            status, _ = move(arc.port)
        finally:
            for process in [*burners, receiver]:
                process.kill()
                process.wait(timeout=20)
    assert status.Status == SUCCESS
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (2000, 0)


def _get_association_rq() -> bytes:
    """An A-ASSOCIATE-RQ for a C-GET of CT images: the study root GET model, CT storage with
    the SCP role (PS3.7 D.3.3.4), maximum PDU 16384."""
    contexts = [ProposedContext(1, STUDY_GET, (ImplicitVRLittleEndian,)),
                ProposedContext(3, CTImageStorage, (ExplicitVRLittleEndian,))]
    request = associate_rq("GETSCU", "ARCHIVE", contexts, 16384)
    user_info = request.index(b"\x51\x00\x00\x04") - 4  # the last item, user information
    uid = CTImageStorage.encode()
    role = struct.pack(">BxHH", 0x54, len(uid) + 4, len(uid)) + uid + b"\x00\x01"
    value = request[user_info + 4:] + role
    body = request[6:user_info] + struct.pack(">BxH", 0x50, len(value)) + value
    return struct.pack(">BxI", ASSOCIATE_RQ, len(body)) + body


def _get_request(message_id: int) -> bytes:
    identifier = encode(_identifier(), True, True)
    assert identifier is not None
    elements = ((0x0002, STUDY_GET.encode() + b"\x00"), (0x0100, b"\x10\x00"),
                (0x0110, struct.pack("<H", message_id)), (0x0700, b"\x00\x00"),
                (0x0800, b"\x00\x00"))
    command = b"".join(struct.pack("<HHI", 0, element, len(value)) + value
                       for element, value in elements)
    command = struct.pack("<HHII", 0, 0, 4, len(command)) + command
    return b"".join(message_stream(1, command, identifier, 16384))


_GET_RESPONSE = struct.pack("<HHI", 0, 0x0100, 2) + b"\x10\x80"
"""A command's CommandField element with C-GET-RSP: counts the C-GET responses in a stream."""


@contextmanager
def _slow_get_receiver(tmp_path: Path) -> Iterator[tuple[Archive, socket.socket]]:
    """An archive of two 8 MiB instances with a 6 s DIMSE timeout, and a raw requestor with a
    small receive buffer that has sent its C-GET-RQ and reads only when told."""
    with archive(tmp_path, 2, 2048, "-to", "6", "-ta", str(LONG_ACSE_TIMEOUT)) as arc:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.settimeout(POLL_DEADLINE)
        with sock:
            sock.connect(("127.0.0.1", arc.port))
            sock.sendall(_get_association_rq())
            assert read_pdu(sock)[0] == ASSOCIATE_AC
            sock.sendall(_get_request(1))
            yield arc, sock


def _read_to_end(sock: socket.socket) -> bytes:
    """Everything the server still sends, to the end of the stream (or its reset)."""
    received = b""
    try:
        while chunk := sock.recv(1 << 20):
            received += chunk
    except ConnectionResetError:
        pass
    return received


@pytest.mark.pynetdicom_internals(reason="the held channel sends the sub-operations itself")
def test_a_get_whose_first_send_fails_is_aborted_without_a_response(tmp_path: Path) -> None:
    """The same for the first C-STORE-RQ, sent the ordinary way: a receiver that never reads
    makes the send time out part way, so the association is aborted and no C-GET-RSP is
    written after the partial PDU."""
    with _slow_get_receiver(tmp_path) as (arc, sock):
        arc.wait_for_log("sub-operations stopped")  # the first send timed out
        received = _read_to_end(sock)
    assert received.count(_GET_RESPONSE) == 0


@pytest.mark.pynetdicom_internals(reason="the held channel sends the next request itself")
def test_a_get_whose_early_send_fails_is_aborted_without_another_response(
        tmp_path: Path) -> None:
    """The next C-STORE-RQ goes out the moment the receiver's Success is read; when that send
    fails part way (a receiver that stops reading: the send times out), the stream ends
    inside a PDU, so the association is aborted and no further response follows.  Here the
    receiver resumes reading once the server gave up, and reads to the end: one C-GET-RSP
    (the pending one sent with the request) and no other."""
    with _slow_get_receiver(tmp_path) as (arc, sock):
        command = b""
        while True:  # the first C-STORE-RQ, to its dataset's last fragment
            _, body = read_pdu(sock)
            last = [(header, fragment) for _, header, fragment, _ in pdvs(body)]
            command += b"".join(fragment for header, fragment in last if header & 1)
            if any(header == 0x02 for header, _ in last):
                break
        store = parse_command(command)
        sock.sendall(b"".join(message_stream(3, store_response(
            CTImageStorage, command_text(store, AFFECTED_SOP_INSTANCE_UID),
            command_us(store, MESSAGE_ID), SUCCESS), None, 16384)))
        arc.wait_for_log("sub-operations stopped")  # the early send timed out
        received = _read_to_end(sock)
    assert received.count(_GET_RESPONSE) == 1
