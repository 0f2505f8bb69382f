"""C-FIND key matching (PS3.4 C.2.2.2) — the one home of matching semantics.

The index hands us each entity as ``keyword -> text`` (pydicom's rendering: values joined by
``\\``, ``None`` when absent, ``""`` when empty) and the identifier as ``(keyword, VR, text)``.
Everything here is pure: compile a query once, then call the predicate per candidate row.

Decisions beyond the letter of the standard (each covered by a test):

* Wildcards are matched by a linear split-on-``*`` algorithm, never a regex, so hostile patterns
  cannot trigger catastrophic backtracking.
* PN is case-insensitive by default through character-wise Unicode case folding (``?`` still stands
  for exactly one character); ``case_sensitive_pn=True`` gives dcmqrscp's exact behaviour.
* A query value with several values (``CT\\MR``) matches when any query value matches any stored
  value; for UI this is PS3.4's list-of-UID matching.
* DA/TM/DT single values and range bounds that are partial stand for the whole unit they name:
  as an upper bound ``1000`` reaches 10:00:59.999999, as a single value it matches any time in
  that minute. Stored partial values are points at the start of their unit.
* DT timezone offsets are accepted and ignored: values compare as written (wall-clock time).
* A query DA/TM/DT that cannot be parsed raises `InvalidIdentifier`; a stored one never matches.
* A key lists at most `MAX_VALUES_PER_KEY` values (`InvalidIdentifier` past it): every value
  that is not an exact one costs a comparison per candidate entity.  Exact values are looked up
  in a set, and every value is parsed in one pass, so the cost of a key is linear in its length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pyqrscp.errors import InvalidIdentifier

Matcher = Callable[[Mapping[str, str | None]], bool]
ValuePredicate = Callable[[str | None], bool]
#: A closed interval of comparison keys; ``None`` is an open end.
Bounds = tuple[int | None, int | None]

#: Values one matching key may list (``\\``-separated); more are refused with 0xA900.
MAX_VALUES_PER_KEY = 10_000
#: VRs matched as ranges (PS3.4 C.2.2.2.5).
RANGE_VRS = frozenset({"DA", "TM", "DT"})
#: VRs whose ``*``/``?`` are literal characters (PS3.4 C.2.2.2.4 allows wildcards elsewhere only).
NON_WILDCARD_VRS = (
    RANGE_VRS
    | {"UI", "AS", "DS", "IS", "SL", "SS", "UL", "US", "FL", "FD"}
    | {"OB", "OW", "UN", "AT"}
)
#: Text VRs that hold one value, where ``\\`` is content rather than a value separator.
SINGLE_VALUE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UR"})
#: (date keyword, time keyword) pairs matched as one combined datetime range (C.2.2.2.5.1).
DATE_TIME_PAIRS: tuple[tuple[str, str], ...] = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
    ("InstanceCreationDate", "InstanceCreationTime"),
    ("PatientBirthDate", "PatientBirthTime"),
)

_DATE_SHIFT = 1_000_000_000_000  # a TM key has 12 digits: HHMMSSffffff
_DAY_END = 235959999999
_TM_RE = r"(\d\d)(\d\d)?(\d\d)?(?:\.(\d{1,6}))?"
_DT_RE = r"(\d{4})(\d\d)?(\d\d)?(\d\d)?(\d\d)?(\d\d)?(?:\.(\d{1,6}))?(?:[+-]\d{4})?"
# (field limits, lower padding, upper padding) per DT component after the year.
_DT_FIELDS = (
    ((1, 12), "01", "12"),
    ((1, 31), "01", "31"),
    ((0, 23), "00", "23"),
    ((0, 59), "00", "59"),
    ((0, 60), "00", "59"),
)


def is_universal(value: str | None, vr: str | None = None) -> bool:
    """Tell whether a query value constrains nothing (PS3.4 C.2.2.2.3).

    Empty (or all-space) values are universal for every VR. A value made only of ``*`` is
    universal where ``*`` is a wildcard, i.e. unless `vr` names a VR in `NON_WILDCARD_VRS`;
    without `vr` it is treated as universal. A bare ``-`` is an unbounded range for DA/TM/DT.
    """
    if value is None:
        return True
    text = value.strip(" \x00")
    if text == "":
        return True
    if vr in RANGE_VRS and text == "-":
        return True
    return set(text) == {"*"} and (vr is None or vr not in NON_WILDCARD_VRS)


def uid_list(value: str) -> tuple[str, ...]:
    """Split a UI query value into its UIDs (list-of-UID matching, PS3.4 C.2.2.2.2).

    Padding (spaces, NUL) is dropped and empty entries are skipped, so the result can feed an
    SQL ``IN (...)`` pre-filter directly.
    """
    parts = (part.strip(" \x00") for part in value.split("\\"))
    return tuple(part for part in parts if part)


def compile_element(
    keyword: str, vr: str, value: str, *, case_sensitive_pn: bool = False
) -> ValuePredicate | None:
    """Compile one matching key into a predicate over the stored text.

    Returns ``None`` when the key constrains nothing: it is universal, or its VR is SQ (sequence
    matching is done by the caller, which knows the items). The predicate receives the stored
    text (``None`` if absent) and is false for absent or empty stored values.

    Raises
    ------
    InvalidIdentifier
        If a DA, TM or DT value is not a valid single value or range.
    """
    if vr == "SQ" or is_universal(value, vr):
        return None
    check_value_count(keyword, vr, value)
    if vr == "UI":
        return _uid_predicate(uid_list(value))
    if vr in RANGE_VRS:
        bounds = [_query_bounds(keyword, vr, part) for part in value.split("\\")]
        return _range_predicate(vr, bounds)
    parts = [value] if vr in SINGLE_VALUE_TEXT_VRS else value.split("\\")
    if any(is_universal(part, vr) for part in parts):
        return None
    fold = vr == "PN" and not case_sensitive_pn
    wildcards = vr not in NON_WILDCARD_VRS
    queries = [_normalise(part, fold) for part in parts]
    patterns = [q for q in queries if wildcards and ("*" in q or "?" in q)]
    exact = frozenset(queries).difference(patterns)
    return _text_predicate(vr, exact, [_wildcard_matcher(p) for p in patterns], fold)


def check_value_count(keyword: str, vr: str, value: str) -> None:
    """Refuse a key listing more than `MAX_VALUES_PER_KEY` values.

    Raises
    ------
    InvalidIdentifier
        With the count and the bound, for the ErrorComment and the log line.
    """
    if vr in SINGLE_VALUE_TEXT_VRS or vr == "SQ":
        return
    count = value.count("\\") + 1
    if count > MAX_VALUES_PER_KEY:
        raise InvalidIdentifier(f"{keyword} lists {count} values; at most "
                                f"{MAX_VALUES_PER_KEY} are matched per key")


def compile_identifier(
    keys: Sequence[tuple[str, str, str]], *, case_sensitive_pn: bool = False
) -> Matcher:
    """Compile an identifier's matching keys into one predicate over an entity's attributes.

    All keys must match (logical AND). A date key and its paired time key (`DATE_TIME_PAIRS`) that
    are both ranges are matched together as one datetime range (PS3.4 C.2.2.2.5.1): ``StudyDate
    20200101-20200105`` with ``StudyTime 1200-1000`` spans 2020-01-01 12:00 to 2020-01-05 10:00.

    Raises
    ------
    InvalidIdentifier
        If a DA, TM or DT value is malformed.
    """
    by_keyword = {keyword: (vr, value) for keyword, vr, value in keys}
    checks: list[Matcher] = []
    combined: set[str] = set()
    for date_kw, time_kw in DATE_TIME_PAIRS:
        check = _combined_check(by_keyword, date_kw, time_kw)
        if check is not None:
            checks.append(check)
            combined.update((date_kw, time_kw))
    for keyword, vr, value in keys:
        if keyword in combined:
            continue
        predicate = compile_element(keyword, vr, value, case_sensitive_pn=case_sensitive_pn)
        if predicate is not None:
            checks.append(_attribute_check(keyword, predicate))
    return lambda attributes: all(check(attributes) for check in checks)


def match_wildcard(pattern: str, text: str) -> bool:
    """Match `text` against a ``*``/``?`` pattern in O(len(pattern) * len(text)) time.

    The pattern is split on ``*``; the first and last segments are anchored, every middle segment
    is taken at its leftmost possible place (greedy leftmost is optimal for ``*``-separated
    segments). ``?`` matches exactly one character; every other character is literal.
    """
    segments = pattern.split("*")
    if len(segments) == 1:
        return len(text) == len(pattern) and _segment_at(pattern, text, 0)
    first, last = segments[0], segments[-1]
    end = len(text) - len(last)
    if end < len(first) or not _segment_at(first, text, 0) or not _segment_at(last, text, end):
        return False
    position = len(first)
    for segment in segments[1:-1]:
        found = _find_segment(segment, text, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


def _segment_at(segment: str, text: str, start: int) -> bool:
    """Tell whether `segment` (literal apart from ``?``) occurs in `text` at `start`."""
    if start + len(segment) > len(text):
        return False
    if "?" not in segment:
        return text.startswith(segment, start)
    window = text[start : start + len(segment)]
    return all(p == "?" or p == t for p, t in zip(segment, window, strict=True))


def _find_segment(segment: str, text: str, start: int, end: int) -> int:
    """Leftmost index >= `start` where `segment` fits entirely before `end`, or -1."""
    if "?" not in segment:
        return text.find(segment, start, end)
    if set(segment) == {"?"}:
        return start if start + len(segment) <= end else -1
    return _shift_and_find(segment, text, start, end)


def _shift_and_find(segment: str, text: str, start: int, end: int) -> int:
    """Bit-parallel (Shift-And) search for a segment containing ``?``.

    Bit ``j`` of the state says "the last ``j + 1`` characters match the segment's prefix", so each
    text character costs one big-integer shift and AND: O(len(text) * len(segment) / 64) in C,
    which keeps long ``?`` segments fast where a per-position comparison loop would not be.
    """
    positions: dict[str, list[int]] = {}
    for index, char in enumerate(segment):
        positions.setdefault(char, []).append(index)
    wild = _bit_mask(positions.pop("?"), len(segment))
    masks: dict[str, int] = {}
    top = 1 << (len(segment) - 1)
    state = 0
    for index in range(start, end):
        char = text[index]
        mask = masks.get(char)
        if mask is None:
            mask = masks[char] = wild | _bit_mask(positions.get(char, []), len(segment))
        state = ((state << 1) | 1) & mask
        if state & top:
            return index - len(segment) + 1
    return -1


def _bit_mask(indices: Sequence[int], width: int) -> int:
    """An integer with exactly the bits at `indices` set (built in linear time)."""
    bits = bytearray((width + 7) // 8)
    for index in indices:
        bits[index >> 3] |= 1 << (index & 7)
    return int.from_bytes(bits, "little")


def _fold_char(char: str) -> str:
    """Case-fold one character without changing the length, so ``?`` keeps its meaning."""
    for candidate in (char.casefold(), char.lower()):
        if len(candidate) == 1:
            return candidate
    return char


def _normalise(text: str, fold: bool) -> str:
    """Drop insignificant padding and, for case-insensitive PN, fold case."""
    stripped = text.strip(" \x00")
    return "".join(map(_fold_char, stripped)) if fold else stripped


def _wildcard_matcher(pattern: str) -> Callable[[str], bool]:
    """Single-value matching for one normalised query value holding ``*`` or ``?``."""
    return lambda stored: match_wildcard(pattern, stored)


def _text_predicate(
    vr: str, exact: frozenset[str], patterns: Sequence[Callable[[str], bool]], fold: bool
) -> ValuePredicate:
    """Any query value (exact, or a wildcard pattern) matching any non-empty stored value
    satisfies the key; exact values cost one set lookup whatever their number."""

    def predicate(stored: str | None) -> bool:
        if stored is None:
            return False
        values = [stored] if vr in SINGLE_VALUE_TEXT_VRS else stored.split("\\")
        normalised = [v for v in (_normalise(v, fold) for v in values) if v]
        if not exact.isdisjoint(normalised):
            return True
        return any(match(v) for v in normalised for match in patterns)

    return predicate


def _uid_predicate(uids: tuple[str, ...]) -> ValuePredicate:
    """Match a stored UID (or any of a stored UID list) against the requested set."""
    wanted = frozenset(uids)
    return lambda stored: stored is not None and not wanted.isdisjoint(uid_list(stored))


def _attribute_check(keyword: str, predicate: ValuePredicate) -> Matcher:
    """Lift a value predicate to an entity's attribute mapping."""
    return lambda attributes: predicate(attributes.get(keyword))


