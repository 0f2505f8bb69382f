"""What C-MOVE and C-GET share: the identifier → instances step, stored files as dataset bytes,
and the sub-operation loop with its counts, pending responses, cancel and final status.

pyqrscp serves both itself (through :meth:`Services.route_request`), on the requesting
association's own thread: no stored file is decoded unless the receiver needs another syntax.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import decode, encode
from pynetdicom.presentation import PresentationContext

from pyqrscp.archive.areafiles import read_regular
from pyqrscp.archive.index.query import (
    InformationModel,
    Query,
    matching_instances,
    parse_identifier,
)
from pyqrscp.archive.storage import StorageArea
from pyqrscp.dimse.commands import C_GET_RSP, C_MOVE_RSP, retrieve_response
from pyqrscp.dimse.part10 import file_meta
from pyqrscp.errors import InvalidIdentifier, PeerUnavailable, SubOperationFailed
from pyqrscp.link.association import cancel_requested, requestor_gone, send_message
from pyqrscp.services.common import peer_of
from pyqrscp.services.context import ServiceContext
from pyqrscp.services.negotiation import is_relational
from pyqrscp.services.statuses import IDENTIFIER_ERRORS, status_of
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)

MAX_SUB_OPERATIONS = 65535  # the counts are US (PS3.4 C.4.2.1.4)


@dataclass(frozen=True, slots=True)
class Selection:
    """The instances a retrieve will send, as index rows (files are read one at a time)."""

    instances: tuple[tuple[str, str, str, str], ...]

    def presentation_pairs(self) -> set[tuple[str, str]]:
        return {(sop_class, ts) for _, sop_class, ts, _ in self.instances}


def select(area: StorageArea, identifier: Dataset, model: InformationModel, strict: bool,
           case_sensitive_pn: bool, relational: bool = False, who: str = "") -> Selection:
    """Check the identifier and find every instance below the entities it names."""
    query = parse_identifier(identifier, model, strict, relational)
    log_ignored_keys(query, "Retrieve", who)
    db = area.reader()
    try:
        return Selection(tuple(matching_instances(db, query, case_sensitive_pn)))
    finally:
        db.close()


def log_ignored_keys(query: Query, verb: str, who: str) -> None:
    """The ``-d`` line for keys a hierarchical search ignores (they are not errors)."""
    if query.ignored_keys:
        LOGGER.debug("%s from %s: ignoring %s above the %s level (hierarchical %s)", verb, who,
                     ", ".join(query.ignored_keys), query.level,
                     "query" if verb == "Find" else "retrieve")


def read_identifier(request: C_FIND | C_GET | C_MOVE, transfer_syntax: UID) -> Dataset:
    """The request's identifier, decoded in its context's transfer syntax; InvalidIdentifier
    for one refused as it arrived (longer than ``--max-request-size``) or missing."""
    identifier = request.Identifier
    refusal = getattr(identifier, "refusal", None)
    if refusal is not None:
        raise InvalidIdentifier(str(refusal))
    if identifier is None:
        raise InvalidIdentifier("no identifier")
    return decode(identifier, transfer_syntax.is_implicit_VR,
                  transfer_syntax.is_little_endian, transfer_syntax.is_deflated)


def stored_dataset(path: Path) -> tuple[str, memoryview]:
    """``(transfer syntax, dataset bytes)`` of a Part-10 file: everything after group 0002,
    as a view of the file's bytes (read in one piece, sent without a copy).

    A link in place of the stored file is not followed (its target may lie outside every area).
    """
    try:
        data = read_regular(path)
    except OSError as error:
        raise SubOperationFailed(f"cannot read stored file {path.name}: {error}") from error
    meta = file_meta(data)
    if meta is None:
        raise SubOperationFailed(f"stored file {path.name} is not a Part-10 file")
    transfer_syntax, offset = meta
    if not transfer_syntax:
        raise SubOperationFailed(f"stored file {path.name} has no TransferSyntaxUID")
    return transfer_syntax, memoryview(data)[offset:]


@dataclass(slots=True)
class Progress:
    """Sub-operation counts of one retrieve (PS3.4 C.4.2.1.4)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    cancelled: bool = False

    def after_success(self) -> Progress:
        """The counts once the next sub-operation succeeds (without the failed UIDs)."""
        return Progress(self.remaining - 1, self.completed + 1, self.failed, self.warning)

    def fail(self, sop_instance_uid: str) -> None:
        self.remaining -= 1
        self.failed += 1
        self.failed_uids.append(sop_instance_uid)

    def final_status(self) -> Status:
        if self.cancelled:
            return Status.CANCEL
        if not self.failed and not self.warning:
            return Status.SUCCESS
        if not self.completed and not self.warning:
            return Status.OUT_OF_RESOURCES_SUB_OPERATIONS
        return Status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES


