"""Log set-up: DCMTK's pattern layout and the rotation of ``--log-file``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyqrscp.cli import logs
from pyqrscp.cli.oflog import PatternFormatter


@pytest.fixture
def restored_logging() -> Iterator[None]:
    logger = logging.getLogger("pyqrscp")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        yield
    finally:
        for handler in logger.handlers:
            handler.close()
        logger.handlers[:], logger.level, logger.propagate = saved


def test_pattern_layout_as_in_dcmtk_filelog_cfg() -> None:
    record = logging.LogRecord("pyqrscp.server.server", logging.WARNING, __file__, 1,
                               "two\nlines", None, None)
    record.created, record.msecs = 0.0, 7.0
    text = PatternFormatter("%d{%Y-%m-%d %H:%M:%S.%q} %5p - %-8c{1} - %m%n").format(record)
    assert text == ("1970-01-01 00:00:00.007  WARN - server   - two\n"
                    "1970-01-01 00:00:00.007  WARN - server   - lines")


def test_unknown_conversion_is_refused() -> None:
    with pytest.raises(ValueError, match="conversion %X is not supported"):
        PatternFormatter("%X %m%n")


def test_log_file_rotates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          restored_logging: None) -> None:
    monkeypatch.setattr(logs, "LOG_FILE_MAX_BYTES", 1000)
    log_file = tmp_path / "pyqrscp.log"
    logs.configure_logging("info", log_file=log_file)
    for number in range(100):
        logging.getLogger("pyqrscp.test").info("line %03d of the rotation test", number)
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated[:2] == ["pyqrscp.log", "pyqrscp.log.1"]
    assert len(rotated) == 1 + logs.LOG_FILE_BACKUPS
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    assert log_file.read_text().splitlines()[-1].endswith("I: line 099 of the rotation test")
