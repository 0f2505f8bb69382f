"""One exception tree for pyqrscp; services turn these into DIMSE statuses in one place."""

from __future__ import annotations

from pathlib import Path


class PyqrscpError(Exception):
    """Base of every error pyqrscp raises on purpose."""


class ConfigError(PyqrscpError):
    """A problem in dcmqrscp.cfg, located to the character.

    Rendered as ``FILE:LINE:COL: message`` so editors and humans can jump to it.
    """

    def __init__(self, path: Path | str, line: int, col: int, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.col = col
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line == 0:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class StartupError(PyqrscpError):
    """A fatal problem found before the server listens (user, group, port)."""


class ListenError(StartupError):
    """The port cannot be bound (in use, or below 1024 without the privilege)."""


class InvalidIdentifier(PyqrscpError):
    """A C-FIND/C-MOVE/C-GET identifier that breaks the query rules of PS3.4 C.4."""


class InvalidDataset(PyqrscpError):
    """A received dataset that cannot be stored (missing/invalid UIDs, command mismatch)."""


class QuotaExceeded(PyqrscpError):
    """An instance that cannot fit in its study's quota even after eviction."""


class StorageFailure(PyqrscpError):
    """Writing a file or its index row failed (disk full, I/O error)."""


class PeerUnavailable(PyqrscpError):
    """A peer we called refused, dropped or did not answer an association in time."""


class SubOperationFailed(PyqrscpError):
    """One C-STORE sub-operation of a retrieve cannot be done (file gone, no usable context)."""


class ServiceFailed(BaseException):  # noqa: N818
    """A service handler failed and has logged why; its association is to be aborted.

    A ``BaseException`` so that pynetdicom's service classes, which catch ``Exception`` and
    answer with a default status (Success for C-ECHO), let it through to the association.
    """
