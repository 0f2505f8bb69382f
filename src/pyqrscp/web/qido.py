"""QIDO-RS routes: studies, series and instances, each at every place PS3.18 10.6 names."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from pyqrscp.archive.dicomfile import valid_uid
from pyqrscp.errors import InvalidIdentifier
from pyqrscp.web.archive import WebArchive
from pyqrscp.web.dicomjson import JsonObject, to_json, uri_element
from pyqrscp.web.search import BadSearch, Search, build_search, result_keywords, run_search

LOGGER = logging.getLogger(__name__)
DICOM_JSON = "application/dicom+json"
_ACCEPTED = ("application/dicom+json", "application/json", "*/*", "application/*")
_PATH_UIDS = ("study", "series", "instance")


def archive_of(request: Request) -> WebArchive:
    """The archive the routes serve, once the UIDs in the path are known to be UIDs.

    Raises
    ------
    HTTPException
        400 for a study, series or instance UID in the path that is not one (PS3.5 9.1): a
        backslash would make it a list of UIDs to match, a quote would end the page's
        Content-Disposition file name.
    """
    for key in _PATH_UIDS:
        uid = request.path_params.get(key)
        if uid is not None and not valid_uid(uid):
            LOGGER.warning("HTTP %s %s from %s refused: %s UID %r is not a UID",
                           request.method, request.url.path, _client(request), key, uid)
            raise HTTPException(400, f"{key} UID {uid!r} is not a UID")
    archive: WebArchive = request.app.state.archive
    return archive


def base_url(request: Request, ae_title: str) -> str:
    """The DICOMweb root of an AE title as the client reached it (its Host header).

    A Host header naming this listener's own address without a port (dicomweb-client sends
    one) gets the listener's port: the client did not connect to the default port.
    """
    root = str(request.base_url).rstrip("/")
    server = request.scope.get("server")
    host = request.headers.get("host", "")
    if server and host == server[0] and request.url.port is None and server[1] not in (80, 443):
        root = f"{request.url.scheme}://{host}:{server[1]}"
    return f"{root}/dicomweb/{ae_title}"


def check_accept(request: Request, accepted: tuple[str, ...] = _ACCEPTED) -> None:
    """406 unless the Accept header allows DICOM JSON (no header allows anything)."""
    header = request.headers.get("accept", "")
    if not header:
        return
    types = [part.split(";")[0].strip().lower() for part in header.split(",")]
    if not any(t in accepted for t in types):
        raise HTTPException(406, f"only {DICOM_JSON} is offered here, not {header!r}")


def _retrieve_url(base: str, level: str, attrs: dict[str, str]) -> str:
    url = f"{base}/studies/{attrs.get('StudyInstanceUID', '')}"
    if level in ("SERIES", "IMAGE"):
        url += f"/series/{attrs.get('SeriesInstanceUID', '')}"
    if level == "IMAGE":
        url += f"/instances/{attrs.get('SOPInstanceUID', '')}"
    return url


def _results(archive: WebArchive, ae_title: str, search: Search, base: str
             ) -> Iterator[JsonObject]:
    with archive.reader(ae_title) as db:
        for attrs in run_search(db, search, archive.case_sensitive_pn):
            extra = {"00081190": uri_element(_retrieve_url(base, search.level, attrs)),
                     "00080056": {"vr": "CS", "Value": ["ONLINE"]},
                     "00080054": {"vr": "AE", "Value": [ae_title]}}
            yield to_json(attrs, result_keywords(search, attrs), extra)


def search_results(request: Request, level: str, path_uids: dict[str, str]
                   ) -> list[JsonObject]:
    """Every result of one QIDO-RS request (also the page's data source).

    Raises
    ------
    HTTPException
        400 for a parameter or key C-FIND would refuse, 403/404 for the AE title.
    """
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    try:
        search = build_search(level, list(request.query_params.multi_items()), path_uids)
        return list(_results(archive, ae_title, search, base_url(request, ae_title)))
    except (BadSearch, InvalidIdentifier) as error:
        LOGGER.warning("QIDO-RS from %s refused: %s", _client(request), error)
        raise HTTPException(400, str(error)) from error


def _client(request: Request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "?"


def _respond(request: Request, level: str, path_uids: dict[str, str]) -> Response:
    check_accept(request)
    results = search_results(request, level, path_uids)
    LOGGER.info("QIDO-RS %s from %s: %d result(s)", request.url.path, _client(request),
                len(results))
    if not results:
        return Response(status_code=204)

    def body() -> Iterator[bytes]:
        yield b"["
        for index, result in enumerate(results):
            yield (b"," if index else b"") + json.dumps(result).encode()
        yield b"]"
    return StreamingResponse(body(), media_type=DICOM_JSON)


def studies(request: Request) -> Response:
    return _respond(request, "STUDY", {})


def study_series(request: Request) -> Response:
    return _respond(request, "SERIES", {"StudyInstanceUID": request.path_params["study"]})


def all_series(request: Request) -> Response:
    return _respond(request, "SERIES", {})


def series_instances(request: Request) -> Response:
    return _respond(request, "IMAGE", {"StudyInstanceUID": request.path_params["study"],
                                       "SeriesInstanceUID": request.path_params["series"]})


def study_instances(request: Request) -> Response:
    return _respond(request, "IMAGE", {"StudyInstanceUID": request.path_params["study"]})


def all_instances(request: Request) -> Response:
    return _respond(request, "IMAGE", {})


ROUTES = [
    Route("/studies", studies, methods=["GET"]),
    Route("/series", all_series, methods=["GET"]),
    Route("/instances", all_instances, methods=["GET"]),
    Route("/studies/{study}/series", study_series, methods=["GET"]),
    Route("/studies/{study}/instances", study_instances, methods=["GET"]),
    Route("/studies/{study}/series/{series}/instances", series_instances, methods=["GET"]),
]
