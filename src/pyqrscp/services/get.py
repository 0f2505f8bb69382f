"""C-GET: sub-operations on the requesting association (requestor in the SCP role)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyqrscp.errors import InvalidIdentifier, PyqrscpError
from pyqrscp.services.retrieve import FAILED_SUB_OPERATION, load, select
from pyqrscp.status import Status

if TYPE_CHECKING:
    from pyqrscp.services import Services

LOGGER = logging.getLogger(__name__)


def handle(services: Services, event: Any) -> Iterator[Any]:
    """Yield the number of sub-operations, then one pending (status, dataset) per instance."""
    from pyqrscp.services import failure, peer

    entry = services.entry_for(event)
    if not entry.access.can_query:
        yield 1
        yield failure(PyqrscpError(f"{entry.ae_title} is write-only"),
                      Status.REFUSED_NOT_AUTHORIZED), None
        return
    try:
        selection = select(services, event, services.options.check_move)
    except (InvalidIdentifier, ValueError, KeyError) as error:
        LOGGER.error("Get failed from %s: %s", peer(event), error)
        yield 1
        yield failure(InvalidIdentifier(str(error))), None
        return
    LOGGER.info("Received Get Request from %s: %d instance(s)", peer(event),
                len(selection.instances))
    yield len(selection.instances)
    for _uid, _cls, _ts, file_name in selection.instances:
        if event.is_cancelled:
            LOGGER.info("Get cancelled by %s", peer(event))
            yield int(Status.CANCEL), None
            return
        dataset = load(services, event, file_name)
        yield int(Status.PENDING), dataset if dataset is not None else FAILED_SUB_OPERATION
