"""Quota policy: which studies and instances make room for an incoming instance, or a refusal."""

from __future__ import annotations

import pytest

from pyqrscp.archive.quota import EvictionPlan, plan_eviction
from pyqrscp.config import Quota
from pyqrscp.errors import QuotaExceeded

KB = 1024


def test_room_left_evicts_nothing() -> None:
    plan = plan_eviction(Quota(3, 10 * KB), 1 * KB, "1.2.3", True, 2, ["1.1", "1.2"], [])
    assert plan == EvictionPlan((), ())


def test_new_study_at_the_study_limit_evicts_the_least_recently_stored() -> None:
    plan = plan_eviction(Quota(2, 10 * KB), 1 * KB, "1.9", True, 2, ["1.1", "1.2"], [])
    assert plan.studies == ("1.1",)
    assert plan.instances == ()


def test_existing_study_at_the_study_limit_evicts_no_study() -> None:
    plan = plan_eviction(Quota(2, 10 * KB), 1 * KB, "1.2", False, 2, ["1.1", "1.2"],
                         [("1.2.1", KB)])
    assert plan == EvictionPlan((), ())


def test_over_the_study_limit_evicts_as_many_as_needed_oldest_first() -> None:
    # A config lowered from 4 to 2 studies: one new study must push out three.
    plan = plan_eviction(Quota(2, 10 * KB), 1 * KB, "1.9", True, 4,
                         ["1.1", "1.2", "1.3", "1.4"], [])
    assert plan.studies == ("1.1", "1.2", "1.3")


def test_the_incoming_study_is_never_an_eviction_candidate() -> None:
    # Even if the list handed in (wrongly) names it first.
    plan = plan_eviction(Quota(1, 10 * KB), 1 * KB, "1.9", True, 1, ["1.9", "1.1"], [])
    assert plan.studies == ("1.1",)


def test_no_study_to_evict_refuses() -> None:
    with pytest.raises(QuotaExceeded, match="quota of 1 studies"):
        plan_eviction(Quota(1, 10 * KB), 1 * KB, "1.9", True, 1, ["1.9"], [])


def test_per_study_bytes_evict_the_oldest_instances_until_it_fits() -> None:
    instances = [("1.2.1", 4 * KB), ("1.2.2", 4 * KB), ("1.2.3", 1 * KB)]
    plan = plan_eviction(Quota(5, 10 * KB), 5 * KB, "1.2", False, 1, ["1.2"], instances)
    # 9 KB used + 5 KB incoming: dropping 1.2.1 leaves 5+5 = 10 KB, which fits exactly.
    assert plan.instances == ("1.2.1",)
    assert plan.studies == ()


def test_per_study_bytes_may_evict_every_older_instance() -> None:
    instances = [("1.2.1", 3 * KB), ("1.2.2", 3 * KB)]
    plan = plan_eviction(Quota(5, 10 * KB), 10 * KB, "1.2", False, 1, ["1.2"], instances)
    assert plan.instances == ("1.2.1", "1.2.2")


def test_an_instance_exactly_at_the_limit_is_accepted() -> None:
    plan = plan_eviction(Quota(5, 10 * KB), 10 * KB, "1.2", True, 0, [], [])
    assert plan == EvictionPlan()


def test_a_single_instance_over_the_limit_is_refused_and_evicts_nothing() -> None:
    with pytest.raises(QuotaExceeded, match="exceeds the per-study quota"):
        plan_eviction(Quota(5, 10 * KB), 10 * KB + 1, "1.2", False, 1, ["1.2"],
                      [("1.2.1", KB)])


def test_a_replaced_duplicate_is_not_counted() -> None:
    instances = [("1.2.1", 6 * KB), ("1.2.2", 3 * KB)]
    # Re-sending 1.2.1 (6 KB): 3 KB remain + 6 KB incoming fits 10 KB, nothing else goes.
    plan = plan_eviction(Quota(5, 10 * KB), 6 * KB, "1.2", False, 1, ["1.2"], instances,
                         replaced_instance_uid="1.2.1")
    assert plan.instances == ()
    # Without the replacement rule the same sizes would cost the older instance.
    counted = plan_eviction(Quota(5, 10 * KB), 6 * KB, "1.2", False, 1, ["1.2"], instances)
    assert counted.instances == ("1.2.1",)


def test_uids_that_are_prefixes_of_each_other_are_never_confused() -> None:
    # dcmqrscp compares study UIDs by prefix; 1.2.3.5 must not stand for 1.2.3.55.
    plan = plan_eviction(Quota(2, 10 * KB), KB, "1.2.3.5", True, 2,
                         ["1.2.3.55", "1.2.3.555"], [])
    assert plan.studies == ("1.2.3.55",)
    plan = plan_eviction(Quota(2, 10 * KB), KB, "1.2.3.55", True, 2, ["1.2.3.5", "1.2.3.6"], [])
    assert plan.studies == ("1.2.3.5",)
    instances = [("1.2.3.5", 6 * KB), ("1.2.3.55", 3 * KB)]
    plan = plan_eviction(Quota(5, 10 * KB), 6 * KB, "1.2", False, 1, ["1.2"], instances,
                         replaced_instance_uid="1.2.3.55")
    assert plan.instances == ("1.2.3.5",)


def test_study_and_instance_evictions_combine() -> None:
    # A new study arrives with an existing-looking instance list (empty for a new study).
    plan = plan_eviction(Quota(1, 4 * KB), 4 * KB, "1.9", True, 1, ["1.1"], [])
    assert plan == EvictionPlan(("1.1",), ())
