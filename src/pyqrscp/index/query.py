"""C-FIND on the index: identifier rules (PS3.4 C.4.1), candidate rows by SQL, matching in Python.

SQL narrows by the indexed unique keys only; every key is then matched by :mod:`pyqrscp.matching`,
the one home of matching semantics.  No DICOM file is opened to answer a query.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from pyqrscp.dicomfile import element_text
from pyqrscp.errors import InvalidIdentifier
from pyqrscp.index.schema import level_of
from pyqrscp.matching import compile_identifier, is_universal, uid_list

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


def parse_identifier(identifier: Dataset, model: InformationModel, strict: bool = False) -> Query:
    """Check an identifier against PS3.4 C.4.1.2 and split it into keys.

    Raises
    ------
    InvalidIdentifier
        Missing/unknown level, a level the model lacks, a wildcard or list in a unique key
        above the query level, and with ``strict`` (``-XF``/``-XM``) keys below the level or
        missing unique keys above it.
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
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in _NOT_KEYS or element.tag.group == 0x0002:
            continue
        if LEVEL_ORDER.index(key_level(keyword, model)) > depth:
            if strict:
                raise InvalidIdentifier(f"{keyword} is below the {level} level")
            continue
        return_keys.append(keyword)
        if element.VR != "SQ":
            keys.append((keyword, element.VR, element_text(element.value)))
    _check_unique_keys({k: v for k, _, v in keys}, model, level, strict)
    return Query(model, level, tuple(keys), tuple(return_keys))


def _check_unique_keys(values: dict[str, str], model: InformationModel, level: str,
                       strict: bool) -> None:
    for upper in model.levels[:model.levels.index(level)]:
        keyword = UNIQUE_KEY[upper]
        value = values.get(keyword, "")
        if not value:
            if strict:
                raise InvalidIdentifier(f"missing unique key {keyword} above {level} level")
            continue
        if "*" in value or "?" in value or "\\" in value:
            raise InvalidIdentifier(f"{keyword} must be a single value above the {level} level")


# Columns: patient/study/series/instance attrs, the row's pk, then the patient/study/series pks
# (computed keys of a higher level describe that level's entity).
_SELECT = {
    "PATIENT": ("SELECT p.attrs, NULL, NULL, NULL, p.pk, p.pk, NULL, NULL FROM patient p",
                "p.patient_id"),
    "STUDY": (("SELECT p.attrs, s.attrs, NULL, NULL, s.pk, p.pk, s.pk, NULL FROM study s "
               "JOIN patient p ON p.pk=s.patient_pk"), "s.study_instance_uid"),
    "SERIES": (("SELECT p.attrs, s.attrs, r.attrs, NULL, r.pk, p.pk, s.pk, r.pk FROM series r "
                "JOIN study s ON s.pk=r.study_pk JOIN patient p ON p.pk=s.patient_pk"),
               "r.series_instance_uid"),
    "IMAGE": (("SELECT p.attrs, s.attrs, r.attrs, i.attrs, i.pk, p.pk, s.pk, r.pk "
               "FROM instance i JOIN series r ON r.pk=i.series_pk "
               "JOIN study s ON s.pk=r.study_pk JOIN patient p ON p.pk=s.patient_pk"),
              "i.sop_instance_uid"),
}
_UID_COLUMNS = {"PatientID": "p.patient_id", "StudyInstanceUID": "s.study_instance_uid",
                "SeriesInstanceUID": "r.series_instance_uid", "SOPInstanceUID": "i.sop_instance_uid"}


def candidate_sql(query: Query) -> tuple[str, list[str]]:
    """SQL for the rows at the query level, narrowed by exact/list unique keys only."""
    sql, _ = _SELECT[query.level]
    depth = LEVEL_ORDER.index(query.level)
    where: list[str] = []
    args: list[str] = []
    for keyword, _vr, value in query.keys:
        column = _UID_COLUMNS.get(keyword)
        if column is None or is_universal(value) or LEVEL_ORDER.index(
                UNIQUE_LEVEL[keyword]) > depth or "*" in value or "?" in value:
            continue
        values = uid_list(value) if keyword != "PatientID" else (value.strip(),)
        where.append(f"{column} IN ({', '.join('?' * len(values))})")
        args.extend(values)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, args


