"""C-ECHO: the verification service."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pynetdicom.events import Event

from pyqrscp.services.common import peer
from pyqrscp.status import Status

if TYPE_CHECKING:
    from pyqrscp.services import Services

LOGGER = logging.getLogger(__name__)


def handle(services: Services, event: Event) -> int:
    """Answer success; log one line, as dcmqrscp does for every operation."""
    LOGGER.info("Received Echo Request from %s", peer(event))
    return int(Status.SUCCESS)
