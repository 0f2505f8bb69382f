"""The one exception -> DIMSE status mapping (``services/statuses.py``)."""

from __future__ import annotations

import pytest

from pyqrscp.errors import (
    InvalidDataset,
    InvalidIdentifier,
    PyqrscpError,
    QuotaExceeded,
    StorageFailure,
)
from pyqrscp.services.statuses import failure, status_of
from pyqrscp.status import Status


@pytest.mark.parametrize(("error", "status"), [
    (InvalidDataset("missing SOPInstanceUID"), Status.DATASET_DOES_NOT_MATCH_SOP_CLASS),
    (InvalidIdentifier("two values"), Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS),
    (QuotaExceeded("study too large"), Status.OUT_OF_RESOURCES),
    (StorageFailure("disk full"), Status.OUT_OF_RESOURCES),
    (PyqrscpError("anything else"), Status.UNABLE_TO_PROCESS),
    (ValueError("a bug"), Status.UNABLE_TO_PROCESS),
])
def test_each_error_has_one_status(error: Exception, status: Status) -> None:
    assert status_of(error) == status
    assert failure(error).Status == status


@pytest.mark.parametrize("error", [ValueError("bad VR"), KeyError("x"), AttributeError("y"),
                                   TypeError("z"), InvalidIdentifier("w")])
def test_decoding_errors_in_an_identifier_are_the_peers(error: Exception) -> None:
    assert status_of(error, in_identifier=True) == Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS


def test_failure_carries_a_comment_of_at_most_64_characters() -> None:
    response = failure(PyqrscpError("x" * 100), Status.REFUSED_NOT_AUTHORIZED)
    assert response.Status == Status.REFUSED_NOT_AUTHORIZED
    assert response.ErrorComment == "x" * 64
