"""link/library.py: pynetdicom's UID checks, remembered, give the verdicts they gave."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydicom import valuerep
from pydicom.uid import UID
from pynetdicom import _config as pynetdicom_config

from pyqrscp.link.library import remember_uid_checks

CASES = ["1.2.840.10008.1.1", "1.2.3.04", "1.2.3.", "", "1" * 65, "abc", UID("1.2.3.4")]


@pytest.fixture
def restored() -> Iterator[None]:
    saved = (dict(pynetdicom_config.VALIDATORS), pynetdicom_config.ENFORCE_UID_CONFORMANCE)
    saved_values = dict(valuerep.VALIDATORS)
    # Start from the libraries' own checks, whatever ran before in this process.
    pynetdicom_config.VALIDATORS["UI"] = getattr(pynetdicom_config.VALIDATORS["UI"],
                                                 "__wrapped__", pynetdicom_config.VALIDATORS["UI"])
    valuerep.VALIDATORS["UI"] = getattr(valuerep.VALIDATORS["UI"], "__wrapped__",
                                        valuerep.VALIDATORS["UI"])
    yield
    valuerep.VALIDATORS.clear()
    valuerep.VALIDATORS.update(saved_values)
    pynetdicom_config.VALIDATORS.clear()
    pynetdicom_config.VALIDATORS.update(saved[0])
    pynetdicom_config.ENFORCE_UID_CONFORMANCE = saved[1]


@pytest.mark.usefixtures("restored")
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
def test_remembered_verdicts_are_pynetdicoms_under_either_conformance_setting() -> None:
    original = pynetdicom_config.VALIDATORS["UI"]
    remember_uid_checks()
    remember_uid_checks()  # idempotent: one layer of memory
    remembered = pynetdicom_config.VALIDATORS["UI"]
    assert remembered is not original and getattr(remembered, "remembers", False)
    for enforced in (False, True, False):
        pynetdicom_config.ENFORCE_UID_CONFORMANCE = enforced
        for value in [*CASES, *CASES, None, b"1.2"]:
            assert remembered(value) == original(value), (value, enforced)


@pytest.mark.usefixtures("restored")
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
def test_pydicoms_remembered_uid_verdicts_are_its_own_and_still_warned() -> None:
    original = valuerep.VALIDATORS["UI"]
    remember_uid_checks()
    remember_uid_checks()
    remembered = valuerep.VALIDATORS["UI"]
    assert remembered is not original and getattr(remembered, "remembers", False)
    for value in [*CASES, *CASES]:
        assert remembered("UI", value) == original("UI", value), value  # type: ignore[no-untyped-call]
    for _ in range(2):
        with pytest.warns(UserWarning, match="Invalid value for VR UI"):
            UID("1.2.3.04")
