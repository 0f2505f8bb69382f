"""Conversion between transfer syntaxes keeps every value: each file of pydicom's test data that
pyqrscp stores, re-encoded in each uncompressed syntax a receiver may insist on."""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID
from pydicom_data import differences, pixel_values_equal, storable_files

from pyqrscp.dimse.contexts import UNCOMPRESSED
from pyqrscp.dimse.conversion import convert
from pyqrscp.dimse.part10 import file_header
from pyqrscp.errors import SubOperationFailed
from pyqrscp.services.retrieve import stored_dataset

FILES = storable_files()
ROOT = Path(pydicom.data.__file__).parent / "test_files"
# the files whose OW values came back with their bytes unswapped
BYTE_ORDER_CASES = ["MR_small_bigendian.dcm", "MR_small_expb.dcm",
                    "SC_rgb_small_odd_big_endian.dcm", "rtdose_expb.dcm",
                    "rtdose_expb_1frame.dcm", "examples_palette.dcm"]


def _received(path: Path, target: str) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """The file as stored and as a receiver in ``target`` would decode it."""
    source, data = stored_dataset(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's test files hold some invalid values
        reference = pydicom.dcmread(path)
        try:
            converted = convert(data, source, target)
        except SubOperationFailed as error:
            if UID(source).is_compressed and "decompress" in repr(error.__cause__).lower() \
                    or "plugin" in str(error):
                pytest.skip(f"no codec for {UID(source).name}: {error}")
            raise
        header = file_header(reference.SOPClassUID, reference.SOPInstanceUID, target)
        return reference, pydicom.dcmread(BytesIO(header + converted))


def _check(path: Path, target: str) -> None:
    reference, received = _received(path, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert differences(reference, received) == []
        assert pixel_values_equal(reference, received)


def test_the_sweep_covers_pydicom_test_data() -> None:
    names = {path.name for path in FILES}
    assert len(FILES) >= 100 and set(BYTE_ORDER_CASES) <= names


@pytest.mark.parametrize("target", UNCOMPRESSED, ids=lambda uid: UID(uid).keyword)
@pytest.mark.parametrize("name", BYTE_ORDER_CASES)
def test_byte_order_changes_keep_values(name: str, target: str) -> None:
    _check(ROOT / name, target)


def test_first_pixel_of_big_endian_mr_in_little_endian() -> None:
    _reference, received = _received(ROOT / "MR_small_bigendian.dcm", UNCOMPRESSED[0])
    assert int(received.pixel_array.flat[0]) == 905


@pytest.mark.parametrize("target", UNCOMPRESSED, ids=lambda uid: UID(uid).keyword)
@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_stored_file_keeps_its_values(path: Path, target: str) -> None:
    _check(path, target)
