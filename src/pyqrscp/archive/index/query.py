"""C-FIND on the index: identifier rules (PS3.4 C.4.1), candidate rows by SQL, matching in Python.

SQL narrows by every key the index holds (:mod:`pyqrscp.index.sql`: value rows, UID columns,
kept counts); every candidate row is then matched by :mod:`pyqrscp.query.matching`, the one home of
matching semantics.  No DICOM file is opened to answer a query.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from pyqrscp.archive.dicomfile import element_text
from pyqrscp.archive.index.backend import IndexConnection, stream_rows
from pyqrscp.archive.index.dialect import SQLITE, Dialect, dialect_of
from pyqrscp.archive.index.schema import level_of, value_tag
from pyqrscp.archive.index.sql import ALIASES, COUNT_COLUMNS, DEPTHS, conditions
from pyqrscp.errors import InvalidIdentifier
from pyqrscp.query.matching import check_value_count, compile_identifier, is_universal

LEVEL_ORDER = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_LEVEL_NAMES = {"patient": "PATIENT", "study": "STUDY", "series": "SERIES", "instance": "IMAGE"}
UNIQUE_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
              "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
COMPUTED = {
    "NumberOfPatientRelatedStudies": "PATIENT", "NumberOfPatientRelatedSeries": "PATIENT",
    "NumberOfPatientRelatedInstances": "PATIENT", "ModalitiesInStudy": "STUDY",
    "SOPClassesInStudy": "STUDY", "NumberOfStudyRelatedSeries": "STUDY",
    "NumberOfStudyRelatedInstances": "STUDY", "NumberOfSeriesRelatedInstances": "SERIES",
}
_NOT_KEYS = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle",
                       "InstanceAvailability", "TimezoneOffsetFromUTC"})


@dataclass(frozen=True, slots=True)
class InformationModel:
    """A Q/R information model: its name and the levels it has (top first)."""

    name: str
    levels: tuple[str, ...]


PATIENT_ROOT = InformationModel("Patient Root", LEVEL_ORDER)
STUDY_ROOT = InformationModel("Study Root", LEVEL_ORDER[1:])
PATIENT_STUDY_ONLY = InformationModel("Patient/Study Only", LEVEL_ORDER[:2])


def key_level(keyword: str, model: InformationModel) -> str:
    """The level an attribute belongs to in ``model`` (patient data sit at STUDY in Study Root)."""
    level = COMPUTED.get(keyword) or _LEVEL_NAMES[level_of(keyword)]
    return model.levels[0] if LEVEL_ORDER.index(level) < LEVEL_ORDER.index(
        model.levels[0]) else level


@dataclass(frozen=True, slots=True)
class Query:
    """A checked identifier: level, matching keys (keyword, VR, value) and return keys."""

    model: InformationModel
    level: str
    keys: tuple[tuple[str, str, str], ...]
    return_keys: tuple[str, ...]
    ignored_keys: tuple[str, ...] = ()
    """Keys above the level that a hierarchical search does not match (returned all the same)."""


def parse_identifier(identifier: Dataset, model: InformationModel, strict: bool = False,
                     relational: bool = False) -> Query:
    """Check an identifier against PS3.4 C.4.1.2 and split it into keys.

    A hierarchical search (the baseline, C.4.1.3.1.1) needs one value for the unique key of
    every level above the query level and matches no other key above it: those are returned
    but ignored (``Query.ignored_keys`` names the ones with a value).  ``relational`` (when
    negotiated, C.4.1.3.2) lifts both rules.

    Raises
    ------
    InvalidIdentifier
        Missing/unknown level, a level the model lacks, a missing, empty, wildcard or list
        unique key above the query level (hierarchical), a key listing more than
        ``MAX_VALUES_PER_KEY`` values, and with ``strict`` (``-XF``/``-XM``) keys below the level.
    """
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if not level:
        raise InvalidIdentifier("missing QueryRetrieveLevel")
    if level not in LEVEL_ORDER:
        raise InvalidIdentifier(f"unknown QueryRetrieveLevel {level!r}")
    if level not in model.levels:
        raise InvalidIdentifier(f"level {level} is not in the {model.name} model")
    depth = LEVEL_ORDER.index(level)
    keys: list[tuple[str, str, str]] = []
    return_keys: list[str] = []
    ignored: list[str] = []
    unique_above = {UNIQUE_KEY[upper] for upper in model.levels[:model.levels.index(level)]}
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in _NOT_KEYS or element.tag.group == 0x0002:
            continue
        key_depth = LEVEL_ORDER.index(key_level(keyword, model))
        if key_depth > depth:
            if strict:
                raise InvalidIdentifier(f"{keyword} is below the {level} level")
            continue
        return_keys.append(keyword)
        if element.VR == "SQ":
            continue
        text = element_text(element.value).replace("\x00", "")  # as the index holds it
        check_value_count(keyword, element.VR, text)
        if key_depth < depth and not relational and keyword not in unique_above:
            if not is_universal(text, element.VR):
                ignored.append(keyword)
            continue
        keys.append((keyword, element.VR, text))
    if not relational:
        _check_unique_keys({k: v for k, _, v in keys}, model, level)
    return Query(model, level, tuple(keys), tuple(return_keys), tuple(ignored))


def _check_unique_keys(values: dict[str, str], model: InformationModel, level: str) -> None:
    """One value for each unique key above the level (C.4.1.2.1): the hierarchical search
    walks down from it.  Error texts fit an ErrorComment (64 characters)."""
    for upper in model.levels[:model.levels.index(level)]:
        keyword = UNIQUE_KEY[upper]
        value = values.get(keyword, "").strip(" \x00")
        if not value:
            raise InvalidIdentifier(f"{keyword} missing above the {level} level")
        if "*" in value or "?" in value or "\\" in value:
            raise InvalidIdentifier(f"{keyword} must be a single value above the {level} level")


# Per level: FROM clause and the pks of the row's patient/study/series
# (computed keys of a higher level describe that level's entity).
_FROM = {
    "PATIENT": ("FROM patient p", ("p.pk", "NULL", "NULL")),
    "STUDY": ("FROM study s JOIN patient p ON p.pk=s.patient_pk", ("p.pk", "s.pk", "NULL")),
    "SERIES": ("FROM series r JOIN study s ON s.pk=r.study_pk JOIN patient p ON "
               "p.pk=s.patient_pk", ("p.pk", "s.pk", "r.pk")),
    "IMAGE": ("FROM instance i JOIN series r ON r.pk=i.series_pk JOIN study s ON "
              "s.pk=r.study_pk JOIN patient p ON p.pk=s.patient_pk", ("p.pk", "s.pk", "r.pk")),
}
_ROW_PK = {"PATIENT": "p.pk", "STUDY": "s.pk", "SERIES": "r.pk", "IMAGE": "i.pk"}
_ATTRS = (("patient", "p.attrs"), ("study", "s.attrs"), ("series", "r.attrs"),
          ("instance", "i.attrs"))
_COUNTS_AT = 8  # where the Number-of-Related columns start in a candidate row
_BATCH = 200
_FIRST_BATCH = 16
"""Rows of the first fetch: fewer than :data:`_BATCH`, so the first match is at hand sooner
(SQLite steps through the result row by row as it is fetched)."""


def _needed_levels(query: Query) -> frozenset[str]:
    """The index levels (``patient``...) whose attributes a query matches or returns."""
    keywords = [k for k, _, _ in query.keys] + list(query.return_keys)
    return frozenset(level_of(k) for k in keywords if k not in COMPUTED)


def candidate_sql(query: Query, levels: frozenset[str] | None = None,
                  dialect: Dialect = SQLITE) -> tuple[str, list[object]]:
    """SQL for the rows at the query level that the index says may match (:mod:`.sql`).

    Columns: the patient/study/series/instance attrs (NULL unless in ``levels``; None = all
    available), the row's pk, the pks of its patient, study and series, then the
    Number-of-Related counts of :data:`COUNT_COLUMNS` (NULL below the query level).

    Raises
    ------
    InvalidIdentifier
        If a DA, TM or DT value is malformed.
    """
    from_clause, owners = _FROM[query.level]
    depth = LEVEL_ORDER.index(query.level)
    blobs = [column if index <= depth and (levels is None or level in levels) else "NULL"
             for index, (level, column) in enumerate(_ATTRS)]
    counts = [column if DEPTHS[_LEVEL_OF_ALIAS[column[0]]] <= depth else "NULL"
              for column in COUNT_COLUMNS.values()]
    sql = (f"SELECT {', '.join(blobs)}, {_ROW_PK[query.level]}, {', '.join(owners)}, "
           f"{', '.join(counts)} {from_clause}")
    where, args = conditions(query.keys, depth, dialect)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, args


_LEVEL_OF_ALIAS = {alias: level for level, alias in ALIASES.items()}


def candidates(db: IndexConnection, query: Query, case_sensitive_pn: bool = False,
               levels: frozenset[str] | None = None,
               before_fetch: Callable[[], None] | None = None
               ) -> Iterator[tuple[int, dict[str, str]]]:
    """``(row pk, attributes)`` of every matching entity at the query level, streamed from
    the database in batches: the index narrows (:func:`candidate_sql`), the matcher decides.

    Attributes hold the levels in ``levels`` and every computed key the query names;
    ``before_fetch`` is called before each batch of rows is fetched (:func:`stream_rows`).
    """
    matcher = compile_identifier(query.keys, case_sensitive_pn=case_sensitive_pn)
    computed = [k for k in query.return_keys if k in COMPUTED]
    lists = [k for k in computed if k in _LISTS]
    sql, args = candidate_sql(query, levels, dialect_of(db))
    decoded = _LastDecoded()
    for rows in stream_rows(db, sql, args, _BATCH, before_fetch, _FIRST_BATCH):
        values = {keyword: list_values(db, keyword, {int(row[6]) for row in rows})
                  for keyword in lists}
        for row in rows:
            attrs: dict[str, str] = {}
            for column, blob in enumerate(row[:4]):
                if blob is not None:
                    attrs.update(decoded(column, blob))
            for keyword in computed:
                if keyword in _LISTS:
                    attrs[keyword] = values[keyword].get(int(row[6]), "")
                else:
                    count = row[_COUNTS_AT + list(COUNT_COLUMNS).index(keyword)]
                    attrs[keyword] = "" if count is None else str(count)
            if matcher(attrs):
                yield int(row[4]), attrs


class _LastDecoded:
    """The attributes of each level's JSON column, decoded once for a run of rows that share
    it: the rows below one study or series carry the same patient, study and series text."""

    __slots__ = ("_blobs", "_attrs")

    def __init__(self) -> None:
        self._blobs: list[str | None] = [None] * len(_ATTRS)
        self._attrs: list[dict[str, str]] = [{} for _ in _ATTRS]

    def __call__(self, column: int, blob: str) -> dict[str, str]:
        if blob != self._blobs[column]:
            self._attrs[column] = json.loads(blob)
            self._blobs[column] = blob
        return self._attrs[column]


def run_query(db: IndexConnection, query: Query, case_sensitive_pn: bool = False,
              before_fetch: Callable[[], None] | None = None) -> Iterator[dict[str, str]]:
    """Yield the attributes of every matching entity at the query level (one per entity),
    as the rows arrive: memory stays flat however many match.  ``before_fetch`` is called
    before each round trip for more rows (a caller sends what it holds back).

    The entry point of every query (C-FIND, DICOMweb): the caller closes ``db`` when done.
    """
    for _pk, attrs in candidates(db, query, case_sensitive_pn, _needed_levels(query),
                                 before_fetch):
        yield attrs


_LISTS = {"ModalitiesInStudy": value_tag("ModalitiesInStudy"),
          "SOPClassesInStudy": value_tag("SOPClassesInStudy")}
_CHUNK = 500


def list_values(db: IndexConnection, keyword: str, study_pks: set[int]) -> dict[int, str]:
    """ModalitiesInStudy or SOPClassesInStudy of many studies at once, from the rows the
    writer keeps: each sorted, ``\\``-joined; studies without any are absent."""
    found: dict[int, list[str]] = {}
    ordered = sorted(study_pks)
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start:start + _CHUNK]
        for pk, value in db.execute(
                "SELECT owner, value FROM study_value WHERE tag = ? AND owner IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY owner, value",
                [_LISTS[keyword], *chunk]):
            found.setdefault(int(pk), []).append(str(value))
    return {pk: "\\".join(values) for pk, values in found.items()}


ResponsePlan = tuple[tuple[int, str, str], ...]
"""(tag, VR, keyword) of every element of a query's responses, sorted by tag."""


