"""Read what the index needs from an encoded DICOM file, without decoding pixel data.

The header is split by information-model level (PS3.4 C.6) so that a query at any level can
answer any attribute the stored headers hold at that level.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pyqrscp.errors import InvalidDataset
from pyqrscp.index.schema import level_of

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
MAX_TEXT_LENGTH = 1024
_SKIPPED_VRS = frozenset({"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"})
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS",
                        b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
                        b"US"})
_IMPLICIT_VR_LE = "1.2.840.10008.1.2"
_DEFLATED = "1.2.840.10008.1.2.1.99"
_NOT_WALKED = frozenset({"", "1.2.840.10008.1.2.2", _DEFLATED})


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
        dataset = dcmread(BytesIO(data), stop_before_pixels=True)
        levels = _split_levels(dataset)
        _check_complete(data, str(dataset.file_meta.get("TransferSyntaxUID", "")))
    except (InvalidDicomError, ValueError, EOFError, OSError, KeyError, TypeError,
            NotImplementedError) as error:
        raise InvalidDataset(f"cannot parse dataset: {error}") from error
    uids = {}
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        raw = element_text(dataset.get(keyword, ""))
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
        transfer_syntax_uid=str(dataset.file_meta.get("TransferSyntaxUID", "")),
        **levels)


def _check_complete(data: bytes, transfer_syntax: str) -> None:
    """pydicom accepts a value cut short by the end of the stream; an archive must not.

    A linear walk over the element lengths answers for the common syntaxes; anything it is
    not sure about is checked by parsing the whole stream again with pydicom.
    """
    verdict = _walk_lengths(data, transfer_syntax)
    if verdict is None:
        _check_complete_by_parsing(data)
    elif verdict:
        raise InvalidDataset(f"dataset truncated in element {verdict}")


def _walk_lengths(data: bytes, transfer_syntax: str) -> str | bool | None:
    """Walk every element header of a little-endian Part-10 stream.

    Returns False when every defined length fits in the stream, the tag (as text) of the first
    element whose value runs past the end, or None when unsure (another syntax, an unknown VR,
    an undefined-length UN, trailing bytes, a stream that ends inside an undefined length).
    Values of undefined length (sequences, items, encapsulated pixel data) are walked into.
    """
    if transfer_syntax in _NOT_WALKED or data[128:132] != b"DICM":
        return None
    offset, end, depth = 132, len(data), 0
    implicit = transfer_syntax == _IMPLICIT_VR_LE
    while offset + 8 <= end:
        group, element = struct.unpack_from("<HH", data, offset)
        explicit = group == 0x0002 or not implicit
        vr = data[offset + 4:offset + 6]
        if group == 0xFFFE or not explicit:
            length, start = struct.unpack_from("<I", data, offset + 4)[0], offset + 8
        elif vr in _LONG_VRS:
            if offset + 12 > end:
                return f"({group:04X},{element:04X})"
            length, start = struct.unpack_from("<I", data, offset + 8)[0], offset + 12
        elif vr in _SHORT_VRS:
            length, start = struct.unpack_from("<H", data, offset + 6)[0], offset + 8
        else:
            return None
        if length == 0xFFFFFFFF:
            if vr == b"UN" and explicit and group != 0xFFFE:
                return None
            depth, offset = depth + 1, start
            continue
        if group == 0xFFFE and element in (0xE00D, 0xE0DD):
            depth -= 1
        if start + length > end:
            return f"({group:04X},{element:04X})"
        offset = start + length
    return False if offset == end and depth == 0 else None


def _check_complete_by_parsing(data: bytes) -> None:
    whole = dcmread(BytesIO(data), defer_size=1024)
    if whole.file_meta.get("TransferSyntaxUID") == _DEFLATED:
        return  # positions are in the inflated stream; a cut deflate stream fails to parse

    for tag in whole.keys():
        raw = whole.get_item(tag, keep_deferred=True)
        if (isinstance(raw, RawDataElement) and raw.length != 0xFFFFFFFF
                and raw.value_tell + raw.length > len(data)):
            raise InvalidDataset(f"dataset truncated in element {tag}")


def _split_levels(dataset: Dataset) -> dict[str, dict[str, str]]:
    levels: dict[str, dict[str, str]] = {"patient": {}, "study": {}, "series": {}, "instance": {}}
    charset = dataset.get("SpecificCharacterSet")
    for element in dataset:
        keyword = element.keyword
        if not keyword or element.tag.group == 0x0002 or element.VR in _SKIPPED_VRS:
            continue
        text = element_text(element.value)
        if len(text) > MAX_TEXT_LENGTH:
            continue
        levels[level_of(keyword)][keyword] = text
    if charset is not None:
        for attrs in levels.values():
            attrs["SpecificCharacterSet"] = element_text(charset)
    return levels
