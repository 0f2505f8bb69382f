"""The stored instances under a study, series or instance, found as C-MOVE finds them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from pyqrscp.archive.areafiles import reader
from pyqrscp.archive.index.backend import IndexConnection
from pyqrscp.archive.index.query import STUDY_ROOT, matching_instances, parse_identifier
from pyqrscp.archive.storage import StorageArea

LOGGER = logging.getLogger(__name__)
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One stored instance: its UIDs, syntax and file."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: Path


def stored_files(db: IndexConnection, area: StorageArea, study_uid: str,
                 series_uid: str | None = None, instance_uid: str | None = None
                 ) -> list[StoredFile]:
    """The instances a retrieve of this study/series/instance sends, in the order they were
    stored: the identifier C-MOVE would get, answered by the same
    :func:`matching_instances`."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = ("IMAGE" if instance_uid else
                                     "SERIES" if series_uid else "STUDY")
    identifier.StudyInstanceUID = study_uid
    if series_uid or instance_uid:
        identifier.SeriesInstanceUID = series_uid or ""
    if instance_uid:
        identifier.SOPInstanceUID = instance_uid
    query = parse_identifier(identifier, STUDY_ROOT)
    return [StoredFile(uid, sop_class, syntax, area.path_of(name))
            for uid, sop_class, syntax, name in matching_instances(db, query)]


def file_chunks(path: Path) -> Iterator[bytes]:
    """The stored bytes of one file, in chunks; a file gone meanwhile (deleted) yields
    nothing and logs why.  Links are never followed."""
    try:
        stream = reader(path)
    except OSError as error:
        LOGGER.error("cannot send %s: %s", path.name, error)
        return
    with stream:
        while chunk := stream.read(CHUNK):
            yield chunk
