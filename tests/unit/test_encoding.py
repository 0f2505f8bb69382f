"""The C-FIND response encoder writes exactly the bytes pydicom writes for the same dataset."""

from __future__ import annotations

import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import encode

from pyqrscp.archive.index.query import STUDY_ROOT, parse_identifier, text_to_value
from pyqrscp.config.options import Options
from pyqrscp.dimse.encoding import Element, encode_identifier
from pyqrscp.services.find import identifiers


def elements(values: dict[str, str]) -> list[Element]:
    """(tag, VR, text) sorted by tag, VRs from the dictionary."""
    found = []
    for keyword, text in values.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        found.append((int(tag), str(dictionary_VR(tag)), text))
    return sorted(found)


def pydicom_bytes(items: list[Element], implicit_vr: bool) -> bytes:
    dataset = Dataset()
    for tag, vr, text in items:
        dataset.add_new(tag, vr, [] if vr == "SQ" else text_to_value(text, vr))
    encoded = encode(dataset, implicit_vr, True, False)
    assert encoded is not None
    return bytes(encoded)


CASES: list[tuple[str, dict[str, str]]] = [
    ("study level, odd lengths", {
        "SpecificCharacterSet": "", "QueryRetrieveLevel": "STUDY", "PatientName": "Doe^John",
        "PatientID": "P1", "StudyInstanceUID": "1.2.3.45", "StudyDate": "20240102",
        "StudyTime": "1015", "AccessionNumber": "A", "StudyDescription": "Chest CT",
        "ReferringPhysicianName": "", "StudyID": "123"}),
    ("multi-valued strings", {
        "QueryRetrieveLevel": "SERIES", "ModalitiesInStudy": "CT\\MR\\US",
        "OtherPatientIDs": "A1\\B22\\C", "SOPClassesInStudy": "1.2.3\\1.2.840.10008.5.1.4.1.1.2",
        "OtherPatientNames": "Doe^John\\Roe^Jane=", "ImageType": "ORIGINAL\\PRIMARY\\AXIAL"}),
    ("numbers", {
        "QueryRetrieveLevel": "IMAGE", "InstanceNumber": "7", "SeriesNumber": "-12",
        "NumberOfStudyRelatedInstances": "100", "Rows": "512", "Columns": "",
        "PixelSpacing": "0.5\\0.488281", "SliceThickness": "1.25", "BitsAllocated": "16",
        "SamplesPerPixel": "not a number", "ImagePositionPatient": "-1\\2.5\\3e2",
        "FrameTime": "33.3", "ReferencedFrameNumber": "1\\2\\3"}),
    ("empty sequence and single-valued text", {
        "QueryRetrieveLevel": "STUDY", "ProcedureCodeSequence": "",
        "StudyComments": "a \\ backslash stays one value", "PatientComments": "odd"}),
]


@pytest.mark.parametrize("implicit_vr", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize(("name", "values"), CASES, ids=[name for name, _ in CASES])
def test_ascii_responses_equal_pydicom(name: str, values: dict[str, str],
                                       implicit_vr: bool) -> None:
    items = elements(values)
    charsets = [values["SpecificCharacterSet"]] if values.get("SpecificCharacterSet") else []
    assert encode_identifier(items, charsets, implicit_vr) == pydicom_bytes(items, implicit_vr)


CHARSET_CASES: list[tuple[str, str, dict[str, str]]] = [
    ("latin-1", "ISO_IR 100", {"PatientName": "Gómez^Ana", "StudyDescription": "Tête"}),
    ("utf-8", "ISO_IR 192", {"PatientName": "Łukasz^Nowak=Łukasz\\Müller^Hans",
                             "InstitutionName": "Klinikum Süd", "StudyComments": "ü\\ö"}),
    ("iso 2022 japanese", "ISO 2022 IR 6\\ISO 2022 IR 87", {
        "PatientName": "Yamada^Tarou=山田^太郎=やまだ^たろう", "StudyDescription": "頭部"}),
    ("iso 2022 korean", "\\ISO 2022 IR 149", {
        "PatientName": "Hong^Gildong=洪^吉洞=홍^길동", "StudyDescription": "ascii only"}),
    ("katakana", "ISO 2022 IR 13\\ISO 2022 IR 87", {
        "PatientName": "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", "AccessionNumber": "A-1"}),
    ("gb18030", "GB18030", {"PatientName": "Wang^XiaoDong=王^小东=", "StudyID": "1"}),
    ("ascii in utf-8", "ISO_IR 192", {"PatientName": "Doe^John=", "StudyDescription": "x"}),
]


@pytest.mark.parametrize("implicit_vr", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize(("name", "charset", "values"), CHARSET_CASES,
                         ids=[name for name, _, _ in CHARSET_CASES])
def test_character_sets_equal_pydicom(name: str, charset: str, values: dict[str, str],
                                      implicit_vr: bool) -> None:
    items = elements({"SpecificCharacterSet": charset, "QueryRetrieveLevel": "STUDY", **values})
    encoded = encode_identifier(items, charset.split("\\"), implicit_vr)
    assert encoded == pydicom_bytes(items, implicit_vr)


@pytest.mark.parametrize(("vr", "text"), [("AT", "00100010"), ("US or SS", "1"), ("US", "70000"),
                                          ("CS", "日本")])
def test_what_it_cannot_write_is_left_to_pydicom(vr: str, text: str) -> None:
    assert encode_identifier([(0x00091001, vr, text)], [], True) is None


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian,
                                    ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_find_identifiers_in_every_syntax(syntax: str) -> None:
    """Little endian goes through the encoder, big endian and deflate through pydicom; both
    give what pydicom gives, with the charset chosen for the response."""
    request = Dataset()
    request.QueryRetrieveLevel = "STUDY"
    request.PatientName = ""
    request.StudyInstanceUID = ""
    request.NumberOfStudyRelatedInstances = None
    query = parse_identifier(request, STUDY_ROOT)
    matches = [{"PatientName": "Müller^Hans", "StudyInstanceUID": "1.2.3",
                "NumberOfStudyRelatedInstances": "12"},
               {"PatientName": "Doe^John", "StudyInstanceUID": "1.2.45"}]
    uid = UID(syntax)
    found = list(identifiers(iter(matches), query, request, Options(), uid))
    expected = []
    for attrs, charset in zip(matches, ["ISO_IR 192", None], strict=True):
        dataset = Dataset()
        if charset:
            dataset.SpecificCharacterSet = charset
        dataset.QueryRetrieveLevel = "STUDY"
        dataset.PatientName = attrs["PatientName"]
        dataset.StudyInstanceUID = attrs["StudyInstanceUID"]
        dataset.add_new("NumberOfStudyRelatedInstances", "IS",
                        attrs.get("NumberOfStudyRelatedInstances"))
        expected.append(bytes(encode(dataset, uid.is_implicit_VR, uid.is_little_endian,
                                     uid.is_deflated) or b""))
    assert found == expected
