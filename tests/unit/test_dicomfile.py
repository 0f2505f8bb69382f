"""read_header's one-pass completeness check agrees with a full pydicom parse, and its fast
header walk gives exactly the texts pydicom gives."""

from __future__ import annotations

import struct
import warnings
from io import BytesIO
from pathlib import Path

import pydicom.data
import pytest
from helpers import make_ct
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pyqrscp.archive.dicomfile import (
    _TRANSFER_SYNTAX_KEY,
    _check_complete_by_parsing,
    _fast_texts,
    _texts,
    _walk_lengths,
    read_header,
)
from pyqrscp.dimse.part10 import file_header
from pyqrscp.errors import InvalidDataset

# explicit VR LE with sequences, implicit VR LE, encapsulated JPEG (fragments), RLE, explicit BE
BUNDLED = ["CT_small.dcm", "rtplan.dcm", "MR_small.dcm", "JPEG-lossy.dcm", "MR_small_RLE.dcm",
           "MR_small_bigendian.dcm"]


def bundled(name: str) -> tuple[bytes, str]:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom has no {name}")
    syntax = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    return Path(str(path)).read_bytes(), syntax


@pytest.mark.parametrize("name", BUNDLED)
def test_walk_accepts_complete_files(name: str) -> None:
    data, syntax = bundled(name)
    assert _walk_lengths(data, syntax) is False


