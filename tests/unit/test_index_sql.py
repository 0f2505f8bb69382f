"""Matching in SQL (``index/sql.py``): every key type narrows by an index, the results equal
the matcher's alone on generated archives, and the kept counts and value rows stay exact."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import identifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyqrscp.archive.dicomfile import Header
from pyqrscp.archive.index.database import IndexWriter, connect, create_schema
from pyqrscp.archive.index.query import (
    PATIENT_ROOT,
    STUDY_ROOT,
    UNIQUE_KEY,
    Query,
    candidate_sql,
    candidates,
    parse_identifier,
    run_query,
)
from pyqrscp.archive.index.schema import TABLES, value_tag
from pyqrscp.archive.index.values import value_rows
from pyqrscp.query.matching import compile_identifier, index_values

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STUDIES = 40


def header(n: int, *, patient: dict[str, str] | None = None, study: dict[str, str] | None = None,
           series: dict[str, str] | None = None, instance: dict[str, str] | None = None,
           study_uid: str = "", series_uid: str = "", sop_class: str = CT) -> Header:
    """An instance's header as the index sees it (no file needed)."""
    patient = patient or {}
    return Header(
        sop_class_uid=sop_class, sop_instance_uid=f"1.2.9.{n}",
        study_instance_uid=study_uid or f"1.2.7.{n}", series_instance_uid=series_uid or
        f"1.2.8.{n}", transfer_syntax_uid="1.2.840.10008.1.2.1",
        patient=patient, study={"StudyInstanceUID": study_uid or f"1.2.7.{n}", **(study or {})},
        series={"SeriesInstanceUID": series_uid or f"1.2.8.{n}", **(series or {})},
        instance={"SOPInstanceUID": f"1.2.9.{n}", **(instance or {})})


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """An index of STUDIES studies (one series, two instances each), for the query plans."""
    connection = connect(tmp_path_factory.mktemp("index") / "index.sqlite3")
    create_schema(connection)
    writer = IndexWriter(connection)
    connection.execute("BEGIN")
    for n in range(STUDIES):
        for k in range(2):
            writer.add_instance(header(
                2 * n + k, patient={"PatientName": f"Adams^{n}", "PatientID": f"P{n}"},
                study={"StudyDate": f"202401{n % 28 + 1:02}", "StudyTime": "101500",
                       "AccessionNumber": f"A{n}", "StudyDescription": f"Head {n}",
                       "StudyID": str(n)},
                series={"Modality": "CT" if n % 2 else "MR", "SeriesNumber": "1",
                        "SeriesDescription": "axial"},
                instance={"InstanceNumber": str(k + 1)}, study_uid=f"1.2.7.{n}",
                series_uid=f"1.2.8.{n}"), f"f{n}_{k}.dcm", 10)
    connection.execute("COMMIT")
    yield connection
    connection.close()


def plan(db: sqlite3.Connection, query: Query) -> str:
    sql, args = candidate_sql(query)
    return "\n".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, args))


INDEXED_KEYS = [
    ("STUDY", {"PatientName": "adams^3"}, "patient_value", "value=?"),
    ("STUDY", {"PatientName": "Adams*"}, "patient_value", "value>? AND value<?"),
    ("STUDY", {"PatientID": "P1"}, "patient_value", "value=?"),
    ("STUDY", {"StudyDate": "20240103-20240105"}, "study_value", "value>? AND value<?"),
    ("STUDY", {"StudyDate": "20240103"}, "study_value", "value>? AND value<?"),
    ("STUDY", {"StudyTime": "1015"}, "study_value", "value>? AND value<?"),
    ("STUDY", {"AccessionNumber": "A7"}, "study_value", "value=?"),
    ("STUDY", {"AccessionNumber": "A7\\A8"}, "study_value", "value=?"),
    ("STUDY", {"StudyID": "7"}, "study_value", "value=?"),
    ("STUDY", {"StudyDescription": "Head 1*"}, "study_value", "value>? AND value<?"),
    ("STUDY", {"ModalitiesInStudy": "CT"}, "study_value", "value=?"),
    ("STUDY", {"SOPClassesInStudy": CT}, "study_value", "value=?"),
    ("STUDY", {"StudyInstanceUID": "1.2.7.3\\1.2.7.4"}, "s", "study_instance_uid=?"),
    ("SERIES", {"Modality": "CT"}, "series_value", "value=?"),
    ("SERIES", {"SeriesDescription": "ax*"}, "series_value", "value>? AND value<?"),
    ("SERIES", {"SeriesNumber": "1"}, "series_value", "value=?"),
    ("IMAGE", {"InstanceNumber": "2"}, "instance_value", "value=?"),
    ("IMAGE", {"SOPInstanceUID": "1.2.9.5"}, "i", "sop_instance_uid=?"),
]