def response_plan(query: Query) -> ResponsePlan:
    """What each response of ``query`` holds: every return key, plus QueryRetrieveLevel."""
    plan: dict[int, tuple[int, str, str]] = {}
    for keyword in query.return_keys:
        tag = tag_for_keyword(keyword)
        if tag is not None:
            plan[int(tag)] = (int(tag), str(dictionary_VR(tag)), keyword)
    plan[_QUERY_RETRIEVE_LEVEL] = (_QUERY_RETRIEVE_LEVEL, "CS", "QueryRetrieveLevel")
    return tuple(plan[tag] for tag in sorted(plan))


_QUERY_RETRIEVE_LEVEL = 0x00080052


def response_elements(attrs: Mapping[str, str], plan: ResponsePlan, level: str
                      ) -> list[tuple[int, str, str]]:
    """(tag, VR, text) of one response: the index's text, empty when it lacks the key."""
    return [(tag, vr, level if tag == _QUERY_RETRIEVE_LEVEL else
             "" if vr == "SQ" else attrs.get(keyword, "")) for tag, vr, keyword in plan]


_INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
_FLOAT_VRS = frozenset({"FL", "FD"})


def text_to_value(text: str, vr: str) -> object:
    """Turn the index's text back into what pydicom expects for ``vr``."""
    if text == "":
        return None
    if vr in _INT_VRS or vr in _FLOAT_VRS:
        convert = int if vr in _INT_VRS else float
        try:
            values = [convert(part) for part in text.split("\\")]
        except ValueError:
            return None
        return values[0] if len(values) == 1 else values
    return text


_INSTANCES_UNDER = {
    "PATIENT": "JOIN series r ON r.pk=i.series_pk JOIN study s ON s.pk=r.study_pk "
               "WHERE s.patient_pk=?",
    "STUDY": "JOIN series r ON r.pk=i.series_pk WHERE r.study_pk=?",
    "SERIES": "WHERE i.series_pk=?",
    "IMAGE": "WHERE i.pk=?",
}


def matching_instances(db: IndexConnection, query: Query, case_sensitive_pn: bool = False
                       ) -> list[tuple[str, str, str, str]]:
    """``(SOPInstanceUID, SOPClassUID, TransferSyntaxUID, file name)`` of every instance below
    the entities a C-MOVE/C-GET identifier selects, in the order they were stored."""
    found: list[tuple[str, str, str, str]] = []
    for pk, _attrs in candidates(db, query, case_sensitive_pn, _needed_levels(query)):
        found.extend(db.execute(
            "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.file_name "
            f"FROM instance i {_INSTANCES_UNDER[query.level]} ORDER BY i.received",
            (pk,)).fetchall())
    return found
