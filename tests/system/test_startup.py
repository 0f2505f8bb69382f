"""What the server says and does at start-up, and how a failing service ends its association."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import have_dcmtk, run_tool, write_config

from pyqrscp.config import load_config
from pyqrscp.options import Options
from pyqrscp.server import ArchiveServer
from pyqrscp.services import echo

needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")


class Lines(logging.Handler):
    """pyqrscp's log records as ``LEVEL: message`` strings."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname[0]}: {record.getMessage()}")


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("pyqrscp")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@needs_dcmtk
def test_failing_handler_aborts_at_once_with_an_error_line(
        tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_services: Any, _event: Any) -> int:
        raise RuntimeError("handler bug")

    monkeypatch.setattr(echo, "handle", broken)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 1mb) ANY"])
    server = ArchiveServer(load_config(config), dataclasses.replace(Options(), port=0),
                           host="127.0.0.1")
    server.start()
    try:
        result = run_tool("echoscu", "-to", "60", "-td", "60", "-aec", "ARCHIVE", "127.0.0.1",
                          str(server.port))
    finally:
        server.stop()
    assert "Peer aborted" in result.stderr, result.stderr  # echoscu exits 0 anyway
    errors = [line for line in lines.lines if line.startswith("E:")]
    assert errors and "C-ECHO" in errors[0] and "ECHOSCU" in errors[0], lines.lines
    assert "aborting the association" in errors[0]
