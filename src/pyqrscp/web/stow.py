"""STOW-RS (PS3.18 10.5): ``multipart/related; type="application/dicom"`` into an area.

The whole body is read first, each part into a temp file of the storage area (as a large
C-STORE is spooled; parsed and written in a worker thread, see :mod:`pyqrscp.web.upload`);
only a well-formed body is stored, part by part, through the same
:meth:`StorageArea.store` as C-STORE (quota, crash-safe write, index).  A malformed body (no
boundary, an unquoted ``type``, chunked, a part that never ends, larger than allowed, too
slow) gets a 4xx and leaves nothing behind.
"""

from __future__ import annotations

import logging
import mmap
import os
from dataclasses import dataclass, field

from anyio import to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pyqrscp.archive.areafiles import open_regular
from pyqrscp.archive.dicomfile import Header, read_header
from pyqrscp.archive.storage import StorageArea
from pyqrscp.errors import InvalidDataset, PyqrscpError, QuotaExceeded, StorageFailure
from pyqrscp.status import Status
from pyqrscp.web.archive import WebArchive
from pyqrscp.web.multipart import content_type_params
from pyqrscp.web.qido import archive_of, base_url
from pyqrscp.web.settings import WebSettings
from pyqrscp.web.upload import SpooledPart, discard, receive_parts

LOGGER = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"


@dataclass(slots=True)
class Outcome:
    """What became of each part: stored ``(class, instance)``, failed ``(class, instance,
    reason)``."""

    stored: list[tuple[str, str, str]] = field(default_factory=list)
    """(class, instance, its path below the AE title's root)"""
    failed: list[tuple[str, str, int]] = field(default_factory=list)


def check_request(request: Request, settings: WebSettings) -> str:
    """The boundary of an acceptable STOW-RS request; HTTPException (4xx) otherwise."""
    kind, params, unquoted = content_type_params(request.headers.get("content-type", ""))
    if kind != "multipart/related":
        raise HTTPException(415, "STOW-RS takes multipart/related; type=\"application/dicom\"")
    if "type" in unquoted and "/" in params["type"]:
        raise HTTPException(400, "the type parameter must be quoted: "
                            'type="application/dicom" (RFC 2045: "/" is a special character)')
    if params.get("type", "application/dicom").lower() != "application/dicom":
        raise HTTPException(415, f"parts of type {params['type']!r} are not taken; only "
                            "application/dicom")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise HTTPException(400, "the Content-Type has no boundary parameter (1..70 chars)")
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        raise HTTPException(411, "chunked bodies are not taken: send a Content-Length")
    length_text = request.headers.get("content-length")
    if length_text is None or not length_text.isdigit():
        raise HTTPException(411, "a Content-Length is required")
    if int(length_text) > settings.max_body_bytes:
        raise HTTPException(413, f"body of {length_text} bytes is larger than "
                            f"{settings.max_body_bytes}")
    return boundary


_REASON = ((InvalidDataset, Status.DATASET_DOES_NOT_MATCH_SOP_CLASS),
           (QuotaExceeded, Status.OUT_OF_RESOURCES), (StorageFailure, Status.OUT_OF_RESOURCES))


def store_parts(archive: WebArchive, ae_title: str, parts: list[SpooledPart],
                study_uid: str | None, who: str) -> Outcome:
    """Store each received part as C-STORE stores an instance; what became of each."""
    outcome = Outcome()
    area = archive.area(ae_title)
    for part in parts:
        try:
            header = _store_part(area, part, study_uid, archive.uid_padding)
            outcome.stored.append((header.sop_class_uid, header.sop_instance_uid,
                                   f"/studies/{header.study_instance_uid}/series/"
                                   f"{header.series_instance_uid}/instances/"
                                   f"{header.sop_instance_uid}"))
            LOGGER.info("Stored %s from %s (STOW-RS) into %s", header.sop_instance_uid, who,
                        ae_title)
        except _PartFailed as failed:
            reason = next((int(s) for kind, s in _REASON if isinstance(failed.error, kind)),
                          int(Status.PROCESSING_FAILURE))
            LOGGER.error("STOW-RS from %s into %s: part refused: %s", who, ae_title,
                         failed.error)
            outcome.failed.append((failed.sop_class, failed.sop_instance, reason))
        finally:
            discard([part])
    return outcome


