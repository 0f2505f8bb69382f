"""Creating an index, and upgrading one an older pyqrscp wrote, in place and in one transaction.

An index is never read in a shape this code does not know: a newer schema is refused, an
older one is upgraded before anything else touches it (one log line says so).
"""

from __future__ import annotations

import json
import logging
import time

from pyqrscp.archive.index.backend import IndexBackend, IndexConnection, SqliteBackend
from pyqrscp.archive.index.schema import (
    DDL,
    META_DDL,
    MIGRATE_1_TO_2,
    SCHEMA_VERSION,
    TABLES,
    value_tag,
)
from pyqrscp.archive.index.values import value_rows
from pyqrscp.errors import StorageFailure
from pyqrscp.query.matching import index_values

LOGGER = logging.getLogger(__name__)
_BATCH = 1000


class UpgradeRefused(StorageFailure):
    """The index needs an upgrade that may not run while another process uses the area."""


def create_schema(db: IndexConnection, backend: IndexBackend | None = None, *,
                  may_upgrade: bool = True) -> None:
    """Create the tables of a new index, or upgrade an older one; refuse a newer one.

    ``may_upgrade`` is False while another process uses the area: one still running an older
    pyqrscp would go on writing rows of the old schema into the upgraded index.

    Runs in one write transaction of the backend, so two processes (or nodes of a shared
    database) opening one new area at once do not both create it, an older schema is upgraded
    once, by whichever comes first, and an interrupted upgrade leaves the old index as it was.

    Raises
    ------
    StorageFailure
        When the index was written by a newer pyqrscp; UpgradeRefused when it needs an
        upgrade that may not run.
    """
    backend = backend or SqliteBackend()
    with backend.write_transaction(db):
        for statement in backend.schema_statements([META_DDL]):
            db.execute(statement)
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            for statement in backend.schema_statements(DDL):
                db.execute(statement)
            db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise StorageFailure(f"index schema {row[0]} is newer than this pyqrscp "
                                 f"({SCHEMA_VERSION})")
        elif int(row[0]) < SCHEMA_VERSION:
            if not may_upgrade:
                raise UpgradeRefused(f"index schema {row[0]} needs an upgrade to "
                                     f"{SCHEMA_VERSION}: stop the other pyqrscp process using "
                                     "this storage area, then start again")
            migrate(db, int(row[0]), backend)


def migrate(db: IndexConnection, from_version: int, backend: IndexBackend | None = None
            ) -> None:
    """Upgrade an index from ``from_version`` inside the caller's transaction."""
    started = time.monotonic()
    if from_version != 1:
        raise StorageFailure(f"index schema {from_version} cannot be upgraded (rebuild it: "
                           "pyqrscp index --rebuild)")
    for statement in (backend or SqliteBackend()).schema_statements(MIGRATE_1_TO_2):
        db.execute(statement)
    for table in TABLES:
        fill_values(db, table)
    fill_computed(db)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
    count = db.execute("SELECT COUNT(*) FROM instance").fetchone()[0]
    LOGGER.info("index upgraded from schema %d to %d (%d instances) in %.1f s", from_version,
                SCHEMA_VERSION, count, time.monotonic() - started)


def fill_values(db: IndexConnection, table: str) -> None:
    """The value rows of every row of a level's table, from its attributes."""
    cursor = db.execute(f"SELECT pk, attrs FROM {table}")
    while rows := cursor.fetchmany(_BATCH):
        insertions = [row for pk, attrs in rows
                      for row in value_rows(table, int(pk), {}, json.loads(attrs))[1]]
        db.executemany(f"INSERT INTO {table}_value (tag, value, owner) VALUES (?,?,?) "
                       "ON CONFLICT DO NOTHING", insertions)


def fill_computed(db: IndexConnection) -> None:
    """ModalitiesInStudy and SOPClassesInStudy rows of every study."""
    for keyword, vr, sql in (
            ("ModalitiesInStudy", "CS", "SELECT DISTINCT study_pk, modality FROM series"),
            ("SOPClassesInStudy", "UI", "SELECT DISTINCT r.study_pk, i.sop_class_uid FROM "
                                        "instance i JOIN series r ON r.pk=i.series_pk")):
        tag = value_tag(keyword)
        cursor = db.execute(sql)
        while rows := cursor.fetchmany(_BATCH):
            db.executemany("INSERT INTO study_value (tag, value, owner) VALUES (?,?,?) "
                           "ON CONFLICT DO NOTHING",
                           [(tag, value, int(pk)) for pk, text in rows
                            for value in index_values(vr, text)])
