"""An index written by an older pyqrscp is upgraded in place when its area opens, never misread."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from helpers import identifier, poll_until

from pyqrscp.archive import filelock
from pyqrscp.archive.index.migration import create_schema
from pyqrscp.archive.index.query import STUDY_ROOT, parse_identifier, run_query
from pyqrscp.archive.index.schema import INDEX_FILE_NAME, SCHEMA_VERSION
from pyqrscp.archive.layout import LOCK_FILE_NAME
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota
from pyqrscp.errors import StorageFailure

# Schema 1, as pyqrscp 0.1 created it (index/schema.py DDL and the meta row).
SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE patient (
    pk INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL UNIQUE,
    attrs TEXT NOT NULL
);
CREATE TABLE study (
    pk INTEGER PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patient(pk),
    study_instance_uid TEXT NOT NULL UNIQUE,
    study_date TEXT NOT NULL DEFAULT '',
    attrs TEXT NOT NULL,
    last_stored INTEGER NOT NULL
);
CREATE INDEX study_patient ON study(patient_pk);
CREATE INDEX study_last_stored ON study(last_stored);
CREATE TABLE series (
    pk INTEGER PRIMARY KEY,
    study_pk INTEGER NOT NULL REFERENCES study(pk),
    series_instance_uid TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL DEFAULT '',
    attrs TEXT NOT NULL
);
CREATE INDEX series_study ON series(study_pk);
CREATE TABLE instance (
    pk INTEGER PRIMARY KEY,
    series_pk INTEGER NOT NULL REFERENCES series(pk),
    sop_instance_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    file_name TEXT NOT NULL UNIQUE,
    file_size INTEGER NOT NULL,
    received INTEGER NOT NULL,
    attrs TEXT NOT NULL
);
CREATE INDEX instance_series ON instance(series_pk, received);
"""
CT = "1.2.840.10008.5.1.4.1.1.2"


def old_index(root: Path) -> None:
    """An area indexed by schema 1: two patients, three studies, CT and MR series."""
    root.mkdir()
    db = sqlite3.connect(root / INDEX_FILE_NAME)
    db.executescript(SCHEMA_1)
    for pk, name in ((1, "Adams^John"), (2, "Nee^Renee")):
        db.execute("INSERT INTO patient VALUES (?, ?, ?)",
                   (pk, f"P{pk}", json.dumps({"PatientID": f"P{pk}", "PatientName": name})))
    for pk, patient, date, accession in ((1, 1, "20240101", "A1"), (2, 1, "20240102", "A2"),
                                         (3, 2, "20240103", "A3")):
        db.execute("INSERT INTO study VALUES (?, ?, ?, ?, ?, ?)",
                   (pk, patient, f"1.2.7.{pk}", date, json.dumps(
                       {"StudyInstanceUID": f"1.2.7.{pk}", "StudyDate": date,
                        "AccessionNumber": accession}), pk))
    for pk, study, modality in ((1, 1, "CT"), (2, 1, "MR"), (3, 2, "CT"), (4, 3, "MR")):
        db.execute("INSERT INTO series VALUES (?, ?, ?, ?, ?)",
                   (pk, study, f"1.2.8.{pk}", modality, json.dumps(
                       {"SeriesInstanceUID": f"1.2.8.{pk}", "Modality": modality})))
    for pk in range(1, 9):
        db.execute("INSERT INTO instance VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (pk, (pk - 1) // 2 + 1, f"1.2.9.{pk}", CT, "1.2.840.10008.1.2.1",
                    f"CT_{pk:016x}.dcm", 100, pk, json.dumps(
                        {"SOPInstanceUID": f"1.2.9.{pk}", "InstanceNumber": str(pk)})))
    db.commit()
    db.close()


