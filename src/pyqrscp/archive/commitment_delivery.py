"""Storage Commitment report delivery: one lane (thread) per requester, retries with back-off.

A dispatcher thread hands each due request of the ledgers to its requester's lane, which sends
that requester's reports one at a time, oldest first; a lane that ends wakes the dispatcher.  A
requester that is unreachable (every attempt waits for the ACSE timeout) or slow therefore delays
only its own reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from pyqrscp.archive.commitments import (
    CommitmentLedger,
    PendingCommitment,
    RetrySchedule,
    Verdict,
    verify,
)

LOGGER = logging.getLogger(__name__)

#: Requesters whose reports are being delivered at once (one thread each).
MAX_DELIVERY_LANES = 16
#: How long one delivery attempt holds its request (longer than an attempt can take); a node
#: that dies mid-attempt leaves the request to the others after that.
CLAIM_SECONDS = 900.0
#: On an index that several nodes share, how often the dispatcher looks for requests the other
#: nodes received or left behind (a node that stopped or died): it cannot be woken by them.
SHARED_POLL_SECONDS = 5.0

Deliver = Callable[[PendingCommitment, Verdict], bool]


class CommitmentWorker:
    """Delivers due reports, retrying with back-off: a dispatcher thread hands each due request
    to its requester's lane (a thread delivering that requester's reports one at a time), with
    at most `MAX_DELIVERY_LANES` lanes at once."""

    def __init__(self, ledgers: Sequence[CommitmentLedger], deliver: Deliver,
                 schedule: RetrySchedule) -> None:
        self.ledgers = {ledger.area.root: ledger for ledger in ledgers}
        self.deliver = deliver
        self.schedule = schedule
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lanes: dict[str, threading.Thread] = {}
        self._lanes_lock = threading.Lock()

    def start(self) -> None:
        resumed = sum(ledger.make_all_due() for ledger in self.ledgers.values())
        if resumed:
            LOGGER.info("resuming %d undelivered storage commitment report(s)", resumed)
        self._thread = threading.Thread(target=self._run, name="commitment-delivery",
                                        daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A new request is persisted: look at the ledgers now."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lanes_lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            lane.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self._dispatch_due()
                wait = self._seconds_to_next()
            except Exception:  # the worker must outlive one bad request or a locked database
                LOGGER.exception("storage commitment delivery failed unexpectedly")
                wait = self.schedule.first
            self._wake.wait(wait)

    def _dispatch_due(self) -> None:
        for ledger in self.ledgers.values():
            for pk, requester in ledger.due():
                with self._lanes_lock:
                    if (self._stopping.is_set() or requester in self._lanes
                            or len(self._lanes) >= MAX_DELIVERY_LANES):
                        continue
                    lane = threading.Thread(target=self._lane, args=(ledger, pk, requester),
                                            name=f"commitment-{requester}", daemon=True)
                    self._lanes[requester] = lane
                lane.start()

    def _lane(self, ledger: CommitmentLedger, pk: int, requester: str) -> None:
        try:
            if not ledger.claim(pk, CLAIM_SECONDS):
                return  # another node of a shared index took it
            pending = ledger.load(pk)
            if pending is not None and not self._stopping.is_set():
                self._deliver_one(ledger, pending)
        except Exception:  # one bad request must not stop its requester's lane for good
            LOGGER.exception("storage commitment delivery to %s failed unexpectedly", requester)
        finally:
            with self._lanes_lock:
                del self._lanes[requester]
            self._wake.set()

    def _deliver_one(self, ledger: CommitmentLedger, pending: PendingCommitment) -> None:
        verdict = pending.verdict
        if verdict is None:
            verdict = verify(ledger.area, pending.references)
            ledger.record_verdict(pending.pk, verdict)
        if self._attempt(pending, verdict):
            ledger.remove(pending.pk)
        else:
            self._after_failure(ledger, pending)

    def _attempt(self, pending: PendingCommitment, verdict: Verdict) -> bool:
        try:
            return self.deliver(pending, verdict)
        except Exception as error:  # one bad request must not stop the worker or spin it
            LOGGER.error("Storage Commitment report for %s failed: %s: %s",
                         pending.requester_aet, type(error).__name__, error)
            LOGGER.debug("delivery failure", exc_info=True)
            return False

    def _after_failure(self, ledger: CommitmentLedger, pending: PendingCommitment) -> None:
        attempts = pending.attempts + 1
        if attempts >= self.schedule.max_attempts:
            LOGGER.error("Storage Commitment report for %s not delivered after %d attempts; "
                         "giving up", pending.requester_aet, attempts)
            ledger.remove(pending.pk)
            return
        delay = self.schedule.delay_after(attempts)
        LOGGER.warning("Storage Commitment report for %s not delivered (attempt %d of %d); "
                       "retrying in %.1f s", pending.requester_aet, attempts,
                       self.schedule.max_attempts, delay)
        ledger.reschedule(pending.pk, attempts, delay)

    def _seconds_to_next(self) -> float:
        """Until the next request due whose requester has no lane running (a lane that ends
        wakes the dispatcher); with every lane taken, until one ends.  On a shared index at
        most `SHARED_POLL_SECONDS`: requests arrive there that no local event announces."""
        with self._lanes_lock:
            busy = set(self._lanes)
        if len(busy) >= MAX_DELIVERY_LANES:
            return 3600.0
        longest = (SHARED_POLL_SECONDS if any(ledger.area.backend.shared
                                              for ledger in self.ledgers.values()) else 3600.0)
        dues = [due for ledger in self.ledgers.values()
                if (due := ledger.next_due(busy)) is not None]
        if not dues:
            return longest
        return min(longest, max(0.0, min(dues)))
