"""pydicom's bundled test files that pyqrscp stores, and a value-by-value comparison of two
encodings of one dataset, as pydicom decodes each.

A transfer syntax conversion may change VRs an implicit syntax leaves open, byte order, group
lengths and padding; it must not change a value.  Bytes of OW/OF/OL/OD/OV values are compared as
the numbers they hold in each dataset's own byte order, Pixel Data as pydicom's pixel arrays.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.data
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.values import convert_value

from pyqrscp.archive.dicomfile import read_header
from pyqrscp.errors import InvalidDataset

_WORD_FORMATS = {"OW": "H", "OF": "I", "OL": "I", "OD": "Q", "OV": "Q"}
_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_PADDING = 0xFFFCFFFC


def storable_files() -> list[Path]:
    """Every file in pydicom's own test data folder (the wheel's, no download) that pyqrscp
    accepts for storage: Part 10, with the UIDs an archive needs, not cut short."""
    root = Path(pydicom.data.__file__).parent / "test_files"
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # some hold values pydicom warns about
                read_header(path.read_bytes())
        except InvalidDataset:
            continue
        found.append(path)
    return found


def pixel_values_equal(reference: Dataset, other: Dataset) -> bool:
    """Pixel arrays equal (True when neither has pixel data)."""
    if not any(tag in reference for tag in _PIXEL_DATA_TAGS):
        return not any(tag in other for tag in _PIXEL_DATA_TAGS)
    return bool(np.array_equal(_pixels(reference), _pixels(other)))


def _pixels(dataset: Dataset) -> Any:
    """pydicom's pixel array; for a dataset whose other attributes keep pydicom from building
    one, the native Pixel Data as numbers of BitsAllocated in the dataset's byte order."""
    try:
        return dataset.pixel_array
    except ValueError:
        bits = int(dataset.BitsAllocated)
        if bits not in (16, 32, 64):
            raise
        order = "<" if dataset.original_encoding[1] else ">"
        return np.frombuffer(dataset.PixelData, dtype=f"{order}u{bits // 8}")


def differences(reference: Dataset, other: Dataset) -> list[str]:
    """Elements whose values differ, as ``(gggg,eeee) ...`` lines; [] when all are equal.

    Top-level Pixel Data is left to :func:`pixel_values_equal`.
    """
    little = (bool(reference.original_encoding[1]), bool(other.original_encoding[1]))
    return _differences(reference, other, little, "", top=True)


def _differences(reference: Dataset, other: Dataset, little: tuple[bool, bool], path: str,
                 top: bool) -> list[str]:
    found: list[str] = []
    tags = sorted(set(reference.keys()) | set(other.keys()))
    for tag in tags:
        if tag.group == 0x0002 or tag.element == 0 or tag == _PADDING:
            continue
        where = f"{path}{tag}"
        if tag not in reference or tag not in other:
            found.append(f"{where} only in {'reference' if tag in reference else 'other'}")
            continue
        if top and tag in _PIXEL_DATA_TAGS:
            continue
        a, b = reference[tag], other[tag]
        if a.is_empty and b.is_empty:
            continue  # '' in an explicit VR, None in an implicit one (VR unknown there)
        if a.VR == "SQ" or b.VR == "SQ":
            found += _sequence_differences(a, b, little, where)
        elif _value(a, b, little[0]) != _value(b, a, little[1]):
            found.append(f"{where} {a.VR} {_short(a.value)} != {b.VR} {_short(b.value)}")
    return found


def _sequence_differences(a: DataElement, b: DataElement, little: tuple[bool, bool],
                          where: str) -> list[str]:
    if a.VR != b.VR or len(a.value) != len(b.value):
        return [f"{where} sequence differs ({a.VR} {len(a.value)}, {b.VR} {len(b.value)})"]
    found: list[str] = []
    for index, (item_a, item_b) in enumerate(zip(a.value, b.value, strict=True)):
        found += _differences(item_a, item_b, little, f"{where}[{index}].", top=False)
    return found


def _value(element: DataElement, counterpart: DataElement, little: bool) -> Any:
    """A comparable form: O* bytes as numbers in their byte order, UN decoded with the VR the
    counterpart knows, multi-values as lists."""
    value = element.value
    if element.VR == "UN" and counterpart.VR != "UN" and isinstance(value, bytes):
        raw = RawDataElement(BaseTag(element.tag), counterpart.VR, len(value), value, 0, False,
                             little)
        return _value(DataElement(element.tag, counterpart.VR,
                                  convert_value(counterpart.VR, raw)), counterpart, little)
    if isinstance(value, (bytes, bytearray)) and element.VR in _WORD_FORMATS:
        code = _WORD_FORMATS[element.VR]
        count = len(value) // struct.calcsize(code)
        return struct.unpack(("<" if little else ">") + code * count,
                             value[:count * struct.calcsize(code)])
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."
