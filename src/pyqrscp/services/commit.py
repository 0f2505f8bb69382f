"""Storage Commitment Push Model SCP (PS3.4 Annex J): N-ACTION in, N-EVENT-REPORT out.

The N-ACTION is answered as soon as the request is persisted; the report is sent later by a lane
of :class:`~pyqrscp.archive.commitment_delivery.CommitmentWorker`: on the requester's
association while it lasts and the requester accepted the SCP role there (SCP/SCU role
selection), otherwise on a new association to the requester's AE title (HostTable), calling from
the request's called AE title.
"""

from __future__ import annotations

import enum
import logging
import threading
from pathlib import Path
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import N_ACTION
from pynetdicom.events import Event

from pyqrscp.archive.commitment_delivery import CommitmentWorker
from pyqrscp.archive.commitments import (
    MAX_REFERENCES_PER_REQUEST,
    CommitmentLedger,
    PendingCommitment,
    Reference,
    RetrySchedule,
    Verdict,
)
from pyqrscp.config import resolve_move_destination
from pyqrscp.config.options import Options
from pyqrscp.dimse.contexts import STORAGE_COMMITMENT_PUSH_MODEL, proposed_syntaxes
from pyqrscp.link.association import send_from_outside
from pyqrscp.link.titles import calling_aet
from pyqrscp.link.tls import client_tls_args
from pyqrscp.services.common import area_key, peer
from pyqrscp.services.context import ServiceContext
from pyqrscp.services.statuses import DECODING_ERRORS
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)

STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_STORAGE_COMMITMENT = 1
REPORT_TIMEOUT_SECONDS = 30.0


class ActionStatus(enum.IntEnum):
    """N-ACTION statuses of PS3.7 Annex C not (yet) in :class:`~pyqrscp.status.Status`."""

    NO_SUCH_SOP_INSTANCE = 0x0112
    INVALID_ARGUMENT_VALUE = 0x0115
    NO_SUCH_ACTION = 0x0123
    RESOURCE_LIMITATION = 0x0213


class StorageCommitment:
    """Ledgers per storage area, the delivery worker, and the live requesting associations."""

    def __init__(self, services: ServiceContext, schedule: RetrySchedule) -> None:
        self.services = services
        self.ledgers = {root: CommitmentLedger(area) for root, area in services.areas.items()}
        self.worker = CommitmentWorker(list(self.ledgers.values()), self.deliver, schedule)
        self._live: dict[tuple[Path, int], Association] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        for ledger in self.ledgers.values():
            ledger.close()

    def handle(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        """Check and persist the request, then answer; the worker sends the report."""
        entry = self.services.entry_for(event)
        if not entry.access.can_store:
            LOGGER.warning("Storage Commitment refused from %s: %s is read-only", peer(event),
                           entry.ae_title)
            return int(Status.REFUSED_NOT_AUTHORIZED), None
        if event.action_type != REQUEST_STORAGE_COMMITMENT:
            return int(ActionStatus.NO_SUCH_ACTION), None
        request = cast(N_ACTION, event.request)
        refusal = getattr(request.ActionInformation, "refusal", None)
        if refusal is not None:
            LOGGER.error("Storage Commitment request from %s refused: %s", peer(event), refusal)
            return int(ActionStatus.RESOURCE_LIMITATION), None
        requested = str(request.RequestedSOPInstanceUID or "").rstrip("\x00 ")
        if requested != STORAGE_COMMITMENT_INSTANCE:
            return int(ActionStatus.NO_SUCH_SOP_INSTANCE), None
        try:
            transaction_uid, references = parse_request(event.action_information)
        except DECODING_ERRORS as error:
            LOGGER.error("Storage Commitment request from %s is invalid: %s", peer(event), error)
            return int(ActionStatus.INVALID_ARGUMENT_VALUE), None
        if len(references) > MAX_REFERENCES_PER_REQUEST:
            why = (f"{len(references)} references; at most {MAX_REFERENCES_PER_REQUEST} "
                   "per request")
            LOGGER.error("Storage Commitment request from %s refused: %s", peer(event), why)
            return _status(ActionStatus.RESOURCE_LIMITATION, why), None
        requester_aet = calling_aet(event.assoc)
        ledger = self.ledgers[area_key(entry)]
        try:
            pending = ledger.add(transaction_uid, requester_aet, entry.ae_title, references)
        except Exception as error:  # sqlite3.Error, disk full: refuse rather than promise
            LOGGER.error("Storage Commitment request from %s not recorded: %s", peer(event), error)
            return int(Status.PROCESSING_FAILURE), None
        with self._lock:
            self._live[(pending.area, pending.pk)] = event.assoc
        LOGGER.info("Received Storage Commitment Request from %s: %d instance(s)", peer(event),
                    len(references))
        LOGGER.debug("Transaction UID %s", transaction_uid)
        self.worker.notify()
        return int(Status.SUCCESS), None

    def deliver(self, pending: PendingCommitment, verdict: Verdict) -> bool:
        """Report the verdict; True once the requester accepted the report."""
        with self._lock:
            assoc = self._live.pop((pending.area, pending.pk), None)
        report = report_dataset(pending.transaction_uid, verdict)
        counts = f"{len(verdict.committed)} committed, {len(verdict.failed)} failed"
        if assoc is not None and accepts_reports(assoc):
            if send_on(assoc, report, verdict.event_type_id, self.services.internals):
                LOGGER.info("Sent Storage Commitment report to %s on its association (%s)",
                            pending.requester_aet, counts)
                return True
            LOGGER.info("Storage Commitment report to %s: its association is gone, calling it",
                        pending.requester_aet)
        return self._deliver_on_new_association(pending, report, verdict.event_type_id, counts)

    def _deliver_on_new_association(self, pending: PendingCommitment, report: Dataset,
                                    event_type_id: int, counts: str) -> bool:

        destination = resolve_move_destination(self.services.config, pending.requester_aet)
        if destination is None:
            LOGGER.error("Storage Commitment report: requester %r is not in the HostTable",
                         pending.requester_aet)
            return False
        ae = sub_association_ae(self.services.options, pending.called_aet)
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL, proposed_syntaxes(
            self.services.options.propose_transfer_syntax))
        role = build_role(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=True, scp_role=True)
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                             ext_neg=[role], tls_args=client_tls_args(
                                 self.services.client_tls, destination.host))
        if not assoc.is_established:
            LOGGER.warning("Storage Commitment report: cannot associate with %s (%s:%d)",
                           destination.ae_title, destination.host, destination.port)
            return False
        try:
            delivered = _accepted(assoc.send_n_event_report(
                report, event_type_id, STORAGE_COMMITMENT_PUSH_MODEL,
                STORAGE_COMMITMENT_INSTANCE))
        finally:
            if assoc.is_established:
                assoc.release()
        if delivered:
            LOGGER.info("Sent Storage Commitment report to %s (%s:%d) on a new association (%s)",
                        destination.ae_title, destination.host, destination.port, counts)
        else:
            LOGGER.warning("Storage Commitment report refused by %s (%s:%d)",
                           destination.ae_title, destination.host, destination.port)
        return delivered


