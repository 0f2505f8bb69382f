"""Idle associations should cost next to nothing (target: < 3 % of a core each).

pynetdicom's DUL thread polls its socket every ``_run_loop_delay`` (1 ms) for as long as the
association lives.  This governor lengthens that delay for associations that have received
nothing for a while and shortens it again when a PDU arrives; the service paths of pyqrscp
lower it further while they stream (see ``services/get.py``).  The price is at most
``IDLE_DELAY`` of extra latency on the first request after a quiet spell.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

BUSY_DELAY = 0.0001
ACTIVE_DELAY = 0.001
IDLE_DELAY = 0.005
IDLE_AFTER = 0.5
CHECK_EVERY = 0.1


def _lock_of(dul: Any) -> threading.Lock:
    lock: threading.Lock = dul.__dict__.setdefault("_pyqrscp_poll_lock", threading.Lock())
    return lock


@contextmanager
def fast_polling(dul: Any) -> Iterator[None]:
    """Poll every :data:`BUSY_DELAY` while a service streams on this association.

    pynetdicom's DUL sleeps its delay whenever it finds nothing to do, twice per request/response
    round trip; 0.1 ms polling costs about a fifth of a core, so it is used only inside.
    """
    with polling(dul, BUSY_DELAY):
        yield


@contextmanager
def polling(dul: Any, delay: float) -> Iterator[None]:
    """Poll every ``delay`` inside; the governor keeps out, and the delay before is restored.

    A service holding the socket itself (``channel.py``) needs no fast DUL: it uses
    :data:`ACTIVE_DELAY`, nested inside :func:`fast_polling`.
    """
    with _lock_of(dul):
        dul._pyqrscp_busy = getattr(dul, "_pyqrscp_busy", 0) + 1
        before = dul._run_loop_delay
        dul._run_loop_delay = delay
    try:
        yield
    finally:
        with _lock_of(dul):
            dul._pyqrscp_busy -= 1
            dul._run_loop_delay = before if dul._pyqrscp_busy else ACTIVE_DELAY


def govern(dul: Any, now: float) -> None:
    """Set one DUL's poll delay from how long ago it last received a PDU (never while busy)."""
    started = getattr(dul._idle_timer, "_start_time", None)
    if started is None:
        return
    idle = now - started > IDLE_AFTER
    with _lock_of(dul):
        if getattr(dul, "_pyqrscp_busy", 0):
            return
        dul._run_loop_delay = IDLE_DELAY if idle else ACTIVE_DELAY


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
