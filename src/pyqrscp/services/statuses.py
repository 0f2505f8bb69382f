"""The one place where exceptions become DIMSE statuses (Status + ErrorComment).

Every service asks here which status an error earns: C-STORE (:func:`failure`), C-FIND and
C-MOVE/C-GET (:func:`status_of` for their final responses).  A service decides on its own only
what is not an error of pyqrscp's or the peer's data: access (read-only, write-only areas),
cancels and sub-operation outcomes.
"""

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

DECODING_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, AttributeError, TypeError)
"""What pydicom and the identifier checks raise for a request dataset they cannot read: in a
request's identifier (or N-ACTION information) they are the peer's error, not pyqrscp's."""

IDENTIFIER_ERRORS: tuple[type[Exception], ...] = (InvalidIdentifier, *DECODING_ERRORS)
"""Every error that reading and checking a C-FIND/C-MOVE/C-GET identifier may raise."""

_STATUS_OF: tuple[tuple[type[PyqrscpError], Status], ...] = (
    (InvalidDataset, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS),
    (InvalidIdentifier, Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (QuotaExceeded, Status.OUT_OF_RESOURCES),
    (StorageFailure, Status.OUT_OF_RESOURCES),
)


def status_of(error: Exception, *, in_identifier: bool = False) -> Status:
    """The status an error earns; ``in_identifier``: it arose reading or checking the request's
    identifier (any of :data:`IDENTIFIER_ERRORS` then means the identifier is wrong)."""
    if in_identifier and isinstance(error, IDENTIFIER_ERRORS):
        return Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS
    return next((status for kind, status in _STATUS_OF if isinstance(error, kind)),
                Status.UNABLE_TO_PROCESS)


def failure(error: Exception, status: Status | None = None) -> Dataset:
    """The status dataset (Status + ErrorComment) for an error: :func:`status_of` unless
    ``status`` is given."""
    response = Dataset()
    response.Status = int(status if status is not None else status_of(error))
    response.ErrorComment = str(error)[:64]
    return response
