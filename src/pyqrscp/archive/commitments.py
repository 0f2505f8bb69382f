"""Storage Commitment (PS3.4 Annex J): pending requests, the integrity check, and delivery retries.

A request is written to the storage area's index (table ``commitment``) before the N-ACTION
is answered, and removed only once its N-EVENT-REPORT was accepted or its retries ran out, so a
restart resumes what was not delivered.  Its references are verified once, at the first delivery
attempt, and the verdict is written beside the request: retries send the same report without
reading a file again.  Delivery (``commitment_delivery.py``) gives each requester its own lane,
so a requester that is slow or unreachable delays only its own reports.  This module knows
nothing of associations.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from pyqrscp.archive.areafiles import reader
from pyqrscp.archive.storage import StorageArea

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
_ADDED_COLUMNS = {"verdict": "ALTER TABLE commitment ADD COLUMN verdict TEXT",
                  "claimed": "ALTER TABLE commitment ADD COLUMN claimed REAL NOT NULL DEFAULT 0"}
"""Columns a ledger written by an older pyqrscp lacks; ``claimed``: until when a node's
delivery attempt holds the request."""

#: The database's clock, in seconds since the epoch, where several nodes share the ledger
#: (their own clocks differ): the start of the statement, one instant however long it runs.
_DATABASE_CLOCK = "CAST(extract(epoch from statement_timestamp()) AS DOUBLE PRECISION)"

#: References one N-ACTION may name; more are refused (0x0213 Resource limitation).
MAX_REFERENCES_PER_REQUEST = 10_000


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
    verdict: Verdict | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the archive commits to: the intact references, and the others with a reason."""

    committed: tuple[Reference, ...]
    failed: tuple[tuple[Reference, FailureReason], ...]

    @property
    def event_type_id(self) -> int:
        """1: all succeeded; 2: some failed (PS3.4 J.3.3)."""
        return 2 if self.failed else 1

    def to_json(self) -> str:
        return json.dumps({
            "committed": [[r.sop_class_uid, r.sop_instance_uid] for r in self.committed],
            "failed": [[r.sop_class_uid, r.sop_instance_uid, int(why)] for r, why in self.failed],
        })

    @classmethod
    def from_json(cls, text: str) -> Verdict:
        data = json.loads(text)
        return cls(tuple(Reference(c, i) for c, i in data["committed"]),
                   tuple((Reference(c, i), FailureReason(why)) for c, i, why in data["failed"]))


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
        with reader(area.path_of(stored.file_name)) as stream:
            dataset = dcmread(stream, stop_before_pixels=True)
        intact = (str(dataset.SOPInstanceUID) == reference.sop_instance_uid
                  and str(dataset.SOPClassUID) == reference.sop_class_uid)
    except Exception as error:  # any unreadable or unparsable file is a processing failure
        LOGGER.error("%s: stored file %s is unreadable: %s", area.root, stored.file_name, error)
        return FailureReason.PROCESSING_FAILURE
    return None if intact else FailureReason.PROCESSING_FAILURE


