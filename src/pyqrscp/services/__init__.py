"""The DICOM services, as bound methods of one :class:`Services` object.

Dependencies (config, options, storage areas) travel on the object; pynetdicom calls
the handlers with one ``Event`` each.  One place (:func:`pyqrscp.services.statuses.failure`)
turns exceptions into statuses.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE, N_ACTION
from pynetdicom.events import Event, EventHandlerType

from pyqrscp.archive.commitments import RetrySchedule
from pyqrscp.archive.index.backend import IndexBackend
from pyqrscp.archive.index.choice import open_backend
from pyqrscp.archive.spool import ReceivedDataset
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import AEEntry, Config
from pyqrscp.config.options import Options
from pyqrscp.dimse.commands import C_FIND_RQ, C_GET_RQ, C_MOVE_RQ, C_STORE_RQ, N_ACTION_RQ
from pyqrscp.dimse.part10 import file_header
from pyqrscp.errors import PyqrscpError, ServiceFailed, StorageFailure
from pyqrscp.link.association import DimseMessage, forget_cancels, presentation_context
from pyqrscp.link.hostnames import HostLookup
from pyqrscp.link.titles import called_aet, calling_aet
from pyqrscp.loglines import log_context
from pyqrscp.services import commit, echo, events, find, get, move, store
from pyqrscp.services.commit import StorageCommitment
from pyqrscp.services.common import area_key, log_request, peer_of
from pyqrscp.services.negotiation import extended_response
from pyqrscp.status import Status

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

_REQUEST_PARTS = {C_FIND_RQ: "identifier", C_MOVE_RQ: "identifier", C_GET_RQ: "identifier",
                  N_ACTION_RQ: "action information"}
"""What a request's dataset is called (C-FIND, C-MOVE, C-GET; N-ACTION), in refusals."""
_COMMAND_FIELD_OF: dict[type, int] = {C_FIND: C_FIND_RQ, C_GET: C_GET_RQ, C_MOVE: C_MOVE_RQ,
                                      N_ACTION: N_ACTION_RQ}


def _uid(value: object) -> str:
    """A UID from the command as text fit for the file header (padding removed)."""
    return str(value or "").strip(" \x00")


def _guarded(assoc: Association, request: DimseMessage, serve: Callable[[], bool]) -> bool:
    """Run a service; a bug must not leave the peer waiting forever nor kill the association's
    thread: log it and abort.  True (served) unless ``serve`` returns False."""
    try:
        return serve() is not False
    except Exception:  # noqa: BLE001
        LOGGER.exception("%s failed on %s; aborting the association",
                         type(request).__name__.replace("_", "-"), peer_of(assoc))
        assoc.abort()
        return True


def _where(assoc: Association, request: object) -> str:
    """The peer and the instance of a request, for the lines of library warnings."""
    instance = getattr(request, "AffectedSOPInstanceUID", None)
    return peer_of(assoc) + (f", instance {instance}" if instance else "")


def _handler(handle: Callable[[Event], T], internals: bool) -> Callable[[Event], T]:
    """A pynetdicom event handler that, when it fails, says so in an ``E:`` line and has the
    association aborted at once, sending no response (pynetdicom would log it on its own quiet
    logger and answer with a default status).  On pynetdicom's public path the association is
    aborted from the handler (pynetdicom then answers nothing)."""
    def guarded(event: Event) -> T:
        if not internals:  # else logged by route_request
            log_request(event.assoc, event.request)
        try:
            with log_context(lambda: _where(event.assoc, event.request)):
                return handle(event)
        except Exception as error:  # noqa: BLE001
            LOGGER.exception("%s handler failed on %s; aborting the association",
                             event.event.name.removeprefix("EVT_").replace("_", "-"),
                             peer_of(event.assoc))
            if internals:
                raise ServiceFailed from error
            event.assoc.abort()
            raise
    return guarded


