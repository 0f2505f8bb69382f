"""systemd's notify protocol, against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from socketserver import TCPServer

import pytest
from helpers import have_dcmtk, run_tool, write_config

from pyqrscp.config import load_config
from pyqrscp.config.options import Options
from pyqrscp.server.server import ArchiveServer

REPO = Path(__file__).parents[2]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(60)
    try:
        yield sock
    finally:
        sock.close()


def _until(sock: socket.socket, wanted: str) -> list[str]:
    """Messages received up to and including the first that contains ``wanted``."""
    seen: list[str] = []
    while not seen or wanted not in seen[-1]:
        seen.append(sock.recv(4096).decode())
    return seen


@pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")
def test_ready_watchdog_and_stopping_under_a_fake_systemd(
        tmp_path: Path, notify_socket: socket.socket) -> None:
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 1mb) ANY"])
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"}
    process = subprocess.Popen([sys.executable, "-m", "pyqrscp", "-c", str(config), "0"],
                               env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    try:
        ready = _until(notify_socket, "READY=1")[-1]
        port = ready.split("listening on port ")[1].split()[0]
        assert f"MAINPID={process.pid}" in ready
        assert run_tool("echoscu", "-aec", "ARCHIVE", "localhost", port).returncode == 0
        assert _until(notify_socket, "WATCHDOG=1")[-1] == "WATCHDOG=1"
        assert _until(notify_socket, "WATCHDOG=1")[-1] == "WATCHDOG=1"
        process.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in _until(notify_socket, "STOPPING=1")[-1]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err


class _Stalled(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "accept loop has not turned" in record.getMessage():
            self.seen.set()


def test_watchdog_stops_pinging_when_the_accept_loop_is_dead(
        tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    stalled = _Stalled()
    logging.getLogger("pyqrscp").addHandler(stalled)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 1mb) ANY"])
    server = ArchiveServer(load_config(config), dataclasses.replace(Options(), port=0),
                           host="127.0.0.1")
    server.start()
    try:
        _until(notify_socket, "READY=1")
        _until(notify_socket, "WATCHDOG=1")
        listener = server.listener
        TCPServer.shutdown(listener)  # the accept loop ends; every thread of ours still lives
        assert stalled.seen.wait(60)
        # Pings sent before the stall was noticed are queued already (the watchdog thread
        # sends them before it logs the stall): drop those, then listen for new ones.
        notify_socket.setblocking(False)
        try:
            while True:
                notify_socket.recv(4096)
        except BlockingIOError:
            pass
        notify_socket.settimeout(2.0)  # five watchdog intervals
        late: list[str] = []
        try:
            while True:
                late.append(notify_socket.recv(4096).decode())
        except TimeoutError:
            pass
        assert "WATCHDOG=1" not in late
    finally:
        logging.getLogger("pyqrscp").removeHandler(stalled)
        server.stop()


def test_unit_file_is_type_notify_with_a_watchdog() -> None:
    unit = (REPO / "contrib" / "pyqrscp.service").read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "Restart=on-failure"):
        assert line in unit
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--print-example-config" in dockerfile and "EXPOSE 10001" in dockerfile
