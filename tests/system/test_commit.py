"""Storage Commitment Push Model (PS3.4 Annex J) with a pynetdicom requester.

DCMTK has no storage commitment tool, so the requester ("MODALITY") is pynetdicom: it stores,
asks for commitment, and takes the N-EVENT-REPORT either on its own association (SCP role
accepted) or on a listener registered in the HostTable under its AE title.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, make_ct, pyqrscp_in_process, wait_for_log, write_config
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from pyqrscp.archive.commitments import MAX_REFERENCES_PER_REQUEST, RetrySchedule
from pyqrscp.config import load_config
from pyqrscp.config.options import Options
from pyqrscp.server.server import ArchiveServer

COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
SUCCESS, REFUSED_NOT_AUTHORIZED, RESOURCE_LIMITATION = 0x0000, 0x0124, 0x0213
NO_SUCH_OBJECT_INSTANCE, CLASS_INSTANCE_CONFLICT, PROCESSING_FAILURE = 0x0112, 0x0119, 0x0110
REQUESTER = "MODALITY"
WAIT = 20.0
# pynetdicom 3.0.4 drops (without closing) its socket when a connection is refused; the archive
# calling a requester that is down is exactly what these tests exercise.
leaks_refused_socket = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <socket\.socket:pytest.PytestUnraisableExceptionWarning")


@dataclass(frozen=True)
class Report:
    calling_aet: str
    event_type: int
    information: Dataset


class Requester:
    """A modality: stores over C-STORE, asks for commitment, receives reports."""

    def __init__(self, port: int, ae_title: str = REQUESTER) -> None:
        self.port = port
        self.ae_title = ae_title
        self.reports: queue.Queue[Report] = queue.Queue()
        self._listener: Any = None

    def _on_report(self, event: Any) -> tuple[int, None]:
        info = event.event_information
        self.reports.put(Report(str(event.assoc.requestor.ae_title).strip(), event.event_type,
                                info))
        return SUCCESS, None

    def listen(self) -> None:
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        self._listener = ae.start_server(("127.0.0.1", self.port), block=False,
                                         evt_handlers=[(evt.EVT_N_EVENT_REPORT,
                                                        self._on_report)])

    def close(self) -> None:
        if self._listener is not None:
            self._listener.shutdown()
            self._listener = None

    def _associate(self, port: int, called_aet: str, in_band: bool) -> Any:
        ae = AE(ae_title=self.ae_title)
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(StorageCommitmentPushModel)
        roles: list[Any] = [build_role(StorageCommitmentPushModel, scu_role=True,
                                       scp_role=True)]
        assoc = ae.associate("127.0.0.1", port, ae_title=called_aet,
                             ext_neg=roles if in_band else [],
                             evt_handlers=[(evt.EVT_N_EVENT_REPORT, self._on_report)])
        assert assoc.is_established
        return assoc

    def store(self, port: int, files: list[Path]) -> None:
        assoc = self._associate(port, "ARCHIVE", in_band=False)
        try:
            for path in files:
                assert assoc.send_c_store(dcmread(path)).Status == SUCCESS
        finally:
            assoc.release()

    def request(self, port: int, references: list[tuple[str, str]], *, in_band: bool,
                called_aet: str = "ARCHIVE") -> tuple[int, str, Report | None]:
        """N-ACTION; with ``in_band`` wait for the report before releasing."""
        status, transaction_uid, report = self.request_status(port, references, in_band=in_band,
                                                              called_aet=called_aet)
        return int(status.Status), transaction_uid, report

    def request_status(self, port: int, references: list[tuple[str, str]], *, in_band: bool,
                       called_aet: str = "ARCHIVE") -> tuple[Dataset, str, Report | None]:
        """:meth:`request` with the whole status dataset (Error Comment included)."""
        transaction_uid = generate_uid()
        assoc = self._associate(port, called_aet, in_band)
        try:
            status, _ = assoc.send_n_action(action_request(transaction_uid, references), 1,
                                            StorageCommitmentPushModel, COMMITMENT_INSTANCE)
            report = self.reports.get(timeout=WAIT) if in_band else None
        finally:
            assoc.release()
        return status, transaction_uid, report


def action_request(transaction_uid: str, references: list[tuple[str, str]]) -> Dataset:
    request = Dataset()
    request.TransactionUID = transaction_uid
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    request.ReferencedSOPSequence = items
    return request


def committed(report: Report) -> list[str]:
    return [str(i.ReferencedSOPInstanceUID) for i in
            report.information.get("ReferencedSOPSequence", [])]


def failed(report: Report) -> dict[str, int]:
    return {str(i.ReferencedSOPInstanceUID): int(i.FailureReason) for i in
            report.information.get("FailedSOPSequence", [])}


@dataclass
class Setup:
    base: Path
    config: Path
    requester: Requester
    stored: list[tuple[str, str]]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    (tmp_path / "db").mkdir()
    (tmp_path / "in").mkdir()
    requester_port = free_port()
    config = write_config(
        tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (20, 64mb) ANY",
                   f"READER {tmp_path / 'db'} R (20, 64mb) ANY"],
        host_rows=[f"modality = ({REQUESTER}, 127.0.0.1, {requester_port})"])
    files = [make_ct(tmp_path / "in", rows=2) for _ in range(3)]
    stored = [(str(CTImageStorage), str(dcmread(p).SOPInstanceUID)) for p in files]
    requester = Requester(requester_port)
    try:
        yield Setup(tmp_path, config, requester, stored)
    finally:
        requester.close()


@contextmanager
def archive(config: Path, retry: RetrySchedule | None = None,
            index_db: str | None = None) -> Iterator[ArchiveServer]:
    """An in-process archive on port 0 (fast retries injectable); always stopped."""
    server = ArchiveServer(load_config(config),
                           dataclasses.replace(Options(), port=0, index_db=index_db),
                           host="127.0.0.1")
    if retry is not None:
        server.services.commit_retry = retry
    server.start()
    try:
        yield server
    finally:
        server.stop()


class LogWatch(logging.Handler):
    """Collects pyqrscp's commitment log lines; ``wait_for`` blocks on a condition, no sleeps."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(record.getMessage())

    def wait_for(self, text: str) -> str:
        while True:
            line = self.lines.get(timeout=WAIT)
            self.seen.append(line)
            if text in line:
                return line


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    watch = LogWatch()
    loggers = [logging.getLogger(name) for name in
               ("pyqrscp.archive.commitments", "pyqrscp.archive.commitment_delivery",
                "pyqrscp.services.commit")]
    for logger in loggers:
        logger.addHandler(watch)
        logger.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        for logger in loggers:
            logger.removeHandler(watch)
            logger.setLevel(logging.NOTSET)


