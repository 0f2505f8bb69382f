"""C-MOVE: resolve the destination as dcmqrscp does, then send the matched files to it.

The sub-association uses the move request's *called* AE title as its calling AE title (what
dcmqrscp does and what destinations configured for dcmqrscp expect).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, build_context, evt
from pynetdicom.presentation import PresentationContext

from pyqrscp.config import Config, Peer
from pyqrscp.contexts import UNCOMPRESSED, proposed_syntaxes
from pyqrscp.errors import InvalidIdentifier
from pyqrscp.registry import host_matches, peer_host_names, resolve_move_destination
from pyqrscp.services.retrieve import FAILED_SUB_OPERATION, Selection, load, select
from pyqrscp.status import Status

if TYPE_CHECKING:
    from pyqrscp.options import Options
    from pyqrscp.services import Services

LOGGER = logging.getLogger(__name__)
MAX_CONTEXTS = 128


def handle(services: Services, event: Any) -> Iterator[Any]:
    """pynetdicom's protocol: destination, number of sub-operations, then pending datasets."""
    from pyqrscp.services import failure, peer

    destination_aet = str(event.move_destination or "").strip()
    destination = allowed_destination(services.config, services.options, event, destination_aet)
    if destination is None:
        LOGGER.error("Move from %s: destination %r unknown or not allowed", peer(event),
                     destination_aet)
        yield None, None
        return
    try:
        selection = select(services, event, services.options.check_move)
    except (InvalidIdentifier, ValueError, KeyError) as error:
        LOGGER.error("Move failed from %s: %s", peer(event), error)
        yield destination.host, destination.port
        yield 1
        yield failure(InvalidIdentifier(str(error))), None
        return
    LOGGER.info("Received Move Request from %s: %d instance(s) to %s (%s:%d)", peer(event),
                len(selection.instances), destination_aet, destination.host, destination.port)
    # pynetdicom opens the sub-association with ``assoc.ae`` and its title; lend it an AE named
    # after the called AE title for the duration of this move (issue 8 replaces this with
    # pyqrscp's own sender).
    original_ae = event.assoc._ae
    event.assoc._ae = sub_association_ae(services.options, str(event.assoc.acceptor.ae_title))
    try:
        yield destination.host, destination.port, {
            "contexts": sub_association_contexts(selection, services.options),
            "max_pdu": services.options.max_pdu or 16384,
            "evt_handlers": [(evt.EVT_CONN_OPEN, _no_delay)],
        }
        yield len(selection.instances)
        yield from _sub_operations(services, event, selection)
    finally:
        event.assoc._ae = original_ae


def _sub_operations(services: Services, event: Any, selection: Selection) -> Iterator[Any]:
    for index, (_uid, _cls, _ts, file_name) in enumerate(selection.instances):
        if event.is_cancelled:
            LOGGER.info("Move cancelled after %d of %d sub-operations", index,
                        len(selection.instances))
            yield int(Status.CANCEL), None
            return
        dataset = load(services, event, file_name)
        yield int(Status.PENDING), dataset if dataset is not None else FAILED_SUB_OPERATION


def sub_association_ae(options: Options, calling_aet: str) -> AE:
    """A requestor-only AE whose title is the move request's called AE title."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = options.acse_timeout
    ae.dimse_timeout = options.dimse_timeout if options.dimse_timeout is not None else 60
    ae.network_timeout = options.network_timeout if options.network_timeout is not None else 60
    ae.maximum_pdu_size = options.max_pdu or 16384
    return ae


def sub_association_contexts(selection: Selection, options: Options
                             ) -> list[PresentationContext]:
    """Per SOP class: the uncompressed syntaxes, plus one context per stored compressed syntax."""
    uncompressed = proposed_syntaxes(options.propose_transfer_syntax)
    contexts: list[PresentationContext] = []
    pairs = sorted(selection.presentation_pairs())
    for sop_class in sorted({sop_class for sop_class, _ in pairs}):
        contexts.append(build_context(sop_class, uncompressed))
    for sop_class, transfer_syntax in pairs:
        if transfer_syntax not in UNCOMPRESSED:
            contexts.append(build_context(sop_class, [transfer_syntax]))
    return contexts[:MAX_CONTEXTS]


def allowed_destination(config: Config, options: Options, event: Any, destination_aet: str
                        ) -> Peer | None:
    """Resolve the Move Destination, then apply ``-ZA``/``-ZH``/``-ZV``."""
    destination = resolve_move_destination(config, destination_aet)
    if destination is None:
        return None
    calling = str(event.assoc.requestor.ae_title).strip()
    address = str(event.assoc.requestor.address)
    restriction = options.move_restriction
    if restriction == "aetitle" and destination_aet != calling:
        return None
    if restriction in ("host", "vendor"):
        names = peer_host_names(address, options.disable_host_lookup)
        if restriction == "host" and not host_matches(destination, address, names,
                                                      options.disable_host_lookup):
            return None
        if restriction == "vendor":
            requestor = next((p for p in config.peers_named(calling) if host_matches(
                p, address, names, options.disable_host_lookup)), None)
            vendor = config.vendor_of(requestor) if requestor else None
            if vendor is None or config.vendor_of(destination) != vendor:
                return None
    return destination


def _no_delay(event: Any) -> None:
    import socket

    sock = event.assoc.dul.socket.socket if event.assoc.dul.socket else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
