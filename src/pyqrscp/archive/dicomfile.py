"""Read what the index needs from an encoded DICOM file, without decoding pixel data.

The header is split by information-model level (PS3.4 C.6) so that a query at any level can
answer any attribute the stored headers hold at that level.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from typing import Any, BinaryIO, cast

from pydicom import dcmread
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.values import convert_value

from pyqrscp.archive.index.schema import level_of
from pyqrscp.dimse.part10 import file_meta
from pyqrscp.dimse.vrs import LONG_LENGTH_VR_CODES, SHORT_LENGTH_VR_CODES
from pyqrscp.errors import InvalidDataset

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_TEXT_LENGTH = 1024
_SKIPPED_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_IMPLICIT_VR_LE = "1.2.840.10008.1.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
_NOT_WALKED = frozenset({"", _EXPLICIT_VR_BE, _DEFLATED})
_NOT_STRUCTURED = frozenset({"", _DEFLATED})


@dataclass(frozen=True, slots=True)
class Header:
    """The identifying UIDs and per-level attributes of one instance."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    patient: dict[str, str]
    study: dict[str, str]
    series: dict[str, str]
    instance: dict[str, str]

    @property
    def patient_id(self) -> str:
        return self.patient.get("PatientID", "")

    @property
    def modality(self) -> str:
        return self.series.get("Modality", "")


