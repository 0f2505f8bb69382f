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

from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

from pyqrscp.link import internals

BUSY_DELAY = 0.0001
ACTIVE_DELAY = 0.001
IDLE_DELAY = 0.005
IDLE_AFTER = 0.5
CHECK_EVERY = 0.1


class _Polling:
    """A DUL's poll-delay bookkeeping: how many services asked for a delay of their own."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy = 0


def _polling_of(dul: DULServiceProvider) -> _Polling:
    state = internals.attached(dul, "polling")
    if not isinstance(state, _Polling):
        state = _Polling()
        internals.attach(dul, "polling", state)
    return state


@contextmanager
def fast_polling(assoc: Association) -> Iterator[None]:
    """Poll every :data:`BUSY_DELAY` while a service streams on this association.

    pynetdicom's DUL sleeps its delay whenever it finds nothing to do, twice per request/response
    round trip; 0.1 ms polling costs about a fifth of a core, so it is used only inside.
    """
    with polling(assoc.dul, BUSY_DELAY):
        yield


@contextmanager
def polling(dul: DULServiceProvider, delay: float) -> Iterator[None]:
    """Poll every ``delay`` inside; the governor keeps out, and the delay before is restored.

    A service holding the socket itself (``channel.py``) needs no fast DUL: it uses
    :data:`ACTIVE_DELAY`, nested inside :func:`fast_polling`.
    """
    state = _polling_of(dul)
    with state.lock:
        state.busy += 1
        before = internals.poll_delay(dul)
        internals.set_poll_delay(dul, delay)
    try:
        yield
    finally:
        with state.lock:
            state.busy -= 1
            internals.set_poll_delay(dul, before if state.busy else ACTIVE_DELAY)


def govern(dul: DULServiceProvider, now: float) -> None:
    """Set one DUL's poll delay from how long ago it last received a PDU (never while busy)."""
    started = internals.last_received(dul)
    if started is None:
        return
    idle = now - started > IDLE_AFTER
    state = _polling_of(dul)
    with state.lock:
        if not state.busy:
            internals.set_poll_delay(dul, IDLE_DELAY if idle else ACTIVE_DELAY)


class IdleGovernor(threading.Thread):
    """A daemon thread applying :func:`govern` to every live association."""

    def __init__(self, associations: Callable[[], Iterable[Association]]) -> None:
        super().__init__(name="pyqrscp-idle", daemon=True)
        self.associations = associations
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(CHECK_EVERY):
            now = time.time()
            for assoc in list(self.associations()):
                govern(assoc.dul, now)

    def stop(self) -> None:
        self.stopping.set()
