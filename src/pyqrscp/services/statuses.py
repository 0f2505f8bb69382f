"""The one place where exceptions become DIMSE statuses (Status + ErrorComment)."""

from __future__ import annotations

from pydicom.dataset import Dataset

from pyqrscp.errors import (
    InvalidDataset,
    InvalidIdentifier,
    PyqrscpError,
    QuotaExceeded,
    StorageFailure,
)
from pyqrscp.status import Status

_STATUS_OF: tuple[tuple[type[PyqrscpError], Status], ...] = (
    (InvalidDataset, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS),
    (InvalidIdentifier, Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (QuotaExceeded, Status.OUT_OF_RESOURCES),
    (StorageFailure, Status.OUT_OF_RESOURCES),
)


def failure(error: Exception, status: Status | None = None) -> Dataset:
    """The status dataset (Status + ErrorComment) for an error; the one mapping in pyqrscp."""
    chosen = status
    if chosen is None:
        chosen = next((s for kind, s in _STATUS_OF if isinstance(error, kind)),
                      Status.UNABLE_TO_PROCESS)
    response = Dataset()
    response.Status = int(chosen)
    response.ErrorComment = str(error)[:64]
    return response