class SubOperations(Protocol):
    """The C-STORE sub-operations of one retrieve, in three steps, so that the next request
    is read and framed while the receiver works on the current one (without asynchronous
    operations negotiated, one request at a time may be outstanding: PS3.7 D.3.3.3)."""

    def prepare(self, sop_instance: str, sop_class: str, transfer_syntax: str,
                path: Path) -> Any:
        """The request for one instance, ready to send; :class:`SubOperationFailed` when it
        cannot be sent (no context for it, an unreadable file)."""

    def start(self, request: Any) -> None:
        """Send a prepared request; :class:`PeerUnavailable` when the receiver is gone."""

    def finish(self, request: Any) -> int:
        """The status of the receiver's response to it; :class:`PeerUnavailable` on none."""


def run_sub_operations(selection: Selection, area: StorageArea, sender: SubOperations,
                       is_cancelled: Callable[[], bool],
                       pending: Callable[[Progress], None],
                       expect: Callable[[Progress], None] | None = None) -> Progress:
    """Send every instance, in order; :class:`SubOperationFailed` fails one,
    :class:`PeerUnavailable` fails the rest.  ``pending`` is called after each sub-operation.
    The next request is prepared once the current one is sent, while the receiver stores it;
    then ``expect`` is called with the counts a success of the current one gives, so that
    what ``pending`` sends for them can be made ready before the response arrives."""
    instances = selection.instances
    progress = Progress(remaining=len(instances))

    def prepared(index: int) -> Any:
        if index >= len(instances):
            return None
        sop_instance, sop_class, transfer_syntax, file_name = instances[index]
        try:
            return sender.prepare(sop_instance, sop_class, transfer_syntax,
                                  area.path_of(file_name))
        except SubOperationFailed as error:
            return error

    request = prepared(0)
    for index, (sop_instance, *_) in enumerate(instances):
        if is_cancelled():
            progress.cancelled = True
            return progress
        following: Any = _NOT_YET
        try:
            if isinstance(request, SubOperationFailed):
                raise request
            sender.start(request)
            following = prepared(index + 1)
            if expect is not None:
                expect(progress.after_success())
            status = sender.finish(request)
        except SubOperationFailed as error:
            LOGGER.error("sub-operation for %s failed: %s", sop_instance, error)
            progress.fail(sop_instance)
        except PeerUnavailable as error:
            LOGGER.error("sub-operations stopped: %s", error)
            for uid, *_ in instances[index:]:
                progress.fail(uid)
            return progress
        else:
            _count(progress, sop_instance, status)
        pending(progress)
        request = prepared(index + 1) if following is _NOT_YET else following
    return progress


_NOT_YET = object()


def _count(progress: Progress, sop_instance: str, status: int) -> None:
    progress.remaining -= 1
    if status == Status.SUCCESS:
        progress.completed += 1
    elif status & 0xF000 == 0xB000:
        progress.warning += 1
    else:
        LOGGER.warning("receiver answered 0x%04X to the C-STORE of %s", status, sop_instance)
        progress.failed += 1
        progress.failed_uids.append(sop_instance)