class Services:
    """Holds what the handlers need; one instance per server."""

    def __init__(self, config: Config, options: Options, internals: bool = True) -> None:
        self.config = config
        self.options = options
        self.internals = internals
        """Are pynetdicom's internals in use (pyqrscp routes requests to its own services)?"""
        self.areas: dict[Path, StorageArea] = {}
        self._area_of_title: dict[str, StorageArea] = {}  # no path resolution per request
        self.commit_retry = RetrySchedule()
        self.commitment: StorageCommitment | None = None
        self.client_tls: ssl.SSLContext | None = None  # outgoing associations (``+tls``)
        self.hosts = HostLookup()  # HostTable names, for acceptance and C-MOVE restrictions
        self.backend: IndexBackend = open_backend(options.index_db)
        """Opened when the server is built, before any switch to UserName (the database
        driver's modules may not be readable by that user)."""
        self._load_services()

    def _load_services(self) -> None:
        """Bind every service's entry points (all imported with this module, when the server
        is built: a reinstall of the package under a running server must not turn the next
        association into an ImportError, and after a switch to UserName the new user may not
        be able to read the interpreter's files)."""
        self._commit = commit
        self._echo, self._find, self._store = echo, find, store
        self._serve_of: dict[type, Callable[..., None]] = {
            C_MOVE: move.serve, C_GET: get.serve, C_FIND: find.serve}

    def open(self) -> None:
        """Open the index database and every storage area once (AE titles may share a folder).

        Raises StorageFailure when the index database or an area cannot be used.
        """
        try:
            for entry in self.config.ae_table:
                if area_key(entry) not in self.areas:
                    area = StorageArea(entry.storage_area, entry.quota,
                                       durable=not self.options.no_sync,
                                       uid_padding=self.options.uid_padding,
                                       backend=self.backend)
                    area.open()
                    self.areas[area_key(entry)] = area
                self._area_of_title[entry.ae_title] = self.areas[area_key(entry)]
            self.commitment = self._commit.StorageCommitment(self, self.commit_retry)
        except self.backend.driver_errors as error:
            raise StorageFailure(f"cannot use the index database: {error}") from error
        self.commitment.start()
        if self.backend.shared:
            LOGGER.info("index database: %s, shared with any other node using it",
                        self.backend.describe_database())

    def close(self) -> None:
        if self.commitment is not None:
            self.commitment.stop()
            self.commitment = None
        for area in self.areas.values():
            area.close()
        self.backend.close()

    def entry_of(self, assoc: Association) -> AEEntry | None:
        """The AETable entry of the association's called AE title."""
        return self.config.ae(called_aet(assoc))

    def entry_for(self, event: Event) -> AEEntry:
        entry = self.entry_of(event.assoc)
        if entry is None:
            raise PyqrscpError(
                f"no AETable entry for {called_aet(event.assoc)!r}")
        return entry

    def area_for(self, entry: AEEntry) -> StorageArea:
        return self._area_of_title[entry.ae_title]

    def dataset_sink(self, assoc: Association, transfer_syntax: str, command_field: int,
                     sop_class_uid: str, sop_instance_uid: str) -> ReceivedDataset:
        """Where the dataset of an incoming message goes as it arrives, and its limit.

        A C-STORE dataset into a writable area: after its Part-10 file header, spooled into
        the area past a threshold, up to the smaller of ``--max-store-size`` and the per-study
        quota.  Any other dataset (an identifier, N-ACTION information): in memory, up to
        ``--max-request-size``.
        """
        options = self.options
        if command_field != C_STORE_RQ:
            return ReceivedDataset(options.max_request_size,
                                   f"--max-request-size ({options.max_request_size} bytes)",
                                   what=_REQUEST_PARTS.get(command_field, "request"))
        entry = self.entry_of(assoc)
        store_text = f"--max-store-size ({options.max_store_size} bytes)"
        if entry is None or not entry.access.can_store or options.ignore:
            return ReceivedDataset(options.max_store_size, store_text, keep=False)
        area = self.area_for(entry)
        limit, limit_text = options.max_store_size, store_text
        if area.quota.max_bytes_per_study < limit:
            limit = area.quota.max_bytes_per_study
            limit_text = f"the per-study quota of {limit} bytes"
        calling = calling_aet(assoc)
        prefix = file_header(_uid(sop_class_uid), _uid(sop_instance_uid), transfer_syntax,
                             calling)
        return ReceivedDataset(limit, limit_text, folder=area.root, prefix=prefix,
                               temp_prefix=area.node.temp_prefix)

    def bound_request(self, assoc: Association, request: C_FIND | C_GET | C_MOVE | N_ACTION,
                      transfer_syntax: str) -> None:
        """On pynetdicom's public path, put a request's identifier (or action information)
        through :meth:`dataset_sink` once it has arrived, so the same limit refuses it (a held
        channel bounds it as it arrives)."""
        if isinstance(request, N_ACTION):
            received = request.ActionInformation
        else:
            received = request.Identifier
        if received is None or isinstance(received, ReceivedDataset):
            return
        bound = self.dataset_sink(assoc, transfer_syntax, _COMMAND_FIELD_OF[type(request)],
                                  "", "")
        bound.write(received.getvalue())
        if isinstance(request, N_ACTION):
            request.ActionInformation = bound
        else:
            request.Identifier = bound

    def _commitment_request(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        if self.commitment is None:
            return int(Status.PROCESSING_FAILURE), None
        if not self.internals:
            self.bound_request(event.assoc, cast(N_ACTION, event.request),
                               str(event.context.transfer_syntax))
        return self.commitment.handle(event)

    def route_request(self, assoc: Association, request: DimseMessage, context_id: int
                      ) -> bool:
        """Serve a DIMSE request with pyqrscp's own service instead of pynetdicom's.

        C-STORE, C-MOVE and C-GET are served here (no pydicom command sets, stored bytes),
        and C-FIND (responses encoded without pydicom); returns False to let pynetdicom serve
        everything else.
        """
        log_request(assoc, request)
        with log_context(lambda: _where(assoc, request)):
            return _guarded(assoc, request, lambda: self._route(assoc, request, context_id))

    def _route(self, assoc: Association, request: DimseMessage, context_id: int) -> bool:
        """Serve through the request's own service (``route_request`` guards it)."""
        if isinstance(request, C_STORE):
            return self._store.serve(self, assoc, request, context_id) is not False
        if isinstance(request, C_ECHO):
            return self._echo.serve(self, assoc, request, context_id)

        serve = self._serve_of.get(type(request))
        context = presentation_context(assoc, context_id)
        model = (self._find.MODEL_OF_SOP_CLASS.get(str(context.abstract_syntax))
                 if context else None)
        if serve is None or model is None or not request.is_valid_request:
            return False
        # The reactor is not marked paused (pynetdicom's own service classes do mark it): a
        # storage commitment report from another thread must wait until this service ends.
        forget_cancels(assoc)
        try:
            serve(self, assoc, request, context, model)
            return True
        finally:
            forget_cancels(assoc)

    def handlers(self) -> list[EventHandlerType]:
        """pynetdicom's event handlers: every request pyqrscp's own routing does not serve
        (all of them on pynetdicom's public path) reaches one of these."""
        internals = self.internals
        return [
            (evt.EVT_C_ECHO, _handler(lambda event: echo.handle(self, event), internals)),
            (evt.EVT_C_STORE, _handler(lambda event: store.handle(self, event), internals)),
            (evt.EVT_C_FIND, lambda event: events.find_responses(self, event)),
            (evt.EVT_C_GET, lambda event: events.get_responses(self, event)),
            (evt.EVT_C_MOVE, lambda event: events.move_responses(self, event)),
            (evt.EVT_N_ACTION, _handler(self._commitment_request, internals)),
            (evt.EVT_SOP_EXTENDED, lambda event: extended_response(event.app_info)),
        ]
