"""What pyqrscp's services ask of an accepted association: send a message, hold its channel
(:func:`~pyqrscp.link.channel.held_channel`), read the next message, cancels.

Services call these functions and never pynetdicom's internals; these use the held channel
when the calling thread holds it, pynetdicom's queues otherwise (:mod:`internals`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ABORT, A_P_ABORT, P_DATA
from pynetdicom.presentation import PresentationContext

from pyqrscp.dimse.pdus import max_pdv, message_primitive, messages_primitive, p_data_primitives
from pyqrscp.errors import PeerUnavailable
from pyqrscp.link import internals
from pyqrscp.link.channel import Channel, PushedBack, wait_for_dul_room
from pyqrscp.link.internals import DimseMessage
from pyqrscp.link.reactor import send_pdu_lazily, wait_for_sending

__all__ = ["DimseMessage"]  # the type of the messages below, for services' annotations
from pyqrscp.link.responses import ReadReply, Reply

T = TypeVar("T")
_POLL_SECONDS = 0.5
"""How often a wait on pynetdicom's queue looks whether the association is gone."""


def send_message(assoc: Association, context_id: int, command: bytes,
                 dataset: bytes | memoryview | None, defer: bool = False) -> None:
    """Send one DIMSE message: straight to the socket when this thread holds the association's
    channel, else queued for pynetdicom's DUL, which sends it in order (a few PDUs at a time:
    a peer announcing a tiny maximum PDU length must not fill memory with PDUs to send).
    ``defer``: the message may wait to go out with the next one (a pending response)."""
    channel = Channel.of(assoc)
    if channel is not None and channel.held_here():
        channel.send(context_id, command, dataset, defer=defer)
        return
    peer_max_pdu = int(assoc.requestor.maximum_length or 0)
    data = bytes(dataset) if dataset is not None else None  # pynetdicom's DUL keeps it
    primitives: Iterable[P_DATA]
    if channel is not None and _fits(command, data, peer_max_pdu):
        # one turn of the DUL's loop instead of two; the channel sends one PDU per PDV
        primitives = (message_primitive(context_id, command, data),)
    else:
        primitives = p_data_primitives(context_id, command, data, peer_max_pdu)
    for primitive in primitives:
        wait_for_dul_room(assoc)
        if defer:
            send_pdu_lazily(assoc.dul, primitive)
        else:
            assoc.dul.send_pdu(primitive)


def send_messages(assoc: Association, context_id: int,
                  messages: Sequence[tuple[bytes, bytes | None]]) -> None:
    """Send several DIMSE messages, in order: one primitive, one turn of pynetdicom's DUL and
    one write for all of them where the channel frames one PDU per PDV and each part fits a
    PDV of the peer; else as :func:`send_message` each."""
    channel = Channel.of(assoc)
    peer_max_pdu = int(assoc.requestor.maximum_length or 0)
    if (channel is None or channel.held_here() or len(messages) < 2
            or not all(_fits(command, dataset, peer_max_pdu) for command, dataset in messages)):
        for command, dataset in messages:
            send_message(assoc, context_id, command, dataset)
        return
    wait_for_dul_room(assoc)
    assoc.dul.send_pdu(messages_primitive(context_id, messages))


def _fits(command: bytes, dataset: bytes | None, peer_max_pdu: int) -> bool:
    """Do the command and the dataset each fit one PDV of the peer's maximum PDU?"""
    limit = max_pdv(peer_max_pdu)
    return len(command) <= limit and (dataset is None or len(dataset) <= limit)


def queued_to_send(assoc: Association) -> int:
    """PDUs waiting to be sent by pynetdicom's DUL."""
    return internals.queued_to_send(assoc.dul)


