"""C-FIND on the three Q/R information models, answered from the index only.

pyqrscp serves C-FIND itself (through :meth:`Services.route_request`), on the association's own
thread: each pending response is a command set packed with ``struct`` plus an identifier from
:mod:`pyqrscp.dimse.encoding`, sent by :mod:`pyqrscp.services.find_responses` (pynetdicom's
service class would build and validate a pydicom Dataset for both, about 0.6 ms a response).
The command set and the identifier go in P-DATA-TF PDUs of their own, as DCMTK and pynetdicom
send them: PS3.8 allows both in one PDU, but some peers (GDCM's ``gdcmscu``) read the
identifier from the PDU after the command's and then wait forever for a final response they
have already swallowed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from pyqrscp.archive.index.query import (
    PATIENT_ROOT,
    PATIENT_STUDY_ONLY,
    STUDY_ROOT,
    InformationModel,
    Query,
    ResponsePlan,
    parse_identifier,
    response_elements,
    response_plan,
    run_query,
    text_to_value,
)
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config.options import Options
from pyqrscp.dimse.encoding import Element, encode_identifier
from pyqrscp.errors import InvalidIdentifier, PeerUnavailable, PyqrscpError
from pyqrscp.link.channel import held_channel
from pyqrscp.link.idle import fast_polling
from pyqrscp.link.titles import called_aet
from pyqrscp.query.charset import TEXT_VRS, choose_charset, requested_charsets
from pyqrscp.services.common import peer_of
from pyqrscp.services.context import ServiceContext
from pyqrscp.services.find_responses import FindResponder
from pyqrscp.services.negotiation import is_relational
from pyqrscp.services.retrieve import log_ignored_keys, read_identifier
from pyqrscp.services.statuses import IDENTIFIER_ERRORS, failure, status_of
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)

MODEL_OF_SOP_CLASS = {
    "1.2.840.10008.5.1.4.1.2.1.1": PATIENT_ROOT, "1.2.840.10008.5.1.4.1.2.1.2": PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.1.3": PATIENT_ROOT, "1.2.840.10008.5.1.4.1.2.2.1": STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.2": STUDY_ROOT, "1.2.840.10008.5.1.4.1.2.2.3": STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.3.1": PATIENT_STUDY_ONLY,
    "1.2.840.10008.5.1.4.1.2.3.2": PATIENT_STUDY_ONLY,
    "1.2.840.10008.5.1.4.1.2.3.3": PATIENT_STUDY_ONLY,
}
_SPECIFIC_CHARACTER_SET = 0x00080005
_RETRIEVE_AE_TITLE = 0x00080054


class Responses(Protocol):
    """Where a C-FIND's responses go: :class:`FindResponder` on pyqrscp's own path, a queue
    for pynetdicom's event handler on its public path."""

    assoc: Association
    sop_class: str
    transfer_syntax: UID

    def is_cancelled(self) -> bool: ...
    def pending(self, identifier: bytes) -> None: ...
    def final(self, status: Status, error_comment: str = "") -> None: ...
    def flush(self) -> None: ...
    def drain(self) -> None: ...


def serve(services: ServiceContext, assoc: Association, request: C_FIND,
          context: PresentationContext, model: InformationModel) -> None:
    """Answer one C-FIND-RQ completely: pending responses, then the final one."""
    with fast_polling(assoc), held_channel(assoc) as held:
        responder = FindResponder(assoc, request, context, services.options.response_timeout,
                                  held)
        answer(services, request, model, responder)
    if responder.broken:  # aborted only now: pynetdicom must read the socket to finish it
        assoc.abort()


def answer(services: ServiceContext, request: C_FIND, model: InformationModel,
           responder: Responses) -> None:
    """Answer one C-FIND-RQ through ``responder``."""
    assoc = responder.assoc
    who = peer_of(assoc)
    entry = services.entry_of(assoc)
    if entry is None or not entry.access.can_query:
        called = called_aet(assoc)
        responder.final(Status.REFUSED_NOT_AUTHORIZED, f"{called} is write-only")
        return
    try:
        identifier = read_identifier(request, responder.transfer_syntax)
        query = parse_identifier(identifier, model, services.options.check_find,
                                 is_relational(assoc, responder.sop_class))
    except IDENTIFIER_ERRORS as error:
        LOGGER.error("Find failed from %s: %s", who, error)
        responder.final(status_of(error, in_identifier=True), str(error))
        return
    LOGGER.info("Received Find Request (%s, %s) from %s", query.model.name, query.level, who)
    LOGGER.debug("Find identifier:\n%s", identifier)
    log_ignored_keys(query, "Find", who)
    _answer(services, services.area_for(entry), responder, identifier, query, who)
    responder.drain()