# --- DA / TM / DT ------------------------------------------------------------------------------


def _parse_da(text: str) -> int | None:
    """``YYYYMMDD`` (or legacy ``YYYY.MM.DD``) as an integer key, or ``None`` if invalid."""
    text = text.strip(" \x00")
    if len(text) == 10 and text[4] == "." and text[7] == ".":
        text = text.replace(".", "")
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        return None
    if not (1 <= int(text[4:6]) <= 12 and 1 <= int(text[6:8]) <= 31):
        return None
    return int(text)


def _parse_tm(text: str, upper: bool) -> int | None:
    """A TM value as an ``HHMMSSffffff`` integer key, or ``None`` if invalid.

    Missing minutes, seconds and fraction digits pad to the start of the unit, or to its end when
    `upper` is true (``10`` as an upper bound is 10:59:59.999999). Legacy ``HH:MM:SS`` is accepted.
    """
    match = re.fullmatch(_TM_RE, text.strip(" \x00").replace(":", ""), re.ASCII)
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    if seconds is None and fraction is not None:
        return None
    fill = "59" if upper else "00"
    minutes, seconds = minutes or fill, seconds or fill
    if int(hours) > 23 or int(minutes) > 59 or int(seconds) > 60:
        return None
    fraction = (fraction or "").ljust(6, "9" if upper else "0")
    return int(hours + minutes + seconds + fraction)


