"""Storage Commitment (PS3.4 Annex J): pending requests, the integrity check, and delivery retries.

A request is written to the storage area's sqlite file (table ``commitment``) before the N-ACTION
is answered, and removed only once its N-EVENT-REPORT was accepted or its retries ran out, so a
restart resumes what was not delivered.  This module knows nothing of associations: the
:class:`CommitmentWorker` calls an injected ``deliver`` function (see ``services/commit``).
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from pyqrscp.index.database import connect
from pyqrscp.storage import StorageArea

LOGGER = logging.getLogger(__name__)

DDL = """
CREATE TABLE IF NOT EXISTS commitment (
    pk INTEGER PRIMARY KEY,
    transaction_uid TEXT NOT NULL,
    requester_aet TEXT NOT NULL,
    called_aet TEXT NOT NULL,
    refs TEXT NOT NULL,
    received INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0
);
"""


class FailureReason(enum.IntEnum):
    """Failure Reason (0008,1197) values of PS3.4 J.3.2.1.1.3 that pyqrscp reports."""

    PROCESSING_FAILURE = 0x0110
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    CLASS_INSTANCE_CONFLICT = 0x0119


@dataclass(frozen=True, slots=True)
class Reference:
    """One Referenced SOP Sequence item of a request."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class PendingCommitment:
    """A persisted request whose N-EVENT-REPORT has not been accepted yet."""

    area: Path
    pk: int
    transaction_uid: str
    requester_aet: str
    called_aet: str
    references: tuple[Reference, ...]
    attempts: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the archive commits to: the intact references, and the others with a reason."""

    committed: tuple[Reference, ...]
    failed: tuple[tuple[Reference, FailureReason], ...]

    @property
    def event_type_id(self) -> int:
        """1: all succeeded; 2: some failed (PS3.4 J.3.3)."""
        return 2 if self.failed else 1


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Back-off between delivery attempts: ``first``, doubled each time, at most ``longest``."""

    first: float = 1.0
    longest: float = 300.0
    max_attempts: int = 12

    def delay_after(self, attempts: int) -> float:
        return float(min(self.longest, self.first * 2 ** max(0, attempts - 1)))


def verify(area: StorageArea, references: Sequence[Reference]) -> Verdict:
    """Check each reference against the index *and* the file (present, parses, same UIDs)."""
    committed: list[Reference] = []
    failed: list[tuple[Reference, FailureReason]] = []
    for reference in references:
        reason = _failure_of(area, reference)
        if reason is None:
            committed.append(reference)
        else:
            failed.append((reference, reason))
    return Verdict(tuple(committed), tuple(failed))


def _failure_of(area: StorageArea, reference: Reference) -> FailureReason | None:
    stored = area.instance(reference.sop_instance_uid)
    if stored is None:
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if stored.sop_class_uid != reference.sop_class_uid:
        return FailureReason.CLASS_INSTANCE_CONFLICT
    try:
        dataset = dcmread(area.path_of(stored.file_name), stop_before_pixels=True)
        intact = (str(dataset.SOPInstanceUID) == reference.sop_instance_uid
                  and str(dataset.SOPClassUID) == reference.sop_class_uid)
    except Exception as error:  # any unreadable or unparsable file is a processing failure
        LOGGER.error("%s: stored file %s is unreadable: %s", area.root, stored.file_name, error)
        return FailureReason.PROCESSING_FAILURE
    return None if intact else FailureReason.PROCESSING_FAILURE


class CommitmentLedger:
    """The ``commitment`` table in one storage area's sqlite file; safe for many threads."""

    def __init__(self, area: StorageArea) -> None:
        self.area = area
        self._lock = threading.Lock()
        self._db = connect(area.index_path, area.durable)
        self._db.executescript(DDL)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, transaction_uid: str, requester_aet: str, called_aet: str,
            references: Sequence[Reference]) -> PendingCommitment:
        """Persist a request (durably, before the N-ACTION is answered)."""
        refs = json.dumps([[r.sop_class_uid, r.sop_instance_uid] for r in references])
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO commitment (transaction_uid, requester_aet, called_aet, refs, "
                "received) VALUES (?,?,?,?,?)",
                (transaction_uid, requester_aet, called_aet, refs, time.time_ns()))
        return PendingCommitment(self.area.root, int(cursor.lastrowid or 0), transaction_uid,
                                 requester_aet, called_aet, tuple(references), 0)

    def due(self, now: float) -> list[PendingCommitment]:
        with self._lock:
            rows = self._db.execute(
                "SELECT pk, transaction_uid, requester_aet, called_aet, refs, attempts FROM "
                "commitment WHERE next_attempt <= ? ORDER BY next_attempt, pk", (now,)).fetchall()
        return [PendingCommitment(self.area.root, pk, uid, requester, called,
                                  tuple(Reference(c, i) for c, i in json.loads(refs)), attempts)
                for pk, uid, requester, called, refs, attempts in rows]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) FROM commitment").fetchone()
        return None if row[0] is None else float(row[0])

    def reschedule(self, pk: int, attempts: int, next_attempt: float) -> None:
        with self._lock:
            self._db.execute("UPDATE commitment SET attempts=?, next_attempt=? WHERE pk=?",
                             (attempts, next_attempt, pk))

    def make_all_due(self) -> int:
        """On start-up: every request left over from the last run is due now."""
        with self._lock:
            return int(self._db.execute("UPDATE commitment SET next_attempt=0").rowcount)

    def remove(self, pk: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM commitment WHERE pk=?", (pk,))


Deliver = Callable[[PendingCommitment], bool]


class CommitmentWorker:
    """One background thread that delivers due reports, retrying with back-off."""

    def __init__(self, ledgers: Sequence[CommitmentLedger], deliver: Deliver,
                 schedule: RetrySchedule) -> None:
        self.ledgers = {ledger.area.root: ledger for ledger in ledgers}
        self.deliver = deliver
        self.schedule = schedule
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

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
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self._deliver_due()
            except Exception:  # the worker must outlive one bad request or a locked database
                LOGGER.exception("storage commitment delivery failed unexpectedly")
            self._wake.wait(self._seconds_to_next())

    def _deliver_due(self) -> None:
        for ledger in self.ledgers.values():
            for pending in ledger.due(time.time()):
                if self._stopping.is_set():
                    return
                if self._attempt(pending):
                    ledger.remove(pending.pk)
                else:
                    self._after_failure(ledger, pending)

    def _attempt(self, pending: PendingCommitment) -> bool:
        try:
            return self.deliver(pending)
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
        ledger.reschedule(pending.pk, attempts, time.time() + delay)

    def _seconds_to_next(self) -> float:
        dues = [due for ledger in self.ledgers.values() if (due := ledger.next_due()) is not None]
        if not dues:
            return 3600.0
        return max(0.0, min(dues) - time.time())
