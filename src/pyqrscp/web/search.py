"""QIDO-RS searches (PS3.18 10.6) as identifiers for the index's query entry point.

A search is turned into the identifier a C-FIND would carry (matching keys from the query
parameters, return keys from ``includefield`` and the level's defaults) and answered by the
same :func:`parse_identifier` and :func:`run_query` as C-FIND, so both match alike.  Searches
are relational (PS3.4 C.4.1.3.2): a key of any level above the searched one is matched, as
QIDO-RS's ``/series`` and ``/instances`` without a study need.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from pydicom import config as pydicom_config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from pyqrscp.archive.index.backend import IndexConnection
from pyqrscp.archive.index.query import (
    LEVEL_ORDER,
    STUDY_ROOT,
    key_level,
    parse_identifier,
    run_query,
    text_to_value,
)
from pyqrscp.errors import InvalidIdentifier

STUDY_DEFAULTS = ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
                  "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate",
                  "PatientSex", "StudyID", "StudyInstanceUID", "StudyDescription",
                  "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_DEFAULTS = ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
                   "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
                   "PerformedProcedureStepStartTime", "StudyInstanceUID")
INSTANCE_DEFAULTS = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns",
                     "BitsAllocated", "NumberOfFrames", "SeriesInstanceUID", "StudyInstanceUID")
DEFAULTS = {"STUDY": STUDY_DEFAULTS, "SERIES": SERIES_DEFAULTS, "IMAGE": INSTANCE_DEFAULTS}
_ALL_LEVEL_PROBES = ("PatientName", "StudyDate", "Modality", "SOPClassUID")
"""One key per index level: naming them makes the query decode every level (``all``)."""
_CONTROL = frozenset({"includefield", "limit", "offset", "fuzzymatching"})
MAX_LIMIT = 100_000


class BadSearch(ValueError):
    """A query parameter QIDO-RS cannot take (answered 400 with this text)."""


@dataclass(frozen=True, slots=True)
class Search:
    """One QIDO-RS request: the identifier, paging, and the keywords each result carries."""

    level: str
    identifier: Dataset
    return_all: bool
    limit: int | None
    offset: int


def keyword_of(name: str) -> str:
    """A query parameter's attribute: a keyword, or a tag as eight hex digits."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        keyword = keyword_for_tag(int(name, 16))
        if keyword:
            return str(keyword)
    elif tag_for_keyword(name) is not None:
        return name
    raise BadSearch(f"unknown attribute {name!r} (a keyword or eight hex digits; "
                    "sequence paths are not supported)")


def _add(identifier: Dataset, keyword: str, text: str) -> None:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise BadSearch(f"unknown attribute {keyword!r}")
    vr = str(dictionary_VR(tag)).split(" or ")[0]
    value: object = [] if vr == "SQ" else text_to_value(text, vr)
    identifier[tag] = DataElement(tag, vr, value, validation_mode=pydicom_config.IGNORE)


def build_search(level: str, params: Sequence[tuple[str, str]],
                 path_uids: Mapping[str, str]) -> Search:
    """The identifier of a QIDO-RS request at ``level`` (``STUDY``, ``SERIES``, ``IMAGE``).

    ``path_uids`` are the UIDs the URL names (StudyInstanceUID, SeriesInstanceUID).  A value
    list is written with commas (PS3.18 8.3.4.1) or by repeating the parameter.

    Raises
    ------
    BadSearch
        An unknown attribute, or a limit/offset that is not a number.
    """
    keys: dict[str, list[str]] = {}
    include: list[str] = []
    limit: int | None = None
    offset = 0
    for name, value in params:
        if name == "includefield":
            include += [item.strip() for item in value.split(",") if item.strip()]
        elif name in ("limit", "offset"):
            number = _count(name, value)
            limit, offset = (number, offset) if name == "limit" else (limit, number)
        elif name not in _CONTROL:
            keys.setdefault(keyword_of(name), []).append(value.replace(",", "\\"))
    identifier = Dataset()
    return_all = "all" in include
    wanted = [*DEFAULTS[level], *(keyword_of(i) for i in include if i != "all")]
    if return_all:
        wanted += [k for k in _ALL_LEVEL_PROBES
                   if LEVEL_ORDER.index(key_level(k, STUDY_ROOT)) <= LEVEL_ORDER.index(level)]
    for keyword in wanted:
        _add(identifier, keyword, "")
    for keyword, values in {**keys, **{k: [v] for k, v in path_uids.items()}}.items():
        _add(identifier, keyword, "\\".join(values))
    identifier.QueryRetrieveLevel = level
    return Search(level, identifier, return_all, limit, offset)


def _count(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadSearch(f"{name} must be a whole number, not {value!r}") from None
    if number < 0 or number > MAX_LIMIT * 1000:
        raise BadSearch(f"{name} {number} out of range")
    return number


def run_search(db: IndexConnection, search: Search, case_sensitive_pn: bool = False
               ) -> Iterator[dict[str, str]]:
    """The attributes of each match, after ``offset``, at most ``limit`` of them; C-FIND's own
    entry points (:func:`parse_identifier`, :func:`run_query`) decide what matches.

    Raises
    ------
    InvalidIdentifier
        A key C-FIND would refuse too (a malformed date range, too many values).
    """
    query = parse_identifier(search.identifier, STUDY_ROOT, relational=True)
    matches = run_query(db, query, case_sensitive_pn)
    stop = None if search.limit is None else search.offset + min(search.limit, MAX_LIMIT)
    yield from itertools.islice(matches, search.offset, stop)


def result_keywords(search: Search, attrs: Mapping[str, str]) -> list[str]:
    """The keywords one result carries: the identifier's, or with ``all`` every attribute the
    index holds at the searched level and above."""
    named = [element.keyword for element in search.identifier
             if element.keyword and element.keyword != "QueryRetrieveLevel"]
    if not search.return_all:
        return named
    depth = LEVEL_ORDER.index(search.level)
    held = [k for k in attrs if tag_for_keyword(k) is not None
            and LEVEL_ORDER.index(key_level(k, STUDY_ROOT)) <= depth]
    return list(dict.fromkeys([*named, *held]))


__all__ = ["BadSearch", "InvalidIdentifier", "Search", "build_search", "result_keywords",
           "run_search"]
