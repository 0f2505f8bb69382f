"""What the web routes see of the archive: the AETable's areas by AE title, opened once.

The DICOM server opens the storage areas; the web routes use the same :class:`StorageArea`
objects (one lock and one index writer per area), so a STOW-RS and a C-STORE into one area
serialise exactly as two C-STOREs do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from anyio import CapacityLimiter
from starlette.exceptions import HTTPException

from pyqrscp.archive.index.backend import IndexConnection
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import AEEntry
from pyqrscp.web.settings import WebSettings

UPLOAD_THREADS = 4
"""Threads STOW-RS may hold at once (spooling, storing); the other requests keep the rest of
the shared pool even while uploads wait on a slow disk."""


@dataclass(frozen=True, slots=True)
class WebArchive:
    """The areas by AE title, with their AETable rows, and the listener's settings."""

    entries: Mapping[str, AEEntry]
    areas: Mapping[str, StorageArea]
    settings: WebSettings
    case_sensitive_pn: bool = False
    uid_padding: bool = False
    max_store_size: int = 4 << 30
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the listener stops: uploads still arriving are answered 503 at once."""
    upload_threads: CapacityLimiter = field(
        default_factory=lambda: CapacityLimiter(UPLOAD_THREADS))
    """STOW-RS file work runs in at most :data:`UPLOAD_THREADS` threads."""

    def entry(self, ae_title: str, *, read: bool = False, write: bool = False) -> AEEntry:
        """The AETable row of ``ae_title``: 404 when there is none, 403 when its access lacks
        what the request needs."""
        entry = self.entries.get(ae_title)
        if entry is None:
            raise HTTPException(404, f"no AE title {ae_title!r} in the AETable")
        if read and not entry.access.can_query:
            raise HTTPException(403, f"{ae_title} is write-only")
        if write and not entry.access.can_store:
            raise HTTPException(403, f"{ae_title} is read-only")
        return entry

    def area(self, ae_title: str) -> StorageArea:
        return self.areas[ae_title]

    @contextmanager
    def reader(self, ae_title: str) -> Iterator[IndexConnection]:
        """A fresh index connection of the area for one request."""
        db = self.areas[ae_title].reader()
        try:
            yield db
        finally:
            db.close()
