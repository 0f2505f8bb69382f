"""Logging set up like DCMTK's oflog: ``I: message`` lines on stderr, levels named as dcmqrscp's."""

from __future__ import annotations

import logging
import logging.config
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
