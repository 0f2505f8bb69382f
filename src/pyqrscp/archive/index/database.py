"""SQLite backend of one storage area's index (WAL: queries read while a store writes).

The writer keeps three things true in every transaction, so that queries never count or scan:
each entity's value rows mirror its attributes (:mod:`pyqrscp.archive.index.schema`), the
Number-of-Related counts of every patient, study and series are exact, and each study's
ModalitiesInStudy and SOPClassesInStudy rows list what its series and instances hold.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyqrscp.archive.dicomfile import Header
from pyqrscp.archive.index.backend import IndexConnection, sqlite_store_order
from pyqrscp.archive.index.backend import connect_sqlite as connect
from pyqrscp.archive.index.migration import create_schema
from pyqrscp.archive.index.schema import value_tag
from pyqrscp.archive.index.values import value_rows
from pyqrscp.query.matching import index_values

__all__ = ["IndexWriter", "StoredInstance", "connect", "create_schema"]


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """An index row of one instance, as C-MOVE/C-GET and quotas need it."""

    pk: int
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    file_name: str
    file_size: int


_MODALITIES = value_tag("ModalitiesInStudy")
_SOP_CLASSES = value_tag("SOPClassesInStudy")
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class _Upserted:
    """A patient, study or series row after a store: its pk, and what it was before."""

    pk: int
    created: bool
    old_columns: tuple[object, ...]


class IndexWriter:
    """Every change of the index; the caller (StorageArea) holds the area's lock and runs
    each change in one write transaction."""

    def __init__(self, connection: IndexConnection,
                 order: Callable[[], int] | None = None) -> None:
        self.db = connection
        self.order = order or (lambda: sqlite_store_order(connection))
        """Where the order of stores comes from (quota eviction: least recently stored): a
        counter in the database, never a clock."""

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
            "SELECT s.n_instances FROM instance i JOIN series r ON r.pk=i.series_pk JOIN study s "
            "ON s.pk=r.study_pk WHERE i.sop_instance_uid=?", (sop_instance_uid,)).fetchone()
        return row is not None and int(row[0]) == 1

    def instance(self, sop_instance_uid: str) -> StoredInstance | None:
        rows = self._instances("WHERE sop_instance_uid=?", (sop_instance_uid,))
        return rows[0] if rows else None

    def has_file(self, file_name: str) -> bool:
        return self.db.execute("SELECT 1 FROM instance WHERE file_name=?",
                               (file_name,)).fetchone() is not None

    def file_names_in(self, folder: str) -> set[str]:
        """The indexed names inside one folder of the area (a range of the file_name index)."""
        rows = self.db.execute("SELECT file_name FROM instance WHERE file_name > ? AND "
                               "file_name < ?", (f"{folder}/", f"{folder}0"))
        return {row[0] for row in rows}

    def _instances(self, where: str, args: tuple[object, ...]) -> list[StoredInstance]:
        sql = ("SELECT instance.pk, sop_instance_uid, sop_class_uid, transfer_syntax_uid, "
               f"file_name, file_size FROM instance {where}")
        return [StoredInstance(*row) for row in self.db.execute(sql, args)]

    # -- changes -----------------------------------------------------------------------
    def add_instance(self, header: Header, file_name: str, file_size: int,
                     received: int | None = None) -> None:
        """Insert (or replace, same SOP Instance UID) one instance and its parents.

        ``received`` orders the instance among the others (default: the next store order):
        quota eviction removes the least recently received first.
        """
        now = self.order() if received is None else received
        study_uid, patient_id = self._parents_of(header)
        own_study = study_uid == header.study_instance_uid
        patient = self._upsert("patient", "patient_id", patient_id,
                               header.patient if patient_id == header.patient_id else {}, {},
                               None)
        study = self._upsert("study", "study_instance_uid", study_uid,
                             header.study if own_study else {},
                             {"study_date": header.study.get("StudyDate", ""), "last_stored": now}
                             if own_study else {"last_stored": now}, ("patient_pk", patient.pk))
        series = self._upsert("series", "series_instance_uid", header.series_instance_uid,
                              header.series, {"modality": header.modality},
                              ("study_pk", study.pk))
        replaced = self.db.execute("SELECT pk FROM instance WHERE sop_instance_uid=?",
                                   (header.sop_instance_uid,)).fetchone()
        emptied = self._detach([int(replaced[0])]) if replaced is not None else None
        pk = int(self.db.execute(
            "INSERT INTO instance (series_pk, sop_instance_uid, sop_class_uid, "
            "transfer_syntax_uid, file_name, file_size, received, attrs) VALUES "
            "(?,?,?,?,?,?,?,?) RETURNING pk",
            (series.pk, header.sop_instance_uid, header.sop_class_uid,
             header.transfer_syntax_uid, file_name, file_size, now,
             json.dumps(header.instance))).fetchone()[0])
        self._write_values("instance", *value_rows("instance", pk, {}, header.instance))
        self._count_new(patient.pk, study.pk, series.pk, study.created, series.created)
        rows = [(_SOP_CLASSES, value, study.pk)
                for value in index_values("UI", header.sop_class_uid)]
        if series.created or series.old_columns != (header.modality,):
            rows += [(_MODALITIES, value, study.pk)
                     for value in index_values("CS", header.modality)]
        self._write_values("study", [], rows)
        if emptied is not None:
            self._prune(*emptied)
        if not series.created and series.old_columns != (header.modality,):
            self._refresh_computed([study.pk])

    def _parents_of(self, header: Header) -> tuple[str, str]:
        """The Study Instance UID and Patient ID an instance is filed under: its own, unless
        its series (or study) is already filed under another study (or patient), where it
        then goes too; the other entity named by its header is neither created nor changed
        (it would hold nothing)."""
        row = self.db.execute(
            "SELECT s.study_instance_uid, p.patient_id FROM series r JOIN study s ON "
            "s.pk=r.study_pk JOIN patient p ON p.pk=s.patient_pk WHERE r.series_instance_uid=?",
            (header.series_instance_uid,)).fetchone() or self.db.execute(
            "SELECT s.study_instance_uid, p.patient_id FROM study s JOIN patient p ON "
            "p.pk=s.patient_pk WHERE s.study_instance_uid=?",
            (header.study_instance_uid,)).fetchone()
        if row is None:
            return header.study_instance_uid, header.patient_id
        return str(row[0]), str(row[1])

    def _count_new(self, patient_pk: int, study_pk: int, series_pk: int, new_study: bool,
                   new_series: bool) -> None:
        """One more instance (and perhaps series and study) under its parents."""
        self.db.execute("UPDATE series SET n_instances = n_instances + 1 WHERE pk=?",
                        (series_pk,))
        self.db.execute("UPDATE study SET n_instances = n_instances + 1, n_series = n_series + ?"
                        " WHERE pk=?", (int(new_series), study_pk))
        self.db.execute("UPDATE patient SET n_instances = n_instances + 1, n_series = n_series"
                        " + ?, n_studies = n_studies + ? WHERE pk=?",
                        (int(new_series), int(new_study), patient_pk))

    def _upsert(self, table: str, key_column: str, key: str, attrs: dict[str, str],
                columns: dict[str, object], parent: tuple[str, int] | None) -> _Upserted:
        watched = ", ".join(["pk", "attrs", *(c for c in columns if c == "modality")])
        row = self.db.execute(f"SELECT {watched} FROM {table} WHERE {key_column}=?",
                              (key,)).fetchone()
        if row is None:
            names = [key_column, "attrs", *columns] + ([parent[0]] if parent else [])
            values = [key, json.dumps(attrs), *columns.values()] + ([parent[1]] if parent else [])
            pk = int(self.db.execute(
                f"INSERT INTO {table} ({', '.join(names)}) VALUES "
                f"({', '.join('?' * len(names))}) RETURNING pk", values).fetchone()[0])
            self._write_values(table, *value_rows(table, pk, {}, attrs))
            return _Upserted(pk, True, ())
        pk, old = int(row[0]), json.loads(row[1])
        merged = {**old, **attrs}
        changed = {"attrs": json.dumps(merged)} if merged != old else {}
        assignments = ", ".join(f"{name}=?" for name in [*changed, *columns])
        if assignments:
            self.db.execute(f"UPDATE {table} SET {assignments} WHERE pk=?",
                            (*changed.values(), *columns.values(), pk))
        if changed:
            self._write_values(table, *value_rows(table, pk, old, merged))
        return _Upserted(pk, False, tuple(row[2:]))

    def _write_values(self, level: str, deletions: list[tuple[int, int]],
                      insertions: list[tuple[int, str, int]]) -> None:
        if deletions:
            self.db.executemany(f"DELETE FROM {level}_value WHERE owner=? AND tag=?", deletions)
        if insertions:
            self.db.executemany(f"INSERT INTO {level}_value (tag, value, owner) VALUES (?,?,?) "
                                "ON CONFLICT DO NOTHING", insertions)

    def delete_instance(self, sop_instance_uid: str) -> None:
        """Remove one instance row, then any series/study/patient left empty."""
        self._remove_where("WHERE i.sop_instance_uid=?", (sop_instance_uid,))

    def delete_study(self, study_uid: str) -> list[str]:
        """Remove a whole study; return the file names that now belong to nobody."""
        return [name for _, name, _ in
                self._remove_where("WHERE s.study_instance_uid=?", (study_uid,))]

    def delete_under(self, level: str, uid: str) -> list[tuple[str, str, int]]:
        """Remove a study, series or instance (``level``); return the
        ``(SOP Instance UID, file name, size)`` of every instance removed."""
        column = {"study": "s.study_instance_uid", "series": "r.series_instance_uid",
                  "instance": "i.sop_instance_uid"}[level]
        return self._remove_where(f"WHERE {column}=?", (uid,))

    def _remove_where(self, where: str, args: tuple[object, ...]) -> list[tuple[str, str, int]]:
        rows = self.db.execute(
            "SELECT i.pk, i.sop_instance_uid, i.file_name, i.file_size FROM instance i "
            "JOIN series r ON r.pk=i.series_pk JOIN study s ON s.pk=r.study_pk "
            f"{where}", args).fetchall()
        if rows:
            self._prune(*self._detach([int(row[0]) for row in rows]))
        return [(str(row[1]), str(row[2]), int(row[3])) for row in rows]

    def _detach(self, instance_pks: list[int]) -> tuple[set[int], set[int], set[int]]:
        """Delete instance rows and take them off their parents' counts; return the
        (series, study, patient) pks they were under, for :meth:`_prune`."""
        per_series: Counter[int] = Counter()
        per_study: Counter[int] = Counter()
        per_patient: Counter[int] = Counter()
        for start in range(0, len(instance_pks), _CHUNK):
            chunk = instance_pks[start:start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for series_pk, study_pk, patient_pk in self.db.execute(
                    "SELECT i.series_pk, r.study_pk, s.patient_pk FROM instance i JOIN series r "
                    "ON r.pk=i.series_pk JOIN study s ON s.pk=r.study_pk "
                    f"WHERE i.pk IN ({marks})", chunk).fetchall():
                per_series[series_pk] += 1
                per_study[study_pk] += 1
                per_patient[patient_pk] += 1
            self.db.execute(f"DELETE FROM instance WHERE pk IN ({marks})", chunk)
        for table, counts in (("series", per_series), ("study", per_study),
                              ("patient", per_patient)):
            self.db.executemany(f"UPDATE {table} SET n_instances = n_instances - ? WHERE pk=?",
                                [(count, pk) for pk, count in counts.items()])
        return set(per_series), set(per_study), set(per_patient)

    def _prune(self, series_pks: Iterable[int], study_pks: Iterable[int],
               patient_pks: Iterable[int]) -> None:
        """Drop the series, studies and patients of these that hold no instance any more
        (an empty study would still be listed and take a place in the quota), keep the
        counts of the others, and refresh the computed keys of the studies that remain."""
        for pk in series_pks:
            row = self.db.execute("SELECT r.study_pk, s.patient_pk FROM series r JOIN study s "
                                  "ON s.pk=r.study_pk WHERE r.pk=? AND r.n_instances=0",
                                  (pk,)).fetchone()
            if row is not None:
                self.db.execute("DELETE FROM series WHERE pk=?", (pk,))
                self.db.execute("UPDATE study SET n_series = n_series - 1 WHERE pk=?", (row[0],))
                self.db.execute("UPDATE patient SET n_series = n_series - 1 WHERE pk=?",
                                (row[1],))
        remaining: list[int] = []
        for pk in study_pks:
            row = self.db.execute("SELECT patient_pk, n_instances FROM study WHERE pk=?",
                                  (pk,)).fetchone()
            if row is not None and int(row[1]) == 0:
                self.db.execute("DELETE FROM study WHERE pk=?", (pk,))
                self.db.execute("UPDATE patient SET n_studies = n_studies - 1 WHERE pk=?",
                                (row[0],))
            elif row is not None:
                remaining.append(pk)
        for pk in patient_pks:
            self.db.execute("DELETE FROM patient WHERE pk=? AND n_instances=0", (pk,))
        self._refresh_computed(remaining)

    def _refresh_computed(self, study_pks: Iterable[int]) -> None:
        """ModalitiesInStudy and SOPClassesInStudy of these studies, from their rows."""
        for pk in study_pks:
            self.db.execute("DELETE FROM study_value WHERE owner=? AND tag IN (?, ?)",
                            (pk, _MODALITIES, _SOP_CLASSES))
            rows = [(_MODALITIES, value, pk) for (modality,) in self.db.execute(
                "SELECT DISTINCT modality FROM series WHERE study_pk=?", (pk,)).fetchall()
                for value in index_values("CS", modality)]
            rows += [(_SOP_CLASSES, value, pk) for (uid,) in self.db.execute(
                "SELECT DISTINCT i.sop_class_uid FROM instance i JOIN series r ON "
                "r.pk=i.series_pk WHERE r.study_pk=?", (pk,)).fetchall()
                for value in index_values("UI", uid)]
            self._write_values("study", [], rows)
