"""SQLite backend of one storage area's index (WAL: queries read while a store writes)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from pyqrscp.archive.areafiles import open_regular
from pyqrscp.archive.dicomfile import Header
from pyqrscp.archive.index.schema import DDL, SCHEMA_VERSION
from pyqrscp.errors import StorageFailure


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """An index row of one instance, as C-MOVE/C-GET and quotas need it."""

    pk: int
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    file_name: str
    file_size: int


def connect(path: Path, flush_commits: bool = True) -> sqlite3.Connection:
    """Open (and create or migrate) an index; one connection per thread of use.

    ``flush_commits``: each commit is flushed to disk (``synchronous=FULL``); else only at
    checkpoints (``NORMAL``: still atomic, a power loss may take the last commits).

    SQLite follows a symbolic link named like the index (its journal files it never follows):
    the index is created here without following one, and the file SQLite opened is checked to be
    that one.  Raises StorageFailure when the index is a link or not a regular file.
    """
    _check_index_file(path)
    connection = sqlite3.connect(path, timeout=60.0, isolation_level=None,
                                 check_same_thread=False)
    opened = connection.execute("PRAGMA database_list").fetchone()[2]
    if opened != os.path.join(os.path.realpath(path.parent), path.name):
        connection.close()
        raise StorageFailure(f"cannot open index {path}: it was replaced by a link to {opened}")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if flush_commits else 'NORMAL'}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def _check_index_file(path: Path) -> None:
    """Refuse an index that is a link or not a regular file; create a missing one without
    following a link.  An existing index is only looked at, never opened and closed: closing
    any descriptor of a file drops every POSIX lock this process holds on it, SQLite's too."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        try:
            os.close(open_regular(path, os.O_RDWR | os.O_CREAT))
        except OSError as error:
            raise StorageFailure(f"cannot open index {path}: {error.strerror}") from error
        return
    except OSError as error:
        raise StorageFailure(f"cannot open index {path}: {error.strerror}") from error
    if stat.S_ISLNK(info.st_mode):
        raise StorageFailure(f"cannot open index {path}: a symbolic link (not followed)")
    if not stat.S_ISREG(info.st_mode):
        raise StorageFailure(f"cannot open index {path}: not a regular file")


def create_schema(connection: sqlite3.Connection) -> None:
    """Create the tables once; refuse an index written by a newer pyqrscp."""
    connection.executescript(DDL)
    row = connection.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        connection.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) > SCHEMA_VERSION:
        raise RuntimeError(f"index schema {row[0]} is newer than this pyqrscp ({SCHEMA_VERSION})")


