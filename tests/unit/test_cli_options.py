"""CLI parsing and precedence: defaults < config file < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyqrscp.cli.command import parse_flags, resolve_options
from pyqrscp.config import Access, parse_config
from pyqrscp.config.options import Options
from pyqrscp.dimse.contexts import STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, contexts_for

CT = "1.2.840.10008.5.1.4.1.1.2"
CONFIG = parse_config("NetworkTCPPort = 104\nMaxPDUSize = 32768\nMaxAssociations = 4\n"
                      'SpecificCharacterSet = "ISO_IR 192", override, discard\n'
                      "AETable BEGIN\nA /tmp/a RW (9, 1gb) ANY\nAETable END\n",
                      Path("/tmp/x/dcmqrscp.cfg"))


def test_config_values_apply_when_no_flag() -> None:
    options = resolve_options(parse_flags([]), CONFIG)
    assert (options.port, options.max_pdu, options.max_associations) == (104, 32768, 4)
    assert options.convert_to_charset == "ISO_IR 192"
    assert options.use_request_charset is False
    assert options.discard_illegal is True


def test_flags_override_config() -> None:
    options = resolve_options(parse_flags(["-pdu", "65536", "+Cr", "11112"]), CONFIG)
    assert (options.port, options.max_pdu) == (11112, 65536)
    assert options.use_request_charset is True


@pytest.mark.parametrize(("argv", "field", "value"), [
    (["-ZA"], "move_restriction", "aetitle"), (["-ZV"], "move_restriction", "vendor"),
    (["+xi"], "prefer_transfer_syntax", "implicit"), (["-xb"], "propose_transfer_syntax", "big"),
    (["-QS"], "no_study_root", True), (["-XF"], "check_find", True),
    (["-ll", "debug"], "log_level", "debug"), (["-d"], "log_level", "debug"),
    (["-q"], "log_level", "fatal"), (["-ta", "5"], "acse_timeout", 5),
])
def test_dcmqrscp_spellings(argv: list[str], field: str, value: object) -> None:
    assert getattr(resolve_options(parse_flags(argv), CONFIG), field) == value


def test_unimplemented_options_are_reported() -> None:
    assert parse_flags(["+ac", "-F"])["not_implemented"] == ("+ac", "-F")
    assert parse_flags(["-xe"])["not_implemented"] == ()


def _classes(access: Access, options: Options, get_roles: frozenset[str] = frozenset(),
             proposed: frozenset[str] | None = None) -> dict[str, tuple[object, object]]:
    return {str(cx.abstract_syntax): (cx.scu_role, cx.scp_role)
            for cx in contexts_for(access, options, get_roles, proposed=proposed)}


def test_read_only_area_accepts_storage_only_for_c_get() -> None:
    assert CT not in _classes(Access.R, Options())
    assert _classes(Access.R, Options(), frozenset({CT}))[CT] == (False, True)
    assert STUDY_ROOT_FIND in _classes(Access.R, Options())


def test_write_only_area_refuses_query_retrieve() -> None:
    classes = _classes(Access.W, Options())
    assert CT in classes
    assert STUDY_ROOT_FIND not in classes and STUDY_ROOT_MOVE not in classes


def test_require_find_and_disable_get() -> None:
    options = Options(require_find=True)
    assert STUDY_ROOT_MOVE not in _classes(
        Access.RW, options, proposed=frozenset({STUDY_ROOT_MOVE})
    )
    assert STUDY_ROOT_MOVE in _classes(Access.RW, options,
                                       proposed=frozenset({STUDY_ROOT_FIND, STUDY_ROOT_MOVE}))
    assert STUDY_ROOT_GET not in _classes(Access.RW, Options(disable_get=True))


def test_only_proposed_abstract_syntaxes_are_built() -> None:
    classes = _classes(Access.RW, Options(), proposed=frozenset({CT, "1.2.840.10008.1.1"}))
    assert set(classes) == {CT, "1.2.840.10008.1.1"}


def test_every_option_has_a_help_group() -> None:
    """A new option not placed in the man-page grouping still gets a group (no crash)."""
    from pyqrscp.cli.command import _GROUPS, _group_of
    from pyqrscp.config.options import OPTION_TABLE

    titles = {title for title, _ in _GROUPS}
    assert all(_group_of(spec.dest) in titles for spec in OPTION_TABLE)
    assert _group_of("an_option_nobody_placed") == "general options"
