"""How C-FIND responses reach the peer: in batches that start small, written by the thread
that makes them.

A peer such as ``findscu`` spends longer on each response than pyqrscp does making it, so
what the peer waits for is the first response; after that it must never run dry.  The first
batch holds one response, and each next batch as many as went out before it (up to
:data:`_BATCH_RESPONSES`): the peer starts at once, and later responses still go out in few
writes.

Where the association's channel can be held (:func:`~pyqrscp.link.channel.held_channel`),
the batches go straight to the socket from the serving thread, and the socket is looked at for
a C-CANCEL-RQ after each batch.  A hand-off to pynetdicom's DUL thread would wait for that
thread to get the interpreter lock, which the serving thread keeps while it makes the next
responses (milliseconds, not the microseconds of the write).  Without a held channel the
batches go through the DUL, one primitive each.
"""

from __future__ import annotations

import logging
import time

from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.presentation import PresentationContext

from pyqrscp.dimse.commands import C_CANCEL_RQ, COMMAND_FIELD, command_us, find_response
from pyqrscp.errors import PeerUnavailable
from pyqrscp.link.association import (
    cancel_requested,
    note_cancel,
    queued_to_send,
    send_messages,
    wait_until_sent,
)
from pyqrscp.link.channel import Channel, PushedBack
from pyqrscp.link.responses import Reply
from pyqrscp.services.common import peer_of
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)

_QUEUED_RESPONSES = 16
"""pynetdicom's DUL reads the socket only when it has nothing left to send; past this many
P-DATA primitives queued for it to send (:func:`queued_to_send`: one per batch where a batch
goes as one primitive, else one per PDU of each response), wait for it to drain so that a
C-CANCEL is seen between batches."""
_BATCH_RESPONSES = 16
_BATCH_BYTES = 32 * 1024
"""Pending responses go out together, up to this many or this many bytes of identifiers
(and with the final response): one write each batch."""
_BATCH_SECONDS = 0.02
"""A batch goes out once its first response has waited this long (seen as the next one is
queued), and before every fetch of more rows from the index: when matches come slowly, the
first responses wait neither for a full batch nor for the next database round trip."""


def _is_cancel(_context_id: int, command: dict[int, bytes]) -> bool:
    return command_us(command, COMMAND_FIELD) == C_CANCEL_RQ


class FindResponder:
    """Sends C-FIND responses on the requesting association, on ``held`` when given (the
    caller holds the channel for the whole request), else through pynetdicom's DUL."""

    def __init__(self, assoc: Association, request: C_FIND, context: PresentationContext,
                 dimse_timeout: float, held: Channel | None = None) -> None:
        self.assoc = assoc
        self.message_id = int(request.MessageID or 0)
        self.sop_class = str(request.AffectedSOPClassUID)
        self.context_id = int(context.context_id or 0)
        self.transfer_syntax = UID(context.transfer_syntax[0])
        self.dimse_timeout = dimse_timeout
        self.held = held
        self.broken = False
        """A write to the held socket failed (part of a PDU may be out): nothing more may be
        sent, the caller aborts the association once the hold ends."""
        self._reading = held is not None
        """Look for a C-CANCEL-RQ on the held socket (until something else arrives, which is
        pushed back for pynetdicom to handle once the hold ends)."""
        self._pending_command = find_response(self.sop_class, self.message_id,
                                              int(Status.PENDING), has_identifier=True)
        """The same bytes head every pending response of the request."""
        self._batch: list[tuple[bytes, bytes | None]] = []
        self._batch_bytes = 0
        self._batch_began = 0.0
        self._sent = 0

    def is_cancelled(self) -> bool:
        """Has a C-CANCEL for this request arrived?"""
        return cancel_requested(self.assoc, self.message_id)

    def pending(self, identifier: bytes) -> None:
        """One pending response: the command set, then the identifier, each in P-DATA-TF PDUs
        of its own; batched (the batch so far goes out first when it is full)."""
        now = time.monotonic()
        if self._batch and (len(self._batch) >= min(_BATCH_RESPONSES, max(1, self._sent))
                            or self._batch_bytes >= _BATCH_BYTES
                            or now - self._batch_began >= _BATCH_SECONDS):
            self.flush()
        if not self._batch:
            self._batch_began = now
        self._batch.append((self._pending_command, identifier))
        self._batch_bytes += len(identifier)

    def flush(self) -> None:
        """Send the pending responses batched so far (through the DUL: first waiting, past
        :data:`_QUEUED_RESPONSES`, for it to drain), then look for a C-CANCEL-RQ."""
        if not self._batch:
            return
        if self.held is None and queued_to_send(self.assoc) >= _QUEUED_RESPONSES:
            self.drain()
        self._send_batch()
        self._read_cancels()

    def _send_batch(self) -> None:
        """Send the batch; :class:`PeerUnavailable` when the held socket's write fails."""
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch or self.broken or not self.assoc.is_established:
            return
        if self.held is None:
            send_messages(self.assoc, self.context_id, batch)
        else:
            try:
                for command, identifier in batch:
                    self.held.send(self.context_id, command, identifier, defer=True)
                self.held.flush()
            except PeerUnavailable:
                self.broken = True
                raise
        self._sent += len(batch)

    def _read_cancels(self) -> None:
        """Take the C-CANCEL-RQs that have arrived on the held socket (without waiting)."""
        if self.held is None or not self._reading or self.broken:
            return
        try:
            while (received := self.held.next_message(0, _is_cancel)) is not None:
                note_cancel(self.assoc, Reply.of_command(received.command).responded_to)
        except PushedBack:  # a release, an abort, another request: pynetdicom's after the hold
            self._reading = False

    def drain(self) -> None:
        """Send the batch, then (through the DUL) wait until everything queued is sent; abort
        a peer that reads nothing for the DIMSE timeout (pynetdicom's own sender would block
        as long).  A held socket's writes are bounded by its own timeout."""
        self._send_batch()
        if self.held is not None:
            return
        if not wait_until_sent(self.assoc, self.dimse_timeout):
            LOGGER.error("Find: %s read no response for %s s, aborting",
                         peer_of(self.assoc), self.dimse_timeout)
            self.assoc.abort()

    def final(self, status: Status, error_comment: str = "") -> None:
        """The last response (no identifier), after the pending ones not yet sent."""
        if not self.assoc.is_established or self.broken:
            return
        self._batch.append((find_response(self.sop_class, self.message_id, int(status),
                                          error_comment), None))
        try:
            self._send_batch()
        except PeerUnavailable as error:
            LOGGER.error("Find: final response to %s not sent: %s", peer_of(self.assoc), error)
