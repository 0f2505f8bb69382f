"""A query's matching keys as SQL conditions on the index (one description, every dialect).

Each key that the index holds becomes one condition on the entity's alias (``p``, ``s``, ``r``,
``i`` for patient, study, series, instance):

* UIDs with a column of their own (StudyInstanceUID...): ``s.study_instance_uid = ?``, or one
  list parameter through :meth:`Dialect.value_list`;
* Number-of-Related keys: the count kept on the row (``s.n_instances = ?``);
* every other key with value rows (:mod:`pyqrscp.archive.index.schema`):
  ``s.pk IN (SELECT owner FROM study_value WHERE tag = ? AND (...))`` with exact values,
  literal-prefix ranges beside a ``LIKE``, and DA/TM/DT key ranges, all on the forms of
  :func:`pyqrscp.query.matching.index_values`.

Conditions are necessary, not sufficient (:class:`pyqrscp.query.matching.KeyTerms`): the caller runs
the matcher on every row they let through.  A key without a condition here (no column, a VR
other than the dictionary's, more patterns than `MAX_SQL_PATTERNS`) is left to the matcher.
Placeholders are ``?`` throughout; literals never appear in the SQL text.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyqrscp.archive.index.dialect import Dialect
from pyqrscp.archive.index.schema import UID_COLUMNS, level_of, value_level, value_tag, value_vr
from pyqrscp.query.matching import LIKE_ESCAPE, KeyTerms, narrowing_terms, prefix_successor

ALIASES = {"patient": "p", "study": "s", "series": "r", "instance": "i"}
DEPTHS = {"patient": 0, "study": 1, "series": 2, "instance": 3}
COUNT_COLUMNS = {
    "NumberOfPatientRelatedStudies": "p.n_studies", "NumberOfPatientRelatedSeries": "p.n_series",
    "NumberOfPatientRelatedInstances": "p.n_instances",
    "NumberOfStudyRelatedSeries": "s.n_series", "NumberOfStudyRelatedInstances": "s.n_instances",
    "NumberOfSeriesRelatedInstances": "r.n_instances",
}
"""The columns holding the Number-of-Related keys, in the order queries select them."""


def conditions(keys: Sequence[tuple[str, str, str]], depth: int, dialect: Dialect
               ) -> tuple[list[str], list[object]]:
    """The SQL conditions (to be joined with AND) and their parameters for the keys of an
    identifier whose query level has ``depth`` (0 patient ... 3 instance).

    Raises
    ------
    InvalidIdentifier
        If a DA, TM or DT value is malformed.
    """
    where: list[str] = []
    args: list[object] = []
    for keyword, vr, terms in narrowing_terms(keys):
        found = key_condition(keyword, vr, terms, depth, dialect)
        if found is not None:
            where.append(found[0])
            args.extend(found[1])
    return where, args


def key_condition(keyword: str, vr: str, terms: KeyTerms, depth: int, dialect: Dialect
                  ) -> tuple[str, list[object]] | None:
    """One key's condition and parameters, or ``None`` when the index cannot narrow it."""
    if keyword in COUNT_COLUMNS:
        column = COUNT_COLUMNS[keyword]
        if DEPTHS[_LEVEL_OF_ALIAS[column[0]]] > depth or terms.patterns or terms.ranges:
            return None
        counts = [int(text) for text in terms.exact if text.isdigit() and str(int(text)) == text]
        return _one_of(column, counts, dialect) if counts else ("1 = 0", [])
    if keyword in UID_COLUMNS:
        level = level_of(keyword)
        if vr != "UI" or DEPTHS[level] > depth:
            return None
        return _one_of(f"{ALIASES[level]}.{UID_COLUMNS[keyword]}", list(terms.exact), dialect)
    level = value_level(keyword)
    if value_vr(keyword) != vr or DEPTHS[level] > depth:
        return None
    parts: list[str] = []
    args: list[object] = [value_tag(keyword)]
    if terms.exact:
        sql, values = _one_of("value", list(terms.exact), dialect)
        parts.append(sql)
        args.extend(values)
    for prefix, pattern in terms.patterns:
        part, values = _pattern(prefix, pattern)
        parts.append(part)
        args.extend(values)
    for low, high in terms.ranges:
        bounds = [(">=", low), ("<=", high)]
        parts.append("(" + " AND ".join(f"value {op} ?" for op, v in bounds if v is not None)
                     + ")")
        args.extend(v for _, v in bounds if v is not None)
    sql = (f"{ALIASES[level]}.pk IN (SELECT owner FROM {level}_value WHERE tag = ? AND "
           f"({' OR '.join(parts)}))")
    return sql, args


_LEVEL_OF_ALIAS = {alias: level for level, alias in ALIASES.items()}


def _one_of(column: str, values: Sequence[object], dialect: Dialect
            ) -> tuple[str, list[object]]:
    if len(values) == 1:
        return f"{column} = ?", [values[0]]
    return dialect.value_list(column), [dialect.list_param(values)]


def _pattern(prefix: str, pattern: str | None) -> tuple[str, list[object]]:
    """A wildcard value: the range of its literal prefix (an index range), then LIKE."""
    parts: list[str] = []
    args: list[object] = []
    if prefix:
        parts.append("value >= ?")
        args.append(prefix)
        successor = prefix_successor(prefix)
        if successor is not None:
            parts.append("value < ?")
            args.append(successor)
    if pattern is not None:
        parts.append(f"value LIKE ? ESCAPE '{LIKE_ESCAPE}'")
        args.append(pattern)
    return "(" + " AND ".join(parts) + ")", args
