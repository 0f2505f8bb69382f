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
from dataclasses import dataclass

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
    found = [condition for keyword, vr, terms in narrowing_terms(keys)
             if (condition := key_condition(keyword, vr, terms, depth, dialect)) is not None]
    driver = min(range(len(found)), key=lambda n: found[n].rank, default=-1)
    where: list[str] = []
    args: list[object] = []
    for index, condition in enumerate(found):
        where.append(condition.sql(drives=index == driver))
        args.extend(condition.args)
    return where, args


@dataclass(frozen=True, slots=True)
class Condition:
    """One key's condition.  A key on value rows reads either as ``pk IN (rows with the value)``
    (it drives: the database starts from the matching value rows) or as ``EXISTS`` (a probe
    of the row's own values through the owner index), so that one query reads the index of
    its most selective key and probes the others, however common their values are."""

    rank: int
    """How selective it looks: 0 a UID, 1 exact values, 2 prefixes or ranges, 3 patterns
    with no literal prefix (scanned), 9 a kept count (never drives)."""
    args: tuple[object, ...]
    plain: str = ""
    table: str = ""
    alias: str = ""
    test: str = ""

    def sql(self, drives: bool) -> str:
        if self.plain:
            return self.plain
        if drives:
            return (f"{self.alias}.pk IN (SELECT owner FROM {self.table} WHERE tag = ? AND "
                    f"({self.test}))")
        return (f"EXISTS (SELECT 1 FROM {self.table} v WHERE v.owner = {self.alias}.pk AND "
                f"v.tag = ? AND ({self.test}))")


def key_condition(keyword: str, vr: str, terms: KeyTerms, depth: int, dialect: Dialect
                  ) -> Condition | None:
    """One key's condition, or ``None`` when the index cannot narrow it."""
    if keyword in COUNT_COLUMNS:
        column = COUNT_COLUMNS[keyword]
        if DEPTHS[_LEVEL_OF_ALIAS[column[0]]] > depth or terms.patterns or terms.ranges:
            return None
        counts = [int(text) for text in terms.exact if text.isdigit() and str(int(text)) == text]
        sql, values = _one_of(column, counts, dialect) if counts else ("1 = 0", [])
        return Condition(9, tuple(values), plain=sql)
    if keyword in UID_COLUMNS:
        level = level_of(keyword)
        if vr != "UI" or DEPTHS[level] > depth:
            return None
        sql, values = _one_of(f"{ALIASES[level]}.{UID_COLUMNS[keyword]}", list(terms.exact),
                              dialect)
        return Condition(0 if keyword != "SOPClassUID" else 9, tuple(values), plain=sql)
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
    if not parts:  # nothing but separators: no value for SQL to compare; the matcher decides
        return None
    rank = (3 if any(not prefix for prefix, _ in terms.patterns) else
            2 if terms.patterns or terms.ranges else 1)
    return Condition(rank, tuple(args), table=f"{level}_value", alias=ALIASES[level],
                     test=" OR ".join(parts))


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
