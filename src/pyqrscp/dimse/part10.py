"""The Part-10 file header (preamble, ``DICM``, group 0002), built directly with ``struct``.

pynetdicom's ``encoded_dataset()`` builds a pydicom FileMetaDataset for every received instance
(~1 ms); the header is eight short elements, so pyqrscp writes them itself and appends the
dataset bytes exactly as received.
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

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
