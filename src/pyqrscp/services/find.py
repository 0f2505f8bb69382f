"""C-FIND on the three Q/R information models, answered from the index only.

pyqrscp serves C-FIND itself (through :meth:`Services.route_request`), on the association's own
thread: each pending response is a command set packed with ``struct`` plus an identifier from
:mod:`pyqrscp.dimse.encoding`, sent through :mod:`pyqrscp.link.association` (pynetdicom's
service class would build and validate a pydicom Dataset for both, about 0.6 ms a response).
The command set and the identifier go in P-DATA-TF PDUs of their own, as DCMTK and pynetdicom
send them: PS3.8 allows both in one PDU, but some peers (GDCM's ``gdcmscu``) read the
identifier from the PDU after the command's and then wait forever for a final response they
have already swallowed.
"""

from __future__ import annotations

import logging
import time
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
from pyqrscp.dimse.commands import find_response
from pyqrscp.dimse.encoding import Element, encode_identifier
from pyqrscp.errors import InvalidIdentifier, PyqrscpError
from pyqrscp.link.association import (
    cancel_requested,
    queued_to_send,
    send_messages,
    wait_until_sent,
)
from pyqrscp.link.idle import fast_polling
from pyqrscp.link.titles import called_aet
from pyqrscp.query.charset import TEXT_VRS, choose_charset, requested_charsets
from pyqrscp.services.common import peer_of
from pyqrscp.services.context import ServiceContext
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
_QUEUED_RESPONSES = 16
"""pynetdicom's DUL reads the socket only when it has nothing left to send; past this many
P-DATA primitives queued for it to send (:func:`queued_to_send`: one per batch where a batch
goes as one primitive, else one per PDU of each response), wait for it to drain so that a
C-CANCEL is seen between batches."""
_BATCH_RESPONSES = 16
_BATCH_BYTES = 32 * 1024
"""Pending responses go out together, up to this many or this many bytes of identifiers
(and with the final response): one turn of pynetdicom's DUL and one write each batch."""
_BATCH_SECONDS = 0.02
"""A batch goes out once its first response has waited this long (seen as the next one is
queued), and before every fetch of more rows from the index: when matches come slowly, the
first responses wait neither for a full batch nor for the next database round trip."""


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
    responder = FindResponder(assoc, request, context, services.options.response_timeout)
    with fast_polling(assoc):
        answer(services, request, model, responder)


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
        if isinstance(error, InvalidIdentifier):
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


class FindResponder:
    """Sends C-FIND responses on the requesting association (:mod:`pyqrscp.link.association`)."""

    def __init__(self, assoc: Association, request: C_FIND, context: PresentationContext,
                 dimse_timeout: float) -> None:
        self.assoc = assoc
        self.message_id = int(request.MessageID or 0)
        self.sop_class = str(request.AffectedSOPClassUID)
        self.context_id = int(context.context_id or 0)
        self.transfer_syntax = UID(context.transfer_syntax[0])
        self.dimse_timeout = dimse_timeout
        self._pending_command = find_response(self.sop_class, self.message_id,
                                              int(Status.PENDING), has_identifier=True)
        """The same bytes head every pending response of the request."""
        self._batch: list[tuple[bytes, bytes | None]] = []
        self._batch_bytes = 0
        self._batch_began = 0.0

    def is_cancelled(self) -> bool:
        """Has a C-CANCEL for this request arrived?"""
        return cancel_requested(self.assoc, self.message_id)

    def pending(self, identifier: bytes) -> None:
        """One pending response: the command set, then the identifier, each in P-DATA-TF PDUs
        of its own; batched (:data:`_BATCH_RESPONSES`, :data:`_BATCH_SECONDS`)."""
        command = self._pending_command
        now = time.monotonic()
        if not self._batch:
            self._batch_began = now
        self._batch.append((command, identifier))
        self._batch_bytes += len(identifier)
        if (len(self._batch) >= _BATCH_RESPONSES or self._batch_bytes >= _BATCH_BYTES
                or now - self._batch_began >= _BATCH_SECONDS):
            self.flush()

    def flush(self) -> None:
        """Send the pending responses batched so far (first waiting, past
        :data:`_QUEUED_RESPONSES`, for pynetdicom's DUL to drain)."""
        if not self._batch:
            return
        if queued_to_send(self.assoc) >= _QUEUED_RESPONSES:
            self.drain()
        self._send_batch()

    def _send_batch(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if batch and self.assoc.is_established:
            send_messages(self.assoc, self.context_id, batch)

    def drain(self) -> None:
        """Send the batch, then wait until everything queued is sent; abort a peer that reads
        nothing for the DIMSE timeout (pynetdicom's own sender would block as long)."""
        self._send_batch()
        if not wait_until_sent(self.assoc, self.dimse_timeout):
            LOGGER.error("Find: %s read no response for %s s, aborting",
                         peer_of(self.assoc), self.dimse_timeout)
            self.assoc.abort()

    def final(self, status: Status, error_comment: str = "") -> None:
        """The last response (no identifier), after the pending ones not yet sent."""
        if self.assoc.is_established:
            self._batch.append((find_response(self.sop_class, self.message_id, int(status),
                                              error_comment), None))
            self._send_batch()


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