def _parse_dt(text: str, upper: bool) -> int | None:
    """A DT value as a ``YYYYMMDDHHMMSSffffff`` integer key, or ``None`` if invalid.

    Partial values pad like `_parse_tm`; a UTC offset suffix is accepted and ignored.
    """
    match = re.fullmatch(_DT_RE, text.strip(" \x00"), re.ASCII)
    if match is None:
        return None
    year, *fields, fraction = match.groups()
    digits = year
    for field, ((low, high), low_pad, high_pad) in zip(fields, _DT_FIELDS, strict=True):
        if field is not None and not low <= int(field) <= high:
            return None
        digits += field or (high_pad if upper else low_pad)
    if fraction is not None and fields[-1] is None:
        return None
    return int(digits + (fraction or "").ljust(6, "9" if upper else "0"))


def _point(vr: str, text: str, upper: bool) -> int | None:
    """One DA/TM/DT value as a comparison key; DA keys need no padding."""
    if vr == "DA":
        return _parse_da(text)
    if vr == "TM":
        return _parse_tm(text, upper)
    return _parse_dt(text, upper)


def _split_range(vr: str, text: str) -> tuple[str, str] | None:
    """Split ``A-B`` at its range hyphen; ``None`` for a single value.

    DT offsets (``-0500``) also use ``-``, so for DT a value that parses whole is a single value,
    otherwise the first hyphen whose two sides both parse separates the bounds.  A DT holds at
    most one hyphen, so only the first two hyphens can be that one: the split costs a fixed
    number of passes over the text, however many hyphens it holds.
    """
    first = text.find("-")
    if first < 0:
        return None
    if vr != "DT":
        return text[:first], text[first + 1 :]
    if _parse_dt(text, False) is not None:
        return None
    for index in (first, text.find("-", first + 1)):
        if index < 0:
            break
        low, high = text[:index], text[index + 1 :]
        if all(side == "" or _parse_dt(side, False) is not None for side in (low, high)):
            return low, high
    return None


