"""Logging to files: DCMTK's own log configs (``-lc``) and ``--log-file``; each event once."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import have_dcmtk, poll_until, run_tool, write_config

from pyqrscp.cli.command import main

DCMTK_CONFIGS = Path("/etc/dcmtk")
needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")
needs_samples = pytest.mark.skipif(not (DCMTK_CONFIGS / "filelog.cfg").exists(),
                                   reason="DCMTK's sample log configs not installed")


def _wait_for(path: Path, text: str, process: subprocess.Popen[str]) -> str:
    """Poll ``path`` until it contains ``text`` (the server is ready); fail if it exits."""
    def content() -> str | None:
        if process.poll() is not None:
            raise AssertionError(f"{text!r} never appeared in {path}; exit {process.poll()}")
        found = path.read_text() if path.exists() else ""
        return found if text in found else None
    return poll_until(content, f"{text!r} in {path}")


@contextmanager
def _server(tmp_path: Path, *args: str, stderr: list[str] | None = None
            ) -> Iterator[subprocess.Popen[str]]:
    """Run pyqrscp in ``tmp_path``; its stderr is appended to ``stderr`` once it has exited."""
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 10mb) ANY"])
    process = subprocess.Popen([sys.executable, "-m", "pyqrscp", "-c", str(config), *args, "0"],
                               cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
        if stderr is not None:
            stderr.append(err)


def _echo(log: Path, process: subprocess.Popen[str]) -> None:
    port = re.search(r"listening on port (\d+)", _wait_for(log, "listening", process))
    assert port is not None
    result = run_tool("echoscu", "-aec", "ARCHIVE", "localhost", port.group(1))
    assert result.returncode == 0, result.stderr


@needs_dcmtk
@needs_samples
def test_dcmtk_filelog_cfg_writes_the_rolling_file_with_its_pattern(tmp_path: Path) -> None:
    shutil.copy(DCMTK_CONFIGS / "filelog.cfg", tmp_path)
    log = tmp_path / "pyqrscp.log"  # File = ${appname}.log
    errors: list[str] = []
    with _server(tmp_path, "-lc", "filelog.cfg", stderr=errors) as process:
        _echo(log, process)
        _wait_for(log, "Association Released", process)
    stderr = errors[0]
    lines = log.read_text().splitlines()
    pattern = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  INFO - \S+\s* - "
                         r"Association Received 127\.0\.0\.1: ECHOSCU -> ARCHIVE")
    assert len([line for line in lines if pattern.fullmatch(line)]) == 1, lines
    assert len([line for line in lines if "Received Echo Request" in line]) == 1, lines
    assert "Association Received" not in stderr  # the console appender's Threshold is ERROR


@needs_dcmtk
@needs_samples
def test_dcmtk_logger_cfg_logs_each_event_once_to_console_and_file(tmp_path: Path) -> None:
    shutil.copy(DCMTK_CONFIGS / "logger.cfg", tmp_path)
    log = tmp_path / "pyqrscp.log"
    errors: list[str] = []
    with _server(tmp_path, "-lc", "logger.cfg", stderr=errors) as process:
        _echo(log, process)
        _wait_for(log, "Association Released", process)
    process_stderr = errors[0]
    for text in (log.read_text(), process_stderr):
        assert text.count("Association Received 127.0.0.1: ECHOSCU -> ARCHIVE") == 1, text
    assert re.search(r"\d\d:\d\d:\d\d  INFO: Association Received", process_stderr)


def test_unsupported_log_config_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "socket.cfg"
    config.write_text("log4cplus.rootLogger = INFO, net\n"
                      "log4cplus.appender.net = log4cplus::SocketAppender\n")
    assert main(["-lc", str(config), "--check-config", "-c", str(config)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"pyqrscp: {config}:2:1: appender 'net': unsupported type "
                            "'SocketAppender' (pyqrscp reads rootLogger, ")
    assert error.count("\n") == 1


@needs_dcmtk
def test_log_file_option_writes_stamped_lines_once(tmp_path: Path) -> None:
    log = tmp_path / "archive.log"
    errors: list[str] = []
    with _server(tmp_path, "-v", "--log-file", str(log), stderr=errors) as process:
        _echo(log, process)
        _wait_for(log, "Association Released", process)
    lines = log.read_text().splitlines()
    received = [line for line in lines if "Association Received" in line]
    assert len(received) == 1, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} I: Association Received "
                        r"127\.0\.0\.1: ECHOSCU -> ARCHIVE", received[0])
    assert "Association Received" not in errors[0]
