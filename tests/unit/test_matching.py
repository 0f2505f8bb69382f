"""Tests for pyqrscp.query.matching: PS3.4 C.2.2.2 matching rules, one table per rule."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyqrscp.errors import InvalidIdentifier
from pyqrscp.query import matching
from pyqrscp.query.matching import (
    DATE_TIME_PAIRS,
    MAX_VALUES_PER_KEY,
    compile_element,
    compile_identifier,
    is_universal,
    match_wildcard,
    uid_list,
)


def element_matches(
    vr: str, query: str, stored: str | None, *, case_sensitive_pn: bool = False
) -> bool:
    """Run one key against one stored value; a universal key matches everything."""
    predicate = compile_element("Key", vr, query, case_sensitive_pn=case_sensitive_pn)
    return True if predicate is None else predicate(stored)


@pytest.mark.parametrize(
    ("value", "vr", "expected"),
    [
        (None, None, True),
        ("", None, True),
        ("  ", "CS", True),
        ("*", None, True),
        ("***", "LO", True),
        ("*", "PN", True),
        ("*", "UI", False),
        ("*", "DA", False),
        ("*", "IS", False),
        ("-", "DA", True),
        ("-", "CS", False),
        ("A*", "LO", False),
        ("?", "LO", False),
    ],
)
def test_is_universal(value: str | None, vr: str | None, expected: bool) -> None:
    assert is_universal(value, vr) is expected


@pytest.mark.parametrize(
    ("vr", "value"),
    [
        ("CS", ""),
        ("PN", "*"),
        ("LO", "**"),
        ("DA", ""),
        ("TM", "-"),
        ("SQ", "anything"),
        ("CS", "CT\\"),
        ("UI", ""),
    ],
)
def test_compile_element_returns_none_without_constraint(vr: str, value: str) -> None:
    assert compile_element("Key", vr, value) is None


SINGLE_VALUE_CASES = [
    # exact, case-sensitive for everything but PN
    ("CS", "CT", "CT", True),
    ("CS", "ct", "CT", False),
    ("CS", "CT", "CTX", False),
    ("SH", "abc", "ABC", False),
    # padding is insignificant
    ("CS", "CT", "CT ", True),
    ("CS", "CT", " CT", True),
    ("CS", " CT ", "CT", True),
    ("AE", "STORESCU", "STORESCU  ", True),
    ("UI", "1.2.3", "1.2.3\x00", True),
    ("UI", "1.2.3\x00", "1.2.3", True),
    # absent or empty stored values never satisfy a real constraint
    ("CS", "CT", None, False),
    ("CS", "CT", "", False),
    ("LO", "A*", "", False),
    ("LO", "*A", None, False),
    ("UI", "1.2", None, False),
    ("DA", "20200101-", None, False),
    ("DA", "20200101-", "", False),
    # PN: case-insensitive via Unicode case folding
    ("PN", "müller^hans", "Müller^Hans", True),
    ("PN", "MÜLLER^HANS", "Müller^Hans", True),
    ("PN", "Yamada^Tarou=山田^太郎", "Yamada^Tarou=山田^太郎", True),
    ("PN", "yamada*", "Yamada^Tarou=山田^太郎", True),
    ("PN", "*=山田*", "Yamada^Tarou=山田^太郎", True),
    ("PN", "Müller^Hans", "Mueller^Hans", False),
    # numbers and other non-wildcard VRs compare as text
    ("IS", "12", "12", True),
    ("IS", "12", "120", False),
    ("DS", "1.5", " 1.5 ", True),
    ("US", "512", "512", True),
]


@pytest.mark.parametrize(("vr", "query", "stored", "expected"), SINGLE_VALUE_CASES)
def test_single_value_matching(vr: str, query: str, stored: str | None, expected: bool) -> None:
    assert element_matches(vr, query, stored) is expected


@pytest.mark.parametrize(
    ("query", "stored", "expected"),
    [
        ("Müller^Hans", "Müller^Hans", True),
        ("müller^hans", "Müller^Hans", False),
        ("M?ller*", "Müller^Hans", True),
        ("m?ller*", "Müller^Hans", False),
    ],
)
def test_case_sensitive_pn(query: str, stored: str, expected: bool) -> None:
    assert element_matches("PN", query, stored, case_sensitive_pn=True) is expected


WILDCARD_CASES = [
    ("LO", "M?ller", "Müller", True),
    ("PN", "M?ller^*", "Müller^Hans", True),
    ("PN", "m?LLER*", "Müller^Hans", True),
    ("LO", "M?ller", "Muuller", False),
    ("LO", "AB*", "ABC", True),
    ("LO", "*BC", "ABC", True),
    ("LO", "A*C", "ABBBC", True),
    ("LO", "A*C", "AC", True),
    ("LO", "A*A", "A", False),
    ("LO", "AB*BA", "ABA", False),
    ("LO", "AB*BA", "ABBA", True),
    ("LO", "?", "", False),
    ("LO", "*?", "", False),
    ("LO", "?*", "x", True),
    ("LO", "a*b*c", "aXbYc", True),
    ("LO", "a*b*c", "aXcYb", False),
    ("LO", "a*?b", "ab", False),
    ("LO", "a*?b", "axb", True),
    ("LO", "a*??*b", "axb", False),
    ("LO", "a*??*b", "axyb", True),
    ("LO", "*??*", "x", False),
    ("LO", "a*?x?*b", "ayxzb", True),
    ("LO", "a*?x?*b", "axzb", False),
    ("LO", "*?b*b*c", "xbc", False),
    ("LO", "*?b*b*c", "xbbc", True),
    ("CS", "C*", "CT", True),
    ("CS", "c*", "CT", False),
    ("SH", "x?z", "xyz", True),
    ("LT", "*report*", "see report below", True),
    # SQL and regex metacharacters are plain characters
    ("LO", "a.c", "abc", False),
    ("LO", "a.c", "a.c", True),
    ("LO", "a_c", "abc", False),
    ("LO", "%", "anything", False),
    ("LO", "100%*", "100% sure", True),
    ("LO", "[ab]*", "a", False),
    ("LO", "[ab]*", "[ab]c", True),
    ("LO", "(x)+$*", "(x)+$", True),
    ("LO", "x+", "xx", False),
    ("PN", "^Hans", "^Hans", True),
    ("PN", "^*", "Doe^John", False),
    ("PN", "Doe^*", "Doe^John", True),
    # ``*`` and ``?`` are literal in non-wildcard VRs
    ("UI", "1.2.*", "1.2.3", False),
    ("UI", "1.2.*", "1.2.*", True),
    ("IS", "1?", "12", False),
    ("IS", "1?", "1?", True),
    ("DS", "1*", "1.5", False),
    ("AS", "0?Y", "05Y", False),
]


@pytest.mark.parametrize(("vr", "query", "stored", "expected"), WILDCARD_CASES)
def test_wildcard_matching(vr: str, query: str, stored: str, expected: bool) -> None:
    assert element_matches(vr, query, stored) is expected


@pytest.mark.parametrize(
    ("vr", "query", "stored", "expected"),
    [
        # stored multi-valued: any stored value may match
        ("CS", "MR", "CT\\MR", True),
        ("CS", "US", "CT\\MR", False),
        ("CS", "M*", "CT\\MR", True),
        ("LO", "ID2", "ID1\\ID2 ", True),
        ("PN", "doe^jane", "Doe^John\\Doe^Jane", True),
        # query multi-valued: any query value against any stored value
        ("CS", "CT\\MR", "MR", True),
        ("CS", "CT\\MR", "US\\MR", True),
        ("CS", "CT\\MR", "US", False),
        ("CS", "CT\\M*", "MG", True),
        # list of UID matching
        ("UI", "1.2.3\\1.2.4", "1.2.4", True),
        ("UI", "1.2.3\\1.2.4", "1.2.5", False),
        ("UI", "1.2.3", "1.2.3\\1.2.9", True),
        # LT/ST/UT/UR hold one value: backslash is content
        ("LT", "a\\b", "a\\b", True),
        ("LT", "a\\b", "b", False),
        ("ST", "*\\*", "x\\y", True),
    ],
)
def test_multiple_values(vr: str, query: str, stored: str, expected: bool) -> None:
    assert element_matches(vr, query, stored) is expected


DATE_CASES = [
    ("20200101", "20200101", True),
    ("20200101", "20200102", False),
    ("20200101-20200105", "20200101", True),
    ("20200101-20200105", "20200105", True),
    ("20200101-20200105", "20200106", False),
    ("20200101-20200105", "20191231", False),
    ("-20200105", "19000101", True),
    ("-20200105", "20200106", False),
    ("20200101-", "29991231", True),
    ("20200101-", "20191231", False),
    ("2020.01.01-2020.01.05", "20200103", True),
    ("20200101-20200105", "2020.01.03", True),
    ("2020.01.03", "20200103", True),
    ("20200101-20200105", "2020013", False),
    ("20200101-20200105", "garbage", False),
    ("20200101-20200105", "20201301", False),
    ("20200105-20200101", "20200103", False),
    ("20200101-20200105", "20191231\\20200102", True),
    ("20200101\\20200301", "20200301", True),
]


@pytest.mark.parametrize(("query", "stored", "expected"), DATE_CASES)
def test_date_range_matching(query: str, stored: str, expected: bool) -> None:
    assert element_matches("DA", query, stored) is expected


TIME_CASES = [
    # upper bounds that are partial reach the end of their unit
    ("-1000", "100000", True),
    ("-1000", "100059.999999", True),
    ("-1000", "100100", False),
    ("-10", "105959.999999", True),
    ("-10", "110000", False),
    ("-100000", "100000.999999", True),
    ("-100000", "100001", False),
    ("-100000.5", "100000.599999", True),
    ("-100000.5", "100000.6", False),
    # lower bounds start at the beginning of their unit
    ("1000-", "095959.999999", False),
    ("1000-", "1000", True),
    ("100000.5-", "100000.499999", False),
    ("100000.5-", "100000.5", True),
    ("100000.5-", "100000.50", True),
    # fractions compare numerically, not as strings
    ("100000.1-100000.2", "100000.15", True),
    ("100000.1-100000.2", "100000.3", False),
    # single values stand for their whole unit
    ("1000", "100030", True),
    ("1000", "100100", False),
    ("100000", "100000.5", True),
    # stored partial values are the start of their unit; legacy colons accepted
    ("1000-1030", "10", True),
    ("1001-1030", "10", False),
    ("0900-1100", "10:00:00", True),
    ("0900-1100", "2500", False),
    ("0900-1100", "", False),
    ("0900-1100", "noon", False),
]


@pytest.mark.parametrize(("query", "stored", "expected"), TIME_CASES)
def test_time_range_matching(query: str, stored: str, expected: bool) -> None:
    assert element_matches("TM", query, stored) is expected


DATETIME_CASES = [
    ("20200101-20200102", "20200102235959.999999", True),
    ("20200101-20200102", "20200103", False),
    ("20200101-20200102", "20200101", True),
    ("2020-", "20191231235959", False),
    ("2020-", "2020", True),
    ("-2020", "20201231235959.999999", True),
    ("-2020", "2021", False),
    ("202001011200", "20200101120059", True),
    # timezone offsets are ignored: wall-clock comparison
    ("20200101120000", "20200101120000+0100", True),
    ("20200101120000+0500", "20200101120000-0300", True),
    ("20200101-0500", "20200101183000", True),
    ("20200101000000-0500-20200102", "20200102120000", True),
    ("20200101000000-0500-20200102", "20200103", False),
    ("20200101-20200102+0100", "20200102", True),
    ("20200101-20200102", "2020010", False),
    ("20200101-20200102", "20201301", False),
]


@pytest.mark.parametrize(("query", "stored", "expected"), DATETIME_CASES)
def test_datetime_range_matching(query: str, stored: str, expected: bool) -> None:
    assert element_matches("DT", query, stored) is expected


@pytest.mark.parametrize(
    ("vr", "query"),
    [
        ("DA", "2020"),
        ("DA", "*"),
        ("DA", "20200101-20200105-20200109"),
        ("DA", "2020-01-01"),
        ("TM", "1000.5"),
        ("TM", "10-12-14"),
        ("TM", "2500"),
        ("DT", "2020-01-01"),
        ("DT", "yesterday"),
    ],
)
def test_malformed_range_queries_are_rejected(vr: str, query: str) -> None:
    with pytest.raises(InvalidIdentifier, match="StudyDate"):
        compile_element("StudyDate", vr, query)


@pytest.mark.parametrize(("date_kw", "time_kw"), DATE_TIME_PAIRS)
@pytest.mark.parametrize(
    ("stored_date", "stored_time", "expected"),
    [
        ("20200101", "130000", True),
        ("20200101", "110000", False),
        ("20200103", "030000", True),
        ("20200105", "100059", True),
        ("20200105", "110000", False),
        ("20191231", "130000", False),
        ("20200103", None, True),
        ("20200101", None, False),
        ("20200103", "", True),
        (None, "130000", False),
        ("bad", "130000", False),
    ],
)
def test_combined_date_time_range(
    date_kw: str, time_kw: str, stored_date: str | None, stored_time: str | None, expected: bool
) -> None:
    matcher = compile_identifier(
        [(date_kw, "DA", "20200101-20200105"), (time_kw, "TM", "1200-1000")]
    )
    assert matcher({date_kw: stored_date, time_kw: stored_time}) is expected


@pytest.mark.parametrize(
    ("date_query", "time_query", "stored_date", "stored_time", "expected"),
    [
        ("20200101-", "1200-", "20200101", "1300", True),
        ("20200101-", "1200-", "20200101", "1100", False),
        ("20200101-", "1200-", "20200102", "0100", True),
        ("-20200105", "-1000", "20200105", "1100", False),
        ("-20200105", "-1000", "20200104", "2300", True),
        # not both ranges: matched separately
        ("20200101", "1000-1200", "20200101", "1100", True),
        ("20200101", "1000-1200", "20200101", "1300", False),
        ("20200101-20200102", "1000", "20200102", "1000", True),
        ("20200101-20200102", "1000", "20200102", "1100", False),
        # universal time: only the date constrains
        ("20200101-20200102", "", "20200102", None, True),
    ],
)
def test_combined_date_time_variants(
    date_query: str,
    time_query: str,
    stored_date: str,
    stored_time: str | None,
    expected: bool,
) -> None:
    matcher = compile_identifier([("StudyDate", "DA", date_query), ("StudyTime", "TM", time_query)])
    assert matcher({"StudyDate": stored_date, "StudyTime": stored_time}) is expected


def test_identifier_keys_are_anded() -> None:
    matcher = compile_identifier(
        [("PatientID", "LO", "P1"), ("Modality", "CS", "CT"), ("PatientName", "PN", "")]
    )
    assert matcher({"PatientID": "P1", "Modality": "CT", "PatientName": None})
    assert not matcher({"PatientID": "P1", "Modality": "MR", "PatientName": "x"})
    assert not matcher({"PatientID": "P2", "Modality": "CT"})


def test_identifier_universal_and_sequence_keys_match_absent_attributes() -> None:
    matcher = compile_identifier(
        [("PatientName", "PN", "*"), ("Modality", "CS", ""), ("ReferencedSeriesSequence", "SQ", "")]
    )
    assert matcher({})
    assert compile_identifier([])({"anything": None})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3", ("1.2.3",)),
        ("1.2.3\\1.2.4", ("1.2.3", "1.2.4")),
        ("1.2.3\x00\\ 1.2.4 \\", ("1.2.3", "1.2.4")),
        ("", ()),
    ],
)
def test_uid_list(value: str, expected: tuple[str, ...]) -> None:
    assert uid_list(value) == expected


PATHOLOGICAL = [
    ("A*" * 9 + "B", "A" * 10_000),
    ("*A" * 9 + "*B", "A" * 10_000),
    ("*" + "A?" * 4 + "*B", "A" * 10_000),
    ("*?" * 30_000, "A" * 10_000),
    ("*" + "A" * 5_000 + "B*", "A" * 10_000),
    ("*" + "A?" * 2_500 + "B*", "A" * 10_000),
    ("A" * 60_000, "A" * 10_000),
    ("*A" * 30_000, "A" * 10_000),
    ("?" * 60_000, "A" * 60_000),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("pattern", "text"), PATHOLOGICAL)
def test_wildcard_matching_is_not_exponential(pattern: str, text: str) -> None:
    """A backtracking matcher does not finish these in hours, the linear one takes
    milliseconds: the 30 s limit (pytest-timeout fails the test) is a deadline only such a
    regression reaches, never a loaded machine."""
    predicate = compile_element("PatientName", "PN", pattern)
    assert predicate is not None
    predicate(text)


def reference_match(pattern: str, text: str) -> bool:
    """Independent reference: translate the pattern to an anchored regex."""
    translated = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(translated, text, re.DOTALL) is not None


SMALL_TEXT = st.text(alphabet="ab.%", max_size=8)
SMALL_PATTERN = st.text(alphabet="ab.%*?", max_size=8)


@given(SMALL_PATTERN, SMALL_TEXT)
def test_linear_matcher_agrees_with_regex_reference(pattern: str, text: str) -> None:
    assert match_wildcard(pattern, text) is reference_match(pattern, text)


@given(st.text(min_size=1).filter(lambda s: "*" not in s), st.data())
def test_question_marks_replacing_characters_still_match(text: str, data: st.DataObject) -> None:
    positions = data.draw(st.sets(st.integers(0, len(text) - 1)))
    pattern = "".join("?" if i in positions else c for i, c in enumerate(text))
    assert match_wildcard(pattern, text)


@given(st.text().filter(lambda s: "*" not in s and "?" not in s), st.data())
def test_inserting_stars_keeps_the_match(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=5)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert match_wildcard("*".join(pieces), text)


@given(st.text(alphabet="aAbBäÄ?*^", max_size=8), st.text(alphabet="aAbBäÄ^", max_size=8))
def test_pn_folding_equals_matching_the_casefolded_forms(pattern: str, stored: str) -> None:
    folded_match = stored != "" and match_wildcard(pattern.casefold(), stored.casefold())
    expected = is_universal(pattern, "PN") or folded_match
    assert element_matches("PN", pattern, stored) is expected


# -- cost linear in the identifier ---------------------------------------------------------


@pytest.mark.parametrize("query", ["-" * 4_001, "2020-" * 800 + "-", "-0500" * 800])
def test_a_dt_range_is_split_in_a_bounded_number_of_passes(
        query: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The range hyphen is looked for among the first two only: the text handed to the DT
    parser stays within a fixed multiple of the query's length (slicing at every hyphen is
    quadratic: 800,000 hyphens took 47 s)."""
    parse_dt = matching._parse_dt
    examined: list[int] = []

    def counting_parse_dt(text: str, upper: bool) -> int | None:
        examined.append(len(text))
        return parse_dt(text, upper)

    monkeypatch.setattr(matching, "_parse_dt", counting_parse_dt)
    with pytest.raises(InvalidIdentifier):
        compile_element("AcquisitionDateTime", "DT", query)
    assert sum(examined) <= 8 * len(query)