def test_all_present_reported_in_band(setup: Setup, log_watch: LogWatch) -> None:
    with archive(setup.config) as server:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        status, transaction_uid, report = setup.requester.request(
            server.port, setup.stored, in_band=True)
        log_watch.wait_for("on its association")
    assert status == SUCCESS
    assert report is not None
    assert report.calling_aet == REQUESTER  # the requester's own association
    assert report.event_type == 1
    assert report.information.TransactionUID == transaction_uid
    assert sorted(committed(report)) == sorted(uid for _, uid in setup.stored)
    assert "FailedSOPSequence" not in report.information


def test_some_missing_reported_with_reasons(setup: Setup) -> None:
    with archive(setup.config) as server:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        missing = (str(CTImageStorage), str(generate_uid()))
        wrong_class = (str(MRImageStorage), setup.stored[1][1])
        references = [setup.stored[0], missing, wrong_class]
        status, transaction_uid, report = setup.requester.request(
            server.port, references, in_band=True)
    assert status == SUCCESS
    assert report is not None
    assert report.event_type == 2
    assert report.information.TransactionUID == transaction_uid
    assert committed(report) == [setup.stored[0][1]]
    assert failed(report) == {missing[1]: NO_SUCH_OBJECT_INSTANCE,
                              wrong_class[1]: CLASS_INSTANCE_CONFLICT}