@pytest.mark.parametrize("name", BUNDLED)
def test_walk_never_accepts_what_a_full_parse_refuses(name: str) -> None:
    data, syntax = bundled(name)
    for cut in range(132, len(data), max(1, len(data) // 97)):
        verdict = _walk_lengths(data[:cut], syntax)
        if verdict is False:
            _check_complete_by_parsing(data[:cut])  # must not raise


def test_pixel_data_cut_short_is_named(tmp_path: Path) -> None:
    data = make_ct(tmp_path, rows=64).read_bytes()
    with pytest.raises(InvalidDataset, match=r"truncated in element \(7FE0,0010\)"):
        read_header(data[:-100])


def test_encapsulated_fragment_cut_short_is_refused() -> None:
    data, syntax = bundled("JPEG-lossy.dcm")
    assert isinstance(_walk_lengths(data[:-10], syntax), str)


# -- the fast header walk gives exactly what pydicom gives ---------------------------------


def slow_and_fast(data: bytes) -> tuple[dict[str, str], dict[str, str] | None]:
    slow = _texts(dcmread(BytesIO(data), stop_before_pixels=True))
    fast = _fast_texts(data)
    if fast is not None:
        fast.pop(_TRANSFER_SYNTAX_KEY)
    return slow, fast


def test_fast_walk_equals_pydicom_on_pydicoms_own_test_files() -> None:
    walked = 0
    local = Path(pydicom.data.__file__).parent / "test_files"  # no download (CI is offline)
    for path in sorted(local.rglob("*.dcm")):
        if Path(path).stat().st_size > 2_000_000:
            continue
        data = Path(path).read_bytes()
        try:
            slow, fast = slow_and_fast(data)
        except Exception:  # noqa: BLE001 - files pydicom itself cannot read are not ours
            continue
        if fast is not None:
            walked += 1
            assert fast == slow, path
    assert walked >= 30  # the walk must actually serve most ordinary files


_CHARSETS = [None, "ISO_IR 100", "ISO_IR 192", "ISO_IR 144", ["ISO 2022 IR 6", "ISO 2022 IR 87"]]
_NAMES = ["Doe^John", "Müller^Jürgen", "Иванов^Иван", "Yamada^Tarou=山田^太郎", " Pad^Ded  ",
          "A\\B", ""]
_ELEMENTS = st.fixed_dictionaries({}, optional={
    "PatientName": st.sampled_from(_NAMES),
    "ReferringPhysicianName": st.sampled_from(_NAMES),
    "PatientID": st.text(alphabet="AZaz09 -_.", max_size=16),
    "StudyDescription": st.sampled_from(["Chest", " lead", "trail  ", "Kopf über", "a\\b"]),
    "ImageType": st.lists(st.sampled_from(["ORIGINAL", "PRIMARY", "AXIAL", ""]), min_size=1,
                          max_size=4),
    "StudyDate": st.sampled_from(["20240102", "", "2024"]),
    "StudyTime": st.sampled_from(["101500", "1015", "101500.123456 "]),
    "PatientAge": st.sampled_from(["045Y", "003M"]),
    "SliceThickness": st.sampled_from(["1.5", " 2.50", "1e3", "-0.0"]),
    "PixelSpacing": st.sampled_from([["0.5", "0.5"], ["1.25", "3"]]),
    "SeriesNumber": st.sampled_from(["1", "0012", " 7", "-3"]),
    "Rows": st.integers(0, 65535),
    "SmallestImagePixelValue": st.integers(0, 65535),
    "FrameIncrementPointer": st.sampled_from([0x00181063, 0x00185065]),
    "RescaleSlope": st.sampled_from(["1", "0.5"]),
    "ReferencedFrameNumber": st.lists(st.integers(1, 9).map(str), min_size=1, max_size=3),
    "RetrieveAETitle": st.sampled_from(["STORE", " PADDED ", "A\\B "]),
    "AdditionalPatientHistory": st.sampled_from(["line one\r\nline two  ", "", "x\\y"]),
    "TextValue": st.sampled_from(["unlimited  ", "Größe"]),
    "ContentDate": st.sampled_from(["20240102"]),
    "RecommendedDisplayFrameRateInFloat": st.sampled_from([0.1, 25.0, 1e-3, -2.5]),
    "EstimatedRadiographicMagnificationFactor": st.floats(0.5, 2),
    "ReferencedSOPClassUID": st.sampled_from(["1.2.3", "1.2.840.10008.1.1"]),
})


@settings(max_examples=150, deadline=None)
@given(elements=_ELEMENTS, charset=st.sampled_from(_CHARSETS),
       implicit=st.booleans(), with_sequence=st.booleans(), with_private=st.booleans())
def test_fast_walk_equals_pydicom_on_generated_headers(
        elements: dict[str, object], charset: object, implicit: bool, with_sequence: bool,
        with_private: bool) -> None:
    with warnings.catch_warnings():  # odd values on purpose: pydicom warns, must not fail
        warnings.simplefilter("ignore")
        data = _encoded(elements, charset, implicit, with_sequence, with_private)
        if data is None:
            return  # a name the chosen character set cannot encode
        slow, fast = slow_and_fast(data)
        if implicit and "SmallestImagePixelValue" in elements:
            assert fast is None  # "US or SS" in implicit VR: pydicom resolves it
        else:
            assert fast == slow
        assert read_header(data) == _slow_header(data)


def _encoded(elements: dict[str, object], charset: object, implicit: bool,
             with_sequence: bool, with_private: bool) -> bytes | None:
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.5"
    if with_sequence:
        item = Dataset()
        item.PatientName = "Inner^Name"
        item.ReferencedSOPInstanceUID = "1.2.3.9"
        ds.ReferencedImageSequence = [item, item]
    if with_private:
        block = ds.private_block(0x0009, "PYQRSCP TEST", create=True)
        block.add_new(0x01, "LO", "private text")
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    ds.PixelData = b"\0\0" * 4
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3.4")
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buffer = BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except (UnicodeEncodeError, LookupError, ValueError):
        return None
    return buffer.getvalue()


def _slow_header(data: bytes) -> object:
    """read_header as it was before the fast walk: pydicom for every element."""
    import pyqrscp.archive.dicomfile as dicomfile

    original = dicomfile._fast_texts
    dicomfile._fast_texts = lambda _data: None  # type: ignore[assignment]
    try:
        return read_header(data)
    finally:
        dicomfile._fast_texts = original


Element = tuple[int, int, bytes, bytes | None]


def _explicit(*elements: Element) -> bytes:
    """A Part-10 stream of hand-made explicit VR LE elements (None: undefined length)."""
    body = b""
    for group, element, vr, value in elements:
        length = 0xFFFFFFFF if value is None else len(value)
        if vr in (b"OB", b"SQ", b"UC", b"UN", b"UT", b"UR", b"OW") or value is None:
            body += struct.pack("<HH2sHI", group, element, vr, 0, length) + (value or b"")
        else:
            body += struct.pack("<HH2sH", group, element, vr, length) + value
    return file_header(CTImageStorage, "1.2.3.4", ExplicitVRLittleEndian, "X") + body


_UIDS: list[Element] = [(0x0008, 0x0016, b"UI", CTImageStorage.encode() + b"\0"),
                        (0x0008, 0x0018, b"UI", b"1.2.3.4\0")]
_SERIES: list[Element] = [(0x0020, 0x000D, b"UI", b"1.2.3.5\0"),
                          (0x0020, 0x000E, b"UI", b"1.2.3.6\0")]
_DELIMITER: Element = (0xFFFE, 0xE0DD, b"\0\0", b"")


@pytest.mark.parametrize("case", [
    "text before the character set", "LUT descriptor", "undefined-length UT",
    "stray delimiter", "out of order"])
def test_fast_walk_leaves_what_pydicom_reads_otherwise_to_pydicom(case: str) -> None:
    elements: list[Element] = {
        "text before the character set": [(0x0000, 0x0902, b"LO", "Jörg ".encode())]
        + [(0x0008, 0x0005, b"CS", b"ISO_IR 192")] + _UIDS + _SERIES,
        "LUT descriptor": _UIDS + _SERIES + [
            (0x0028, 0x1101, b"SS", struct.pack("<hhh", -25536, 0, 16))],
        "undefined-length UT": _UIDS + [(0x0010, 0x21B0, b"UT", None), _DELIMITER] + _SERIES,
        "stray delimiter": _UIDS + _SERIES + [_DELIMITER, (0x0020, 0x0013, b"IS", b"7 ")],
        "out of order": _UIDS + _SERIES + [(0x0010, 0x0010, b"PN", b"Late^Name ")],
    }[case]
    data = _explicit(*elements)
    assert _fast_texts(data) is None


def test_implicit_vr_whose_first_length_looks_like_a_vr_is_left_to_pydicom() -> None:
    body = struct.pack("<HHI", 0x0008, 0x0016, 0x5A44) + b"x" * 0x5A44  # length bytes "DZ"
    data = file_header(CTImageStorage, "1.2.3.4", ImplicitVRLittleEndian, "X") + body
    assert _fast_texts(data) is None


# -- sequences: an item or element longer than what holds it -------------------------------


def _with_sequence(tmp_path: Path, syntax: str) -> tuple[bytes, int]:
    """A CT whose ReferencedImageSequence (defined lengths) holds one item; returns the file
    and the offset of the item's header."""
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    path = make_ct(tmp_path, extra={"ReferencedImageSequence": ("SQ", [item])})
    ds = dcmread(path)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    data = path.read_bytes()
    tag = data.index(b"\x08\x00\x40\x11", 132)
    return data, data.index(b"\xfe\xff\x00\xe0", tag)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_item_longer_than_its_sequence_is_refused(tmp_path: Path, syntax: str) -> None:
    data, item_at = _with_sequence(tmp_path, syntax)
    assert _walk_lengths(data, syntax) is False
    (length,) = struct.unpack_from("<I", data, item_at + 4)
    bad = data[:item_at + 4] + struct.pack("<I", length + 2) + data[item_at + 8:]
    with pytest.raises(InvalidDataset, match=r"item runs past the end of its sequence "
                                             r"\(0008,1140\)"):
        read_header(bad)


def test_element_longer_than_its_item_is_refused(tmp_path: Path) -> None:
    data, item_at = _with_sequence(tmp_path, ExplicitVRLittleEndian)
    uid_at = item_at + 8  # (0008,1150) UI, the item's first element
    (length,) = struct.unpack_from("<H", data, uid_at + 6)
    bad = data[:uid_at + 6] + struct.pack("<H", length + 40) + data[uid_at + 8:]
    with pytest.raises(InvalidDataset, match=r"element \(0008,1150\) runs past the end of its "
                                             r"item"):
        read_header(bad)