def _query_bounds(keyword: str, vr: str, text: str) -> Bounds:
    """Parse one query DA/TM/DT value into inclusive bounds; raise on malformed input."""
    text = text.strip(" \x00")
    sides = _split_range(vr, text)
    low_text, high_text = sides if sides is not None else (text, text)
    low = _point(vr, low_text, False) if low_text else None
    high = _point(vr, high_text, True) if high_text else None
    invalid = (low_text and low is None) or (high_text and high is None)
    if invalid or (low is None and high is None):
        raise InvalidIdentifier(f"{keyword}: invalid {vr} value or range {text!r}")
    return low, high


def _within(key: int, bounds: Bounds) -> bool:
    """Tell whether `key` lies in the closed interval `bounds`."""
    low, high = bounds
    return (low is None or low <= key) and (high is None or key <= high)


def _range_predicate(vr: str, bounds: Sequence[Bounds]) -> ValuePredicate:
    """Match when any stored DA/TM/DT value lies within any of the query ranges."""

    def predicate(stored: str | None) -> bool:
        if stored is None:
            return False
        keys = [_point(vr, part, False) for part in stored.split("\\")]
        return any(key is not None and _within(key, b) for key in keys for b in bounds)

    return predicate


def _combined_check(
    by_keyword: Mapping[str, tuple[str, str]], date_kw: str, time_kw: str
) -> Matcher | None:
    """Build the combined datetime range check for a DA/TM pair, if both keys are ranges."""
    date_key, time_key = by_keyword.get(date_kw), by_keyword.get(time_kw)
    if date_key is None or time_key is None:
        return None
    date_text, time_text = date_key[1].strip(), time_key[1].strip()
    if is_universal(date_text, "DA") or is_universal(time_text, "TM"):
        return None
    if "-" not in date_text or "-" not in time_text:
        return None
    date_low, date_high = _query_bounds(date_kw, "DA", date_text)
    time_low, time_high = _query_bounds(time_kw, "TM", time_text)
    start = 0 if time_low is None else time_low
    end = _DAY_END if time_high is None else time_high
    bounds: Bounds = (
        None if date_low is None else _datetime_key(date_low, start),
        None if date_high is None else _datetime_key(date_high, end),
    )
    return lambda attributes: _combined_match(
        attributes.get(date_kw), attributes.get(time_kw), bounds
    )


