"""C-FIND response identifiers encoded without building a pydicom Dataset.

A response holds only text and numbers taken from the index, so each element is just tag, VR,
length and value bytes, in implicit or explicit VR little endian.  Text is encoded with pydicom's
own functions (``encode_string``, ``PersonName.encode``) so the bytes equal what pydicom writes;
only ASCII text in an ASCII-compatible character set skips them.  Anything else (big endian,
deflate, a VR without a rule here, a value pydicom could not write either) gives ``None`` and the
caller falls back to pydicom.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache

from pydicom.charset import convert_encodings, encode_string
from pydicom.valuerep import PersonName

from pyqrscp.dimse.vrs import LONG_LENGTH_VRS

Element = tuple[int, str, str]
"""(tag as ``0xGGGGEEEE``, VR, value as the index's text: values joined by ``\\``)."""

_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
_MULTI_TEXT = frozenset({"SH", "LO", "UC"})
_SINGLE_TEXT = frozenset({"ST", "LT", "UT"})
_LATIN1 = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
_NUMBER_STRINGS = frozenset({"DS", "IS"})
_ASCII_PROBE = "".join(chr(code) for code in range(0x20, 0x7F)) + "\t\n\f\r"


@lru_cache(maxsize=64)
def python_encodings(charsets: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """pydicom's codecs for a SpecificCharacterSet, and whether ASCII text encodes as ASCII."""
    encodings = tuple(convert_encodings(list(charsets)) if charsets else ["iso8859"])
    try:
        ascii_safe = encode_string(_ASCII_PROBE, list(encodings)) == _ASCII_PROBE.encode()
    except UnicodeError:
        ascii_safe = False
    return encodings, ascii_safe


def encode_identifier(elements: Sequence[Element], charsets: Sequence[str],
                      implicit_vr: bool) -> bytes | None:
    """The little endian encoding of ``elements`` (sorted by tag), or None when pydicom must
    do it.  ``charsets`` is the declared SpecificCharacterSet (empty: the default repertoire)."""
    encodings, ascii_safe = python_encodings(tuple(charsets))
    parts: list[bytes] = []
    for tag, vr, text in elements:
        value = value_bytes(vr, text, encodings, ascii_safe)
        if value is None:
            return None
        if implicit_vr:
            parts.append(struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)))
        elif vr in LONG_LENGTH_VRS:
            parts.append(struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(),
                                     len(value)))
        elif len(value) <= 0xFFFF:
            parts.append(struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)))
        else:
            return None
        parts.append(value)
    return b"".join(parts)


def value_bytes(vr: str, text: str, encodings: Sequence[str], ascii_safe: bool) -> bytes | None:
    """One element's value, padded to even length as pydicom pads it; None if not handled."""
    if vr == "SQ":
        return b"" if text == "" else None
    if vr in _NUMBERS:
        return _numbers(_NUMBERS[vr], text)
    if text == "":
        return b""
    try:
        if vr == "PN":
            raw = _person_names(text, encodings, ascii_safe)
        elif vr in _MULTI_TEXT:
            raw = (text.encode("ascii") if ascii_safe and text.isascii() else
                   b"\\".join(encode_string(value, list(encodings))
                              for value in text.split("\\")))
        elif vr in _SINGLE_TEXT:
            raw = (text.encode("ascii") if ascii_safe and text.isascii() else
                   encode_string(text, list(encodings)))
        elif vr in _LATIN1:
            raw = text.encode("latin-1")
        elif vr in _NUMBER_STRINGS:
            raw = "\\".join(value.strip() for value in text.split("\\")).encode("latin-1")
        else:
            return None
    except (UnicodeError, ValueError):
        return None
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def _person_names(text: str, encodings: Sequence[str], ascii_safe: bool) -> bytes:
    values = text.split("\\")
    # pydicom drops empty trailing component groups ("A^B=" is written "A^B")
    if ascii_safe and text.isascii() and not any(value.endswith("=") for value in values):
        return text.encode("ascii")
    return b"\\".join(PersonName(value).encode(list(encodings)) for value in values)


def _numbers(code: str, text: str) -> bytes | None:
    """Binary numbers; text the index cannot parse is sent empty (no value)."""
    if text == "":
        return b""
    convert = float if code in "fd" else int
    try:
        values = [convert(part) for part in text.split("\\")]
    except ValueError:
        return b""
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except struct.error:
        return None