def wait_until_sent(assoc: Association, timeout: float) -> bool:
    """Wait until pynetdicom's DUL has taken everything queued for it to send, woken as it
    takes each message; True then or once the association has ended (nothing left to wait
    for), False when it still has something to send after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if not assoc.is_established or not assoc.dul.is_alive():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if wait_for_sending(assoc.dul, 1, min(remaining, _POLL_SECONDS)):
            return True


def cancel_requested(assoc: Association, message_id: int) -> bool:
    """Has a C-CANCEL for ``message_id`` arrived?  pynetdicom files those it reads by message
    ID; a held channel files those its holder reads.  Consumed when found."""
    channel = Channel.of(assoc)
    if channel is not None and message_id in channel.cancelled:
        channel.cancelled.discard(message_id)
        return True
    return internals.take_cancel(assoc.dimse, message_id)


def note_cancel(assoc: Association, message_id: int) -> None:
    """A C-CANCEL-RQ read from the held channel, for :func:`cancel_requested`."""
    channel = Channel.of(assoc)
    if channel is not None:
        channel.cancelled.add(message_id)


def forget_cancels(assoc: Association) -> None:
    """C-CANCELs belong to the request they name: none outlives it (pynetdicom's by message
    ID, the held channel's too)."""
    internals.forget_cancels(assoc.dimse)
    channel = Channel.of(assoc)
    if channel is not None:
        channel.cancelled.clear()


def requestor_gone(assoc: Association) -> bool:
    """True once the requesting association is aborted, even while its reactor is busy."""
    if not assoc.is_established:
        return True
    return isinstance(assoc.dul.peek_next_pdu(), (A_ABORT, A_P_ABORT))


def presentation_context(assoc: Association, context_id: int) -> PresentationContext | None:
    """An accepted presentation context by its ID."""
    return internals.accepted_context(assoc, context_id)


def transfer_syntax_of(assoc: Association, context_id: int) -> str | None:
    """The transfer syntax of an accepted presentation context; None for another ID."""
    context = internals.accepted_context(assoc, context_id)
    return str(context.transfer_syntax[0]) if context is not None else None


def takes_requests(assoc: Association, context_id: int) -> bool:
    """Is ``context_id`` accepted, and has this side not asked to release?"""
    return (internals.accepted_context(assoc, context_id) is not None
            and not internals.release_sent(assoc))


def next_request(assoc: Association, window: float, slice_seconds: float
                 ) -> tuple[int, DimseMessage] | None:
    """The next DIMSE message pynetdicom completes within ``window`` seconds (for the
    association's own thread); None once the peer is quiet, releases or aborts (the reactor
    then handles it as usual)."""
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        following = internals.next_queued_message(assoc.dimse, slice_seconds)
        if following is not None:
            return following
        # a release or abort waits in the DUL's queue for the reactor: leave it there
        if (internals.is_ending(assoc) or not assoc.is_established
                or not assoc.dul.is_alive() or assoc.dul.peek_next_pdu() is not None):
            return None
    return None


def pass_on(assoc: Association, message: DimseMessage, context_id: int) -> None:
    """Serve a request the caller read but does not serve as if the reactor had read it."""
    internals.serve_request(assoc, message, context_id)


def reply_reader(assoc: Association, held: Channel | None,
                 on_command: Callable[[dict[int, bytes]], None] | None = None) -> ReadReply:
    """How the association's own thread reads the next message during its C-STORE
    sub-operations: from the held channel, else from pynetdicom's queue.  ``on_command`` (held
    channel only) is given each command set the moment it is whole, before anything else is
    done with it."""
    if held is not None:
        def take(_context_id: int, command: dict[int, bytes]) -> bool:
            if on_command is not None:
                on_command(command)
            return True

        def read_held(wait: float) -> Reply | None:
            try:
                received = held.next_message(wait, take)
            except PushedBack as pushed:
                raise PeerUnavailable(f"the requestor sent {pushed} during sub-operations"
                                      ) from None
            return Reply.of_command(received.command) if received is not None else None
        return read_held

    def read_queued(wait: float) -> Reply | None:
        message = internals.next_queued_message(assoc.dimse, min(wait, _POLL_SECONDS))
        if message is not None:
            return Reply.of_primitive(message[1])
        if not assoc.is_established or not assoc.dul.is_alive():
            raise PeerUnavailable("the requesting association is gone")
        return None
    return read_queued


def send_from_outside(assoc: Association, timeout: float, send: Callable[[], T],
                      use_internals: bool = True) -> T | None:
    """Run one of pynetdicom's ``send_*`` on an association from another thread; None when
    the association ends first or (with pynetdicom's internals) its reactor is busy past
    ``timeout`` seconds.  Without, pynetdicom's ``send_*`` wait for the reactor themselves,
    as long as it serves a request."""
    if use_internals:
        return internals.paused_reactor(assoc, timeout, send)
    return send() if assoc.is_established else None
