"""Idle associations should cost next to nothing (issue 8: < 3 % of a core each).

pynetdicom's DUL thread polls its socket every ``_run_loop_delay`` (1 ms) for as long as the
association lives.  This governor lengthens that delay for associations that have received
nothing for a while and shortens it again when a PDU arrives; the service paths of pyqrscp
lower it further while they stream (see ``services/get.py``).  The price is at most
``IDLE_DELAY`` of extra latency on the first request after a quiet spell.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

ACTIVE_DELAY = 0.001
IDLE_DELAY = 0.005
IDLE_AFTER = 0.5
CHECK_EVERY = 0.1


def govern(dul: Any, now: float) -> None:
    """Set one DUL's poll delay from how long ago it last received a PDU."""
    started = getattr(dul._idle_timer, "_start_time", None)
    if started is None:
        return
    idle = now - started > IDLE_AFTER
    if idle and dul._run_loop_delay == ACTIVE_DELAY:
        dul._run_loop_delay = IDLE_DELAY
    elif not idle and dul._run_loop_delay == IDLE_DELAY:
        dul._run_loop_delay = ACTIVE_DELAY


class IdleGovernor(threading.Thread):
    """A daemon thread applying :func:`govern` to every live association."""

    def __init__(self, associations: Callable[[], Iterable[Any]]) -> None:
        super().__init__(name="pyqrscp-idle", daemon=True)
        self.associations = associations
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(CHECK_EVERY):
            now = time.time()
            for assoc in list(self.associations()):
                dul = getattr(assoc, "dul", None)
                if dul is not None:
                    govern(dul, now)

    def stop(self) -> None:
        self.stopping.set()
