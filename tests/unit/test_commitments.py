"""The commitment ledger (``commitments.py``) on a real SQLite file."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from pyqrscp.archive.commitment_delivery import CLAIM_SECONDS
from pyqrscp.archive.commitments import CommitmentLedger, FailureReason, Reference, Verdict
from pyqrscp.archive.index.choice import open_backend
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota

OLD_TABLE = """CREATE TABLE commitment (pk INTEGER PRIMARY KEY, transaction_uid TEXT NOT NULL,
    requester_aet TEXT NOT NULL, called_aet TEXT NOT NULL, refs TEXT NOT NULL,
    received INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL DEFAULT 0)"""


@pytest.mark.sqlite_only
def test_a_verdict_is_kept_for_the_retries_and_an_older_ledger_gains_its_column(
        tmp_path: Path) -> None:
    area = StorageArea(tmp_path / "area", Quota(10, 1 << 20), durable=False)
    area.open()
    with sqlite3.connect(area.index_path) as db:
        db.execute(OLD_TABLE)
        db.execute("INSERT INTO commitment (transaction_uid, requester_aet, called_aet, refs, "
                   "received) VALUES ('1.2', 'OLD', 'ARCHIVE', '[[\"1.2.3\", \"1.2.3.4\"]]', 0)")
    ledger = CommitmentLedger(area)
    try:
        old = ledger.load(1)
        assert old is not None and old.verdict is None
        assert old.references == (Reference("1.2.3", "1.2.3.4"),)
        verdict = Verdict((Reference("1.2.3", "1.2.3.4"),),
                          ((Reference("1.2.3", "1.2.3.5"), FailureReason.NO_SUCH_OBJECT_INSTANCE),))
        ledger.record_verdict(1, verdict)
        again = ledger.load(1)
        assert again is not None and again.verdict == verdict and again.references == ()
        assert ledger.due() == [(1, "OLD")]
        due_in = ledger.next_due()
        assert ledger.next_due({"OLD"}) is None and due_in is not None and due_in <= 0
    finally:
        ledger.close()
        area.close()


def test_on_a_shared_database_a_nodes_clock_neither_takes_a_live_claim_nor_delivers_early(
        tmp_path: Path, index_db_url: str) -> None:
    """Two nodes on one PostgreSQL database, the second's clock an hour ahead: the claim the
    first holds and the retry the first scheduled run by the database's clock, so the second
    neither takes the request over nor finds it due (nor makes it due at its start)."""
    backend = open_backend(index_db_url)
    area = StorageArea(tmp_path / "area", Quota(10, 1 << 20), durable=False, backend=backend)
    area.open()
    first = CommitmentLedger(area)
    ahead = CommitmentLedger(area, clock=lambda: time.time() + 3600)
    try:
        pk = first.add("1.2", "REQUESTER", "ARCHIVE", [Reference("1.2.3", "1.2.3.4")]).pk
        assert ahead.due() == [(pk, "REQUESTER")]
        assert first.claim(pk, CLAIM_SECONDS)
        assert ahead.due() == []
        assert not ahead.claim(pk, CLAIM_SECONDS)
        assert ahead.make_all_due() == 0 and ahead.due() == []
        first.reschedule(pk, 1, 60.0)
        assert ahead.due() == [] and not ahead.claim(pk, CLAIM_SECONDS)
        due_in = ahead.next_due()
        assert due_in is not None and 0 < due_in <= 60
    finally:
        first.close()
        ahead.close()
        area.close()
        backend.close()