def _datetime_key(date: int, time: int) -> int:
    """Join a DA key and a TM key into one key laid out like a DT key."""
    return date * _DATE_SHIFT + time


def _combined_match(stored_date: str | None, stored_time: str | None, bounds: Bounds) -> bool:
    """Match a stored date/time pair against a combined datetime range.

    Without a usable stored time, the entity matches only if its whole day lies within the
    range, so an unknown time never produces a false match.
    """
    date = _parse_da(stored_date) if stored_date else None
    if date is None:
        return False
    time = _parse_tm(stored_time, False) if stored_time else None
    if time is not None:
        return _within(_datetime_key(date, time), bounds)
    return _within(_datetime_key(date, 0), bounds) and _within(
        _datetime_key(date, _DAY_END), bounds
    )


# --- comparison forms: what an index may compare in SQL ---------------------------------------

#: Width of the digit keys DA/TM/DT values are compared as (text order = time order).
_KEY_WIDTH = {"DA": 8, "TM": 12, "DT": 20}
#: Wildcard or list patterns past this many per key are left to the matcher alone.
MAX_SQL_PATTERNS = 32
#: Longest LIKE pattern, and most ``*`` in one, an index is asked to match.
MAX_LIKE_LENGTH = 256
MAX_LIKE_STARS = 4
#: Escape character of the LIKE patterns of :class:`KeyTerms`.
LIKE_ESCAPE = "!"


@dataclass(frozen=True, slots=True)
class KeyTerms:
    """One matching key as comparisons an index can run on :func:`index_values` forms.

    A stored entity passes when any of its values equals one of ``exact``, or lies in one of
    ``ranges`` (inclusive; ``None`` is open), or starts with a pattern's literal prefix and is
    ``LIKE`` its pattern when it has one (``%``/``_`` for ``*``/``?``, escaped with
    `LIKE_ESCAPE`).  These are a necessary condition of the key: every entity the matcher
    accepts passes (PN values are case-folded on both sides whatever the case rule), so an
    index filters with them and the matcher decides.
    """

    exact: tuple[str, ...] = ()
    patterns: tuple[tuple[str, str | None], ...] = ()
    ranges: tuple[tuple[str | None, str | None], ...] = ()