class _PartFailed(Exception):
    def __init__(self, error: Exception, sop_class: str = "", sop_instance: str = "") -> None:
        super().__init__(str(error))
        self.error, self.sop_class, self.sop_instance = error, sop_class, sop_instance


def _store_part(area: StorageArea, part: SpooledPart, study_uid: str | None,
                uid_padding: bool) -> Header:
    if part.size == 0:
        raise _PartFailed(InvalidDataset("an empty part"))
    fd = open_regular(part.path)
    try:
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as data:
            try:
                header = read_header(data, uid_padding)  # type: ignore[arg-type]
            except PyqrscpError as error:
                raise _PartFailed(error) from error
            ids = (header.sop_class_uid, header.sop_instance_uid)
            if study_uid is not None and header.study_instance_uid != study_uid:
                raise _PartFailed(InvalidDataset(
                    f"Study Instance UID {header.study_instance_uid} is not the URL's"), *ids)
            try:
                area.store(header, data, spooled=part.path)  # type: ignore[arg-type]
            except PyqrscpError as error:
                raise _PartFailed(error, *ids) from error
    finally:
        os.close(fd)
    return header


def response_body(outcome: Outcome, base: str, study_uid: str | None) -> dict[str, object]:
    """The Store Instances Response Module (PS3.18 10.5.3) in DICOM JSON."""
    body: dict[str, object] = {}
    if study_uid is not None:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study_uid}"]}
    if outcome.failed:
        body["00081198"] = {"vr": "SQ", "Value": [
            {"00081150": _ui(c), "00081155": _ui(i),
             "00081197": {"vr": "US", "Value": [reason]}}
            for c, i, reason in outcome.failed]}
    if outcome.stored:
        body["00081199"] = {"vr": "SQ", "Value": [
            {"00081150": _ui(c), "00081155": _ui(i),
             "00081190": {"vr": "UR", "Value": [base + path]}}
            for c, i, path in outcome.stored]}
    return body


def _ui(uid: str) -> dict[str, object]:
    return {"vr": "UI", "Value": [uid]} if uid else {"vr": "UI"}


async def stow(request: Request) -> Response:
    """Store the instances of one STOW-RS request: 200 all, 202 some, 409 none stored."""
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    entry = archive.entry(ae_title, write=True)
    settings = archive.settings
    who = f"{request.client.host}:{request.client.port}" if request.client else "?"
    try:
        boundary = check_request(request, settings)
        area = archive.area(ae_title)
        limit = min(archive.max_store_size, entry.quota.max_bytes_per_study)
        parts = await receive_parts(request, area.root, area.node.temp_prefix, settings,
                                    boundary, limit, archive.stopping, archive.upload_threads)
    except HTTPException as error:
        LOGGER.warning("STOW-RS from %s into %s refused: %s", who, ae_title, error.detail)
        raise
    if not parts:
        raise HTTPException(400, "the body holds no part")
    study_uid = request.path_params.get("study")
    outcome = await to_thread.run_sync(store_parts, archive, ae_title, parts, study_uid, who,
                                       limiter=archive.upload_threads)
    status = 200 if not outcome.failed else 409 if not outcome.stored else 202
    return JSONResponse(response_body(outcome, base_url(request, ae_title), study_uid),
                        status_code=status, media_type=DICOM_JSON)


ROUTES = [
    Route("/studies", stow, methods=["POST"]),
    Route("/studies/{study}", stow, methods=["POST"]),
]
