"""WADO-RS metadata (PS3.18 10.4.1.1.2) and bulk data, from the JSON kept in the index.

A series' metadata is one index query and a concatenation of the stored JSON objects; the
BulkDataURIs in them get this listener's URL.  Each new instance is described by its area's
metadata writer once stores pause (:mod:`pyqrscp.archive.describer`); an instance not yet
described (stores still arriving, or stored while the listener was off) gets its JSON on the
first request that needs it, once (kept in the index).
"""

from __future__ import annotations

import logging
import secrets

from pydicom import dcmread
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyqrscp.archive.areafiles import reader
from pyqrscp.archive.metadata import BASE_MARKER, describe, stored_metadata
from pyqrscp.archive.storage import StorageArea
from pyqrscp.errors import PyqrscpError
from pyqrscp.web.archive import WebArchive
from pyqrscp.web.qido import DICOM_JSON, archive_of, base_url, check_accept
from pyqrscp.web.wado import multipart

LOGGER = logging.getLogger(__name__)


def metadata_json(archive: WebArchive, ae_title: str, study: str, series: str | None,
                  instance: str | None) -> list[bytes]:
    """The JSON object of each instance; those missing are made from their files and kept."""
    area = archive.area(ae_title)
    with archive.reader(ae_title) as db:
        rows = stored_metadata(db, study, series, instance)
    made: list[tuple[str, str, bytes]] = []
    objects: list[bytes] = []
    for uid, file_name, blob in rows:
        if blob is None:
            blob = _describe_file(area, file_name)
            if blob is None:
                continue
            made.append((uid, file_name, blob))
        objects.append(blob)
    if made:
        area.keep_metadata(made)
        LOGGER.info("%s: kept the metadata of %d instance(s) not yet described", ae_title,
                    len(made))
    return objects


def _describe_file(area: StorageArea, file_name: str) -> bytes | None:
    try:
        with reader(area.path_of(file_name)) as stream:
            return describe(stream)
    except (OSError, PyqrscpError) as error:
        LOGGER.error("no metadata for %s: %s", file_name, error)
        return None


async def metadata(request: Request) -> Response:
    """``.../metadata`` of a study, series or instance as one DICOM JSON array."""
    check_accept(request)
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    params = request.path_params
    objects = await run_in_threadpool(metadata_json, archive, ae_title, params["study"],
                                      params.get("series"), params.get("instance"))
    if not objects:
        raise HTTPException(404, "no such instances in this area")
    body = b"[" + b",".join(objects) + b"]"
    body = body.replace(BASE_MARKER.encode(), base_url(request, ae_title).encode())
    return Response(body, media_type=DICOM_JSON)


def _element_bytes(area: StorageArea, sop_instance_uid: str, tag: int) -> bytes:
    stored = area.instance(sop_instance_uid)
    if stored is None:
        raise HTTPException(404, "no such instance in this area")
    with reader(area.path_of(stored.file_name)) as stream:
        dataset = dcmread(stream)
    if tag not in dataset:
        raise HTTPException(404, f"the instance has no element {tag:08X}")
    value = dataset[tag].value
    if not isinstance(value, (bytes, bytearray)):
        raise HTTPException(404, f"element {tag:08X} is not bulk data")
    return bytes(value)


async def bulkdata(request: Request) -> Response:
    """The value of one top-level binary element, as the BulkDataURIs name it."""
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    try:
        tag = int(request.path_params["tag"], 16)
    except ValueError:
        raise HTTPException(400, "a tag is eight hex digits") from None
    data = await run_in_threadpool(_element_bytes, archive.area(ae_title),
                                   request.path_params["instance"], tag)
    boundary = secrets.token_hex(16)
    body = b"".join(multipart(iter([("application/octet-stream", iter([data]))]), boundary))
    return Response(body, media_type="multipart/related; "
                    f'type="application/octet-stream"; boundary={boundary}')


ROUTES = [
    Route("/studies/{study}/metadata", metadata, methods=["GET"]),
    Route("/studies/{study}/series/{series}/metadata", metadata, methods=["GET"]),
    Route("/studies/{study}/series/{series}/instances/{instance}/metadata", metadata,
          methods=["GET"]),
    Route("/bulkdata/{instance}/{tag}", bulkdata, methods=["GET"]),
]
