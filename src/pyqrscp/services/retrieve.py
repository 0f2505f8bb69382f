"""What C-MOVE and C-GET share: the identifier → instances step and reading stored files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from pyqrscp.index.query import matching_instances, parse_identifier
from pyqrscp.services.find import model_of

if TYPE_CHECKING:
    from pyqrscp.services import Services

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Selection:
    """The instances a retrieve will send, as index rows (files are read one at a time)."""

    instances: tuple[tuple[str, str, str, str], ...]

    def presentation_pairs(self) -> set[tuple[str, str]]:
        return {(sop_class, ts) for _, sop_class, ts, _ in self.instances}


def select(services: Services, event: Any, strict: bool) -> Selection:
    """Check the identifier and find every instance below the entities it names."""
    entry = services.entry_for(event)
    query = parse_identifier(event.identifier, model_of(event), strict)
    db = services.area_for(entry).reader()
    try:
        return Selection(tuple(matching_instances(
            db, query, services.options.case_sensitive_pn)))
    finally:
        db.close()


def load(services: Services, event: Any, file_name: str) -> Dataset | None:
    """Read one stored file for a sub-operation; ``None`` (a failed sub-operation) if it is gone."""
    area = services.area_for(services.entry_for(event))
    try:
        return dcmread(area.path_of(file_name))
    except (OSError, ValueError) as error:
        LOGGER.error("cannot read stored file %s: %s", file_name, error)
        return None


FAILED_SUB_OPERATION = "unreadable"
"""Yielded instead of a Dataset: pynetdicom counts it as a failed sub-operation."""