def element_text(value: Any) -> str:
    """Render an element value as the index stores it: text, multiple values joined by ``\\``."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(element_text(item) for item in value)
    return str(value)


def valid_uid(uid: str) -> bool:
    """PS3.5 9.1: digits and dots, at most 64 characters."""
    return 0 < len(uid) <= 64 and UID_PATTERN.match(uid) is not None


def read_header(data: bytes, uid_padding: bool = False) -> Header:
    """Parse a Part-10 byte stream (meta included) into a :class:`Header`.

    Raises
    ------
    InvalidDataset
        When the stream is not DICOM or lacks/garbles the UIDs an archive must have.
    """
    try:
        texts = _fast_texts(data)
        if texts is None:  # pydicom for everything the fast walk is not sure about
            dataset = dcmread(_readable(data), stop_before_pixels=True)
            transfer_syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
            texts = _texts(dataset)
        else:
            transfer_syntax = texts.pop(_TRANSFER_SYNTAX_KEY)
        _check_complete(data, transfer_syntax)
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError,
            NotImplementedError) as error:
        raise InvalidDataset(f"cannot parse dataset: {error}") from error
    levels = _split_levels(texts)
    uids = {}
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        raw = texts.get(keyword, "")
        uid = raw.strip(" \x00") if uid_padding else raw.rstrip("\x00")
        if not uid:
            raise InvalidDataset(f"missing {keyword}")
        if not valid_uid(uid):
            raise InvalidDataset(f"invalid {keyword} {uid[:80]!r} (digits and dots, max 64)")
        uids[keyword] = uid
    return Header(
        sop_class_uid=uids["SOPClassUID"], sop_instance_uid=uids["SOPInstanceUID"],
        study_instance_uid=uids["StudyInstanceUID"],
        series_instance_uid=uids["SeriesInstanceUID"],
        transfer_syntax_uid=transfer_syntax, **levels)


def _check_complete(data: bytes, transfer_syntax: str) -> None:
    """pydicom accepts a value cut short by the end of the stream, and a sequence item longer
    than its sequence; an archive must not.

    A linear walk over the element lengths answers for the common syntaxes; anything it is
    not sure about is checked by parsing the whole stream again with pydicom.
    """
    verdict = _walk_lengths(data, transfer_syntax)
    if verdict is None:
        _check_complete_by_parsing(data)
    elif verdict:
        raise InvalidDataset(verdict)


def _walk_lengths(data: bytes, transfer_syntax: str) -> str | bool | None:
    """Walk every element header of a Part-10 stream, into sequences and items.

    Returns False when every defined length fits in the stream and in the sequence or item
    that holds it; what is wrong (naming the element) when one does not; None when unsure
    (deflated or unknown syntax, an unknown VR, an undefined-length UN, trailing bytes, a
    stream that ends inside an undefined length).
    """
    if transfer_syntax in _NOT_STRUCTURED or data[128:132] != b"DICM":
        return None
    offset, end = 132, len(data)
    implicit = transfer_syntax == _IMPLICIT_VR_LE
    order = ">" if transfer_syntax == _EXPLICIT_VR_BE else "<"
    open_values: list[tuple[int | None, str]] = []  # (end if defined, what) walked into
    while offset + 8 <= end:
        while open_values and open_values[-1][0] == offset:
            open_values.pop()
        found = _element_at(data, offset, implicit, order)
        if found is None:
            return None
        group, element, vr, length, start = found
        tag = f"({group:04X},{element:04X})"
        limit, holder = next(((e, what) for e, what in reversed(open_values) if e is not None),
                             (end, ""))
        if group == 0xFFFE and element in (0xE00D, 0xE0DD):
            if not open_values or open_values[-1][0] is not None:
                return None  # a delimiter with no undefined length to close
            open_values.pop()
            offset = start + length
            continue
        if length == 0xFFFFFFFF:
            if vr == b"UN" and group != 0xFFFE:
                return None
            if start > limit:
                return _overrun(tag, holder)
            open_values.append((None, _undefined_kind(group, element, vr)))
            offset = start
            continue
        if start + length > limit:
            return _overrun(tag, holder)
        offset = start + length
        if group == 0xFFFE and element == 0xE000:
            if not open_values or open_values[-1][1] != "fragments":
                open_values.append((offset, "item"))
                offset = start
        elif _is_sequence(group, element, vr):
            open_values.append((offset, f"sequence {tag}"))
            offset = start
    while open_values and open_values[-1][0] == offset:
        open_values.pop()
    return False if offset == end and not open_values else None


def _undefined_kind(group: int, element: int, vr: bytes) -> str:
    """What an undefined-length value holds: encapsulated pixel data's fragments (items that
    are not datasets), or items."""
    if group == 0xFFFE:
        return "item"
    if vr in (b"OB", b"OW") or (not vr and (group, element) == (0x7FE0, 0x0010)):
        return "fragments"
    return "sequence"


def _overrun(tag: str, holder: str) -> str:
    if not holder:
        return f"dataset truncated in element {tag}"
    what = "item" if tag == "(FFFE,E000)" else f"element {tag}"
    return f"malformed sequence: {what} runs past the end of its {holder}"


def _is_sequence(group: int, element: int, vr: bytes) -> bool:
    """A defined-length sequence (implicit VR: by the dictionary)."""
    if vr:
        return vr == b"SQ"
    return group != 0xFFFE and _keyword_and_vr(group << 16 | element)[1] == "SQ"


def _element_at(data: bytes, offset: int, implicit: bool, order: str = "<"
                ) -> tuple[int, int, bytes, int, int] | None:
    """``(group, element, VR or b"", value length, value offset)`` of the element header at
    ``offset`` (``order`` "<" or ">"; group 0002 always explicit little endian), or None for
    an unknown VR."""
    if data[offset:offset + 2] == b"\x02\x00":
        implicit, order = False, "<"
    group, element = struct.unpack_from(order + "HH", data, offset)
    if group == 0xFFFE or implicit:
        return group, element, b"", struct.unpack_from(order + "I", data, offset + 4)[0], \
            offset + 8
    vr = data[offset + 4:offset + 6]
    if vr in LONG_LENGTH_VR_CODES:
        if offset + 12 > len(data):
            return group, element, vr, 0, offset + 12
        return group, element, vr, struct.unpack_from(order + "I", data, offset + 8)[0], \
            offset + 12
    if vr in SHORT_LENGTH_VR_CODES:
        return group, element, vr, struct.unpack_from(order + "H", data, offset + 6)[0], \
            offset + 8
    return None


def _readable(data: bytes) -> BinaryIO:
    """The stream as a file for pydicom without a copy: a spooled dataset arrives as a
    read-only memory map of its temp file (already file-like); bytes are wrapped."""
    if isinstance(data, mmap.mmap):
        data.seek(0)
        return cast(BinaryIO, data)
    return BytesIO(data)


def _check_complete_by_parsing(data: bytes) -> None:
    whole = dcmread(_readable(data), defer_size=1024)
    if whole.file_meta.get("TransferSyntaxUID") == _DEFLATED:
        return  # positions are in the inflated stream; a cut deflate stream fails to parse

    for tag in whole.keys():
        raw = whole.get_item(tag, keep_deferred=True)
        if (isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF
                and raw.value_tell + raw.length > len(data)):
            raise InvalidDataset(f"dataset truncated in element {tag}")


def _texts(dataset: Dataset) -> dict[str, str]:
    """Keyword → index text of every top-level element pydicom decoded (the slow path)."""
    texts: dict[str, str] = {}
    for element in dataset:
        keyword = element.keyword
        if not keyword or element.tag.group == 0x0002 or element.VR in _SKIPPED_VRS:
            continue
        texts[keyword] = element_text(element.value)
    return texts


def _split_levels(texts: dict[str, str]) -> dict[str, dict[str, str]]:
    """The texts by level, without NUL characters (padding gone wrong; PostgreSQL's text
    cannot hold one, and both index backends must match alike)."""
    levels: dict[str, dict[str, str]] = {"patient": {}, "study": {}, "series": {}, "instance": {}}
    for keyword, text in texts.items():
        if len(text) <= MAX_TEXT_LENGTH:
            levels[level_of(keyword)][keyword] = text.replace("\x00", "")
    charset = texts.get("SpecificCharacterSet")
    if charset is not None:
        for attrs in levels.values():
            attrs["SpecificCharacterSet"] = charset
    return levels


# -- the fast path: the same texts as _texts(dcmread(...)), without building a Dataset ------

_TRANSFER_SYNTAX_KEY = "\0TransferSyntaxUID"  # not a keyword: cannot clash
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # pydicom stops there
_LATIN1_VRS = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})  # pydicom: decode, rstrip
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_LUT_DESCRIPTORS = frozenset({0x00281101, 0x00281102, 0x00281103, 0x00283002})


@lru_cache(maxsize=4096)
def _keyword_and_vr(tag: int) -> tuple[str, str]:
    """A DataElement's keyword and dictionary VR for a tag; ("", "") for private, unknown and
    repeating-group tags (pydicom gives those elements no keyword either)."""
    if not dictionary_has_tag(tag):
        return "", ""
    return dictionary_keyword(tag), dictionary_VR(tag)


@lru_cache(maxsize=256)
def _walked_as_implicit(transfer_syntax: str) -> bool | None:
    """True/False: the fast walk reads datasets in this syntax as implicit/explicit VR little
    endian (encapsulated syntaxes included: their pixel data comes last); None: it does not."""
    if transfer_syntax in _NOT_WALKED:
        return None
    if transfer_syntax == _IMPLICIT_VR_LE:
        return True
    uid = UID(transfer_syntax)
    known = uid == "1.2.840.10008.1.2.1" or (uid.is_transfer_syntax and uid.is_compressed)
    return False if known and uid.is_little_endian and not uid.is_implicit_VR else None


def _fast_texts(data: bytes) -> dict[str, str] | None:
    """The texts of :func:`_texts` (plus the transfer syntax under
    :data:`_TRANSFER_SYNTAX_KEY`) by walking the element headers once and converting only the
    values the index keeps, with pydicom's converters; None whenever pydicom might decide
    otherwise (another syntax, a UN or ambiguous VR, a value pydicom would not convert).

    ``tests/unit/test_dicomfile.py`` holds both paths equal over generated datasets.
    """
    meta = file_meta(data)
    if meta is None:
        return None
    transfer_syntax, offset = meta
    end = len(data)
    implicit = _walked_as_implicit(transfer_syntax)
    if implicit is None or offset + 8 > end:
        return None
    if all(0x40 < byte < 0x5B for byte in data[offset + 4:offset + 6]) == implicit:
        return None  # encoded otherwise than declared (pydicom's own test): pydicom decides
    texts = {_TRANSFER_SYNTAX_KEY: transfer_syntax}
    encodings: list[str] | None = None
    decoded_without_charset = False
    depth, last_tag = 0, -1
    while offset + 8 <= end:
        found = _element_at(data, offset, implicit)
        if found is None:
            return None
        group, element, stream_vr, length, start = found
        tag = group << 16 | element
        if depth == 0 and group != 0xFFFE:
            if tag <= last_tag:
                return None  # out of order: pydicom sorts, and the character set may move
            last_tag = tag
            if tag in _PIXEL_DATA_TAGS:
                break
        if length == 0xFFFFFFFF:
            if group != 0xFFFE and (stream_vr if not implicit else
                                    _keyword_and_vr(tag)[1].encode()) != b"SQ":
                return None  # only sequences and items have no length pydicom reads alike
            depth, offset = depth + 1, start
            continue
        offset = start + length
        if group == 0xFFFE:
            if element in (0xE00D, 0xE0DD):
                depth -= 1
                if depth < 0:
                    return None  # a delimiter with nothing to close: pydicom refuses it
            continue
        if depth or offset > end:
            continue  # inside a sequence; a value cut short is _check_complete's to report
        keyword, vr = _keyword_and_vr(tag)
        if not keyword:
            continue
        if not implicit:
            if stream_vr == b"UN":
                return None  # pydicom would look the VR up and convert
            vr = stream_vr.decode("ascii")
        if " or " in vr or tag in _LUT_DESCRIPTORS:
            return None  # pydicom resolves the VR, or corrects the first value
        if vr in _SKIPPED_VRS:
            continue
        value = data[start:offset]
        if vr in _LATIN1_VRS:
            texts[keyword] = value.decode("latin-1").rstrip(" \x00")
        elif vr == "AE":
            texts[keyword] = "\\".join(v.strip() for v in value.decode("latin-1").split("\\"))
        else:
            decoded_without_charset |= encodings is None and vr in _CHARSET_VRS
            raw = RawDataElement(BaseTag(tag), vr, length, value, start, implicit, True)
            try:
                converted = convert_value(vr, raw, encodings)
            except BytesLengthException:
                return None
            texts[keyword] = element_text(converted)
        if tag == 0x00080005:
            if decoded_without_charset:
                return None  # text before the character set: pydicom decodes it with it
            encodings = convert_encodings(
                texts[keyword].split("\\") if "\\" in texts[keyword] else texts[keyword])
    return texts
