"""C-ECHO: the verification service."""

from __future__ import annotations

import logging

from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.events import Event

from pyqrscp.dimse.commands import echo_response
from pyqrscp.link.association import presentation_context, send_message
from pyqrscp.services.common import peer, peer_of
from pyqrscp.services.context import ServiceContext
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)

VERIFICATION = "1.2.840.10008.1.1"


def handle(services: ServiceContext, event: Event) -> int:
    """Answer success; log one line, as dcmqrscp does for every operation."""
    LOGGER.info("Received Echo Request from %s", peer(event))
    return int(Status.SUCCESS)


def serve(services: ServiceContext, assoc: Association, request: C_ECHO, context_id: int) -> bool:
    """Answer a C-ECHO-RQ with a command packed by pyqrscp (pynetdicom's Verification service
    builds and validates a pydicom Dataset for it); False for a request pynetdicom must judge
    (invalid, or on a context that is not Verification's)."""
    context = presentation_context(assoc, context_id)
    if (not request.is_valid_request or context is None
            or str(context.abstract_syntax) != VERIFICATION):
        return False
    LOGGER.info("Received Echo Request from %s", peer_of(assoc))
    response = echo_response(VERIFICATION, int(request.MessageID or 0), int(Status.SUCCESS))
    send_message(assoc, context_id, response, None)
    return True
