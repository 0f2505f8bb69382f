"""The character set of C-FIND responses (dcmqrscp's ``+Cr/-Cr/+U8/+A7/+L1/+C/-Ct/-Cd``).

Values are matched as decoded text; on the way out they must be encodable in the declared
SpecificCharacterSet.  Preference: the request's charset (``+Cr``, default), then the configured
or ``+C...`` one, then UTF-8 so that nothing is lost unless the user asked to discard.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from pydicom.charset import python_encoding
from pydicom.dataset import Dataset

from pyqrscp.options import Options

UTF8 = "ISO_IR 192"
_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})


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


def response_charset(response: Dataset, request: Dataset, options: Options) -> None:
    """Choose and set SpecificCharacterSet on ``response``; adapt values if asked to."""
    texts = {e.keyword: str(e.value) for e in response if e.VR in _TEXT_VRS and e.value}
    requested = _as_list(request.get("SpecificCharacterSet"))
    if all(text.isascii() for text in texts.values()):
        if requested:
            response.SpecificCharacterSet = requested if len(requested) > 1 else requested[0]
        return
    candidates: list[list[str]] = []
    if options.use_request_charset and requested:
        candidates.append(requested)
    if options.convert_to_charset:
        candidates.append([options.convert_to_charset])
    joined = "".join(texts.values())
    for charsets in candidates:
        if encodable(joined, charsets):
            _set(response, charsets)
            return
    if options.discard_illegal or options.transliterate:
        target = candidates[0] if candidates else ["ISO_IR 6"]
        for keyword, text in texts.items():
            setattr(response, keyword, _reduce(text, target, options.transliterate))
        _set(response, target)
        return
    _set(response, [UTF8])


def _reduce(text: str, charsets: Sequence[str], transliterate: bool) -> str:
    out = []
    for char in text:
        if encodable(char, charsets):
            out.append(char)
        elif transliterate:
            approximated = unicodedata.normalize("NFKD", char)
            out.append("".join(c for c in approximated if encodable(c, charsets)) or "?")
    return "".join(out)


def _set(response: Dataset, charsets: Sequence[str]) -> None:
    response.SpecificCharacterSet = list(charsets) if len(charsets) > 1 else charsets[0]
