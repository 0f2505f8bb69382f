"""DIMSE command sets packed with ``struct`` (implicit VR little endian, PS3.7 Annex E).

pynetdicom builds a pydicom Dataset for every command it sends (about 0.5 ms each, with value
validation); a retrieve sends two per instance, so pyqrscp packs the few it sends itself.
"""

from __future__ import annotations

import struct

# CommandField values (PS3.7 Annex E).
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
N_ACTION_RQ = 0x0130
C_CANCEL_RQ = 0x0FFF

# CommandDataSetType values.
DATASET_PRESENT, NO_DATASET = 0x0000, 0x0101

COMMAND_GROUP = 0x0000

# The command group's elements (0000,eeee) by keyword (PS3.7 Table E.1-1): element numbers.
COMMAND_GROUP_LENGTH = 0x0000
AFFECTED_SOP_CLASS_UID = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
PRIORITY = 0x0700
COMMAND_DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE_UID = 0x1000
NUMBER_OF_REMAINING_SUBOPERATIONS = 0x1020
NUMBER_OF_COMPLETED_SUBOPERATIONS = 0x1021
NUMBER_OF_FAILED_SUBOPERATIONS = 0x1022
NUMBER_OF_WARNING_SUBOPERATIONS = 0x1023
MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE = 0x1030
MOVE_ORIGINATOR_MESSAGE_ID = 0x1031


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", COMMAND_GROUP, element, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii", "replace")  # error comments may quote peer or exception text
    return raw + pad if len(raw) % 2 else raw


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def _command(elements: list[bytes]) -> bytes:
    body = b"".join(elements)
    return _element(COMMAND_GROUP_LENGTH, struct.pack("<I", len(body))) + body


def store_request(sop_class: str, sop_instance: str, message_id: int,
                  originator_aet: str = "", originator_message_id: int | None = None) -> bytes:
    """A C-STORE-RQ (PS3.7 9.3.1.1), with the Move Originator when sent for a C-MOVE."""
    elements = [
        _element(AFFECTED_SOP_CLASS_UID, _padded(sop_class, b"\x00")),
        _element(COMMAND_FIELD, _us(C_STORE_RQ)),
        _element(MESSAGE_ID, _us(message_id)),
        _element(PRIORITY, _us(0)),
        _element(COMMAND_DATA_SET_TYPE, _us(DATASET_PRESENT)),
        _element(AFFECTED_SOP_INSTANCE_UID, _padded(sop_instance, b"\x00")),
    ]
    if originator_aet:
        elements.append(_element(MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
                                 _padded(originator_aet, b" ")))
    if originator_message_id is not None:
        elements.append(_element(MOVE_ORIGINATOR_MESSAGE_ID, _us(originator_message_id)))
    return _command(elements)


def _response(command_field: int, sop_class: str, message_id: int, status: int,
              error_comment: str, has_identifier: bool = False) -> list[bytes]:
    """The elements every DIMSE-C response starts with (PS3.7 9.3), in tag order."""
    elements = [
        _element(AFFECTED_SOP_CLASS_UID, _padded(sop_class, b"\x00")),
        _element(COMMAND_FIELD, _us(command_field)),
        _element(MESSAGE_ID_BEING_RESPONDED_TO, _us(message_id)),
        _element(COMMAND_DATA_SET_TYPE, _us(DATASET_PRESENT if has_identifier else NO_DATASET)),
        _element(STATUS, _us(status)),
    ]
    if error_comment:
        elements.append(_element(ERROR_COMMENT, _padded(error_comment[:64], b" ")))
    return elements


def store_response(sop_class: str, sop_instance: str, message_id: int, status: int,
                   error_comment: str = "") -> bytes:
    """A C-STORE-RSP (PS3.7 9.3.1.2)."""
    elements = _response(C_STORE_RSP, sop_class, message_id, status, error_comment)
    elements.append(_element(AFFECTED_SOP_INSTANCE_UID, _padded(sop_instance, b"\x00")))
    return _command(elements)


def retrieve_response(command_field: int, sop_class: str, message_id: int, status: int,
                      counts: tuple[int | None, int, int, int] | None = None,
                      error_comment: str = "", has_identifier: bool = False) -> bytes:
    """A C-MOVE-RSP or C-GET-RSP; ``counts`` are (remaining or None, completed, failed,
    warning)."""
    elements = _response(command_field, sop_class, message_id, status, error_comment,
                         has_identifier)
    if counts is not None:
        remaining, completed, failed, warning = counts
        if remaining is not None:
            elements.append(_element(NUMBER_OF_REMAINING_SUBOPERATIONS, _us(remaining)))
        elements += [_element(NUMBER_OF_COMPLETED_SUBOPERATIONS, _us(completed)),
                     _element(NUMBER_OF_FAILED_SUBOPERATIONS, _us(failed)),
                     _element(NUMBER_OF_WARNING_SUBOPERATIONS, _us(warning))]
    return _command(elements)


def echo_response(sop_class: str, message_id: int, status: int) -> bytes:
    """A C-ECHO-RSP (PS3.7 9.3.5.2)."""
    return _command(_response(C_ECHO_RSP, sop_class, message_id, status, ""))


def find_response(sop_class: str, message_id: int, status: int, error_comment: str = "",
                  has_identifier: bool = False) -> bytes:
    """A C-FIND-RSP (PS3.7 9.3.2.2)."""
    return _command(_response(C_FIND_RSP, sop_class, message_id, status, error_comment,
                              has_identifier))


def command_us(command: dict[int, bytes], element: int, default: int = 0) -> int:
    """An unsigned short of a parsed command set; ``default`` when absent, a malformed value
    read as its first two bytes."""
    raw = command.get(element)
    return default if raw is None else int.from_bytes(raw[:2], "little")


def is_success_response(command: dict[int, bytes], message_id: int) -> bool:
    """Is this parsed command set a C-STORE-RSP with status Success (0000H) to
    ``message_id``, and no data set?"""
    return (command_us(command, COMMAND_FIELD) == C_STORE_RSP
            and command_us(command, MESSAGE_ID_BEING_RESPONDED_TO) == message_id
            and command.get(STATUS) == b"\x00\x00"
            and command_us(command, COMMAND_DATA_SET_TYPE, NO_DATASET) == NO_DATASET)


def command_text(command: dict[int, bytes], element: int) -> str:
    """A UI/AE/LO value of a parsed command set, without its padding."""
    return command.get(element, b"").decode("ascii", "replace").rstrip("\x00 ")


def parse_command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set by element number (group 0000, implicit VR LE)."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(data):
        _group, element, length = struct.unpack_from("<HHI", data, offset)
        found[element] = data[offset + 8:offset + 8 + length]
        offset += 8 + length
    return found
