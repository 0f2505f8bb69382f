"""What pyqrscp's log lines look like: DCMTK's level letters (``W: text``) and the context
(peer, instance, file) that library warnings are attributed to.

Used by every layer that logs; how and where the lines are written is set up by
:mod:`pyqrscp.cli.logs`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

TRACE = 5

_CONTEXT = threading.local()

STARTUP_LOGGER = "pyqrscp.startup"
"""The start-up line (config file, port, AE titles) is logged here, shown at every level."""

_PREFIX = {TRACE: "T", logging.DEBUG: "D", logging.INFO: "I", logging.WARNING: "W",
           logging.ERROR: "E", logging.CRITICAL: "F"}


class DcmtkFormatter(logging.Formatter):
    """Render records as DCMTK does (``W: text``) so log parsers written for dcmqrscp still work;
    with ``timestamps``, each line starts with the local time (for log files)."""

    def __init__(self, timestamps: bool = False) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        prefix = _PREFIX.get(record.levelno, "I")
        if self.timestamps:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
            prefix = f"{stamp}.{int(record.msecs):03d} {prefix}"
        text = record.getMessage()
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"{prefix}: {line}" for line in text.splitlines() or [""])


@contextmanager
def log_context(where: str | Callable[[], str]) -> Iterator[None]:
    """Name what this thread is serving (peer, instance) in the warnings raised meanwhile;
    a callable is only called when a warning needs it (no formatting per request)."""
    previous = getattr(_CONTEXT, "where", None)
    _CONTEXT.where = where
    try:
        yield
    finally:
        _CONTEXT.where = previous


def warning_to_log(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: object = None, line: str | None = None) -> None:
    """Library warnings (pydicom's ``Invalid value for VR IS``) as ``W:`` lines naming the
    peer and the instance, instead of Python's two-line warning text."""
    where = getattr(_CONTEXT, "where", None)
    if callable(where):
        where = where()
    logging.getLogger("pyqrscp.warnings").warning(
        "%s%s", f"{where}: " if where else "", str(message).split(" Please see ")[0])
