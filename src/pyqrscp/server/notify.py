"""systemd's notify protocol (``Type=notify``): READY, STOPPING and a watchdog that proves the
accept loop turns, not merely that a thread exists.

Speaks ``sd_notify`` directly (one datagram on ``$NOTIFY_SOCKET``), so no library is needed;
without ``$NOTIFY_SOCKET`` (not under systemd) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

LOGGER = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send one state line (``READY=1``...) to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not hasattr(socket, "AF_UNIX"):
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), target)
    except OSError as error:
        LOGGER.warning("cannot notify systemd on %s: %s", address, error)
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (systemd's advice), when it is meant for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


class Watchdog:
    """Pings ``WATCHDOG=1`` while ``last_turn()`` (the accept loop's last pass, monotonic
    seconds) is recent; a stalled or dead loop stops the pings and systemd restarts us."""

    def __init__(self, interval: float, last_turn: Callable[[], float]) -> None:
        self.interval = interval
        self.last_turn = last_turn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pyqrscp-watchdog", daemon=True)
        self._stalled = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            age = time.monotonic() - self.last_turn()
            if age <= max(2 * self.interval, 2.0):
                notify("WATCHDOG=1")
                self._stalled = False
            elif not self._stalled:
                self._stalled = True
                LOGGER.error("the accept loop has not turned for %.1f s; no watchdog ping "
                             "(systemd will restart the service)", age)