@pytest.mark.parametrize(("level", "keys", "table", "constraint"), INDEXED_KEYS)
def test_every_indexed_key_type_is_answered_through_an_index(
        db: sqlite3.Connection, level: str, keys: dict[str, str], table: str,
        constraint: str) -> None:
    """Single values, lists, wildcards with a literal prefix (an index range), date and time
    ranges, UID lists and the computed keys: the plan searches an index, never scans an
    entity table."""
    query = parse_identifier(identifier(level, **keys), PATIENT_ROOT, relational=True)
    text = plan(db, query)
    assert f"SEARCH {table} USING" in text and constraint in text, text
    assert "SCAN p" not in text and "SCAN s" not in text and "SCAN r" not in text, text
    assert "SCAN i" not in text, text


def test_a_substring_pattern_is_filtered_in_the_database(db: sqlite3.Connection) -> None:
    """``*dams^1*`` has no literal prefix: the value rows of that one key are searched by the
    database (the key's part of the index), not every study loaded into Python."""
    query = parse_identifier(identifier("STUDY", PatientName="*dams^1*"), STUDY_ROOT)
    text = plan(db, query)
    assert "SEARCH patient_value USING COVERING INDEX" in text and "(tag=?)" in text, text
    rows = db.execute(*candidate_sql(query)).fetchall()
    assert len(rows) == 11  # Adams^1 and Adams^10..19: only matching rows leave the database


@pytest.mark.parametrize(("level", "keys", "start"), [
    ("SERIES", {"StudyInstanceUID": "1.2.7.3", "Modality": "CT"},
     "SEARCH s USING INDEX sqlite_autoindex_study_1"),
    ("IMAGE", {"StudyInstanceUID": "1.2.7.3", "SeriesInstanceUID": "1.2.8.3",
               "InstanceNumber": "2"}, "SEARCH r USING INDEX sqlite_autoindex_series_1"),
    ("STUDY", {"AccessionNumber": "A3", "ModalitiesInStudy": "CT", "StudyDate": "20240101-"},
     "SEARCH s USING INTEGER PRIMARY KEY (rowid=?)\nLIST SUBQUERY 2\nSEARCH study_value USING "
     "COVERING INDEX sqlite_autoindex_study_value_1 (tag=? AND value=?)"),
])
def test_the_most_selective_key_drives_and_the_others_probe_their_entity(
        db: sqlite3.Connection, level: str, keys: dict[str, str], start: str) -> None:
    """A common value (every CT series, every instance numbered 2) is never gathered from the
    whole archive: the query starts from the UID or the exact value and probes the other keys
    of each row it reaches."""
    query = parse_identifier(identifier(level, **keys), STUDY_ROOT)
    text = plan(db, query)
    assert text.startswith(start), text
    assert text.count("LIST SUBQUERY") <= (level == "STUDY"), text
    probes = [line for line in text.splitlines() if line.startswith("SEARCH v ")]
    assert probes and all("owner=?" in line for line in probes), text
    assert len(list(run_query(db, query))) == 1


# -- the property: SQL narrowing never changes a result ----------------------------------------

NAMES = st.sampled_from(["Adams^John", "adams^john", "ADAMS^JO", "Renee^Nee", "O'Neil",
                         "Zoë^Ærø", "x%_!y", "", "Adams^John\\Other^Name"])
DATES = st.sampled_from(["20240101", "20240102", "20240103", "2024.01.02", "2024010", "",
                         "20240101\\20240105"])
TIMES = st.sampled_from(["101500", "1015", "10", "235959.5", "", "25", "101500\\090000"])
CODES = st.sampled_from(["A1", "A2", "a1", "A1\\B2", "", " A1 ", "A%", "A_1"])
MODALITIES = st.sampled_from(["CT", "MR", "PT", "", "CT\\PT"])
NUMBERS = st.sampled_from(["1", "2", "01", "10", ""])
PATTERN_TEXT = st.text(alphabet="aAdDmMsS^nNeE*?%_!\\ ", max_size=8)