@pytest.mark.sqlite_only  # writes the SQLite file itself
def test_a_schema_1_index_is_upgraded_in_place_with_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old_index(tmp_path / "area")
    area = StorageArea(tmp_path / "area", Quota(10, 10**9), durable=False)
    with caplog.at_level(logging.INFO, logger="pyqrscp"):
        area.open()
    try:
        upgrades = [r.getMessage() for r in caplog.records if "upgraded" in r.getMessage()]
        assert upgrades == [f"index upgraded from schema 1 to {SCHEMA_VERSION} "
                            "(8 instances) in " + upgrades[0].rsplit(" in ", 1)[1]]
        db = area.reader()
        try:
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            studies = list(run_query(db, parse_identifier(identifier(
                "STUDY", PatientName="adams*", ModalitiesInStudy="MR", StudyInstanceUID="",
                NumberOfStudyRelatedInstances="", AccessionNumber="A1\\A3"), STUDY_ROOT)))
        finally:
            db.close()
        assert version == (str(SCHEMA_VERSION),)
        assert [(s["StudyInstanceUID"], s["NumberOfStudyRelatedInstances"])
                for s in studies] == [("1.2.7.1", "4")]
        area.delete("study", "1.2.7.1")
        db = area.reader()
        try:
            patients = db.execute("SELECT patient_id, n_studies, n_series, n_instances FROM "
                                  "patient ORDER BY pk").fetchall()
        finally:
            db.close()
        assert patients == [("P1", 1, 1, 2), ("P2", 1, 1, 2)]
    finally:
        area.close()


@pytest.mark.sqlite_only  # writes the SQLite file itself
def test_an_index_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    old_index(tmp_path / "area")
    db = sqlite3.connect(tmp_path / "area" / INDEX_FILE_NAME)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    area = StorageArea(tmp_path / "area", Quota(10, 10**9), durable=False)
    with pytest.raises(StorageFailure, match="newer than this pyqrscp"):
        area.open()
    area.close()


@pytest.mark.sqlite_only  # writes the SQLite file itself
@pytest.mark.skipif(not filelock.locking_available(),
                    reason="no file locks: nothing tells another process uses the area")
def test_no_upgrade_while_another_process_uses_the_area(tmp_path: Path) -> None:
    """A process of the older version still holding the area (its shared lock) would go on
    writing rows of the old schema: the upgrade waits until it has stopped."""
    old_index(tmp_path / "area")
    other = os.open(tmp_path / "area" / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        filelock.lock_shared(other)
        area = StorageArea(tmp_path / "area", Quota(10, 10**9), durable=False)
        with pytest.raises(StorageFailure, match="stop the other pyqrscp process"):
            area.open()
        area.close()
    finally:
        os.close(other)
    db = sqlite3.connect(tmp_path / "area" / INDEX_FILE_NAME)
    try:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
    finally:
        db.close()


@pytest.mark.sqlite_only  # writes the SQLite file itself
@pytest.mark.skipif(not filelock.locking_available(),
                    reason="no file locks: nothing tells another process uses the area")
def test_a_process_starting_while_another_upgrades_the_index_waits_for_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds the area alone (it is starting, and upgrades the index): this one
    finds the old schema, waits for that process, and opens the upgraded index."""
    old_index(tmp_path / "area")
    starting = os.open(tmp_path / "area" / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    area = StorageArea(tmp_path / "area", Quota(10, 10**9), durable=False)
    outcome: list[BaseException | None] = []

    def open_area() -> None:
        try:
            area.open()
            outcome.append(None)
        except StorageFailure as error:
            outcome.append(error)
    try:
        assert filelock.try_lock(starting, exclusive=True)
        with caplog.at_level(logging.INFO, logger="pyqrscp"):
            thread = threading.Thread(target=open_area, daemon=True)
            thread.start()
            poll_until(lambda: outcome or any("waiting" in r.getMessage()
                                              for r in caplog.records),
                       "the opening process to wait or fail")
            assert outcome == []
            upgrader = sqlite3.connect(tmp_path / "area" / INDEX_FILE_NAME,
                                       isolation_level=None)
            try:
                create_schema(upgrader)  # what the starting process does
            finally:
                upgrader.close()
            filelock.unlock(starting)
            thread.join(60)
    finally:
        os.close(starting)
    try:
        assert outcome == [None]
        db = area.reader()
        try:
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        finally:
            db.close()
        assert version == (str(SCHEMA_VERSION),)
    finally:
        area.close()
