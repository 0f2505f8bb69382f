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
import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.uid import UID
from pynetdicom.dimse_primitives import C_STORE

from pyqrscp.archive.index.query import InformationModel
from pyqrscp.dimse.commands import C_CANCEL_RQ, C_STORE_RSP, store_request
from pyqrscp.dimse.contexts import UNCOMPRESSED
from pyqrscp.dimse.conversion import convert
from pyqrscp.errors import PeerUnavailable, SubOperationFailed
from pyqrscp.link.channel import Channel, PushedBack, held_channel
from pyqrscp.link.idle import fast_polling
from pyqrscp.services.common import peer_of
from pyqrscp.services.retrieve import (
    Progress,
    Responder,
    message_ids,
    prepare,
    run_sub_operations,
    send_message,
    stored_dataset,
)
from pyqrscp.status import Status

if TYPE_CHECKING:
    from pyqrscp.services import Services

LOGGER = logging.getLogger(__name__)
_POLL_SECONDS = 0.5


def serve(services: Services, assoc: Any, request: Any, context: Any,
          model: InformationModel) -> None:
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
    with fast_polling(assoc.dul), held_channel(assoc) as held:
        sender = _GetSender(assoc, services.options.response_timeout, held)
        progress = run_sub_operations(selection, area, sender.send,
                                      responder.is_cancelled, responder.pending)
    if sender.timed_out:  # aborted only now: pynetdicom must read the socket to finish it
        assoc.abort()
    status = progress.final_status()
    LOGGER.info("Get from %s: %s (%d completed, %d failed, %d warning, %d remaining)", who,
                status.name, progress.completed, progress.failed, progress.warning,
                progress.remaining)
    if assoc.is_established:
        responder.send(status, progress)


class _GetSender:
    """One C-STORE sub-operation on the requesting association."""

    def __init__(self, assoc: Any, dimse_timeout: float, held: Channel | None) -> None:
        self.assoc = assoc
        self.dimse_timeout = dimse_timeout
        self.held = held
        self.timed_out = False
        self.ids = message_ids(1)
        self._contexts: dict[tuple[str, str], Any] = {}

    def send(self, sop_instance: str, sop_class: str, transfer_syntax: str, path: Path) -> int:
        context = self._context_for(sop_class, transfer_syntax)
        stored_syntax, data = stored_dataset(path)
        target = str(context.transfer_syntax[0])
        if target != stored_syntax:
            data = convert(data, stored_syntax, target)
        if not self.assoc.is_established:
            raise PeerUnavailable("the requesting association is gone")
        message_id = next(self.ids)
        send_message(self.assoc, int(context.context_id),
                     store_request(sop_class, sop_instance, message_id), data)
        if self.held is not None:
            return self._held_response_to(message_id, self.held)
        return self._response_to(message_id)

    def _context_for(self, sop_class: str, transfer_syntax: str) -> Any:
        """An accepted context where we are SCU for ``sop_class``: the stored syntax, else an
        uncompressed one (looked up once per pair: pynetdicom rebuilds its list per call)."""
        key = (sop_class, transfer_syntax)
        if key not in self._contexts:
            self._contexts[key] = self._find_context(sop_class, transfer_syntax)
        return self._contexts[key]

    def _find_context(self, sop_class: str, transfer_syntax: str) -> Any:
        candidates = [cx for cx in self.assoc.accepted_contexts
                      if cx.abstract_syntax == sop_class and cx.as_scu]
        for wanted in (transfer_syntax, *UNCOMPRESSED):
            found = next((cx for cx in candidates if cx.transfer_syntax[0] == wanted), None)
            if found is not None:
                return found
        raise SubOperationFailed(f"the requestor accepted no context for {UID(sop_class).name} "
                                 f"in {UID(transfer_syntax).name} or an uncompressed syntax")

    def _held_response_to(self, message_id: int, held: Channel) -> int:
        """Read the C-STORE-RSP from the held socket; a C-CANCEL-RQ on the way is noted for
        :meth:`Responder.is_cancelled`, other messages are dropped as on the queue path."""
        deadline = time.monotonic() + self.dimse_timeout
        while (wait := deadline - time.monotonic()) > 0:
            try:
                received = held.next_message(wait, _any_message)
            except PushedBack as pushed:
                raise PeerUnavailable(f"the requestor sent {pushed} during sub-operations"
                                      ) from None
            if received is None:
                break
            field = received.us(0x0100)
            if field == C_STORE_RSP and received.us(0x0120) == message_id and 0x0900 in \
                    received.command:
                return received.us(0x0900)
            if field == C_CANCEL_RQ:
                held.cancelled.add(received.us(0x0120))
                continue
            LOGGER.warning("Get: ignoring an unexpected command 0x%04X during sub-operations",
                           field)
        self.timed_out = True
        raise PeerUnavailable(f"no C-STORE response within {self.dimse_timeout} s (aborting)")

    def _response_to(self, message_id: int) -> int:
        """Wait (bounded by the DIMSE timeout) for the C-STORE-RSP; this thread is the
        association's reactor, so the queue holds nothing another thread waits for."""
        deadline = time.monotonic() + self.dimse_timeout
        while time.monotonic() < deadline:
            try:
                _context_id, message = self.assoc.dimse.msg_queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self.assoc.is_established or not self.assoc.dul.is_alive():
                    raise PeerUnavailable("the requesting association is gone") from None
                continue
            if message is None:
                continue
            if (isinstance(message, C_STORE) and message.is_valid_response
                    and message.MessageIDBeingRespondedTo == message_id):
                return int(message.Status or 0)
            LOGGER.warning("Get: ignoring an unexpected %s during sub-operations",
                           type(message).__name__)
        self.assoc.abort()
        raise PeerUnavailable(f"no C-STORE response within {self.dimse_timeout} s (aborted)")


def _any_message(_context_id: int, _command: dict[int, bytes]) -> bool:
    return True
