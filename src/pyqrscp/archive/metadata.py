"""Each instance's DICOM JSON (PS3.18 F.2), written once after ingest, for WADO-RS ``/metadata``.

Kept in the area's index (table ``instance_metadata``, one row per instance, removed with it),
so a series' metadata is one query and a concatenation: no file is parsed per request.  Bulk
data (binary values past :data:`BULK_THRESHOLD` bytes: pixel data, overlays, curves) is
referred to by a BulkDataURI made of :data:`BASE_MARKER` and the instance and tag; the web
layer replaces the marker with its own URL when it answers.  Sequences are written inline.
"""

from __future__ import annotations

import json
import logging
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr_element
from pydicom.valuerep import AMBIGUOUS_VR

from pyqrscp.archive.index.backend import IndexBackend, IndexConnection
from pyqrscp.errors import InvalidDataset

LOGGER = logging.getLogger(__name__)

BULK_THRESHOLD = 1024
BASE_MARKER = "pyqrscp-bulkdata-base:"
_BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
DDL = ("CREATE TABLE IF NOT EXISTS instance_metadata (instance_pk INTEGER PRIMARY KEY "
       "REFERENCES instance(pk) ON DELETE CASCADE, json BLOB NOT NULL)")


class _Buffer:
    """A stream as pydicom takes a buffer: ``read``, ``seek`` and ``tell``.  Given a file
    object itself, pydicom notes its name (a descriptor, for a file opened link-safely) as the
    file to read a deferred value from again, and fails; given this, it reads such a value
    through the same stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def read(self, size: int = -1, /) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()


def describe(stream: BinaryIO) -> bytes:
    """The DICOM JSON object of a seekable Part-10 stream (a stored file), as UTF-8.

    Only what the JSON holds is read: element headers and values up to
    :data:`BULK_THRESHOLD` bytes; the values of larger elements (pixel data, also
    encapsulated) are passed over by seeking, so describing a large image reads a few
    kilobytes, not its pixels.

    Raises
    ------
    InvalidDataset
        When pydicom cannot read the stream or turn an element into JSON.
    """
    try:
        dataset = dcmread(_Buffer(stream), defer_size=BULK_THRESHOLD)
        sop_instance_uid = str(dataset.SOPInstanceUID)
        result: dict[str, Any] = {}
        for tag in dataset.keys():
            try:
                result[f"{int(tag):08X}"] = _element_json(dataset, tag, sop_instance_uid)
            except Exception as error:  # noqa: BLE001 - one element pydicom cannot convert
                LOGGER.warning("%s: element %08X left out of the metadata: %s",
                               sop_instance_uid, int(tag), error)
    except Exception as error:  # pydicom raises many kinds for what it cannot read
        raise InvalidDataset(f"cannot describe the instance as JSON: {error}") from error
    return json.dumps(result, separators=(",", ":")).encode()


def _element_json(dataset: Dataset, tag: Any, sop_instance_uid: str) -> dict[str, Any]:
    vr, length = _vr_and_length(dataset, tag)
    if vr in _BULK_VRS and (length > BULK_THRESHOLD or length == 0xFFFFFFFF):
        return {"vr": vr,
                "BulkDataURI": f"{BASE_MARKER}/bulkdata/{sop_instance_uid}/{int(tag):08X}"}
    converted: dict[str, Any] = dataset[tag].to_json_dict(None, 1 << 62)
    return converted


def _vr_and_length(dataset: Dataset, tag: Any) -> tuple[str, int]:
    """An element's VR and length, without reading a deferred value (one larger than
    :data:`BULK_THRESHOLD`, which is bulk data when its VR is binary)."""
    raw = dataset.get_item(tag, keep_deferred=True)
    if isinstance(raw, RawDataElement) and raw.value is None and raw.length != 0:
        return _deferred_vr(dataset, raw), BULK_THRESHOLD + 1
    length = getattr(raw, "length", None)
    if length is None:
        value = getattr(raw, "value", None)
        length = len(value) if isinstance(value, (bytes, bytearray)) else 0
    return str(raw.VR or _dictionary_vr(tag)), int(length)


def _deferred_vr(dataset: Dataset, raw: RawDataElement) -> str:
    """The VR pydicom gives a deferred element once read (the dictionary's, a private
    creator's, an ambiguous one resolved), found without reading its value: none of those
    rules looks at the value."""
    element = convert_raw_data_element(raw._replace(value=b""), ds=dataset)
    if element.VR not in AMBIGUOUS_VR:
        return str(element.VR)
    return str(correct_ambiguous_vr_element(element, dataset, raw.is_little_endian).VR)


def _dictionary_vr(tag: Any) -> str:
    """The VR of an element read in an implicit syntax (``OB or OW`` counts as OB)."""
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return "UN"


def create_table(db: IndexConnection, backend: IndexBackend) -> None:
    with backend.write_transaction(db):
        for statement in backend.schema_statements(DDL):
            db.execute(statement)


def keep(db: IndexConnection, sop_instance_uid: str, file_name: str, metadata: bytes) -> None:
    """Store an instance's JSON in the caller's write transaction, if its row still names the
    file described (not when a newer copy replaced it meanwhile)."""
    db.execute("INSERT INTO instance_metadata (instance_pk, json) SELECT pk, ? FROM instance "
               "WHERE sop_instance_uid = ? AND file_name = ? ON CONFLICT (instance_pk) DO "
               "UPDATE SET json = excluded.json", (metadata, sop_instance_uid, file_name))


def undescribed(db: IndexConnection, entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Those of ``entries`` (``(SOP Instance UID, file name)``) whose row still names that file
    and has no JSON yet, in one query: an instance a request described meanwhile, or one
    replaced or deleted, is not read again."""
    if not entries:
        return []
    marks = ",".join("?" * len(entries))
    rows = db.execute("SELECT i.sop_instance_uid, i.file_name FROM instance i "
                      "LEFT JOIN instance_metadata m ON m.instance_pk = i.pk "
                      f"WHERE m.instance_pk IS NULL AND i.sop_instance_uid IN ({marks})",
                      [uid for uid, _ in entries]).fetchall()
    waiting = {(str(uid), str(name)) for uid, name in rows}
    return [entry for entry in entries if entry in waiting]


def stored_metadata(db: IndexConnection, study_uid: str, series_uid: str | None = None,
                    instance_uid: str | None = None) -> list[tuple[str, str, bytes | None]]:
    """``(SOP Instance UID, file name, JSON or None)`` of every instance of a study, series or
    instance, series by series in the order they were stored."""
    sql = ("SELECT i.sop_instance_uid, i.file_name, m.json FROM instance i "
           "JOIN series r ON r.pk = i.series_pk JOIN study s ON s.pk = r.study_pk "
           "LEFT JOIN instance_metadata m ON m.instance_pk = i.pk "
           "WHERE s.study_instance_uid = ?")
    args = [study_uid]
    if series_uid is not None:
        sql += " AND r.series_instance_uid = ?"
        args.append(series_uid)
    if instance_uid is not None:
        sql += " AND i.sop_instance_uid = ?"
        args.append(instance_uid)
    rows = db.execute(sql + " ORDER BY r.pk, i.received", args).fetchall()
    return [(str(uid), str(name), None if blob is None else bytes(blob))
            for uid, name, blob in rows]
