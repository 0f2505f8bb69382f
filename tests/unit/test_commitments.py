"""The commitment ledger (``commitments.py``) on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pyqrscp.archive.commitments import CommitmentLedger, FailureReason, Reference, Verdict
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
