"""The index side of storing one instance: quota plan, evictions and the new row.

Runs inside the caller's write transaction (``BEGIN IMMEDIATE``), so the facts the quota plan
reads (an older copy, study counts and sizes) cannot change between planning and applying, and
a refusal rolls back everything the instance changed.  Files are the caller's: this returns the
names of the files whose rows it dropped, to delete once the commit is flushed.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyqrscp.archive.dicomfile import Header
from pyqrscp.archive.index.database import IndexWriter, StoredInstance
from pyqrscp.archive.quota import EvictionPlan, plan_eviction
from pyqrscp.config import Quota

LOGGER = logging.getLogger(__name__)


def index_instance(writer: IndexWriter, quota: Quota, header: Header, file_name: str,
                   size: int) -> tuple[EvictionPlan, list[str], bool]:
    """Apply the quota plan and add the row: ``(plan, files no row names now, replaced)``.

    Raises QuotaExceeded when the instance cannot fit (nothing is changed then).
    """
    study_uid = header.study_instance_uid
    old = writer.instance(header.sop_instance_uid)
    plan = plan_eviction(quota, size, study_uid, *quota_facts(writer, quota, study_uid, size, old),
                         old.sop_instance_uid if old else None)
    unused: list[str] = [old.file_name] if old else []
    for evicted_study in plan.studies:
        unused += writer.delete_study(evicted_study)
    for evicted_uid in plan.instances:
        evicted = writer.instance(evicted_uid)
        if evicted is not None:
            unused.append(evicted.file_name)
            writer.delete_instance(evicted_uid)
    writer.add_instance(header, file_name, size)
    return plan, unused, old is not None


def quota_facts(writer: IndexWriter, quota: Quota, study_uid: str, size: int,
                old: StoredInstance | None
                ) -> tuple[bool, int, list[str], list[tuple[str, int]]]:
    """What :func:`plan_eviction` needs; long lists are read only when a limit is reached,
    so a store into a 20,000-instance area costs what a store into an empty one does.
    A study that the replaced copy ``old`` leaves empty is not counted: it goes with it."""
    study_is_new = not writer.study_exists(study_uid)
    count = writer.study_count()
    if study_is_new and old is not None and writer.only_instance_of_its_study(
            old.sop_instance_uid):
        count -= 1
    studies: list[str] = []
    if study_is_new and count >= quota.max_studies:
        studies = writer.studies_least_recent_first(count - quota.max_studies + 2)
    instances: list[tuple[str, int]] = []
    if writer.study_bytes(study_uid) + size > quota.max_bytes_per_study:
        instances = [(i.sop_instance_uid, i.file_size)
                     for i in writer.study_instances_oldest_first(study_uid)]
    return study_is_new, count, studies, instances


def log_evictions(root: Path, plan: EvictionPlan) -> None:
    """One warning per evicted study or instance (after the commit that evicted them)."""
    for study_uid in plan.studies:
        LOGGER.warning("%s: quota: deleted study %s (least recently stored)", root, study_uid)
    for instance_uid in plan.instances:
        LOGGER.warning("%s: quota: deleted instance %s to fit the per-study quota", root,
                       instance_uid)
