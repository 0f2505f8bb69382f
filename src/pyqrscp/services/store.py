"""C-STORE: keep the bytes as received, in the called AE title's storage area.

pyqrscp serves C-STORE itself (through :meth:`Services.route_request`) on the association's
reactor thread.  After the first request of a stream (handed over by pynetdicom) the thread
holds the association's socket (``channel.py``): it reads the following C-STORE-RQs and writes
their responses itself, with no hand-off between pynetdicom's threads, until the peer is quiet
for :data:`RECEIVING_WINDOW` or sends anything else, which goes back to pynetdicom unread.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from pyqrscp.archive.dicomfile import read_header
from pyqrscp.archive.spool import ReceivedDataset
from pyqrscp.dimse.commands import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    C_STORE_RQ,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    MESSAGE_ID,
    NO_DATASET,
    store_response,
)
from pyqrscp.errors import InvalidDataset, PeerUnavailable, PyqrscpError
from pyqrscp.link.association import (
    DimseMessage,
    next_request,
    pass_on,
    send_message,
    takes_requests,
    transfer_syntax_of,
)
from pyqrscp.link.channel import Channel, MessageBroken, PushedBack, Received, held_channel
from pyqrscp.link.idle import fast_polling
from pyqrscp.link.titles import called_aet
from pyqrscp.services.common import peer_of
from pyqrscp.services.context import ServiceContext
from pyqrscp.services.statuses import failure
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)

RECEIVING_WINDOW = 0.2
"""Seconds after a C-STORE during which the association counts as receiving."""
_WAIT_SLICE = 0.001
"""How often, while waiting for the next request, release and abort are looked for (as often
as pynetdicom's reactor does)."""


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """What pyqrscp needs of a C-STORE-RQ, from pynetdicom's primitive or a held channel."""

    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    dataset: bytes | ReceivedDataset
    """The bare dataset, or (when it came through :meth:`Services.dataset_sink`) the file
    header and dataset as received, possibly spooled or refused."""

    @classmethod
    def of_primitive(cls, request: C_STORE) -> StoreRequest:
        received = request.DataSet
        dataset = (received if isinstance(received, ReceivedDataset)
                   else received.getvalue() if received is not None else b"")
        return cls(int(request.MessageID or 0), str(request.AffectedSOPClassUID or ""),
                   str(request.AffectedSOPInstanceUID or ""), dataset)

    @classmethod
    def of_received(cls, received: Received) -> StoreRequest:
        dataset = received.dataset
        return cls(received.us(MESSAGE_ID), received.text(AFFECTED_SOP_CLASS_UID),
                   received.text(AFFECTED_SOP_INSTANCE_UID),
                   dataset if isinstance(dataset, (bytes, ReceivedDataset)) else b"")


def serve(services: ServiceContext, assoc: Association, request: DimseMessage, context_id: int
          ) -> bool:
    """Serve a C-STORE-RQ and every C-STORE that follows within :data:`RECEIVING_WINDOW`.

    Returns False (pynetdicom serves it) for a request pyqrscp does not take: invalid, on an
    unknown context, or of a SOP class that is not a storage class.
    """
    if not isinstance(request, C_STORE) or not _ours(assoc, request, context_id):
        return False
    with fast_polling(assoc):
        return _serve_following(services, assoc, request, context_id)


def _serve_following(services: ServiceContext, assoc: Association, request: C_STORE,
                     context_id: int) -> bool:
    while True:
        _serve_held(services, assoc, StoreRequest.of_primitive(request), context_id)
        following = next_request(assoc, RECEIVING_WINDOW, _WAIT_SLICE)
        if following is None:
            return True
        context_id, message = following
        if not isinstance(message, C_STORE) or not _ours(assoc, message, context_id):
            pass_on(assoc, message, context_id)
            return True
        request = message


def _serve_held(services: ServiceContext, assoc: Association, first: StoreRequest,
                context_id: int) -> None:
    """Serve the request pynetdicom handed over, then C-STORE-RQs straight from the socket
    while they keep coming; abort (once the socket is pynetdicom's again) when a message broke
    past the point of giving it back.  The socket is held before the first response goes out:
    the peer's next request, sent once it has that response, is read by the holder whole,
    never begun by pynetdicom (which cannot split a PDU holding the end of one message and
    the start of the next)."""
    broken: MessageBroken | None = None
    with held_channel(assoc) as held:
        try:
            _serve_one(services, assoc, first, context_id)
        except PeerUnavailable as error:  # pynetdicom finds the connection closed next
            LOGGER.error("Store response to %s not sent: %s", peer_of(assoc), error)
            return
        if held is not None:
            broken = _serve_held_messages(services, assoc, held)
    if broken is not None:
        LOGGER.error("Aborting the association of %s: %s", peer_of(assoc), broken)
        assoc.abort()


def _serve_held_messages(services: ServiceContext, assoc: Association, held: Channel
                         ) -> MessageBroken | None:
    take = functools.partial(_ours_command, assoc)
    while True:
        try:
            received = held.next_message(RECEIVING_WINDOW, take)
        except MessageBroken as broken:
            return broken
        except PushedBack:
            return None
        if received is None:
            return None
        try:
            _serve_one(services, assoc, StoreRequest.of_received(received),
                       received.context_id)
        except PeerUnavailable as error:  # pynetdicom finds the connection closed next
            LOGGER.error("Store response to %s not sent: %s", peer_of(assoc), error)
            return None


def handle(services: ServiceContext, event: Event) -> int | Dataset:
    """The ``EVT_C_STORE`` handler, for a C-STORE pynetdicom serves (see :func:`serve`)."""
    request = cast(C_STORE, event.request)
    status, comment = store(services, event.assoc, StoreRequest.of_primitive(request),
                            str(event.context.transfer_syntax))
    if not comment:
        return int(status)
    return failure(PyqrscpError(comment), status)


def store(services: ServiceContext, assoc: Association, request: StoreRequest, transfer_syntax: str
          ) -> tuple[Status, str]:
    """Validate, store durably, index; ``(status, error comment)`` once the index row has
    committed (or the instance was refused)."""
    who = peer_of(assoc)
    entry = services.entry_of(assoc)
    if entry is None:
        called = called_aet(assoc)
        return _failed(who, PyqrscpError(f"no AETable entry for {called!r}"))
    if not entry.access.can_store:
        LOGGER.warning("Store refused from %s: %s is read-only", who, entry.ae_title)
        return Status.REFUSED_NOT_AUTHORIZED, f"{entry.ae_title} is read-only"
    if services.options.ignore:
        LOGGER.info("Received Store Request from %s (ignored, --ignore)", who)
        return Status.SUCCESS, ""
    received = request.dataset
    if not isinstance(received, ReceivedDataset):
        received = services.dataset_sink(assoc, transfer_syntax, C_STORE_RQ,
                                          request.sop_class_uid, request.sop_instance_uid)
        received.write(request.dataset)
    try:
        if received.refusal is not None:
            raise received.refusal
        with received.contents() as data:
            header = read_header(data, services.options.uid_padding)
            _check_command(request, header.sop_class_uid, header.sop_instance_uid,
                           services.options.uid_padding)
            result = services.area_for(entry).store(header, data, received.take_spool())
    except PyqrscpError as error:
        return _failed(who, error)
    finally:
        received.discard()
    LOGGER.info("Stored %s from %s as %s%s", header.sop_instance_uid, who,
                result.file_name, " (replaced older copy)" if result.replaced else "")
    return Status.SUCCESS, ""


def _failed(who: str, error: Exception) -> tuple[Status, str]:
    LOGGER.error("Store failed from %s: %s", who, error)
    response = failure(error)
    return Status(response.Status), str(response.ErrorComment)


def _serve_one(services: ServiceContext, assoc: Association, request: StoreRequest,
               context_id: int) -> None:
    """Store one instance and answer it (unless the association ended meanwhile)."""
    transfer_syntax = transfer_syntax_of(assoc, context_id) or ""
    try:
        status, comment = store(services, assoc, request, transfer_syntax)
    except Exception as error:  # as pynetdicom's handler guard: answer, keep serving
        LOGGER.exception("Store failed from %s", peer_of(assoc))
        status, comment = _failed(peer_of(assoc), error)
    if not assoc.is_established:
        return
    response = store_response(request.sop_class_uid, request.sop_instance_uid,
                              request.message_id, int(status), comment)
    send_message(assoc, context_id, response, None)


def _ours(assoc: Association, request: DimseMessage, context_id: int) -> bool:
    """A C-STORE-RQ pyqrscp serves (pynetdicom serves the rest: invalid ones, say)."""
    return (isinstance(request, C_STORE) and request.is_valid_request
            and _storage_request(assoc, context_id, str(request.AffectedSOPClassUID)))


def _ours_command(assoc: Association, context_id: int, command: dict[int, bytes]) -> bool:
    """:func:`_ours` for a command read from a held channel: a C-STORE-RQ with a dataset and
    the identifying fields pynetdicom requires."""
    received = Received(context_id, command, None)
    return (received.us(COMMAND_FIELD) == C_STORE_RQ and MESSAGE_ID in command
            and bool(received.text(AFFECTED_SOP_INSTANCE_UID))
            and received.us(COMMAND_DATA_SET_TYPE) != NO_DATASET
            and _storage_request(assoc, context_id, received.text(AFFECTED_SOP_CLASS_UID)))


def _storage_request(assoc: Association, context_id: int, sop_class_uid: str) -> bool:
    """On an accepted context, of a storage SOP class, and before our release request."""
    return (bool(sop_class_uid) and takes_requests(assoc, context_id)
            and uid_to_service_class(sop_class_uid) is StorageServiceClass)


def _check_command(request: StoreRequest, sop_class_uid: str, sop_instance_uid: str,
                   uid_padding: bool) -> None:
    """The command's UIDs must name the dataset that follows (dcmqrscp checks the same)."""
    def clean(value: object) -> str:
        text = str(value or "").rstrip("\x00")
        return text.strip(" ") if uid_padding else text

    if clean(request.sop_class_uid) != sop_class_uid:
        raise InvalidDataset(f"SOP Class UID differs from the command's: {sop_class_uid}")
    if clean(request.sop_instance_uid) != sop_instance_uid:
        raise InvalidDataset(f"SOP Instance UID differs from the command's: {sop_instance_uid}")