def _status(status: int, error_comment: str) -> Dataset:
    """A failure status with an Error Comment (0000,0902; 64 characters at most)."""
    answer = Dataset()
    answer.Status = int(status)
    answer.ErrorComment = error_comment[:64]
    return answer


def parse_request(action_information: Dataset) -> tuple[str, tuple[Reference, ...]]:
    """Transaction UID and references of an Action Information; ValueError when incomplete."""
    transaction_uid = str(action_information.TransactionUID or "").strip()
    if not transaction_uid:
        raise ValueError("no Transaction UID")
    references = tuple(
        Reference(str(item.ReferencedSOPClassUID).strip(),
                  str(item.ReferencedSOPInstanceUID).strip())
        for item in action_information.get("ReferencedSOPSequence", []))
    if not references or not all(r.sop_class_uid and r.sop_instance_uid for r in references):
        raise ValueError("empty or incomplete Referenced SOP Sequence")
    return transaction_uid, references


def report_dataset(transaction_uid: str, verdict: Verdict) -> Dataset:
    """Event Information of PS3.4 Table J.3-2 (successes, then failures with their reason)."""
    report = Dataset()
    report.TransactionUID = transaction_uid
    if verdict.committed:
        report.ReferencedSOPSequence = [_item(r) for r in verdict.committed]
    if verdict.failed:
        failed = []
        for reference, reason in verdict.failed:
            item = _item(reference)
            item.FailureReason = int(reason)
            failed.append(item)
        report.FailedSOPSequence = failed
    return report


def _item(reference: Reference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = reference.sop_class_uid
    item.ReferencedSOPInstanceUID = reference.sop_instance_uid
    return item


def accepts_reports(assoc: Association) -> bool:
    """Still established, and the requester took the SCP role (so we act as SCU) in-band."""
    return bool(assoc.is_established) and any(
        context.abstract_syntax == STORAGE_COMMITMENT_PUSH_MODEL and context.as_scu
        for context in assoc.accepted_contexts)


def send_on(assoc: Association, report: Dataset, event_type_id: int,
            use_internals: bool = True) -> bool:
    """Send on an acceptor's association from another thread (its reactor parked), bounding
    the wait for the reactor and for the response."""
    saved_timeout = assoc.dimse_timeout
    if saved_timeout is None:
        assoc.dimse_timeout = REPORT_TIMEOUT_SECONDS
    try:
        result = send_from_outside(assoc, REPORT_TIMEOUT_SECONDS, lambda: assoc.send_n_event_report(
            report, event_type_id, STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_INSTANCE),
            use_internals)
    except (RuntimeError, ValueError) as error:
        LOGGER.warning("Storage Commitment report on the association failed: %s", error)
        return False
    finally:
        assoc.dimse_timeout = saved_timeout
    return result is not None and _accepted(result)


def _accepted(result: object) -> bool:
    status = result[0] if isinstance(result, tuple) else result
    return bool(status) and int(getattr(status, "Status", -1)) == int(Status.SUCCESS)


def sub_association_ae(options: Options, calling_aet: str) -> AE:
    """A requestor-only AE (Storage Commitment reports on a new association use it)."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = options.acse_timeout
    ae.dimse_timeout = options.dimse_timeout if options.dimse_timeout is not None else 60
    ae.network_timeout = options.network_timeout if options.network_timeout is not None else 60
    ae.maximum_pdu_size = options.receive_pdu_size
    return ae
