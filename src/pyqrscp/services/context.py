"""What a service needs of the server it runs in: the seam between the services and the one
:class:`~pyqrscp.services.Services` object that binds them as pynetdicom's handlers.

Each service module takes a :class:`ServiceContext`, so none of them imports the package that
imports them all.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Protocol

from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE, N_ACTION
from pynetdicom.events import Event

from pyqrscp.archive.spool import ReceivedDataset
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import AEEntry, Config
from pyqrscp.config.options import Options
from pyqrscp.link.hostnames import HostLookup


class ServiceContext(Protocol):
    """The configuration, the storage areas and the per-request look-ups of one server."""

    @property
    def config(self) -> Config: ...

    @property
    def options(self) -> Options: ...

    @property
    def internals(self) -> bool:
        """Are pynetdicom's internals in use (pyqrscp routes requests to its own services)?"""

    @property
    def areas(self) -> dict[Path, StorageArea]: ...

    @property
    def client_tls(self) -> ssl.SSLContext | None: ...

    @property
    def hosts(self) -> HostLookup: ...

    def entry_of(self, assoc: Association) -> AEEntry | None:
        """The AETable entry of the association's called AE title."""

    def entry_for(self, event: Event) -> AEEntry:
        """The AETable entry of the event's called AE title; PyqrscpError without one."""

    def area_for(self, entry: AEEntry) -> StorageArea:
        """The storage area of an AETable entry."""

    def dataset_sink(self, assoc: Association, transfer_syntax: str, command_field: int,
                     sop_class_uid: str, sop_instance_uid: str) -> ReceivedDataset:
        """Where the dataset of an incoming message goes as it arrives, and its limit."""

    def bound_request(self, assoc: Association, request: C_FIND | C_GET | C_MOVE | N_ACTION,
                      transfer_syntax: str) -> None:
        """On pynetdicom's public path, put a request's identifier through the same limit."""
