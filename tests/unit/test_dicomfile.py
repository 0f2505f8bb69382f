"""read_header's one-pass completeness check agrees with a full pydicom parse."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_ct
from pydicom import dcmread
from pydicom.data import get_testdata_file

from pyqrscp.dicomfile import _check_complete_by_parsing, _walk_lengths, read_header
from pyqrscp.errors import InvalidDataset

# explicit VR LE with sequences, implicit VR LE, encapsulated JPEG (fragments), RLE
BUNDLED = ["CT_small.dcm", "rtplan.dcm", "MR_small.dcm", "JPEG-lossy.dcm", "MR_small_RLE.dcm"]


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
