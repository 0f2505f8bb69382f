"""C-FIND, C-GET and C-MOVE as pynetdicom event handlers: pynetdicom's public path.

pyqrscp serves these requests itself (:meth:`Services.route_request`) when pynetdicom's
internals are usable (:mod:`pyqrscp.link.internals`).  Otherwise pynetdicom's own service
classes call these generators, which yield what pyqrscp's services decide: the same matches,
statuses and files, with pynetdicom encoding the responses and, for C-MOVE, opening the
sub-association (calling from the move's called AE title, proposing the stored syntaxes).
What pynetdicom's generators cannot express is listed in docs/performance.md.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import decode
from pynetdicom.events import Event

from pyqrscp.archive.storage import StorageArea
from pyqrscp.dimse.contexts import proposed_syntaxes
from pyqrscp.dimse.conversion import convert
from pyqrscp.errors import PyqrscpError, SubOperationFailed
from pyqrscp.link.titles import call_from, called_aet, calling_aet
from pyqrscp.link.tls import client_tls_args
from pyqrscp.services.common import log_request, peer_of
from pyqrscp.services.context import ServiceContext
from pyqrscp.services.find import MODEL_OF_SOP_CLASS, answer
from pyqrscp.services.find import handle as find_failure
from pyqrscp.services.get import scu_context
from pyqrscp.services.move import allowed_destination, sub_association_contexts
from pyqrscp.services.retrieve import Refusal, Selection, select_instances, stored_dataset
from pyqrscp.services.statuses import failure
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)

Yielded = tuple[int | Dataset, Dataset | None]
"""A (status, dataset) pair of pynetdicom's C-FIND/C-GET/C-MOVE generators."""
_QUEUED = 16
"""C-FIND responses a worker may prepare ahead of pynetdicom's sending."""
_PUT_SLICE = 0.5


# -- C-FIND ---------------------------------------------------------------------------------


class _Closed(Exception):
    """pynetdicom stopped asking for responses (the association ended)."""


class QueuedResponses:
    """:class:`~pyqrscp.services.find.Responses` handed from a worker thread to pynetdicom's
    generator, a few at a time, so that a long answer streams and a C-CANCEL is seen."""

    def __init__(self, assoc: Association, request: C_FIND, context_tuple: object) -> None:
        self.assoc = assoc
        self.sop_class = str(request.AffectedSOPClassUID)
        self.transfer_syntax = UID(str(getattr(context_tuple, "transfer_syntax", "")))
        self.cancelled = False
        self.closed = False
        self.items: queue.Queue[tuple[Status, bytes | None, str]] = queue.Queue(_QUEUED)

    def is_cancelled(self) -> bool:
        return self.cancelled

    def pending(self, identifier: bytes) -> None:
        self._put((Status.PENDING, identifier, ""))

    def final(self, status: Status, error_comment: str = "") -> None:
        self._put((status, None, error_comment))

    def flush(self) -> None:
        """Every response is handed over as it comes: nothing is held back here."""

    def drain(self) -> None:
        """Nothing queued here waits for the network."""

    def _put(self, item: tuple[Status, bytes | None, str]) -> None:
        while not self.closed:
            try:
                self.items.put(item, timeout=_PUT_SLICE)
                return
            except queue.Full:
                continue
        raise _Closed


def find_responses(services: ServiceContext, event: Event) -> Iterator[Yielded]:
    """``EVT_C_FIND``: the answer :func:`~pyqrscp.services.find.answer` gives, streamed from
    a worker thread."""
    request = cast(C_FIND, event.request)
    if not services.internals:  # else logged by Services.route_request
        log_request(event.assoc, request)
    model = MODEL_OF_SOP_CLASS.get(str(event.context.abstract_syntax))
    if model is None or not request.is_valid_request:
        yield from find_failure(services, event)
        return
    responses = QueuedResponses(event.assoc, request, event.context)
    services.bound_request(event.assoc, request, str(responses.transfer_syntax))

    def work() -> None:
        try:
            answer(services, request, model, responses)
        except _Closed:
            pass
        except Exception as error:  # noqa: BLE001 - the generator must get a final response
            LOGGER.exception("Find from %s failed", peer_of(event.assoc))
            responses.final(Status.UNABLE_TO_PROCESS, str(error))

    worker = threading.Thread(target=work, name="pyqrscp-find", daemon=True)
    worker.start()
    try:
        yield from _yield_find(responses, event)
    finally:
        responses.closed = True


def _yield_find(responses: QueuedResponses, event: Event) -> Iterator[Yielded]:
    ts = responses.transfer_syntax
    while True:
        status, identifier, comment = responses.items.get()
        if identifier is not None:
            if responses.cancelled:
                continue  # the worker is told; its final response follows
            yield int(Status.PENDING), decode(BytesIO(identifier), ts.is_implicit_VR,
                                              ts.is_little_endian, ts.is_deflated)
            if event.is_cancelled:
                responses.cancelled = True
            continue
        if status != Status.SUCCESS:
            yield _status(status, comment), None
        return


def _status(status: Status, comment: str) -> int | Dataset:
    return failure(PyqrscpError(comment), status) if comment else int(status)


# -- C-GET ----------------------------------------------------------------------------------


def get_responses(services: ServiceContext, event: Event) -> Iterator[object]:
    """``EVT_C_GET``: the number of sub-operations, then each instance as pynetdicom sends
    it (converted to a syntax the requestor accepted); a refusal as one failed
    sub-operation's final status."""
    assoc, request = event.assoc, cast(C_GET, event.request)
    if not services.internals:
        log_request(assoc, request)
    selected = _selected(services, event, request, "Get")
    if isinstance(selected, Refusal):
        yield 1
        yield _status(selected.status, selected.error_comment), None
        return

    def requestor_syntax(sop_class: str, transfer_syntax: str) -> str:
        return str(scu_context(assoc, sop_class, transfer_syntax).transfer_syntax[0])
    yield from _sub_operations(event, selected, "Get", requestor_syntax)