def test_damaged_file_is_not_committed(setup: Setup) -> None:
    with archive(setup.config) as server:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        victim = next(p for p in (setup.base / "db").rglob("*") if p.suffix == ".dcm")
        victim.write_bytes(b"not DICOM")
        _, _, report = setup.requester.request(server.port, setup.stored, in_band=True)
    assert report is not None
    assert report.event_type == 2
    assert list(failed(report).values()) == [PROCESSING_FAILURE]
    assert len(committed(report)) == len(setup.stored) - 1


def test_requester_gone_gets_report_on_new_association(setup: Setup) -> None:
    setup.requester.listen()
    with pyqrscp_in_process(setup.config, "-ll", "info") as server:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        status, transaction_uid, _ = setup.requester.request(
            server.port, setup.stored, in_band=False)
        try:
            report = setup.requester.reports.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail("no report; server log:\n" + server.log_text())
    assert status == SUCCESS
    assert report.calling_aet == "ARCHIVE"
    assert report.event_type == 1
    assert report.information.TransactionUID == transaction_uid
    assert sorted(committed(report)) == sorted(uid for _, uid in setup.stored)
    wait_for_log(server, "Sent Storage Commitment report to MODALITY")


@leaks_refused_socket
def test_pending_request_survives_restart(setup: Setup, log_watch: LogWatch) -> None:
    slow = RetrySchedule(first=60.0, longest=60.0, max_attempts=5)
    with archive(setup.config, slow) as server:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        status, transaction_uid, _ = setup.requester.request(
            server.port, setup.stored, in_band=False)
        log_watch.wait_for("retrying in 60.0 s")
    assert status == SUCCESS
    setup.requester.listen()
    with archive(setup.config, slow):
        report = setup.requester.reports.get(timeout=WAIT)
        log_watch.wait_for("on a new association")
    assert report.information.TransactionUID == transaction_uid
    assert report.event_type == 1
    assert any("resuming 1 undelivered" in line for line in log_watch.seen)
    assert setup.requester.reports.empty()


@leaks_refused_socket
def test_retries_with_back_off_until_requester_listens(setup: Setup, log_watch: LogWatch
                                                        ) -> None:
    fast = RetrySchedule(first=0.05, longest=0.2, max_attempts=50)
    with archive(setup.config, fast) as server:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        _, transaction_uid, _ = setup.requester.request(server.port, setup.stored[:1],
                                                        in_band=False)
        log_watch.wait_for("attempt 2 of 50")
        setup.requester.listen()
        report = setup.requester.reports.get(timeout=WAIT)
    assert report.information.TransactionUID == transaction_uid