def index_values(vr: str, text: str) -> list[str]:
    """The comparison forms of a stored value, one per value: what :class:`KeyTerms` compare.

    Padding is stripped, PN case-folded, DA/TM/DT turned into fixed-width digit keys (values
    that do not parse are left out: they never match), UIDs split as list-of-UID matching does.
    An empty result means the value matches no non-universal key.
    """
    if vr == "UI":
        return list(dict.fromkeys(uid_list(text)))
    if vr in RANGE_VRS:
        points = (_point(vr, part, False) for part in text.split("\\"))
        return list(dict.fromkeys(str(p).zfill(_KEY_WIDTH[vr]) for p in points
                                  if p is not None))
    parts = [text] if vr in SINGLE_VALUE_TEXT_VRS else text.split("\\")
    normalised = (_normalise(part, vr == "PN") for part in parts)
    return list(dict.fromkeys(value for value in normalised if value))


def key_terms(keyword: str, vr: str, value: str) -> KeyTerms | None:
    """The index comparisons of one matching key, or ``None`` when they cannot narrow it
    (universal, a sequence, too many patterns): then only the matcher decides.

    Raises
    ------
    InvalidIdentifier
        If a DA, TM or DT value is malformed (as :func:`compile_element` does).
    """
    if vr == "SQ" or is_universal(value, vr):
        return None
    if vr == "UI":
        return KeyTerms(exact=uid_list(value))
    if vr in RANGE_VRS:
        width = _KEY_WIDTH[vr]
        bounds = [_query_bounds(keyword, vr, part) for part in value.split("\\")]
        return KeyTerms(ranges=tuple(
            (None if low is None else str(low).zfill(width),
             None if high is None else str(high).zfill(width)) for low, high in bounds))
    parts = [value] if vr in SINGLE_VALUE_TEXT_VRS else value.split("\\")
    if any(is_universal(part, vr) for part in parts):
        return None
    queries = [_normalise(part, vr == "PN") for part in parts]
    wildcards = vr not in NON_WILDCARD_VRS
    patterns = [q for q in queries if wildcards and ("*" in q or "?" in q)]
    if len(patterns) > MAX_SQL_PATTERNS:
        return None
    exact = tuple(dict.fromkeys(q for q in queries if q not in patterns))
    terms = tuple((_literal_prefix(p), _like_pattern(p)) for p in patterns)
    if any(not prefix and like is None for prefix, like in terms):
        return None
    return KeyTerms(exact=exact, patterns=terms)


def narrowing_terms(keys: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, KeyTerms]]:
    """``(keyword, VR, terms)`` for every key an index can narrow by, as
    :func:`compile_identifier` would match them: of a combined date/time range pair only the
    date's own range (a necessary condition of the combined range) is kept."""
    by_keyword = {keyword: (vr, value) for keyword, vr, value in keys}
    combined_times = {time_kw for date_kw, time_kw in DATE_TIME_PAIRS
                      if _combined_check(by_keyword, date_kw, time_kw) is not None}
    found: list[tuple[str, str, KeyTerms]] = []
    for keyword, vr, value in keys:
        terms = None if keyword in combined_times else key_terms(keyword, vr, value)
        if terms is not None:
            found.append((keyword, vr, terms))
    return found


def _literal_prefix(pattern: str) -> str:
    """The characters before the first wildcard: every match starts with them."""
    cut = min((i for i in (pattern.find("*"), pattern.find("?")) if i >= 0), default=len(pattern))
    return pattern[:cut]


def _like_pattern(pattern: str) -> str | None:
    """A ``*``/``?`` pattern as an SQL LIKE pattern escaped with `LIKE_ESCAPE`, or ``None``
    when it is too long or has too many ``*`` for a database to match in good time (SQLite's
    LIKE backtracks at each ``%``): the matcher, which never backtracks, alone decides it."""
    pattern = re.sub(r"\*+", "*", pattern)
    if len(pattern) > MAX_LIKE_LENGTH or pattern.count("*") > MAX_LIKE_STARS:
        return None
    out: list[str] = []
    for char in pattern:
        if char in (LIKE_ESCAPE, "%", "_"):
            out.append(LIKE_ESCAPE + char)
        else:
            out.append({"*": "%", "?": "_"}.get(char, char))
    return "".join(out)


def prefix_successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (code point
    order, which is UTF-8 byte order), or ``None`` when there is none."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            following = last + 1 if last + 1 != 0xD800 else 0xE000
            return "".join(chars) + chr(following)
    return None
