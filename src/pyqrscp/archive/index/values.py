"""The value rows of an entity: its attributes in comparison form, one row per value."""

from __future__ import annotations

from collections.abc import Mapping

from pyqrscp.archive.index.schema import value_level, value_tag, value_vr
from pyqrscp.query.matching import index_values


def value_rows(level: str, owner: int, old: Mapping[str, str], new: Mapping[str, str]
               ) -> tuple[list[tuple[int, int]], list[tuple[int, str, int]]]:
    """``(deletions, insertions)`` of value rows that take an entity's attributes from
    ``old`` to ``new``: ``(owner, tag)`` to delete, ``(tag, value, owner)`` to insert."""
    deletions: list[tuple[int, int]] = []
    insertions: list[tuple[int, str, int]] = []
    for keyword in new.keys() | old.keys():
        vr = value_vr(keyword)
        if vr is None or value_level(keyword) != level or old.get(keyword) == new.get(keyword):
            continue
        tag = value_tag(keyword)
        if keyword in old:
            deletions.append((owner, tag))
        text = new.get(keyword)
        if text:
            insertions.extend((tag, value, owner) for value in index_values(vr, text))
    return deletions, insertions
