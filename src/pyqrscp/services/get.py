"""C-GET: C-STORE sub-operations on the requesting association (the requestor in the SCP role).

Each dataset goes out as the bytes stored.  The thread holds the association's socket
(``channel.py``) for the sub-operations: requests and pending responses are written to it and the
C-STORE-RSPs (and a C-CANCEL-RQ) read from it directly, with no hand-off between pynetdicom's
threads.  When the channel cannot be held, pynetdicom's DUL frames the messages and the responses
are read from its DIMSE queue on this same thread (the association's reactor: nothing else can
take them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET
from pynetdicom.presentation import PresentationContext

from pyqrscp.archive.index.query import InformationModel
from pyqrscp.dimse.commands import C_CANCEL_RQ, is_success_response, store_request
from pyqrscp.dimse.contexts import UNCOMPRESSED
from pyqrscp.dimse.conversion import convert
from pyqrscp.dimse.pdus import Buffer
from pyqrscp.errors import PeerUnavailable, SubOperationFailed
from pyqrscp.link.association import note_cancel, reply_reader, send_message
from pyqrscp.link.channel import Channel, held_channel
from pyqrscp.link.idle import fast_polling
from pyqrscp.link.responses import Reply, await_store_response
from pyqrscp.services.common import peer_of
from pyqrscp.services.context import ServiceContext
from pyqrscp.services.retrieve import (
    ExpectedPending,
    Progress,
    Responder,
    message_ids,
    prepare,
    run_sub_operations,
    stored_dataset,
)
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)


def serve(services: ServiceContext, assoc: Association, request: C_GET,
          context: PresentationContext, model: InformationModel) -> None:
    """Answer one C-GET-RQ completely: pending responses, then the final one."""
    responder = Responder(assoc, request, context)
    who = peer_of(assoc)
    prepared = prepare(services, assoc, request, responder, model, "Get")
    if prepared is None:
        return
    area, selection = prepared
    LOGGER.info("Received Get Request from %s: %d instance(s)", who, len(selection.instances))
    if not selection.instances:
        responder.send(Status.SUCCESS, Progress(remaining=0))
        return
    with fast_polling(assoc), held_channel(assoc) as held:
        sender = _GetSender(assoc, services.options.response_timeout, held, responder)
        progress = run_sub_operations(selection, area, sender, responder.is_cancelled,
                                      responder.pending, responder.expect)
    if sender.broken:  # aborted only now: pynetdicom must read the socket to finish it
        assoc.abort()
    status = progress.final_status()
    LOGGER.info("Get from %s: %s (%d completed, %d failed, %d warning, %d remaining)", who,
                status.name, progress.completed, progress.failed, progress.warning,
                progress.remaining)
    if assoc.is_established:
        responder.send(status, progress)


@dataclass(frozen=True, slots=True)
class _Request:
    """A C-STORE-RQ ready to send: its command and the dataset bytes."""

    context_id: int
    message_id: int
    command: bytes
    dataset: bytes | memoryview


@dataclass(frozen=True, slots=True)
class _Ahead:
    """What goes out the moment the receiver answers ``message_id`` with Success: the pending
    response that answer calls for and the next request, framed, in one write."""

    message_id: int
    following: _Request
    pending: ExpectedPending
    framed: Iterator[list[Buffer]]


class _GetSender:
    """One C-STORE sub-operation on the requesting association.

    Holding the channel, the next request and the pending response a Success calls for are
    framed while the receiver stores the current instance, and sent as soon as its C-STORE-RSP
    is read (the response is checked first; nothing else is done before the write): the time
    between the receiver's response and the next request is what the receiver waits."""

    def __init__(self, assoc: Association, dimse_timeout: float, held: Channel | None,
                 responder: Responder) -> None:
        self.assoc = assoc
        self.dimse_timeout = dimse_timeout
        self.held = held
        self.responder = responder
        self.read = reply_reader(assoc, held, self._on_command if held is not None else None)
        self.broken = False
        """The association must be aborted (no C-STORE response in time, or a send of the
        next request cut short): no further response may be sent on it."""
        self.ids = message_ids(1)
        self._contexts: dict[tuple[str, str], PresentationContext] = {}
        self._next: _Request | None = None
        self._ahead: _Ahead | None = None
        self._sent_ahead: _Request | None = None
        self._send_failure: PeerUnavailable | None = None

    def prepare(self, sop_instance: str, sop_class: str, transfer_syntax: str,
                path: Path) -> _Request:
        self._next = None
        context = self._context_for(sop_class, transfer_syntax)
        stored_syntax, stored = stored_dataset(path)
        data: bytes | memoryview = stored
        target = str(context.transfer_syntax[0])
        if target != stored_syntax:
            data = convert(data, stored_syntax, target)
        message_id = next(self.ids)
        self._next = _Request(int(context.context_id or 0), message_id,
                              store_request(sop_class, sop_instance, message_id), data)
        return self._next

    def start(self, request: _Request) -> None:
        if self._next is request:
            self._next = None
        if self._sent_ahead is request:
            self._sent_ahead = None
            return
        if self._send_failure is not None:
            raise self._send_failure
        if not self.assoc.is_established:
            raise PeerUnavailable("the requesting association is gone")
        try:
            send_message(self.assoc, request.context_id, request.command, request.dataset)
        except PeerUnavailable:  # part of a PDU may be out: nothing may follow it
            self.broken = True
            raise

    def finish(self, request: _Request) -> int:
        self._ahead = self._arrange_ahead(request)
        try:
            response = await_store_response(self.read, request.message_id, self.dimse_timeout,
                                            self._other)
        finally:
            self._ahead = None
        if response is None:
            self.broken = True
            raise PeerUnavailable(f"no C-STORE response within {self.dimse_timeout} s "
                                  "(aborting)")
        if self._send_failure is not None:  # nothing may follow a PDU sent in part
            raise self._send_failure
        return response.status

    def _arrange_ahead(self, request: _Request) -> _Ahead | None:
        """The next request and the pending response, framed, when both are ready."""
        following, pending = self._next, self.responder.expected
        if self.held is None or following is None or pending is None:
            return None
        framed = self.held.framed([(self.responder.context_id, pending.command, None),
                                   (following.context_id, following.command,
                                    following.dataset)])
        return _Ahead(request.message_id, following, pending, framed)

    def _on_command(self, command: dict[int, bytes]) -> None:
        """A command set just read: the Success response to the request out sends what was
        arranged ahead, unless a C-CANCEL-RQ came first or the association is ending."""
        ahead, self._ahead = self._ahead, None
        if (ahead is None or self.held is None or self.held.cancelled
                or not is_success_response(command, ahead.message_id)
                or not self.assoc.is_established):
            return
        try:
            self.held.send_framed(ahead.framed)
        except PeerUnavailable as error:  # part of a PDU may be out: the association ends
            self._send_failure = error
            self.broken = True
            return
        ahead.pending.sent = True
        self._sent_ahead = ahead.following

    def _other(self, reply: Reply) -> None:
        """A C-CANCEL-RQ on the way is noted for :meth:`Responder.is_cancelled`; other
        messages are dropped."""
        if reply.command_field == C_CANCEL_RQ:
            note_cancel(self.assoc, reply.responded_to)
            return
        LOGGER.warning("Get: ignoring an unexpected command 0x%04X during sub-operations",
                       reply.command_field)

    def _context_for(self, sop_class: str, transfer_syntax: str) -> PresentationContext:
        """An accepted context where we are SCU for ``sop_class``: the stored syntax, else an
        uncompressed one (looked up once per pair: pynetdicom rebuilds its list per call)."""
        key = (sop_class, transfer_syntax)
        if key not in self._contexts:
            self._contexts[key] = scu_context(self.assoc, sop_class, transfer_syntax)
        return self._contexts[key]


def scu_context(assoc: Association, sop_class: str, transfer_syntax: str
                ) -> PresentationContext:
    """An accepted context where the archive is SCU for ``sop_class``: in ``transfer_syntax``
    if there is one, else in an uncompressed syntax; :class:`SubOperationFailed` without."""
    candidates = [cx for cx in assoc.accepted_contexts
                  if cx.abstract_syntax == sop_class and cx.as_scu]
    for wanted in (transfer_syntax, *UNCOMPRESSED):
        found = next((cx for cx in candidates if cx.transfer_syntax[0] == wanted), None)
        if found is not None:
            return found
    raise SubOperationFailed(f"the requestor accepted no context for {UID(sop_class).name} "
                             f"in {UID(transfer_syntax).name} or an uncompressed syntax")