class CommitmentLedger:
    """The ``commitment`` table in one storage area's index; safe for many threads.

    On a database that several nodes share, each delivery attempt is claimed first (its next
    attempt moved past the attempt's end, in one conditional update), so one node sends each
    report, and a request whose node died is taken over when that claim runs out.  Due times
    and claims are read and written by the database's clock there, whatever the nodes' clocks
    say; an index of one machine (SQLite) uses ``clock``, that machine's.
    """

    def __init__(self, area: StorageArea, clock: Callable[[], float] = time.time) -> None:
        self.area = area
        self.clock = clock
        self._lock = threading.Lock()
        backend = area.backend
        self._db = backend.connect(area.root, area.durable)
        with backend.write_transaction(self._db):
            for statement in backend.schema_statements(DDL):
                self._db.execute(statement)
            present = {column[0] for column in
                       self._db.execute("SELECT * FROM commitment LIMIT 0").description}
            for name, statement in _ADDED_COLUMNS.items():
                if name not in present:
                    self._db.execute(statement)

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
                "received) VALUES (?,?,?,?,?) RETURNING pk",
                (transaction_uid, requester_aet, called_aet, refs, time.time_ns()))
            pk = int(cursor.fetchone()[0])
        return PendingCommitment(self.area.root, pk, transaction_uid,
                                 requester_aet, called_aet, tuple(references), 0)

    def _now(self) -> str:
        """The ledger's time as SQL: the database's clock where the ledger is shared, else
        this machine's (a number of our own, written into the statement)."""
        if self.area.backend.shared:
            return _DATABASE_CLOCK
        return f"{float(self.clock()):.6f}"

    def due(self) -> list[tuple[int, str]]:
        """``(pk, requester AE title)`` of every request due now, oldest first."""
        with self._lock:
            now = self._now()
            rows = self._db.execute(
                f"SELECT pk, requester_aet FROM commitment WHERE next_attempt <= {now} "
                "ORDER BY next_attempt, pk").fetchall()
        return [(int(pk), str(requester)) for pk, requester in rows]

    def load(self, pk: int) -> PendingCommitment | None:
        """A request with its references, or with its verdict once it has one."""
        with self._lock:
            row = self._db.execute(
                "SELECT transaction_uid, requester_aet, called_aet, attempts, verdict, "
                "CASE WHEN verdict IS NULL THEN refs END FROM commitment WHERE pk=?",
                (pk,)).fetchone()
        if row is None:
            return None
        uid, requester, called, attempts, verdict, refs = row
        references = tuple(Reference(c, i) for c, i in json.loads(refs)) if refs else ()
        return PendingCommitment(self.area.root, pk, uid, requester, called, references,
                                 attempts, Verdict.from_json(verdict) if verdict else None)

    def record_verdict(self, pk: int, verdict: Verdict) -> None:
        """Keep the verdict for the retries (the references are not needed any more)."""
        with self._lock:
            self._db.execute("UPDATE commitment SET verdict=?, refs='[]' WHERE pk=?",
                             (verdict.to_json(), pk))

    def next_due(self, excluded: Collection[str] = ()) -> float | None:
        """In how many seconds the next request of a requester not in ``excluded`` is due
        (zero or less: due now)."""
        with self._lock:
            now = self._now()
            row = self._db.execute(
                f"SELECT MIN(next_attempt) - {now} FROM commitment WHERE requester_aet NOT IN "
                "(SELECT value FROM json_each(?))", (json.dumps(list(excluded)),)).fetchone()
        return None if row[0] is None else float(row[0])

    def reschedule(self, pk: int, attempts: int, delay: float) -> None:
        """The next attempt ``delay`` seconds from now; the claim is given up."""
        with self._lock:
            now = self._now()
            self._db.execute(f"UPDATE commitment SET attempts=?, next_attempt={now} + ?, "
                             "claimed=0 WHERE pk=?", (attempts, delay, pk))

    def claim(self, pk: int, lease: float) -> bool:
        """Take the attempt on a due request for ``lease`` seconds: False when another node
        took it first (or holds it still)."""
        with self._lock:
            now = self._now()
            return int(self._db.execute(
                f"UPDATE commitment SET next_attempt={now} + ?, claimed={now} + ? "
                f"WHERE pk=? AND next_attempt <= {now}", (lease, lease, pk)).rowcount) == 1

    def make_all_due(self) -> int:
        """On start-up: every request left over from the last run is due now.  On a shared
        database another node may be delivering some: requests it holds a live claim on are
        left to it (a claim of a node that died runs out by itself)."""
        with self._lock:
            if self.area.backend.shared:
                return int(self._db.execute("UPDATE commitment SET next_attempt=0 WHERE "
                                            f"claimed < {self._now()}").rowcount)
            return int(self._db.execute("UPDATE commitment SET next_attempt=0").rowcount)

    def remove(self, pk: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM commitment WHERE pk=?", (pk,))
