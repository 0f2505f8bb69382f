"""Logging set up like DCMTK's oflog: ``I: message`` lines on stderr, levels named as dcmqrscp's."""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import warnings
from pathlib import Path

from pyqrscp.cli.oflog import is_oflog_config, read_oflog
from pyqrscp.errors import ConfigError
from pyqrscp.loglines import STARTUP_LOGGER, TRACE, DcmtkFormatter, warning_to_log

LEVELS: dict[str, int] = {
    "fatal": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

LOG_FILE_MAX_BYTES = 10 << 20
LOG_FILE_BACKUPS = 5


def configure_logging(level_name: str, log_config: Path | None = None,
                      log_file: Path | None = None) -> None:
    """Apply the chosen level to pyqrscp's loggers; pynetdicom says everything at ``trace``,
    else only its errors (a connection lost in the middle of a PDU, an undecodable PDU);
    uvicorn (the HTTP listener) its warnings and errors, everything at ``debug``.

    pynetdicom logs every PDU at INFO/DEBUG; that costs time per message and drowns the
    one-line-per-association log that dcmqrscp users read, so that is quiet unless asked for.
    ``log_config`` is DCMTK's log4cplus format (``logger.cfg``, ``filelog.cfg``) or a Python
    ``logging.config`` ini file; ``log_file`` writes DCMTK-style lines with a time stamp to a
    file rotated at 10 MiB (5 kept).  Each record goes to one set of handlers only.

    Raises
    ------
    ConfigError
        When the log config file cannot be read or asks for something unsupported.
    """
    logging.addLevelName(TRACE, "TRACE")
    level = LEVELS[level_name]
    if log_config is not None:
        try:
            text = log_config.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise ConfigError(log_config, 0, 0, f"cannot read log config: "
                              f"{error.strerror or error}") from None
        if not is_oflog_config(text):
            _python_file_config(log_config)
            return
        level, handlers = read_oflog(log_config)
    elif log_file is not None:
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS)
        handler.setFormatter(DcmtkFormatter(timestamps=True))
        handlers = [handler]
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(DcmtkFormatter())
        handlers = [handler]
    _install(level, handlers)


def _python_file_config(path: Path) -> None:
    try:
        logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as error:  # noqa: BLE001 - configparser and logging raise many kinds
        raise ConfigError(path, 0, 0, "neither a DCMTK (log4cplus) nor a Python logging "
                          f"config file: {type(error).__name__}: {error}") from None
    _route_library_output()


def _install(level: int, handlers: list[logging.Handler]) -> None:
    root = logging.getLogger("pyqrscp")
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = False
    logging.getLogger(STARTUP_LOGGER).setLevel(min(level, logging.INFO))
    pynetdicom_logger = logging.getLogger("pynetdicom")
    pynetdicom_logger.handlers[:] = handlers
    pynetdicom_logger.setLevel(logging.DEBUG if level <= TRACE else max(level, logging.ERROR))
    pynetdicom_logger.propagate = False
    uvicorn_logger = logging.getLogger("uvicorn")  # the HTTP listener's server
    uvicorn_logger.handlers[:] = handlers
    uvicorn_logger.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    uvicorn_logger.propagate = False
    _route_library_output()


def _route_library_output() -> None:
    pydicom_logger = logging.getLogger("pydicom")  # it logs what it also warns: once is enough
    pydicom_logger.handlers[:] = [logging.NullHandler()]
    pydicom_logger.propagate = False
    warnings.showwarning = warning_to_log
    warnings.simplefilter("always", UserWarning)
