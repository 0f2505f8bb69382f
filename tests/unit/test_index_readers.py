"""Query connections kept between queries: reused, never pinned to an old snapshot."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from pyqrscp.archive.index.backend import connect_sqlite
from pyqrscp.archive.index.readers import ReaderPool
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "index.sqlite3"
    with closing(connect_sqlite(path)) as db:
        db.execute("CREATE TABLE item (pk INTEGER PRIMARY KEY)")
        db.executemany("INSERT INTO item VALUES (?)", [(n,) for n in range(500)])
    yield path


def test_a_query_abandoned_half_way_leaves_no_old_snapshot_to_the_next(index: Path) -> None:
    pool = ReaderPool(lambda: connect_sqlite(index, flush_commits=False), kept=1)
    first = pool.take()
    rows = first.execute("SELECT pk FROM item")
    assert rows.fetchone() is not None  # the statement is left unfinished
    first.close()
    with closing(connect_sqlite(index)) as writer:
        writer.execute("INSERT INTO item VALUES (1000)")
    second = pool.take()
    assert int(second.execute("SELECT COUNT(*) FROM item").fetchone()[0]) == 501
    second.close()
    pool.close()


def test_a_connection_inside_a_transaction_is_not_kept(index: Path) -> None:
    made: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        made.append(connect_sqlite(index, flush_commits=False))
        return made[-1]

    pool = ReaderPool(connect, kept=1)
    reader = pool.take()
    reader.execute("BEGIN")
    reader.close()
    pool.take().close()
    assert len(made) == 2
    with pytest.raises(sqlite3.ProgrammingError):
        made[0].execute("SELECT 1")
    pool.close()
    with pytest.raises(sqlite3.ProgrammingError):
        made[1].execute("SELECT 1")


def test_an_area_hands_the_next_query_the_connection_of_the_last(tmp_path: Path) -> None:
    area = StorageArea(tmp_path / "area", Quota(10, 10**6), durable=False)
    area.open()
    try:
        first = area.reader()
        first.execute("CREATE TEMP TABLE mark (n INTEGER)")
        first.close()
        second = area.reader()
        assert second.execute("SELECT COUNT(*) FROM mark").fetchone()[0] == 0
        second.close()
    finally:
        area.close()
