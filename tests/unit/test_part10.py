"""The directly built Part-10 header reads back as pydicom's own would."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import encode

from pyqrscp.dimse.part10 import file_header, file_meta


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("sop_uid", ["1.2.3", "1.2.34", "1.2.826.0.1.3680043.2.1143.1"])
def test_header_round_trips(transfer_syntax: str, sop_uid: str) -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = "Doe^John"
    body = encode(ds, transfer_syntax == ImplicitVRLittleEndian, True)
    assert body is not None
    data = file_header(CTImageStorage, sop_uid, transfer_syntax, "SCU") + body
    read = dcmread(BytesIO(data))
    assert read.file_meta.MediaStorageSOPInstanceUID == sop_uid
    assert read.file_meta.TransferSyntaxUID == transfer_syntax
    assert read.file_meta.SourceApplicationEntityTitle == "SCU"
    assert read.PatientName == "Doe^John"
    assert read.file_meta.FileMetaInformationGroupLength == len(data) - 132 - 12 - len(
        body)


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_file_meta_finds_the_syntax_and_the_dataset(transfer_syntax: str) -> None:
    header = file_header(CTImageStorage, "1.2.3", transfer_syntax, "SCU")
    assert file_meta(header + b"dataset") == (transfer_syntax, len(header))


def test_file_meta_refuses_what_no_valid_file_has() -> None:
    header = file_header(CTImageStorage, "1.2.3", ExplicitVRLittleEndian)
    assert file_meta(b"\x00" * 128 + b"DICX" + header[132:]) is None
    assert file_meta(header[:132] + header[132:136] + b"ZZ" + header[138:]) is None  # unknown VR
    cut = header.index(b"OB") + 4  # the FileMetaInformationVersion header, cut short
    assert file_meta(header[:cut]) is None

