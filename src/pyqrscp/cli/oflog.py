"""DCMTK's log configuration files (``-lc``), read into Python logging handlers.

DCMTK's tools log through oflog (log4cplus) and ship ``logger.cfg`` and ``filelog.cfg``; users
copy those.  This reads the part people put in them: ``rootLogger`` (level and appenders), the
console, file, rolling-file and daily-rolling-file appenders with ``Threshold``, ``File``,
``Append``, ``MaxFileSize``, ``MaxBackupIndex``, and the simple or pattern layout.  Anything
else is refused with one line naming the file, the line and the key, never half-applied.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyqrscp.errors import ConfigError

_PREFIX = "log4cplus."
_LEVELS = {"TRACE": 5, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
           "ERROR": logging.ERROR, "FATAL": logging.CRITICAL, "OFF": logging.CRITICAL + 10,
           "ALL": 1}
_NAMES = {5: "TRACE", logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN",
          logging.ERROR: "ERROR", logging.CRITICAL: "FATAL"}
_APPENDERS = ("ConsoleAppender", "FileAppender", "RollingFileAppender",
              "DailyRollingFileAppender", "NullAppender")
_APPENDER_KEYS = ("Threshold", "logToStderr", "ImmediateFlush", "File", "Append", "MaxFileSize",
                  "MaxBackupIndex", "Schedule", "layout", "layout.ConversionPattern",
                  "CreateDirs", "Locale")
_SCHEDULES = {"MONTHLY": ("D", 30), "WEEKLY": ("W0", 1), "DAILY": ("midnight", 1),
              "TWICE_DAILY": ("H", 12), "HOURLY": ("H", 1), "MINUTELY": ("M", 1)}
_TOKEN = re.compile(r"%(-?\d+)?(?:\.(\d+))?([a-zA-Z%])(?:\{([^}]*)\})?")


def is_oflog_config(text: str) -> bool:
    """True for a log4cplus properties file (DCMTK's format) rather than a Python ini file."""
    return any(line.strip().startswith(_PREFIX) for line in text.splitlines())


class PatternFormatter(logging.Formatter):
    """log4cplus's PatternLayout: %d/%D{strftime, %q ms}, %p, %m, %n, %c{N}, %t, %i, %h, %%."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern
        for match in _TOKEN.finditer(pattern):
            if match.group(3) not in "dDpmncthi%":
                raise ValueError(f"conversion %{match.group(3)} is not supported")

    def format(self, record: logging.LogRecord) -> str:
        lines = record.getMessage().splitlines() or [""]
        return "".join(self._line(record, text) for text in lines).rstrip("\n")

    def _line(self, record: logging.LogRecord, text: str) -> str:
        return _TOKEN.sub(lambda match: self._convert(match, record, text), self.pattern)

    def _convert(self, match: re.Match[str], record: logging.LogRecord, text: str) -> str:
        width, _precision, kind, option = match.groups()
        if kind == "%":
            return "%"
        if kind == "n":
            return "\n"
        producers: dict[str, Callable[[], str]] = {
            "m": lambda: text,
            "p": lambda: _NAMES.get(record.levelno, record.levelname),
            "c": lambda: ".".join(record.name.split(".")[-int(option):]) if option
            else record.name,
            "t": lambda: str(record.thread),
            "i": lambda: str(os.getpid()),
            "h": socket.gethostname,
            "d": lambda: _date(record, option, time.gmtime),
            "D": lambda: _date(record, option, time.localtime),
        }
        value = producers[kind]()
        if width:
            size = int(width)
            value = value.ljust(-size) if size < 0 else value.rjust(size)
        return value


def _date(record: logging.LogRecord, option: str | None,
          convert: Callable[[float], time.struct_time]) -> str:
    stamp = convert(record.created)
    pattern = (option or "%Y-%m-%d %H:%M:%S").replace("%q", f"{int(record.msecs):03d}")
    return time.strftime(pattern, stamp)


@dataclass
class _Reader:
    path: Path
    properties: dict[str, tuple[int, str]]

    def error(self, key: str, message: str) -> ConfigError:
        line = self.properties[key][0] if key in self.properties else 0
        return ConfigError(self.path, line, 1, f"{message} (pyqrscp reads rootLogger, "
                           f"{', '.join(_APPENDERS)}, Threshold, File, Append, MaxFileSize, "
                           "MaxBackupIndex, Schedule, SimpleLayout and PatternLayout)")

    def get(self, key: str, default: str | None = None) -> str | None:
        found = self.properties.get(_PREFIX + key)
        return found[1] if found else default


def read_oflog(path: Path, app_name: str = "pyqrscp") -> tuple[int, list[logging.Handler]]:
    """The root level and the handlers a DCMTK log config describes.

    Raises
    ------
    ConfigError
        At the first line pyqrscp cannot honour, naming it.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    properties: dict[str, tuple[int, str]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(path, number, 1, "expected 'key = value'")
        value = value.strip().replace("${appname}", app_name)
        properties[key.strip()] = (number, os.path.expandvars(value))
    reader = _Reader(path, properties)
    _check_keys(reader)
    root = (reader.get("rootLogger") or "DEBUG").split(",")
    level_name = root[0].strip().upper() or "DEBUG"
    if level_name not in _LEVELS:
        raise reader.error(_PREFIX + "rootLogger", f"unknown level {root[0].strip()!r}")
    handlers = [_appender(reader, name.strip()) for name in root[1:] if name.strip()]
    return _LEVELS[level_name], handlers


def _check_keys(reader: _Reader) -> None:
    for key in reader.properties:
        if not key.startswith(_PREFIX):
            raise reader.error(key, f"unknown key {key!r}")
        rest = key[len(_PREFIX):]
        if rest == "rootLogger" or rest.startswith("logger.dcmtk."):
            continue  # DCMTK's own module loggers: pyqrscp has none of them
        if rest.startswith("appender."):
            name, _, setting = rest[len("appender."):].partition(".")
            if not setting or setting in _APPENDER_KEYS:
                continue
        raise reader.error(key, f"{key!r} is not supported")


def _appender(reader: _Reader, name: str) -> logging.Handler:
    base = f"appender.{name}"
    kind = (reader.get(base) or "").removeprefix("log4cplus::")
    if kind not in _APPENDERS:
        raise reader.error(_PREFIX + base, f"appender {name!r}: unsupported type {kind!r}"
                           if kind else f"appender {name!r} is used but not defined")
    handler = _handler(reader, base, kind)
    threshold = (reader.get(f"{base}.Threshold") or "ALL").upper()
    if threshold not in _LEVELS:
        raise reader.error(f"{_PREFIX}{base}.Threshold", f"unknown level {threshold!r}")
    handler.setLevel(_LEVELS[threshold])
    layout = (reader.get(f"{base}.layout") or "SimpleLayout").removeprefix("log4cplus::")
    pattern = {"SimpleLayout": "%p - %m%n"}.get(layout)
    if layout == "PatternLayout":
        pattern = reader.get(f"{base}.layout.ConversionPattern") or "%m%n"
    if pattern is None:
        raise reader.error(f"{_PREFIX}{base}.layout", f"layout {layout!r} is not supported")
    try:
        handler.setFormatter(PatternFormatter(pattern))
    except ValueError as error:
        raise reader.error(f"{_PREFIX}{base}.layout.ConversionPattern", str(error)) from None
    return handler


def _handler(reader: _Reader, base: str, kind: str) -> logging.Handler:
    if kind == "NullAppender":
        return logging.NullHandler()
    if kind == "ConsoleAppender":
        to_stderr = (reader.get(f"{base}.logToStderr") or "false").lower() == "true"
        return logging.StreamHandler(sys.stderr if to_stderr else sys.stdout)
    file_name = reader.get(f"{base}.File")
    if not file_name:
        raise reader.error(_PREFIX + base, f"{base} needs a File")
    mode = "a" if (reader.get(f"{base}.Append") or "true").lower() == "true" else "w"
    if kind == "RollingFileAppender":
        return logging.handlers.RotatingFileHandler(
            file_name, mode="a", maxBytes=_size(reader, f"{base}.MaxFileSize"),
            backupCount=int(reader.get(f"{base}.MaxBackupIndex") or "1"), delay=True)
    if kind == "DailyRollingFileAppender":
        schedule = (reader.get(f"{base}.Schedule") or "DAILY").upper()
        if schedule not in _SCHEDULES:
            raise reader.error(f"{_PREFIX}{base}.Schedule", f"unknown schedule {schedule!r}")
        when, interval = _SCHEDULES[schedule]
        return logging.handlers.TimedRotatingFileHandler(
            file_name, when=when, interval=interval,
            backupCount=int(reader.get(f"{base}.MaxBackupIndex") or "10"), delay=True)
    return logging.FileHandler(file_name, mode=mode, delay=True)


def _size(reader: _Reader, key: str) -> int:
    text = (reader.get(key) or "10MB").strip().upper()
    match = re.fullmatch(r"(\d+)\s*(KB|MB|GB)?", text)
    if match is None:
        raise reader.error(_PREFIX + key, f"invalid size {text!r}")
    factor = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}.get(match.group(2) or "", 1)
    return max(int(match.group(1)) * factor, 200 << 10)  # log4cplus's minimum: 200 KB

