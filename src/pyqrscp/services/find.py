"""C-FIND on the three Q/R information models, answered from the index only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pyqrscp.charset import response_charset
from pyqrscp.errors import InvalidIdentifier, PyqrscpError
from pyqrscp.index.query import (
    PATIENT_ROOT,
    PATIENT_STUDY_ONLY,
    STUDY_ROOT,
    InformationModel,
    parse_identifier,
    response_dataset,
    run_query,
)
from pyqrscp.status import Status

if TYPE_CHECKING:
    from pyqrscp.services import Services

LOGGER = logging.getLogger(__name__)

MODEL_OF_SOP_CLASS = {
    "1.2.840.10008.5.1.4.1.2.1.1": PATIENT_ROOT, "1.2.840.10008.5.1.4.1.2.1.2": PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.1.3": PATIENT_ROOT, "1.2.840.10008.5.1.4.1.2.2.1": STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.2": STUDY_ROOT, "1.2.840.10008.5.1.4.1.2.2.3": STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.3.1": PATIENT_STUDY_ONLY,
    "1.2.840.10008.5.1.4.1.2.3.2": PATIENT_STUDY_ONLY,
    "1.2.840.10008.5.1.4.1.2.3.3": PATIENT_STUDY_ONLY,
}


def model_of(event: Any) -> InformationModel:
    """The information model of the request's presentation context."""
    return MODEL_OF_SOP_CLASS[str(event.context.abstract_syntax)]


def handle(services: Services, event: Any) -> Iterator[Any]:
    """Yield one pending response per matching entity, then success (or cancel/failure)."""
    from pyqrscp.services import failure, peer

    entry = services.entry_for(event)
    if not entry.access.can_query:
        yield failure(PyqrscpError(f"{entry.ae_title} is write-only"),
                      Status.REFUSED_NOT_AUTHORIZED), None
        return
    try:
        identifier = event.identifier
        query = parse_identifier(identifier, model_of(event), services.options.check_find)
    except (InvalidIdentifier, ValueError, KeyError) as error:
        LOGGER.error("Find failed from %s: %s", peer(event), error)
        yield failure(InvalidIdentifier(str(error))), None
        return
    LOGGER.info("Received Find Request (%s, %s) from %s", query.model.name, query.level,
                peer(event))
    LOGGER.debug("Find identifier:\n%s", identifier)
    db = services.area_for(entry).reader()
    count = 0
    try:
        for attrs in run_query(db, query, services.options.case_sensitive_pn):
            if event.is_cancelled:
                LOGGER.info("Find cancelled by %s after %d responses", peer(event), count)
                yield int(Status.CANCEL), None
                return
            response = response_dataset(attrs, query)
            response_charset(response, identifier, services.options)
            count += 1
            yield int(Status.PENDING), response
    except InvalidIdentifier as error:
        LOGGER.error("Find failed from %s: %s", peer(event), error)
        yield failure(error), None
        return
    finally:
        db.close()
    LOGGER.info("Find from %s complete: %d match(es)", peer(event), count)
    yield int(Status.SUCCESS), None