QUERY_KEYS = st.one_of(
    st.tuples(st.just("PatientName"), st.one_of(NAMES, PATTERN_TEXT)),
    st.tuples(st.just("PatientID"), st.one_of(CODES, PATTERN_TEXT)),
    st.tuples(st.just("StudyDate"), st.sampled_from(
        ["20240101", "20240102-", "-20240102", "20240101-20240103", "20240102\\20240105",
         "2024.01.02", "-"])),
    st.tuples(st.just("StudyTime"), st.sampled_from(["1015", "10-11", "-1000", "0900-",
                                                     "101500.0-235959"])),
    st.tuples(st.just("AccessionNumber"), st.one_of(CODES, PATTERN_TEXT)),
    st.tuples(st.just("StudyDescription"), PATTERN_TEXT),
    st.tuples(st.just("Modality"), st.sampled_from(["CT", "C?", "*T", "CT\\MR", "ct"])),
    st.tuples(st.just("ModalitiesInStudy"), st.sampled_from(["CT", "PT\\MR", "C*", "*"])),
    st.tuples(st.just("SOPClassesInStudy"), st.sampled_from([CT, MR, f"{CT}\\{MR}"])),
    st.tuples(st.just("NumberOfStudyRelatedInstances"), st.sampled_from(["1", "2", "02", "3"])),
    st.tuples(st.just("NumberOfPatientRelatedStudies"), st.sampled_from(["1", "2"])),
    st.tuples(st.just("NumberOfSeriesRelatedInstances"), st.sampled_from(["1", "2"])),
    st.tuples(st.just("SeriesNumber"), NUMBERS),
    st.tuples(st.just("InstanceNumber"), st.sampled_from(["1", "2", "1\\2", "01"])),
    st.tuples(st.just("StudyInstanceUID"), st.sampled_from(["1.2.7.1", "1.2.7.1\\1.2.7.2"])),
)


@st.composite
def archives(draw: st.DrawFn) -> list[Header]:
    """Instances spread over a few patients, studies and series, with awkward values."""
    found: list[Header] = []
    for n in range(draw(st.integers(1, 12))):
        study = draw(st.integers(0, 4))
        found.append(header(
            n, study_uid=f"1.2.7.{study}", series_uid=f"1.2.8.{study}.{draw(st.integers(0, 1))}",
            sop_class=draw(st.sampled_from([CT, MR])),
            patient={"PatientID": f"P{study % 3}", "PatientName": draw(NAMES)},
            study={"StudyDate": draw(DATES), "StudyTime": draw(TIMES),
                   "AccessionNumber": draw(CODES), "StudyDescription": draw(PATTERN_TEXT)},
            series={"Modality": draw(MODALITIES), "SeriesNumber": draw(NUMBERS)},
            instance={"InstanceNumber": draw(NUMBERS)}))
    return found


Change = tuple[str, int, int, int, str]
CHANGES = st.lists(st.tuples(
    st.sampled_from(["delete", "move", "drop study"]), st.integers(0, 11), st.integers(0, 5),
    st.integers(0, 1), st.sampled_from(["CT", "MR", "PT", ""])), max_size=4)
"""Later changes: instance n deleted, stored again elsewhere (same SOP Instance UID, in series
(study, series), maybe another modality), or study n % 5 evicted."""


def fill(db: sqlite3.Connection, headers: list[Header], changes: list[Change]) -> None:
    writer = IndexWriter(db)
    db.execute("BEGIN")
    for n, item in enumerate(headers):
        writer.add_instance(item, f"f{n}.dcm", 10)
    for action, n, study, series, modality in changes:
        if action == "delete":
            writer.delete_instance(f"1.2.9.{n}")
        elif action == "drop study":
            writer.delete_study(f"1.2.7.{n % 5}")
        else:
            writer.add_instance(header(
                n, study_uid=f"1.2.7.{study}", series_uid=f"1.2.8.{study}.{series}",
                patient={"PatientID": f"P{study}"}, series={"Modality": modality}),
                f"g{n}.dcm", 10)
    db.execute("COMMIT")


def matched_by_python(db: sqlite3.Connection, query: Query, case_sensitive_pn: bool
                      ) -> list[dict[str, str]]:
    """The matcher alone over every entity at the level (no SQL narrowing)."""
    matcher = compile_identifier(query.keys, case_sensitive_pn=case_sensitive_pn)
    everything = dataclasses.replace(query, keys=())
    return [attrs for _, attrs in candidates(db, everything) if matcher(attrs)]


