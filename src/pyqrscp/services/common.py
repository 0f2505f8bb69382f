"""What every service asks about its association: who the peer is (for log lines), and which
storage area an AETable entry uses."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

from pynetdicom.association import Association
from pynetdicom.events import Event

from pyqrscp.config import AEEntry
from pyqrscp.link.association import DimseMessage
from pyqrscp.link.titles import called_aet, calling_aet

LOGGER = logging.getLogger(__name__)


def area_key(entry: AEEntry) -> Path:
    """One StorageArea per folder, however the AETable spells it (``db/x`` and ``db/./x``)."""
    return entry.storage_area.resolve()


def peer_of(assoc: Association) -> str:
    """``CALLING (address) -> CALLED`` of an association, for log lines."""
    calling = calling_aet(assoc)
    called = called_aet(assoc)
    return f"{calling} ({assoc.requestor.address}) -> {called}"


def peer(event: Event) -> str:
    """:func:`peer_of` the event's association."""
    return peer_of(event.assoc)


_COMMAND_FIELDS = ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
                   "MoveDestination", "MoveOriginatorApplicationEntityTitle",
                   "MoveOriginatorMessageID")


def command_set_text(request: DimseMessage) -> str:
    """The command fields of a DIMSE request, one per line, as DCMTK's ``-d`` shows them."""
    lines = []
    for name in _COMMAND_FIELDS:
        value = getattr(request, name, None)
        if value is not None and value != "":
            lines.append(f"{name:<38}: {value}")
    has_dataset = getattr(request, "DataSet", None) or getattr(request, "Identifier", None)
    lines.append(f"{'Data Set':<38}: {'present' if has_dataset is not None else 'none'}")
    return "\n".join(lines)


def log_request(assoc: Association, request: object) -> None:
    """The ``-d`` lines of a request: its type, the peer, its command set."""
    if LOGGER.isEnabledFor(logging.DEBUG):
        LOGGER.debug("Received %s command set from %s:\n%s",
                     type(request).__name__.replace("_", "-"), peer_of(assoc),
                     command_set_text(cast(DimseMessage, request)))
