"""Re-encoding a stored dataset in the transfer syntax a receiver accepted, value for value.

A retrieve sends the stored bytes unchanged whenever the receiver accepts their syntax; this is
the fallback.  pydicom decodes and encodes every number (US, SS, UL, SL, FL, FD, AT, SV, UV) in
either byte order and settles the VRs an implicit syntax leaves open, but it writes the bytes of
OW, OF, OL, OD and OV values as they are, in the byte order they were read in.  So when the byte
order changes, those values are swapped here value by value (2, 4 or 8 bytes, PS3.5 7.3), in
every dataset, items of sequences included.  OW Pixel Data and Waveform Data are swapped in units
of their bits allocated when those are 32 or 64 (what pydicom and most readers decode: one
32-bit value, not two words) and as 16-bit words otherwise, 8-bit data too (PS3.5 A.3).  OB and
UN values are bytes and keep their order.
"""

from __future__ import annotations

import array
from io import BytesIO

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.uid import UID, RLELossless
from pynetdicom.dsutils import decode, encode

from pyqrscp.errors import SubOperationFailed

WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
"""Bytes per value of the VRs whose values pydicom keeps as bytes in their byte order."""

_UNIT_KEYWORDS = {0x7FE00010: "BitsAllocated", 0x54001010: "WaveformBitsAllocated"}
_ARRAY_CODES = {size: next(code for code in "HILQ" if array.array(code).itemsize == size)
                for size in (2, 4, 8)}


def _decoder_of(syntax: UID) -> str:
    """pydicom's decoding plugin for a compressed syntax: RLE by any (pydicom decodes it
    itself), everything else by pylibjpeg (the ``codecs`` extra) only.  pydicom would otherwise
    also use Pillow when it happens to be installed (the web extras and dicomweb-client bring
    it), whose JPEG 2000 arrays are read-only (the decode fails) and whose conversion results
    differ from the codec set pyqrscp documents."""
    return "" if syntax == RLELossless else "pylibjpeg"


def convert(data: bytes | memoryview, source: str, target: str) -> bytes:
    """Re-encode a dataset (no group 0002) from ``source`` to ``target`` syntax.

    Compressed sources are decompressed when pydicom can (RLE natively; other codecs with the
    ``codecs`` extra); their pixel data is then little endian, as every compressed syntax is.
    The instance keeps its SOP Instance UID (the C-STORE request names it; pydicom would make
    a new one).

    Raises
    ------
    SubOperationFailed
        When the dataset cannot be decoded, decompressed or encoded in ``target``.
    """
    source_uid, target_uid = UID(source), UID(target)
    try:
        dataset = decode(BytesIO(data), source_uid.is_implicit_VR, source_uid.is_little_endian,
                         source_uid.is_deflated)
        if source_uid.is_compressed:
            dataset.file_meta = FileMetaDataset()
            dataset.file_meta.TransferSyntaxUID = source_uid
            dataset.decompress(generate_instance_uid=False,
                               decoding_plugin=_decoder_of(source_uid))
            del dataset.file_meta
        if source_uid.is_little_endian != target_uid.is_little_endian:
            swap_words(dataset, source_uid.is_little_endian)
        encoded = encode(dataset, target_uid.is_implicit_VR, target_uid.is_little_endian,
                         target_uid.is_deflated)
    except Exception as error:  # pydicom raises many kinds for codecs and encodings
        raise SubOperationFailed(f"cannot convert {source_uid.name} to {target_uid.name}: "
                                 f"{error}") from error
    if encoded is None:
        raise SubOperationFailed(f"cannot encode the dataset in {target_uid.name}")
    return bytes(encoded)


def swap_words(dataset: Dataset, little_endian: bool,
               ancestors: tuple[Dataset, ...] = ()) -> None:
    """Reverse the byte order of every OW/OF/OL/OD/OV value in ``dataset`` and its items.

    ``little_endian`` is the byte order the dataset was decoded from: an ambiguous VR ("OB or
    OW", "US or OW", "US or SS") is settled first with pydicom's rules, which read the numbers
    of a "US or SS" value in that order.  Encapsulated (undefined-length) values are left alone.
    """
    lineage = [dataset, *ancestors]
    for tag in list(dataset.keys()):
        element = dataset[tag]
        if " or " in element.VR:
            correct_ambiguous_vr_element(element, dataset, little_endian, lineage)
        if element.VR == "SQ":
            for item in element.value:
                swap_words(item, little_endian, (dataset, *ancestors))
        elif element.VR in WORD_SIZES:
            _swap_value(element, _unit_size(element, dataset))


def _unit_size(element: DataElement, dataset: Dataset) -> int:
    """Bytes per value: the VR's, or for OW pixel and waveform data their bits allocated."""
    keyword = _UNIT_KEYWORDS.get(element.tag)
    if element.VR == "OW" and keyword is not None:
        bits = dataset.get(keyword)
        if bits in (32, 64):
            return int(bits) // 8
    return WORD_SIZES[element.VR]


def _swap_value(element: DataElement, size: int) -> None:
    value = element.value
    if not isinstance(value, (bytes, bytearray)) or element.is_undefined_length:
        return
    whole = len(value) - len(value) % size
    words = array.array(_ARRAY_CODES[size], value[:whole])
    words.byteswap()
    element.value = words.tobytes() + bytes(value[whole:])
