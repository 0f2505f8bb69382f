"""Read what the index needs from an encoded DICOM file, without decoding pixel data.

The header is split by information-model level (PS3.4 C.6) so that a query at any level can
answer any attribute the stored headers hold at that level.
"""

from __future__ import annotations

import re
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
        _check_complete(data)
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


def _check_complete(data: bytes) -> None:
    """pydicom accepts a value cut short by the end of the stream; an archive must not."""
    whole = dcmread(BytesIO(data), defer_size=1024)
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