def test_read_only_ae_cannot_request_commitment(setup: Setup) -> None:
    with archive(setup.config) as server:
        ae = AE(ae_title=REQUESTER)
        ae.add_requested_context(StorageCommitmentPushModel)
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", server.port, ae_title="READER")
        assert assoc.is_established
        try:
            accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
            assert str(StorageCommitmentPushModel) not in accepted
            with pytest.raises(ValueError):
                assoc.send_n_action(action_request(generate_uid(), setup.stored), 1,
                                    StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        finally:
            assoc.release()


# -- one requester's bounded share ----------------------------------------------------------


def test_a_request_over_the_reference_bound_is_refused(setup: Setup,
                                                       log_watch: LogWatch) -> None:
    references = [(str(CTImageStorage), f"1.2.826.0.1.3680043.2.1143.8.{n}")
                  for n in range(MAX_REFERENCES_PER_REQUEST + 1)]
    with archive(setup.config) as server:
        status, _, _ = setup.requester.request_status(server.port, references, in_band=False)
        line = log_watch.wait_for("Storage Commitment request from")
        _, _, report = setup.requester.request(server.port, setup.stored, in_band=True)
    assert status.Status == RESOURCE_LIMITATION
    assert f"at most {MAX_REFERENCES_PER_REQUEST}" in status.ErrorComment
    assert f"refused: {MAX_REFERENCES_PER_REQUEST + 1} references" in line
    assert line.startswith(f"Storage Commitment request from {REQUESTER} (127.0.0.1)")
    assert report is not None  # the next request is served


@leaks_refused_socket
def test_retries_send_the_first_verdict_without_reading_the_files_again(
        setup: Setup, log_watch: LogWatch) -> None:
    fast = RetrySchedule(first=0.05, longest=0.2, max_attempts=50)
    with archive(setup.config, fast) as server:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        _, transaction_uid, _ = setup.requester.request(server.port, setup.stored,
                                                        in_band=False)
        log_watch.wait_for("attempt 1 of 50")
        for path in (setup.base / "db").rglob("*"):
            if path.suffix == ".dcm":
                path.write_bytes(b"damaged after the verdict")
        setup.requester.listen()
        report = setup.requester.reports.get(timeout=WAIT)
    assert report.information.TransactionUID == transaction_uid
    assert report.event_type == 1
    assert sorted(committed(report)) == sorted(uid for _, uid in setup.stored)


class SilentPeer:
    """A requester's host that accepts the connection and never answers the A-ASSOCIATE-RQ,
    so a delivery to it waits for the whole ACSE timeout."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.connected: queue.Queue[socket.socket] = queue.Queue()
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection = self.listener.accept()[0]
                self.accepted.append(connection)
                header = connection.recv(6, socket.MSG_WAITALL)
                connection.recv(struct.unpack(">2xI", header)[0], socket.MSG_WAITALL)
                self.connected.put(connection)  # the A-ASSOCIATE-RQ is read, never answered

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


def still_waiting(connection: socket.socket) -> bool:
    """Nothing more arrived (an A-ABORT) and nothing closed since the A-ASSOCIATE-RQ: the
    archive is still waiting for the answer."""
    readable, _, _ = select.select([connection], [], [], 0)
    return not readable


def test_an_unreachable_requester_does_not_delay_another_requesters_report(
        setup: Setup, tmp_path: Path) -> None:
    silent = SilentPeer()
    config = write_config(
        tmp_path, [f"ARCHIVE {setup.base / 'db'} RW (20, 64mb) ANY"],
        host_rows=[f"modality = ({REQUESTER}, 127.0.0.1, {setup.requester.port})",
                   f"silent = (SILENT, 127.0.0.1, {silent.port})"])
    options = dataclasses.replace(Options(), port=0, acse_timeout=120)
    server = ArchiveServer(load_config(config), options, host="127.0.0.1")
    server.start()
    try:
        setup.requester.store(server.port, list((setup.base / "in").iterdir()))
        Requester(free_port(), "SILENT").request(server.port, setup.stored, in_band=False)
        waiting = silent.connected.get(timeout=WAIT)
        setup.requester.listen()
        _, transaction_uid, _ = setup.requester.request(server.port, setup.stored,
                                                        in_band=False)
        report = setup.requester.reports.get(timeout=WAIT)
        assert still_waiting(waiting)
    finally:
        silent.close()
        server.stop()
    assert report.information.TransactionUID == transaction_uid


# -- several nodes on one index ---------------------------------------------------------------


@leaks_refused_socket
def test_a_request_left_by_a_node_that_stopped_is_reported_by_another_node(
        setup: Setup, log_watch: LogWatch, index_db_url: str) -> None:
    """The other node was already running (its dispatcher asleep with nothing due) when the
    request arrived on the first: it finds the request in the shared index by itself."""
    retry = RetrySchedule(first=2.0, longest=2.0, max_attempts=50)
    with archive(setup.config, retry, index_db_url):  # the node that takes over
        with archive(setup.config, retry, index_db_url) as first:
            setup.requester.store(first.port, list((setup.base / "in").iterdir()))
            _, transaction_uid, _ = setup.requester.request(first.port, setup.stored,
                                                            in_band=False)
            log_watch.wait_for("retrying in 2.0 s")
        setup.requester.listen()
        report = setup.requester.reports.get(timeout=WAIT * 3)
    assert report.information.TransactionUID == transaction_uid
    assert sorted(committed(report)) == sorted(uid for _, uid in setup.stored)
