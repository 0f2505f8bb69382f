"""The start-up check of pynetdicom's internals (``link/internals.py``): every private name the
bridge uses is looked at, a missing or reshaped one is named, and the server then takes
pynetdicom's public path with one warning line."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from pynetdicom import AE, build_context
from pynetdicom.association import Association

from pyqrscp.link.internals import (
    PUBLIC_ONLY_VARIABLE,
    PUBLIC_PATH_LOSSES,
    REQUIRED,
    Internal,
    _context_copy,
    internals_usable,
    missing_internals,
    public_path_warning,
    sample_owners,
)


def test_this_pynetdicom_has_every_internal_the_bridge_uses() -> None:
    assert missing_internals() == []
    assert internals_usable({}) is True


@pytest.mark.parametrize("internal", [i for i in REQUIRED if i.name != "__dict__"], ids=str)
def test_each_internal_missing_is_named(internal: Internal) -> None:
    """Every name of the table is really checked: on a namespace holding everything a real
    association's object has but that one name, exactly that name is reported."""
    owners = sample_owners()
    owners[internal.owner] = _without(owners[internal.owner], internal.name)
    assert missing_internals(owners) == [f"{internal} (missing)"]


def test_objects_that_cannot_carry_pyqrscp_attributes_are_a_difference() -> None:
    owners = sample_owners()
    owners["DULServiceProvider"] = object()  # no __dict__, as with __slots__
    assert "DULServiceProvider.__dict__ (missing)" in missing_internals(owners)


def test_a_renamed_method_parameter_is_a_difference() -> None:
    class Reshaped(Association):
        def _serve_request(self, message: object, context: int) -> None:
            """pynetdicom with other parameter names."""

    owners = sample_owners(Reshaped(AE(), "acceptor"))
    assert missing_internals(owners) == [
        "Association._serve_request (parameters ('message', 'context'))"]


def test_the_switch_forces_the_public_path_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pyqrscp.link.internals"):
        assert internals_usable({PUBLIC_ONLY_VARIABLE: "1"}) is False
    assert [record.getMessage() for record in caplog.records] == [
        f"{PUBLIC_ONLY_VARIABLE} is set: serving through pynetdicom's public API only; lost: "
        + "; ".join(PUBLIC_PATH_LOSSES)]


def test_the_warning_line_names_what_the_public_path_loses() -> None:
    """Each loss is named in the one line, among them the C-MOVE status that differs."""
    line = public_path_warning()
    assert "\n" not in line
    assert all(loss in line for loss in PUBLIC_PATH_LOSSES)
    assert "held channel" in line and "0xA801, not 0xA702" in line


def test_missing_internals_take_the_public_path_with_one_line_naming_them_and_the_losses(
        caplog: pytest.LogCaptureFixture) -> None:
    class Reshaped(Association):
        def _serve_request(self, message: object, context: int) -> None:
            """pynetdicom with other parameter names."""

    with caplog.at_level(logging.WARNING, logger="pyqrscp.link.internals"):
        assert internals_usable({}, sample_owners(Reshaped(AE(), "acceptor"))) is False
    assert [record.getMessage() for record in caplog.records] == [
        "pynetdicom lacks internals pyqrscp relies on (Association._serve_request (parameters "
        "('message', 'context'))): " + public_path_warning()]


def test_a_copied_context_shares_no_transfer_syntax_list_with_its_original() -> None:
    """Kept negotiation outcomes hand copies of their contexts to every association: what
    one association does to its copy must not reach the kept context or another copy."""
    kept = build_context("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])
    kept.context_id, kept.result = 1, 0
    copied = _context_copy(kept)
    copied.add_transfer_syntax("1.2.840.10008.1.2.1")
    assert kept.transfer_syntax == ["1.2.840.10008.1.2"]
    assert _context_copy(kept).transfer_syntax == ["1.2.840.10008.1.2"]
    assert (copied.abstract_syntax, copied.context_id, copied.result) == (
        "1.2.840.10008.1.1", 1, 0)


def _without(owner: object, name: str) -> SimpleNamespace:
    """A namespace with every attribute of ``owner`` but ``name`` (methods bound or plain, as
    on ``owner``; properties that an empty object cannot compute are left out)."""
    kept = {}
    for attribute in dir(owner):
        if attribute == name or attribute.startswith("__"):
            continue
        try:
            kept[attribute] = getattr(owner, attribute)
        except (AttributeError, IndexError):  # PresentationContext.as_tuple, no syntax yet
            continue
    return SimpleNamespace(**kept)