@pytest.mark.parametrize(("query", "stored", "expected"), [
    ("20200101-0500-20200102+0100", "20200101120000", True),
    ("20200101-0500-20200102+0100", "20200103", False),
    ("-20200102-0500", "20200101", True),
    ("20200101-0500-", "20191231", False),
])
def test_dt_ranges_with_offsets_still_split_at_the_range_hyphen(
        query: str, stored: str, expected: bool) -> None:
    assert element_matches("DT", query, stored) is expected


@pytest.mark.parametrize("vr", ["PN", "LO", "UI", "DA", "CS"])
def test_a_key_over_the_value_bound_is_refused(vr: str) -> None:
    value = {"PN": "A*", "LO": "x?", "UI": "1.2", "DA": "20200101", "CS": "CT"}[vr]
    assert compile_element("Key", vr, "\\".join([value] * MAX_VALUES_PER_KEY)) is not None
    with pytest.raises(InvalidIdentifier, match=f"at most {MAX_VALUES_PER_KEY}"):
        compile_element("Key", vr, "\\".join([value] * (MAX_VALUES_PER_KEY + 1)))


def test_single_value_text_keys_are_not_counted() -> None:
    assert compile_element("Key", "LT", "a\\" * (MAX_VALUES_PER_KEY + 1)) is not None

