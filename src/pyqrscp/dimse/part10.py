"""The Part-10 file header (preamble, ``DICM``, group 0002), built and read with ``struct``.

pynetdicom's ``encoded_dataset()`` builds a pydicom FileMetaDataset for every received instance
(~1 ms); the header is eight short elements, so pyqrscp writes them itself and appends the
dataset bytes exactly as received.  Reading walks the same element headers
(:func:`file_meta`) instead of having pydicom decode them.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from pyqrscp.dimse.vrs import LONG_LENGTH_VR_CODES, SHORT_LENGTH_VR_CODES

PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _text(value: str, pad: bytes) -> bytes:
    raw = value.encode("ascii")
    return raw + pad if len(raw) % 2 else raw


def file_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
                source_ae_title: str = "") -> bytes:
    """Preamble, prefix and File Meta Information for a dataset encoded in the given syntax."""
    body = b"".join([
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", _text(sop_class_uid, b"\x00")),
        _element(0x0003, b"UI", _text(sop_instance_uid, b"\x00")),
        _element(0x0010, b"UI", _text(transfer_syntax_uid, b"\x00")),
        _element(0x0012, b"UI", _text(str(PYNETDICOM_IMPLEMENTATION_UID), b"\x00")),
        _element(0x0013, b"SH", _text(str(PYNETDICOM_IMPLEMENTATION_VERSION), b" ")),
        *([_element(0x0016, b"AE", _text(source_ae_title, b" "))] if source_ae_title else []),
    ])
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return PREAMBLE + group_length + body


def file_meta(data: bytes) -> tuple[str, int] | None:
    """``(TransferSyntaxUID, offset of the dataset)`` of a Part-10 file's bytes, from the group
    0002 element headers (always explicit VR little endian).

    None when ``data`` is not a Part-10 file or a header is not one a valid file has (unknown
    VR, undefined length, cut short); the TransferSyntaxUID is "" when group 0002 lacks it.
    """
    if data[128:132] != b"DICM":
        return None
    offset, end, transfer_syntax = len(PREAMBLE), len(data), ""
    while offset + 8 <= end and data[offset:offset + 2] == b"\x02\x00":
        element, vr = struct.unpack_from("<H2s", data, offset + 2)
        if vr in LONG_LENGTH_VR_CODES:
            if offset + 12 > end:
                return None
            length, start = struct.unpack_from("<I", data, offset + 8)[0], offset + 12
            if length == 0xFFFFFFFF:
                return None
        elif vr in SHORT_LENGTH_VR_CODES:
            length, start = struct.unpack_from("<H", data, offset + 6)[0], offset + 8
        else:
            return None
        if element == 0x0010:
            transfer_syntax = data[start:start + length].decode("ascii").rstrip("\x00 ")
        offset = start + length
    return transfer_syntax, offset
