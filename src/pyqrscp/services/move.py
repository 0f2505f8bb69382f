"""C-MOVE: resolve the destination as dcmqrscp does, then send the matched files to it.

Everything is decided before the first response: the identifier, the matches, the destination.
The sub-association is pyqrscp's own (:mod:`pyqrscp.link.sender`): its calling AE title is the move
request's *called* AE title (what dcmqrscp does and what destinations configured for dcmqrscp
expect), and each dataset is sent as the bytes stored unless the destination needs another syntax.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_MOVE
from pynetdicom.presentation import PresentationContext

from pyqrscp.archive.index.query import InformationModel
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Config, Peer, resolve_move_destination
from pyqrscp.config.options import Options
from pyqrscp.dimse.acse import AcceptedContext, ProposedContext, propose
from pyqrscp.dimse.contexts import UNCOMPRESSED, proposed_syntaxes
from pyqrscp.dimse.conversion import convert
from pyqrscp.errors import PeerUnavailable, SubOperationFailed
from pyqrscp.link.hostnames import HostLookup, host_matches, peer_host_names
from pyqrscp.link.sender import StoreAssociation
from pyqrscp.link.titles import called_aet, calling_aet
from pyqrscp.services.common import peer_of
from pyqrscp.services.context import ServiceContext
from pyqrscp.services.retrieve import (
    Progress,
    Responder,
    Selection,
    message_ids,
    prepare,
    run_sub_operations,
    stored_dataset,
)
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)


def serve(services: ServiceContext, assoc: Association, request: C_MOVE,
          context: PresentationContext,
          model: InformationModel) -> None:
    """Answer one C-MOVE-RQ completely: pending responses, then the final one."""
    responder = Responder(assoc, request, context)
    who = peer_of(assoc)
    destination_aet = str(request.MoveDestination or "").strip()
    prepared = prepare(services, assoc, request, responder, model, "Move")
    if prepared is None:
        return
    area, selection = prepared
    destination = allowed_destination(services.config, services.options, services.hosts,
                                      calling_aet(assoc),
                                      str(assoc.requestor.address), destination_aet)
    if destination is None:
        LOGGER.error("Move from %s: destination %r unknown or not allowed", who, destination_aet)
        responder.send(Status.MOVE_DESTINATION_UNKNOWN,
                       error_comment=f"unknown or not allowed destination {destination_aet}")
        return
    LOGGER.info("Received Move Request from %s: %d instance(s) to %s (%s:%d)", who,
                len(selection.instances), destination_aet, destination.host, destination.port)
    if not selection.instances:
        responder.send(Status.SUCCESS, Progress(remaining=0))
        return
    _move(services, assoc, request, responder, selection, destination, area)


def _move(services: ServiceContext, assoc: Association, request: C_MOVE, responder: Responder,
          selection: Selection, destination: Peer, area: StorageArea) -> None:
    options = services.options
    try:
        sub = StoreAssociation.open(
            destination.host, destination.port, called_aet(assoc),
            destination.ae_title, sub_association_contexts(selection, options),
            max_pdu=options.receive_pdu_size, acse_timeout=options.acse_timeout,
            dimse_timeout=options.response_timeout, ssl_context=services.client_tls)
    except PeerUnavailable as error:
        _destination_unavailable(assoc, responder, selection, destination, error)
        return
    sender = _Sender(sub, destination.ae_title, calling_aet(assoc),
                     int(request.MessageID or 0),
                     proposed_syntaxes(options.propose_transfer_syntax))
    try:
        progress = run_sub_operations(selection, area, sender, responder.is_cancelled,
                                      responder.pending, responder.expect)
    except BaseException:
        sub.abort()
        raise
    if sender.alive:
        sub.release()
    else:
        sub.abort()
    status = progress.final_status()
    LOGGER.info("Move from %s to %s: %s (%d completed, %d failed, %d warning, %d remaining)",
                peer_of(assoc), destination.ae_title, status.name, progress.completed,
                progress.failed, progress.warning, progress.remaining)
    responder.send(status, progress)


def _destination_unavailable(assoc: Association, responder: Responder, selection: Selection,
                             destination: Peer, error: PeerUnavailable) -> None:
    """A configured destination that does not answer is known, so not 0xA801: every
    sub-operation failed, 0xA702 with the counts and the failed UIDs (as dcmqrscp answers)."""
    progress = Progress(remaining=len(selection.instances))
    for sop_instance, *_ in selection.instances:
        progress.fail(sop_instance)
    status = progress.final_status()
    LOGGER.error("Move from %s to %s (%s:%d): %s; answering 0x%04X (%s), %d sub-operation(s) "
                 "failed", peer_of(assoc), destination.ae_title, destination.host,
                 destination.port, error, int(status), status.name, progress.failed)
    responder.send(status, progress, error_comment=str(error)[:64])


class _Sender:
    """One C-STORE sub-operation on the sub-association, from the stored file's bytes."""

    def __init__(self, sub: StoreAssociation, destination_aet: str, originator_aet: str,
                 originator_message_id: int, uncompressed: list[str]) -> None:
        self.sub = sub
        self.destination_aet = destination_aet
        self.originator_aet = originator_aet
        self.originator_message_id = originator_message_id
        self.uncompressed = uncompressed
        self.ids = message_ids(1)
        self.alive = True

    def prepare(self, sop_instance: str, sop_class: str, transfer_syntax: str,
                path: Path) -> _Request:
        context = self.sub.context_for(sop_class, transfer_syntax, self.uncompressed)
        if context is None:
            raise SubOperationFailed(f"{self.destination_aet} accepted no context for "
                                     f"{UID(sop_class).name} in {UID(transfer_syntax).name} "
                                     "or an uncompressed syntax")
        stored_syntax, stored = stored_dataset(path)
        data: bytes | memoryview = stored
        if context.transfer_syntax != stored_syntax:
            data = convert(data, stored_syntax, context.transfer_syntax)
        return _Request(context, sop_instance, data, next(self.ids))

    def start(self, request: _Request) -> None:
        try:
            self.sub.send_request(request.context, request.sop_instance, request.dataset,
                                  request.message_id, self.originator_aet,
                                  self.originator_message_id)
        except PeerUnavailable:
            self.alive = False
            raise

    def finish(self, request: _Request) -> int:
        try:
            return self.sub.read_response(request.sop_instance, request.message_id).status
        except PeerUnavailable:
            self.alive = False
            raise


