"""The DICOM JSON model (PS3.18 F.2) of what the index holds: ``keyword -> text`` to JSON.

The index keeps each attribute as pydicom renders it (values joined by ``\\``); this turns such
text back into the JSON value types PS3.18 F.2.3 names per VR.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

_INT_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})
_SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})
_NO_VALUE_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})

JsonObject = dict[str, Any]


def tag_key(keyword: str) -> str | None:
    """The JSON key (eight upper-case hex digits) of a keyword; None when unknown."""
    tag = tag_for_keyword(keyword)
    return None if tag is None else f"{int(tag):08X}"


def vr_of(keyword: str) -> str:
    """The dictionary VR of a keyword (the first of an ambiguous one such as ``US or SS``)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return "UN"
    return str(dictionary_VR(tag)).split(" or ")[0]


def element(keyword: str, text: str | None) -> tuple[str, JsonObject] | None:
    """``(key, {"vr": ..., "Value": [...]})`` of one attribute; None for an unknown keyword.

    An empty or absent value gives an element without ``Value`` (PS3.18 F.2.5); values that do
    not parse as their VR's number type are left out of ``Value`` rather than sent as text.
    """
    key = tag_key(keyword)
    if key is None:
        return None
    vr = vr_of(keyword)
    entry: JsonObject = {"vr": vr}
    if text and vr not in _NO_VALUE_VRS:
        values = [text] if vr in _SINGLE_VALUE_VRS else text.split("\\")
        converted = [_value(vr, value) for value in values]
        if any(value is not None for value in converted):
            entry["Value"] = converted
    return key, entry


def _value(vr: str, text: str) -> Any:
    if vr == "PN":
        return _person_name(text) if text else None
    if vr in _INT_VRS or vr in _FLOAT_VRS:
        stripped = text.strip()
        if not stripped:
            return None
        try:
            number = float(stripped) if vr in _FLOAT_VRS else int(stripped)
        except ValueError:
            return None
        return int(number) if vr == "DS" and number == int(number) and "." not in stripped \
            and "e" not in stripped.lower() else number
    return text or None


def _person_name(text: str) -> JsonObject:
    groups = text.split("=")
    name: JsonObject = {}
    for label, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        if group:
            name[label] = group
    return name


def to_json(attrs: Mapping[str, str], keywords: Iterable[str],
            extra: Mapping[str, JsonObject] | None = None) -> JsonObject:
    """One QIDO result: the named attributes of ``attrs`` (empty when it lacks them), plus
    ``extra`` elements (already in JSON form), ordered by tag as PS3.18 F.2.1 asks."""
    result: JsonObject = dict(extra or {})
    for keyword in keywords:
        found = element(keyword, attrs.get(keyword, ""))
        if found is not None:
            result[found[0]] = found[1]
    return {key: result[key] for key in sorted(result)}


def uri_element(url: str) -> JsonObject:
    """A UR element (RetrieveURL), in JSON form."""
    return {"vr": "UR", "Value": [url]}