def _answer(services: ServiceContext, area: StorageArea, responder: Responses,
            identifier: Dataset, query: Query, who: str) -> None:
    db = area.reader()
    count = 0
    try:
        matches = run_query(db, query, services.options.case_sensitive_pn, responder.flush)
        for response in identifiers(matches, query, identifier, services.options,
                                    responder.transfer_syntax,
                                    called_aet(responder.assoc)):
            if not responder.assoc.is_established:
                LOGGER.error("Find from %s: association ended after %d responses", who, count)
                return
            if responder.is_cancelled():
                LOGGER.info("Find cancelled by %s after %d responses", who, count)
                responder.final(Status.CANCEL)
                return
            if response is None:
                LOGGER.error("Find from %s: cannot encode response %d", who, count + 1)
                responder.final(Status.UNABLE_TO_PROCESS, "cannot encode a response")
                return
            responder.pending(response)
            count += 1
    except Exception as error:  # one failed query must not end the association silently
        if isinstance(error, (InvalidIdentifier, PeerUnavailable)):
            LOGGER.error("Find failed from %s: %s", who, error)
        else:
            LOGGER.exception("Find from %s failed", who)
        responder.final(status_of(error), str(error))
        return
    finally:
        db.close()
    LOGGER.info("Find from %s complete: %d match(es)", who, count)
    responder.final(Status.SUCCESS)


def identifiers(matches: Iterator[dict[str, str]], query: Query, request: Dataset,
                options: Options, transfer_syntax: UID, retrieve_aet: str = ""
                ) -> Iterator[bytes | None]:
    """The encoded identifier of each match (None when neither encoder can write it).

    With ``retrieve_aet`` every response carries it as RetrieveAETitle: where the entity can
    be retrieved from (PS3.4 C.4.1.1.3.2 wants it when no Storage Media File-Set is named).
    """
    plan = response_plan(query)
    if retrieve_aet:
        plan = tuple(sorted({*plan, (_RETRIEVE_AE_TITLE, "AE", "RetrieveAETitle")}))
    requested = requested_charsets(request)
    direct = transfer_syntax.is_little_endian and not transfer_syntax.is_deflated
    implicit_vr = transfer_syntax.is_implicit_VR
    for attrs in matches:
        if retrieve_aet:
            attrs["RetrieveAETitle"] = retrieve_aet
        elements, charsets = _with_charset(response_elements(attrs, plan, query.level), plan,
                                           requested, options)
        encoded = encode_identifier(elements, charsets, implicit_vr) if direct else None
        yield encoded if encoded is not None else _pydicom_encoded(elements, transfer_syntax)


def _with_charset(elements: list[Element], plan: ResponsePlan, requested: list[str],
                  options: Options) -> tuple[list[Element], list[str]]:
    """Add SpecificCharacterSet as :func:`choose_charset` decides, with adapted texts."""
    texts = {keyword: text for (_, vr, keyword), (_, _, text) in zip(plan, elements, strict=True)
             if vr in TEXT_VRS and text}
    charsets, replaced = choose_charset(texts, requested, options)
    if replaced:
        elements = [(tag, vr, replaced.get(keyword, text)) for (tag, vr, text), (_, _, keyword)
                    in zip(elements, plan, strict=True)]
    if charsets:
        elements = sorted([(_SPECIFIC_CHARACTER_SET, "CS", "\\".join(charsets)), *elements])
    return elements, charsets


def as_dataset(elements: list[Element]) -> Dataset:
    """The response as a pydicom Dataset (the fallback encoder's input)."""
    response = Dataset()
    for tag, vr, text in elements:
        response.add_new(tag, vr, [] if vr == "SQ" else text_to_value(text, vr))
    return response


def _pydicom_encoded(elements: list[Element], transfer_syntax: UID) -> bytes | None:
    try:
        encoded = encode(as_dataset(elements), transfer_syntax.is_implicit_VR,
                         transfer_syntax.is_little_endian, transfer_syntax.is_deflated)
    except Exception:  # pydicom raises many kinds for values it cannot write
        LOGGER.debug("pydicom cannot encode a C-FIND response", exc_info=True)
        return None
    return bytes(encoded) if encoded else None


def handle(services: ServiceContext, event: Event
           ) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """pynetdicom's EVT_C_FIND handler, reached only by requests :func:`serve` refuses to take
    (malformed, or on a context that is no Q/R information model): a failure status."""
    entry = services.entry_for(event)
    if not entry.access.can_query:
        yield failure(PyqrscpError(f"{entry.ae_title} is write-only"),
                      Status.REFUSED_NOT_AUTHORIZED), None
        return
    yield failure(PyqrscpError("C-FIND request not served: malformed or not a Q/R model"),
                  Status.UNABLE_TO_PROCESS), None