# -- C-MOVE ---------------------------------------------------------------------------------


def move_responses(services: ServiceContext, event: Event) -> Iterator[object]:
    """``EVT_C_MOVE``: the destination (the sub-association calls from the move's called AE
    title and proposes the stored syntaxes), the number of sub-operations, then each instance
    (converted to a syntax the destination accepted)."""
    assoc, request = event.assoc, cast(C_MOVE, event.request)
    if not services.internals:
        log_request(assoc, request)
    destination_aet = str(request.MoveDestination or "").strip()
    selected = _selected(services, event, request, "Move")
    destination = allowed_destination(services.config, services.options, services.hosts,
                                      calling_aet(assoc), str(assoc.requestor.address),
                                      destination_aet)
    if destination is None:
        LOGGER.error("Move from %s: destination %r unknown or not allowed", peer_of(assoc),
                     destination_aet)
        yield None, None
        return
    options = services.options
    sub: list[Association] = []
    selection = selected[1] if not isinstance(selected, Refusal) else Selection(())
    contexts = [build_context(cx.abstract_syntax, list(cx.transfer_syntaxes))
                for cx in sub_association_contexts(selection, options)] or [
        build_context("1.2.840.10008.1.1")]
    move_aet = called_aet(assoc)
    yield destination.host, destination.port, {
        "contexts": contexts, "max_pdu": options.receive_pdu_size,
        "tls_args": client_tls_args(services.client_tls, destination.host),
        "evt_handlers": [(evt.EVT_CONN_OPEN, lambda e: call_from(e.assoc, move_aet)),
                         (evt.EVT_ESTABLISHED, lambda e: sub.append(e.assoc))]}
    if isinstance(selected, Refusal):
        yield 1
        yield _status(selected.status, selected.error_comment), None
        return
    yield from _sub_operations(event, selected, "Move", _destination_syntax(
        sub, proposed_syntaxes(options.propose_transfer_syntax)))


def _destination_syntax(sub: list[Association], uncompressed: list[str]) -> Choose:
    """The syntax of a context the C-MOVE destination accepted for an instance: its stored
    one, else an uncompressed one (the first by context ID)."""
    def choose(sop_class: str, transfer_syntax: str) -> str | None:
        accepted = [cx for cx in (sub[0].accepted_contexts if sub else [])
                    if cx.abstract_syntax == sop_class]
        exact = [cx for cx in accepted if cx.transfer_syntax[0] == transfer_syntax]
        convertible = [cx for cx in sorted(accepted, key=lambda c: c.context_id or 0)
                       if cx.transfer_syntax[0] in uncompressed]
        chosen = exact or convertible
        return str(chosen[0].transfer_syntax[0]) if chosen else None
    return choose


# -- shared ---------------------------------------------------------------------------------


def _selected(services: ServiceContext, event: Event, request: C_GET | C_MOVE, verb: str
              ) -> tuple[StorageArea, Selection] | Refusal:
    model = MODEL_OF_SOP_CLASS.get(str(event.context.abstract_syntax))
    if model is None:
        return Refusal(Status.UNABLE_TO_PROCESS, "not a Q/R information model")
    services.bound_request(event.assoc, request, str(event.context.transfer_syntax))
    return select_instances(services, event.assoc, request,
                            UID(str(event.context.transfer_syntax)), model, verb)


Choose = Callable[[str, str], "str | None"]
"""(SOP class UID, stored transfer syntax) to the syntax to send the instance in; None when
the peer accepted no context for it (the sub-operation fails), or SubOperationFailed (the
same, with an error line)."""


def _sub_operations(event: Event, selected: tuple[StorageArea, Selection], verb: str,
                    choose: Choose) -> Iterator[object]:
    """The sub-operations of a C-GET or C-MOVE as pynetdicom's generator yields them: their
    number, then each instance in the syntax ``choose`` picks (a dataset it cannot send where
    none), or the cancel status once the requestor cancels."""
    area, selection = selected
    LOGGER.info("Received %s Request from %s: %d instance(s)", verb, peer_of(event.assoc),
                len(selection.instances))
    yield len(selection.instances)
    for sop_instance, sop_class, transfer_syntax, file_name in selection.instances:
        if event.is_cancelled:
            yield int(Status.CANCEL), None
            return
        try:
            target = choose(sop_class, transfer_syntax)
            dataset = (_dataset(area, file_name, target) if target is not None
                       else _unsendable(sop_instance))
        except SubOperationFailed as error:
            LOGGER.error("sub-operation for %s failed: %s", sop_instance, error)
            dataset = _unsendable(sop_instance)
        yield int(Status.PENDING), dataset


def _dataset(area: StorageArea, file_name: str, target: str) -> Dataset:
    """A stored instance as a Dataset in ``target`` (pynetdicom picks the context by it)."""
    stored_syntax, stored = stored_dataset(area.path_of(file_name))
    data: bytes | memoryview = stored
    if target != stored_syntax:
        data = convert(data, stored_syntax, target)
    syntax = UID(target)
    dataset = decode(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian,
                     syntax.is_deflated)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    return dataset


def _unsendable(sop_instance: str) -> Dataset:
    """A dataset pynetdicom cannot send (it has no SOP Class UID): the sub-operation fails,
    and the failure names the instance."""
    dataset = Dataset()
    dataset.SOPInstanceUID = sop_instance
    return dataset

