"""The HTTP listener in the real ``pyqrscp`` process: uvicorn's lines in pyqrscp's log format
and levels, a clean stop on SIGTERM while a STOW-RS body is half sent."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

from helpers import (
    RunningServer,
    make_ct,
    poll_until,
    pyqrscp_process,
    wait_for_log,
    write_config,
)
from test_dicomweb import leftovers, stow_body
from test_web_requests import _status_of, _stow_head

TIMEOUT = 60
_HTTP = re.compile(r"DICOMweb and the page on http://127\.0\.0\.1:(\d+)/")


def _http_port(server: RunningServer) -> int:
    found = _HTTP.search(server.log_text())
    assert found, server.log_text()
    return int(found.group(1))


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (100, 1024mb) ANY"])


def _garbage(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as connection:
        connection.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        while connection.recv(4096):
            pass


def test_uvicorn_lines_take_pyqrscp_format_and_level(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pyqrscp_process(config, "--http", "127.0.0.1:0") as server:
        _garbage(_http_port(server))
        wait_for_log(server, "W: Invalid HTTP request received")
    with pyqrscp_process(config, "--http", "127.0.0.1:0", "-q") as quiet:
        _garbage(_http_port(quiet))
        quiet.process.send_signal(signal.SIGTERM)
        assert quiet.process.wait(timeout=TIMEOUT) == 0
    assert "Invalid HTTP request" not in quiet.log_text()


def test_sigterm_stops_cleanly_with_an_upload_half_sent(tmp_path: Path) -> None:
    """The upload is answered 503 at once (not cut off after the stop's grace period with an
    error line), its spooled part removed, and the process ends with 0."""
    body = stow_body(make_ct(tmp_path, rows=64).read_bytes())
    with pyqrscp_process(_config(tmp_path), "--http", "127.0.0.1:0") as server:
        port = _http_port(server)
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as upload:
            upload.sendall(_stow_head(len(body)) + body[:len(body) // 2])
            poll_until(lambda: leftovers(tmp_path / "a") or None, "the part being spooled")
            server.process.send_signal(signal.SIGTERM)
            assert _status_of(upload) == 503
        assert server.process.wait(timeout=TIMEOUT) == 0
    log = server.log_text()
    assert "received signal 15, shutting down" in log
    assert [line for line in log.splitlines() if line.startswith(("E:", "F:"))] == [], log
    assert "Traceback" not in log, log
    assert leftovers(tmp_path / "a") == []