@dataclass(frozen=True, slots=True)
class _Request:
    """A C-STORE-RQ ready to send on the sub-association."""

    context: AcceptedContext
    sop_instance: str
    dataset: bytes | memoryview
    message_id: int


def sub_association_contexts(selection: Selection, options: Options
                             ) -> list[ProposedContext]:
    """Per SOP class: the uncompressed syntaxes, plus one context per stored compressed syntax."""
    uncompressed = proposed_syntaxes(options.propose_transfer_syntax)
    return list(propose(selection.presentation_pairs(),
                        [ts for ts in uncompressed if ts in UNCOMPRESSED]))


def allowed_destination(config: Config, options: Options, host_lookup: HostLookup,
                        calling_aet: str, address: str, destination_aet: str) -> Peer | None:
    """Resolve the Move Destination, then apply ``-ZA``/``-ZH``/``-ZV``."""
    hosts = None if options.disable_host_lookup else host_lookup
    destination = resolve_move_destination(config, destination_aet)
    if destination is None:
        return None
    restriction = options.move_restriction
    if restriction == "aetitle" and destination_aet != calling_aet:
        return None
    if restriction in ("host", "vendor"):
        names = peer_host_names(address, hosts)
        if restriction == "host" and not host_matches(destination, address, names, hosts):
            return None
        if restriction == "vendor":
            requestor = next((p for p in config.peers_named(calling_aet) if host_matches(
                p, address, names, hosts)), None)
            vendor = config.vendor_of(requestor) if requestor else None
            if vendor is None or config.vendor_of(destination) != vendor:
                return None
    return destination