def returned(query: Query, attrs: dict[str, str]) -> dict[str, str | None]:
    return {keyword: attrs.get(keyword) for keyword in query.return_keys}


def kept_rows_are_exact(db: sqlite3.Connection) -> None:
    """Counts and value rows equal what a recount and a fresh derivation give."""
    for table in TABLES:
        stored = set(db.execute(f"SELECT tag, value, owner FROM {table}_value"))
        derived = {row for pk, attrs in db.execute(f"SELECT pk, attrs FROM {table}")
                   for row in value_rows(table, pk, {}, json.loads(attrs))[1]}
        if table == "study":
            derived |= {(value_tag("ModalitiesInStudy"), v, pk) for pk, m in db.execute(
                "SELECT study_pk, modality FROM series") for v in index_values("CS", m)}
            derived |= {(value_tag("SOPClassesInStudy"), uid, pk) for pk, uid in db.execute(
                "SELECT r.study_pk, i.sop_class_uid FROM instance i JOIN series r ON "
                "r.pk=i.series_pk")}
        assert stored == derived, table
    assert db.execute(
        "SELECT COUNT(*) FROM series r WHERE n_instances != (SELECT COUNT(*) FROM instance "
        "WHERE series_pk=r.pk) OR n_instances = 0").fetchone()[0] == 0
    assert db.execute(
        "SELECT COUNT(*) FROM study s WHERE n_series != (SELECT COUNT(*) FROM series WHERE "
        "study_pk=s.pk) OR n_instances != (SELECT COALESCE(SUM(n_instances), 0) FROM series "
        "WHERE study_pk=s.pk) OR n_series = 0").fetchone()[0] == 0
    assert db.execute(
        "SELECT COUNT(*) FROM patient p WHERE n_studies != (SELECT COUNT(*) FROM study WHERE "
        "patient_pk=p.pk) OR n_series != (SELECT COALESCE(SUM(n_series), 0) FROM study WHERE "
        "patient_pk=p.pk) OR n_instances != (SELECT COALESCE(SUM(n_instances), 0) FROM study "
        "WHERE patient_pk=p.pk) OR n_studies = 0").fetchone()[0] == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=archives(), changes=CHANGES,
       level=st.sampled_from(["PATIENT", "STUDY", "SERIES", "IMAGE"]),
       keys=st.lists(QUERY_KEYS, min_size=1, max_size=3, unique_by=lambda k: k[0]),
       case_sensitive_pn=st.booleans())
def test_sql_narrowing_returns_exactly_what_the_matcher_alone_returns(
        headers: list[Header], changes: list[Change], level: str,
        keys: list[tuple[str, str]], case_sensitive_pn: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = connect(Path(folder) / "index.sqlite3", flush_commits=False)
        try:
            create_schema(db)
            fill(db, headers, changes)
            kept_rows_are_exact(db)
            with warnings.catch_warnings():  # odd values on purpose: pydicom warns
                warnings.simplefilter("ignore")
                request = identifier(level, **{UNIQUE_KEY[level]: "", **dict(keys)})
            query = parse_identifier(request, PATIENT_ROOT, relational=True)
            found = [returned(query, attrs) for attrs in run_query(db, query, case_sensitive_pn)]
            expected = [returned(query, attrs)
                        for attrs in matched_by_python(db, query, case_sensitive_pn)]
            assert sorted(found, key=repr) == sorted(expected, key=repr)
        finally:
            db.close()


@pytest.mark.parametrize(("level", "keys"), [
    ("STUDY", {"SOPClassesInStudy": "\\"}),
    ("SERIES", {"StudyInstanceUID": "1.2.7.3", "FrameOfReferenceUID": "\\\\"}),
    ("STUDY", {"ModalitiesInStudy": "\\"}),
])
def test_a_key_of_separators_only_answers_as_the_matcher_does(
    db: sqlite3.Connection, level: str, keys: dict[str, str]
) -> None:
    """A value of nothing but backslashes gives SQL no value to compare: the key narrows
    nothing in SQL, and the answer is the matcher's (never an SQL syntax error)."""
    query = parse_identifier(identifier(level, **keys), STUDY_ROOT)
    found = [attrs for _, attrs in candidates(db, query)
             if compile_identifier(query.keys, case_sensitive_pn=False)(attrs)]
    assert found == matched_by_python(db, query, case_sensitive_pn=False)