UNIQUE_LEVEL = {keyword: level for level, keyword in UNIQUE_KEY.items()}


def run_query(db: sqlite3.Connection, query: Query, case_sensitive_pn: bool = False
              ) -> Iterator[dict[str, str]]:
    """Yield the attributes of every matching entity at the query level (one per entity)."""
    matcher = compile_identifier(query.keys, case_sensitive_pn=case_sensitive_pn)
    computed = [k for k in query.return_keys if k in COMPUTED]
    sql, args = candidate_sql(query)
    for row in db.execute(sql, args).fetchall():
        attrs: dict[str, str] = {}
        for blob in row[:4]:
            if blob is not None:
                attrs.update(json.loads(blob))
        for keyword in computed:
            owner_pk = row[5 + LEVEL_ORDER.index(COMPUTED[keyword])]
            attrs[keyword] = computed_value(db, keyword, int(owner_pk))
        if matcher(attrs):
            yield attrs


_COUNT_SQL = {
    "NumberOfPatientRelatedStudies": "SELECT COUNT(*) FROM study WHERE patient_pk=?",
    "NumberOfPatientRelatedSeries": "SELECT COUNT(*) FROM series r JOIN study s ON "
                                    "s.pk=r.study_pk WHERE s.patient_pk=?",
    "NumberOfPatientRelatedInstances": "SELECT COUNT(*) FROM instance i JOIN series r ON "
                                       "r.pk=i.series_pk JOIN study s ON s.pk=r.study_pk "
                                       "WHERE s.patient_pk=?",
    "NumberOfStudyRelatedSeries": "SELECT COUNT(*) FROM series WHERE study_pk=?",
    "NumberOfStudyRelatedInstances": "SELECT COUNT(*) FROM instance i JOIN series r ON "
                                     "r.pk=i.series_pk WHERE r.study_pk=?",
    "NumberOfSeriesRelatedInstances": "SELECT COUNT(*) FROM instance WHERE series_pk=?",
    "ModalitiesInStudy": "SELECT DISTINCT modality FROM series WHERE study_pk=? "
                         "AND modality != '' ORDER BY modality",
    "SOPClassesInStudy": "SELECT DISTINCT sop_class_uid FROM instance i JOIN series r ON "
                         "r.pk=i.series_pk WHERE r.study_pk=? ORDER BY sop_class_uid",
}


def computed_value(db: sqlite3.Connection, keyword: str, pk: int) -> str:
    """Counts and lists (ModalitiesInStudy...) computed from the index for one entity."""
    rows = db.execute(_COUNT_SQL[keyword], (pk,)).fetchall()
    return "\\".join(str(row[0]) for row in rows)


def response_dataset(attrs: dict[str, str], query: Query) -> Dataset:
    """One C-FIND response: every return key (empty when the index lacks it) plus the level."""
    response = Dataset()
    for keyword in query.return_keys:
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        vr = dictionary_VR(tag)
        if vr == "SQ":
            response.add_new(tag, vr, [])
            continue
        response.add_new(tag, vr, text_to_value(attrs.get(keyword, ""), vr))
    response.QueryRetrieveLevel = query.level
    return response


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


def matching_instances(db: sqlite3.Connection, query: Query, case_sensitive_pn: bool = False
                       ) -> list[tuple[str, str, str, str]]:
    """``(SOPInstanceUID, SOPClassUID, TransferSyntaxUID, file name)`` of every instance below
    the entities a C-MOVE/C-GET identifier selects, in the order they were stored."""
    sql, args = candidate_sql(query)
    matcher = compile_identifier(query.keys, case_sensitive_pn=case_sensitive_pn)
    found: list[tuple[str, str, str, str]] = []
    for row in db.execute(sql, args).fetchall():
        attrs: dict[str, str] = {}
        for blob in row[:4]:
            if blob is not None:
                attrs.update(json.loads(blob))
        if not matcher(attrs):
            continue
        found.extend(db.execute(
            "SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.file_name "
            f"FROM instance i {_INSTANCES_UNDER[query.level]} ORDER BY i.received",
            (int(row[4]),)).fetchall())
    return found
