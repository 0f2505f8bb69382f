"""What the server says and does at start-up, and how a failing service ends its association."""

from __future__ import annotations

import dataclasses
import logging
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from helpers import have_dcmtk, run_tool, write_config
from pydicom import valuerep
from pynetdicom import _config as pynetdicom_config

from pyqrscp.archive.index.schema import INDEX_FILE_NAME, SCHEMA_VERSION
from pyqrscp.archive.storage import StorageArea
from pyqrscp.cli.command import main
from pyqrscp.config import Quota, load_config
from pyqrscp.config.options import Options
from pyqrscp.server.server import ArchiveServer
from pyqrscp.services import echo

NO_LOCKING = "W: file locking is not available"  # without fcntl (test_posixless.py)
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
@pytest.mark.pynetdicom_internals(reason="on the public path pynetdicom answers after the "
                                  "handler aborted, racing its own DUL (Evt9 in Sta13)")
def test_failing_handler_aborts_at_once_with_an_error_line(
        tmp_path: Path, lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> int:
        raise RuntimeError("handler bug")

    monkeypatch.setattr(echo, "handle", broken)  # pynetdicom's path
    monkeypatch.setattr(echo, "serve", broken)  # pyqrscp's own
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


def _first_lines(config: Path, *args: str, until: str) -> list[str]:
    """Start ``pyqrscp`` without ``-v``; its stderr lines up to the one containing ``until``."""
    process = subprocess.Popen([sys.executable, "-m", "pyqrscp", "-c", str(config), *args],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    deadline = threading.Timer(60, process.kill)  # a server that never says it is ready
    deadline.start()
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if until in line:
                break
    finally:
        deadline.cancel()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    return lines


def test_startup_line_names_config_port_and_titles_at_the_default_level(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 1mb) ANY",
                                     f"OTHER {tmp_path / 'b'} RW (9, 1mb) ANY"])
    lines = _first_lines(config, "0", until="listening")
    assert re.fullmatch(rf"I: pyqrscp \S+ listening on port [1-9]\d* \(all interfaces\) "
                        rf"with AE titles ARCHIVE, OTHER; config {re.escape(str(config))}",
                        lines[-1]), lines


def test_empty_aetable_is_a_warning(tmp_path: Path) -> None:
    config = write_config(tmp_path, [])
    lines = _first_lines(config, "0", until="listening")
    assert f"W: {config}: the AETable is empty: every association will be rejected" in lines
    assert "with AE titles (none)" in lines[-1]


def test_missing_config_file_is_reported_as_such(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(tmp_path / "nope.cfg"), "0"]) == 2
    assert capsys.readouterr().err == f"pyqrscp: {tmp_path / 'nope.cfg'}: config file not found\n"


def test_main_leaves_the_libraries_settings_as_it_found_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """main() in-process switches pynetdicom's PDU descriptions off and remembers UID checks
    while it serves; the tests after it in this process must find pynetdicom's and pydicom's
    own settings again."""
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'area'} RW (10, 1mb) ANY"])
    assert main(["-c", str(config), "70000"]) == 2  # past the settings, refused at validation
    assert "port 70000 out of range" in capsys.readouterr().err
    assert pynetdicom_config.LOG_HANDLER_LEVEL == "standard"  # pynetdicom's default
    assert not getattr(pynetdicom_config.VALIDATORS["UI"], "remembers", False)
    assert not getattr(valuerep.VALIDATORS["UI"], "remembers", False)


@pytest.mark.sqlite_only  # writes the SQLite index file itself
@pytest.mark.sqlite_only  # writes the SQLite file itself
def test_an_index_of_a_newer_pyqrscp_stops_start_up_with_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    area = tmp_path / "area"
    config = write_config(tmp_path, [f"ARCHIVE {area} RW (10, 1mb) ANY"])
    index = StorageArea(area, Quota(10, 10**6), durable=False)
    index.open()
    index.close()
    with closing(sqlite3.connect(area / INDEX_FILE_NAME)) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                   (str(SCHEMA_VERSION + 1),))
        db.commit()
    assert main(["-c", str(config), "0"]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines()  # but the public-path line
             if not line.startswith("W: PYQRSCP_PYNETDICOM_PUBLIC_ONLY")]
    assert len(lines) == 1 and lines[0].startswith(
        f"pyqrscp: index schema {SCHEMA_VERSION + 1} is newer than this pyqrscp"), lines


def test_help_is_grouped_as_dcmqrscp_with_defaults_warnings_and_examples(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    headers = ["general options:", "multi-process options:", "database options:",
               "network options:", "processing options:", "output options:", "examples:",
               "exit codes:"]
    positions = [text.find(header) for header in headers]
    assert -1 not in positions and positions == sorted(positions), positions
    assert re.search(r"--allow-shutdown\s+allow external shutdown \(private SOP class\) "
                     r"\[warns\]", text)
    assert re.search(r"\+x=, --prefer-uncompr\s+prefer: uncompr \(default\)", text)
    assert re.search(r"--acse-timeout SECONDS\s+ACSE timeout \(default: 30\)", text)
    assert "--bind ADDRESS" in text


def test_index_help_agrees_with_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert main(["index", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Stop the server first" not in text
    assert "works while the\nserver runs" in text
    for line in ("pyqrscp index -c dcmqrscp.cfg ACME_STORE /path/to/files-or-folders",
                 "pyqrscp index -c dcmqrscp.cfg ACME_STORE --rebuild"):
        assert line in readme and line in text
    assert "exit codes: 0" in text


def test_index_sums_up_non_dicom_files_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 10mb) ANY"])
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("notes.txt", "scan.json", "readme.md"):
        (folder / name).write_text("not DICOM\n")
    result = subprocess.run([sys.executable, "-m", "pyqrscp", "index", "-c", str(config),
                             "ARCHIVE", str(folder)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if not line.startswith(NO_LOCKING)] == [
        "pyqrscp index: skipped 3 files that are not DICOM (no DICOM file meta information): "
        f"{folder / 'notes.txt'}, {folder / 'readme.md'}, {folder / 'scan.json'}"], result.stderr


@needs_dcmtk
def test_bind_listens_on_the_given_address_only(tmp_path: Path) -> None:
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 1mb) ANY"])
    lines = _first_lines(config, "--bind", "127.0.0.1", "0", until="listening")
    assert re.search(r"listening on port \d+ \(127\.0\.0\.1\) with AE titles ARCHIVE",
                     lines[-1]), lines
