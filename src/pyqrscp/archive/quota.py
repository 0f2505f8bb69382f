"""dcmqrscp's quota rules as one pure function: what to evict for an incoming instance, or refuse.

Unlike dcmqrscp there is no clamp (500 studies, 1 GiB per study) and studies are matched by
exact UID, never by prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyqrscp.config import Quota
from pyqrscp.errors import QuotaExceeded


@dataclass(frozen=True, slots=True)
class EvictionPlan:
    """Studies (by UID) and instances (by SOP Instance UID) to delete before storing."""

    studies: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()


def plan_eviction(
    quota: Quota,
    incoming_size: int,
    study_uid: str,
    study_is_new: bool,
    study_count: int,
    studies_least_recent_first: Sequence[str],
    study_instances_oldest_first: Sequence[tuple[str, int]],
    replaced_instance_uid: str | None = None,
) -> EvictionPlan:
    """Decide the evictions that make room for one instance of ``incoming_size`` bytes.

    ``study_instances_oldest_first`` lists ``(SOPInstanceUID, size)`` of the incoming study;
    a copy being replaced (same SOP Instance UID) is not counted, it goes anyway.

    Raises
    ------
    QuotaExceeded
        When the instance alone is larger than ``maxBytesPerStudy``, or no study can be evicted.
    """
    if incoming_size > quota.max_bytes_per_study:
        raise QuotaExceeded(f"instance of {incoming_size} bytes exceeds the per-study quota of "
                            f"{quota.max_bytes_per_study} bytes")
    studies: list[str] = []
    if study_is_new and study_count >= quota.max_studies:
        candidates = [uid for uid in studies_least_recent_first if uid != study_uid]
        excess = study_count - quota.max_studies + 1
        if excess > len(candidates):
            raise QuotaExceeded(f"quota of {quota.max_studies} studies reached")
        studies = candidates[:excess]
    remaining = [(uid, size) for uid, size in study_instances_oldest_first
                 if uid != replaced_instance_uid]
    used = sum(size for _, size in remaining)
    instances: list[str] = []
    for uid, size in remaining:
        if used + incoming_size <= quota.max_bytes_per_study:
            break
        instances.append(uid)
        used -= size
    return EvictionPlan(tuple(studies), tuple(instances))