class Responder:
    """Sends C-MOVE/C-GET responses on the requesting association (pynetdicom encodes them)."""

    def __init__(self, assoc: Association, request: C_GET | C_MOVE,
                 context: PresentationContext) -> None:
        self.assoc = assoc
        self.request = request
        self.context_id = int(context.context_id or 0)
        self.transfer_syntax = UID(context.transfer_syntax[0])
        self.command_field = C_MOVE_RSP if isinstance(request, C_MOVE) else C_GET_RSP
        self._expected: ExpectedPending | None = None

    def is_cancelled(self) -> bool:
        """Has a C-CANCEL for this request arrived (pynetdicom files them by message ID), or
        has the requestor gone (A-ABORT or a dropped connection waiting for the reactor)?"""
        return requestor_gone(self.assoc) or cancel_requested(self.assoc,
                                                               int(self.request.MessageID or 0))

    def pending(self, progress: Progress) -> None:
        """A pending response; it may wait to go out with the next sub-operation's request
        (one write, one wake-up of a C-GET requestor for both)."""
        expected, self._expected = self._expected, None
        if expected is None or expected.counts != _counts(progress):
            self.send(Status.PENDING, progress, defer=True)
            return
        if expected.sent:  # it went out with the next request (see ExpectedPending)
            return
        try:
            send_message(self.assoc, self.context_id, expected.command, None, defer=True)
        except PeerUnavailable as error:  # the next sub-operation finds the requestor gone
            LOGGER.error("response to %s not sent: %s", peer_of(self.assoc), error)

    def expect(self, progress: Progress) -> None:
        """Make the pending response for ``progress`` ready, while the receiver works: the
        one :meth:`pending` sends if the counts are still these then."""
        counts = _counts(progress)
        self._expected = ExpectedPending(counts, self._command(Status.PENDING, counts, "",
                                                               False))

    @property
    def expected(self) -> ExpectedPending | None:
        """The pending response made ready by :meth:`expect` and not yet sent."""
        expected = self._expected
        return expected if expected is not None and not expected.sent else None

    def send(self, status: Status, progress: Progress | None = None,
             error_comment: str = "", defer: bool = False) -> None:
        """One response; pending ones carry Remaining, failures the FailedSOPInstanceUIDList."""
        counts = None
        identifier = None
        if progress is not None:
            remaining = progress.remaining if status in (Status.PENDING, Status.CANCEL) else None
            counts = (remaining, progress.completed, progress.failed, progress.warning)
            if status not in (Status.PENDING, Status.SUCCESS):
                identifier = self._failed_list(progress)
        command = self._command(status, counts, error_comment, identifier is not None)
        try:
            send_message(self.assoc, self.context_id, command, identifier, defer=defer)
        except PeerUnavailable as error:  # the next sub-operation finds the requestor gone
            LOGGER.error("response to %s not sent: %s", peer_of(self.assoc), error)

    def _command(self, status: Status, counts: tuple[int | None, int, int, int] | None,
                 error_comment: str, has_identifier: bool) -> bytes:
        return retrieve_response(self.command_field, str(self.request.AffectedSOPClassUID),
                                 int(self.request.MessageID or 0), int(status), counts,
                                 error_comment, has_identifier)

    def _failed_list(self, progress: Progress) -> bytes:
        identifier = Dataset()
        identifier.FailedSOPInstanceUIDList = progress.failed_uids
        ts = self.transfer_syntax
        return bytes(encode(identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
                     or b"")


@dataclass(slots=True)
class ExpectedPending:
    """A pending response made ready before the sub-operation it reports has ended.  A C-GET
    sender that sends it itself, with the next request, the moment the receiver answers
    Success, marks it ``sent``; :meth:`Responder.pending` then sends nothing for it."""

    counts: tuple[int, int, int, int]
    command: bytes
    sent: bool = False


def _counts(progress: Progress) -> tuple[int, int, int, int]:
    """What a pending response carries: remaining, completed, failed, warning."""
    return (progress.remaining, progress.completed, progress.failed, progress.warning)


def message_ids(first: int) -> Iterator[int]:
    """Message IDs for sub-operations: 1..65535, wrapping."""
    current = first
    while True:
        yield current
        current = current % 65535 + 1


@dataclass(frozen=True, slots=True)
class Refusal:
    """The final response of a C-MOVE/C-GET refused before its first sub-operation."""

    status: Status
    error_comment: str


def select_instances(services: ServiceContext, assoc: Association, request: C_GET | C_MOVE,
                     transfer_syntax: UID, model: InformationModel, verb: str
                     ) -> tuple[StorageArea, Selection] | Refusal:
    """The checks every C-MOVE/C-GET starts with (access, identifier, size), then the
    instances it will send."""
    entry = services.entry_of(assoc)
    if entry is None or not entry.access.can_query:
        return Refusal(Status.REFUSED_NOT_AUTHORIZED, "area is write-only")
    area = services.area_for(entry)
    try:
        identifier = read_identifier(request, transfer_syntax)
        LOGGER.debug("%s identifier:\n%s", verb, identifier)
        selection = select(area, identifier, model, services.options.check_move,
                           services.options.case_sensitive_pn,
                           is_relational(assoc, str(request.AffectedSOPClassUID)),
                           peer_of(assoc))
    except IDENTIFIER_ERRORS as error:
        LOGGER.error("%s failed from %s: %s", verb, peer_of(assoc), error)
        return Refusal(status_of(error, in_identifier=True), str(error))
    if len(selection.instances) > MAX_SUB_OPERATIONS:
        return Refusal(Status.UNABLE_TO_PROCESS, "more than 65535 sub-operations")
    return area, selection


def prepare(services: ServiceContext, assoc: Association, request: C_GET | C_MOVE,
            responder: Responder, model: InformationModel, verb: str
            ) -> tuple[StorageArea, Selection] | None:
    """:func:`select_instances`; on a refusal its final response is sent here and ``None``
    returned."""
    selected = select_instances(services, assoc, request, responder.transfer_syntax, model,
                                verb)
    if isinstance(selected, Refusal):
        responder.send(selected.status, error_comment=selected.error_comment)
        return None
    return selected
