"""What every service asks about its association: who the peer is (for log lines), which
storage area an AETable entry uses, and whether a C-CANCEL arrived."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyqrscp.config import AEEntry
from pyqrscp.link.channel import Channel
from pyqrscp.link.titles import called_aet, calling_aet


def area_key(entry: AEEntry) -> Path:
    """One StorageArea per folder, however the AETable spells it (``db/x`` and ``db/./x``)."""
    return entry.storage_area.resolve()


def peer_of(assoc: Any) -> str:
    """``CALLING (address) -> CALLED`` of an association, for log lines."""
    calling = calling_aet(assoc)
    called = called_aet(assoc)
    return f"{calling} ({assoc.requestor.address}) -> {called}"


def peer(event: Any) -> str:
    """:func:`peer_of` the event's association."""
    return peer_of(event.assoc)


def cancel_requested(assoc: Any, message_id: int) -> bool:
    """Has a C-CANCEL for ``message_id`` arrived?  pynetdicom files those it reads by message
    ID; a held channel (``channel.py``) files those its holder reads.  Consumed when found."""
    channel = Channel.of(assoc)
    if channel is not None and message_id in channel.cancelled:
        channel.cancelled.discard(message_id)
        return True
    return assoc.dimse.cancel_req.pop(message_id, None) is not None
