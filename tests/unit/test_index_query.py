"""The index's candidate SQL (``index/query.py``) on a real SQLite index."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import identifier, make_ct

from pyqrscp.archive.dicomfile import read_header
from pyqrscp.archive.index.query import STUDY_ROOT, matching_instances, parse_identifier, run_query
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota
from pyqrscp.errors import InvalidIdentifier
from pyqrscp.query.matching import MAX_VALUES_PER_KEY

STUDY_UID = "1.2.826.0.1.3680043.2.1143.5"
SOP_UIDS = [f"{STUDY_UID}.1.{n}" for n in range(1, 4)]
SQL_VARIABLES = 50


@pytest.fixture
def area(tmp_path: Path) -> Iterator[StorageArea]:
    (tmp_path / "in").mkdir()
    area = StorageArea(tmp_path / "area", Quota(10, 64 * 1024**2), durable=False)
    area.open()
    for sop_uid in SOP_UIDS:
        data = make_ct(tmp_path / "in", study_uid=STUDY_UID, series_uid=f"{STUDY_UID}.1",
                       sop_uid=sop_uid, rows=2).read_bytes()
        area.store(read_header(data), data)
    yield area
    area.close()


def many_uids(count: int) -> str:
    return "\\".join(SOP_UIDS + [f"1.2.3.{n}" for n in range(count)])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Connection.setlimit is Python 3.11+")
@pytest.mark.sqlite_only
def test_uid_lists_longer_than_sqlites_variable_limit_are_matched(area: StorageArea) -> None:
    """Lists travel as one parameter: an index whose SQLite allows only 50 variables still
    answers a list of 1,000 UIDs per key, in two unique keys at once."""
    db = area.reader()
    try:
        set_limit = getattr(db, "setlimit")  # noqa: B009
        set_limit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER"), SQL_VARIABLES)  # noqa: B009
        uids = many_uids(1_000)
        found = matching_instances(db, parse_identifier(identifier(
            "IMAGE", StudyInstanceUID=STUDY_UID, SeriesInstanceUID=f"{STUDY_UID}.1",
            SOPInstanceUID=uids), STUDY_ROOT))
        studies = list(run_query(db, parse_identifier(identifier(
            "STUDY", StudyInstanceUID=f"{uids}\\{STUDY_UID}"), STUDY_ROOT)))
    finally:
        db.close()
    assert sorted(row[0] for row in found) == sorted(SOP_UIDS)
    assert [study["StudyInstanceUID"] for study in studies] == [STUDY_UID]


class _CountedFetches:
    """A reader connection whose cursors note the size of every fetch (no server-side
    stream: the rows are fetched here)."""

    def __init__(self, db: Any, sizes: list[int]) -> None:
        self._db = db
        self._sizes = sizes

    def __getattr__(self, name: str) -> Any:
        if name == "stream":
            raise AttributeError(name)
        return getattr(self._db, name)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return _CountedCursor(self._db.execute(sql, parameters), self._sizes)


class _CountedCursor:
    def __init__(self, cursor: Any, sizes: list[int]) -> None:
        self._cursor = cursor
        self._sizes = sizes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def fetchmany(self, size: int) -> list[Any]:
        self._sizes.append(size)
        return list(self._cursor.fetchmany(size))


def test_the_first_fetch_of_candidates_is_small(area: StorageArea) -> None:
    """The first rows come in a short fetch: a C-FIND's first response waits for the first
    match, not for a whole batch of rows (SQLite steps through them as they are fetched)."""
    sizes: list[int] = []
    db = area.reader()
    try:
        found = list(run_query(_CountedFetches(db, sizes), parse_identifier(identifier(
            "IMAGE", StudyInstanceUID=STUDY_UID, SeriesInstanceUID=f"{STUDY_UID}.1",
            SOPInstanceUID=""), STUDY_ROOT)))
    finally:
        db.close()
    assert sorted(attrs["SOPInstanceUID"] for attrs in found) == sorted(SOP_UIDS)
    assert sizes and sizes[0] <= 16, sizes


def test_a_key_listing_more_values_than_the_bound_is_refused() -> None:
    over = many_uids(MAX_VALUES_PER_KEY)
    with pytest.raises(InvalidIdentifier, match=f"lists {MAX_VALUES_PER_KEY + 3} values"):
        parse_identifier(identifier("IMAGE", SOPInstanceUID=over), STUDY_ROOT)


def test_nul_characters_are_not_indexed(tmp_path: Path, area: StorageArea) -> None:
    """A NUL inside a text value (a writer's padding gone wrong) is left out of the index on
    both backends (PostgreSQL's text cannot hold one): the instance is stored, found by the
    value without it, and answered without it."""
    data = make_ct(tmp_path / "in", study_uid="1.2.3.40", patient_id="PID\x0040",
                   extra={"StudyDescription": ("LO", "Head\x00 CT")}).read_bytes()
    area.store(read_header(data), data)
    db = area.reader()
    try:
        found = list(run_query(db, parse_identifier(identifier(
            "STUDY", PatientID="PID40", StudyInstanceUID="", StudyDescription=""), STUDY_ROOT)))
        asked_with_nul = list(run_query(db, parse_identifier(identifier(
            "STUDY", StudyDescription="Head\x00 CT", StudyInstanceUID=""), STUDY_ROOT)))
    finally:
        db.close()
    assert [(study["StudyInstanceUID"], study["StudyDescription"]) for study in found] == [
        ("1.2.3.40", "Head CT")]
    assert [study["StudyInstanceUID"] for study in asked_with_nul] == ["1.2.3.40"]
