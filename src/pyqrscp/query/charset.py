"""The character set of C-FIND responses (dcmqrscp's ``+Cr/-Cr/+U8/+A7/+L1/+C/-Ct/-Cd``).

Values are matched as decoded text; on the way out they must be encodable in the declared
SpecificCharacterSet.  Preference: the request's charset (``+Cr``, default), then the configured
or ``+C...`` one, then UTF-8 so that nothing is lost unless the user asked to discard.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from pyqrscp.config.options import Options

UTF8 = "ISO_IR 192"
TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
"""The VRs whose values are text in the declared character set (others are ASCII)."""


def _codecs(charsets: Sequence[str]) -> list[str]:
    # pydicom decodes the default repertoire leniently as latin-1; on output it is ASCII only.
    codecs = ["ascii" if term.strip() in ("", "ISO_IR 6") else python_encoding.get(term.strip(), "")
              for term in charsets]
    return [codec for codec in codecs if codec] or ["ascii"]


def encodable(text: str, charsets: Sequence[str]) -> bool:
    """Can ``text`` be written in the DICOM charset(s)? (every char in one of their codecs)"""
    codecs = _codecs(charsets)
    for char in text:
        if not any(_fits(char, codec) for codec in codecs):
            return False
    return True


def _fits(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]  # type: ignore[attr-defined]


def choose_charset(texts: Mapping[str, str], requested: Sequence[str], options: Options
                   ) -> tuple[list[str], dict[str, str]]:
    """The SpecificCharacterSet to declare (empty: none) and the text values to send instead
    (``+C``/``-Ct``/``-Cd`` adaptations), for the text values (PN, LO, ...) of one response."""
    if all(text.isascii() for text in texts.values()):
        return list(requested), {}
    candidates: list[list[str]] = []
    if options.use_request_charset and requested:
        candidates.append(list(requested))
    if options.convert_to_charset:
        candidates.append([options.convert_to_charset])
    joined = "".join(texts.values())
    for charsets in candidates:
        if encodable(joined, charsets):
            return charsets, {}
    if options.discard_illegal or options.transliterate:
        target = candidates[0] if candidates else ["ISO_IR 6"]
        return target, {keyword: _reduce(text, target, options.transliterate)
                        for keyword, text in texts.items()}
    return [UTF8], {}


def requested_charsets(request: Dataset) -> list[str]:
    """The request identifier's SpecificCharacterSet as a list (empty when absent)."""
    return _as_list(request.get("SpecificCharacterSet"))


def _reduce(text: str, charsets: Sequence[str], transliterate: bool) -> str:
    out = []
    for char in text:
        if encodable(char, charsets):
            out.append(char)
        elif transliterate:
            approximated = unicodedata.normalize("NFKD", char)
            out.append("".join(c for c in approximated if encodable(c, charsets)) or "?")
    return "".join(out)
