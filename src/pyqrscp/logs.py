"""Logging set up like DCMTK's oflog: ``I: message`` lines on stderr, levels named as dcmqrscp's."""

from __future__ import annotations

import logging
import logging.config
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TRACE = 5

LEVELS: dict[str, int] = {
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

_CONTEXT = threading.local()

STARTUP_LOGGER = "pyqrscp.startup"
"""The start-up line (config file, port, AE titles) is logged here, shown at every level."""

_PREFIX = {TRACE: "T", logging.DEBUG: "D", logging.INFO: "I", logging.WARNING: "W",
           logging.ERROR: "E", logging.CRITICAL: "F"}


class DcmtkFormatter(logging.Formatter):
    """Render records as DCMTK does (``W: text``) so log parsers written for dcmqrscp still work."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = _PREFIX.get(record.levelno, "I")
        text = record.getMessage()
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"{prefix}: {line}" for line in text.splitlines() or [""])


@contextmanager
def log_context(where: str) -> Iterator[None]:
    """Name what this thread is serving (peer, instance) in the warnings raised meanwhile."""
    previous = getattr(_CONTEXT, "where", None)
    _CONTEXT.where = where
    try:
        yield
    finally:
        _CONTEXT.where = previous


def _warning_to_log(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: object = None, line: str | None = None) -> None:
    """Library warnings (pydicom's ``Invalid value for VR IS``) as ``W:`` lines naming the
    peer and the instance, instead of Python's two-line warning text."""
    where = getattr(_CONTEXT, "where", None)
    logging.getLogger("pyqrscp.warnings").warning(
        "%s%s", f"{where}: " if where else "", str(message).split(" Please see ")[0])


def configure_logging(level_name: str, log_config: Path | None = None) -> None:
    """Apply the chosen level to pyqrscp's loggers; pynetdicom speaks only at ``trace``.

    pynetdicom logs every PDU at INFO/DEBUG; that costs time per message and drowns the
    one-line-per-association log that dcmqrscp users read, so it is quiet unless asked for.
    """
    logging.addLevelName(TRACE, "TRACE")
    if log_config is not None:
        logging.config.fileConfig(log_config, disable_existing_loggers=False)
        return
    level = LEVELS[level_name]
    handler = logging.StreamHandler()
    handler.setFormatter(DcmtkFormatter())
    root = logging.getLogger("pyqrscp")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger(STARTUP_LOGGER).setLevel(logging.INFO)
    pynetdicom_logger = logging.getLogger("pynetdicom")
    pynetdicom_logger.handlers[:] = [handler] if level <= TRACE else [logging.NullHandler()]
    pynetdicom_logger.setLevel(logging.DEBUG if level <= TRACE else logging.CRITICAL)
    pynetdicom_logger.propagate = False
    pydicom_logger = logging.getLogger("pydicom")  # it logs what it also warns: once is enough
    pydicom_logger.handlers[:] = [logging.NullHandler()]
    pydicom_logger.propagate = False
    warnings.showwarning = _warning_to_log
    warnings.simplefilter("always", UserWarning)