class IndexWriter:
    """Every change of the index; the caller (StorageArea) holds the area's lock."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.db = connection

    # -- quota facts -------------------------------------------------------------------
    def study_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM study").fetchone()[0])

    def study_exists(self, study_uid: str) -> bool:
        return self.db.execute("SELECT 1 FROM study WHERE study_instance_uid=?",
                               (study_uid,)).fetchone() is not None

    def study_bytes(self, study_uid: str) -> int:
        row = self.db.execute(
            "SELECT COALESCE(SUM(file_size), 0) FROM instance JOIN series ON "
            "series.pk=instance.series_pk JOIN study ON study.pk=series.study_pk "
            "WHERE study.study_instance_uid=?", (study_uid,)).fetchone()
        return int(row[0])

    def studies_least_recent_first(self, limit: int) -> list[str]:
        rows = self.db.execute("SELECT study_instance_uid FROM study ORDER BY last_stored "
                               "LIMIT ?", (limit,)).fetchall()
        return [row[0] for row in rows]

    def study_instances_oldest_first(self, study_uid: str) -> list[StoredInstance]:
        return self._instances("JOIN series ON series.pk=instance.series_pk JOIN study ON "
                               "study.pk=series.study_pk WHERE study.study_instance_uid=? "
                               "ORDER BY instance.received", (study_uid,))

    def only_instance_of_its_study(self, sop_instance_uid: str) -> bool:
        """Is this instance all its study holds (replacing it elsewhere empties the study)?"""
        row = self.db.execute(
            "SELECT COUNT(*) FROM instance i JOIN series r ON r.pk=i.series_pk WHERE r.study_pk="
            "(SELECT r2.study_pk FROM instance i2 JOIN series r2 ON r2.pk=i2.series_pk WHERE "
            "i2.sop_instance_uid=?)", (sop_instance_uid,)).fetchone()
        return int(row[0]) == 1

    def instance(self, sop_instance_uid: str) -> StoredInstance | None:
        rows = self._instances("WHERE sop_instance_uid=?", (sop_instance_uid,))
        return rows[0] if rows else None

    def all_file_names(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT file_name FROM instance")}

    def _instances(self, where: str, args: tuple[object, ...]) -> list[StoredInstance]:
        sql = ("SELECT instance.pk, sop_instance_uid, sop_class_uid, transfer_syntax_uid, "
               f"file_name, file_size FROM instance {where}")
        return [StoredInstance(*row) for row in self.db.execute(sql, args)]

    # -- changes -----------------------------------------------------------------------
    def add_instance(self, header: Header, file_name: str, file_size: int) -> None:
        """Insert (or replace, same SOP Instance UID) one instance and its parents."""
        now = time.time_ns()
        patient_pk = self._upsert("patient", "patient_id", header.patient_id, header.patient,
                                  {}, None)
        study_pk = self._upsert("study", "study_instance_uid", header.study_instance_uid,
                                header.study, {"study_date": header.study.get("StudyDate", ""),
                                               "last_stored": now}, ("patient_pk", patient_pk))
        series_pk = self._upsert("series", "series_instance_uid", header.series_instance_uid,
                                 header.series, {"modality": header.modality},
                                 ("study_pk", study_pk))
        replaced = self.db.execute("SELECT series_pk FROM instance WHERE sop_instance_uid=?",
                                   (header.sop_instance_uid,)).fetchone()
        self.db.execute("DELETE FROM instance WHERE sop_instance_uid=?", (header.sop_instance_uid,))
        self.db.execute(
            "INSERT INTO instance (series_pk, sop_instance_uid, sop_class_uid, "
            "transfer_syntax_uid, file_name, file_size, received, attrs) VALUES (?,?,?,?,?,?,?,?)",
            (series_pk, header.sop_instance_uid, header.sop_class_uid,
             header.transfer_syntax_uid, file_name, file_size, now, json.dumps(header.instance)))
        if replaced is not None and int(replaced[0]) != series_pk:
            self._prune_from_series(int(replaced[0]))

    def _prune_from_series(self, series_pk: int) -> None:
        """Drop a series a replacement left empty, then its study and patient when they are
        empty too (an empty study would still be listed and still take a place in the quota).
        Runs in the caller's transaction, so nobody sees the empty parents."""
        row = self.db.execute("SELECT s.pk, s.patient_pk FROM series r JOIN study s ON "
                              "s.pk=r.study_pk WHERE r.pk=?", (series_pk,)).fetchone()
        if row is None:
            return
        study_pk, patient_pk = int(row[0]), int(row[1])
        for table, pk, child_sql in (
                ("series", series_pk, "SELECT 1 FROM instance WHERE series_pk=?"),
                ("study", study_pk, "SELECT 1 FROM series WHERE study_pk=?"),
                ("patient", patient_pk, "SELECT 1 FROM study WHERE patient_pk=?")):
            if self.db.execute(child_sql + " LIMIT 1", (pk,)).fetchone() is not None:
                return
            self.db.execute(f"DELETE FROM {table} WHERE pk=?", (pk,))

    def _upsert(self, table: str, key_column: str, key: str, attrs: dict[str, str],
                columns: dict[str, object], parent: tuple[str, int] | None) -> int:
        row = self.db.execute(f"SELECT pk, attrs FROM {table} WHERE {key_column}=?",
                              (key,)).fetchone()
        if row is None:
            names = [key_column, "attrs", *columns] + ([parent[0]] if parent else [])
            values = [key, json.dumps(attrs), *columns.values()] + ([parent[1]] if parent else [])
            cursor = self.db.execute(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                f"({', '.join('?' * len(names))})", values)
            return int(cursor.lastrowid or 0)
        merged = {**json.loads(row[1]), **attrs}
        assignments = ", ".join(f"{name}=?" for name in ["attrs", *columns])
        self.db.execute(f"UPDATE {table} SET {assignments} WHERE pk=?",
                        (json.dumps(merged), *columns.values(), row[0]))
        return int(row[0])

    def delete_instance(self, sop_instance_uid: str) -> None:
        """Remove one instance row, then any series/study/patient left empty."""
        self.db.execute("DELETE FROM instance WHERE sop_instance_uid=?", (sop_instance_uid,))
        self.prune_empty()

    def delete_study(self, study_uid: str) -> list[str]:
        """Remove a whole study; return the file names that now belong to nobody."""
        files = [i.file_name for i in self.study_instances_oldest_first(study_uid)]
        self.db.execute("DELETE FROM instance WHERE series_pk IN (SELECT series.pk FROM series "
                        "JOIN study ON study.pk=series.study_pk WHERE study_instance_uid=?)",
                        (study_uid,))
        self.prune_empty()
        return files

    def prune_empty(self) -> None:
        self.db.execute("DELETE FROM series WHERE pk NOT IN (SELECT series_pk FROM instance)")
        self.db.execute("DELETE FROM study WHERE pk NOT IN (SELECT study_pk FROM series)")
        self.db.execute("DELETE FROM patient WHERE pk NOT IN (SELECT patient_pk FROM study)")
