"""WADO-RS retrieval of instances (PS3.18 10.4): the stored bytes as ``multipart/related``.

Files go out as stored, never decoded or re-encoded; each part names the stored transfer
syntax.  A request that lists transfer syntaxes none of which is stored gets 406 (pyqrscp does
not transcode); no ``transfer-syntax`` parameter, or ``*``, takes the stored one.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from pyqrscp.errors import InvalidIdentifier
from pyqrscp.web.qido import archive_of
from pyqrscp.web.stored import StoredFile, file_chunks, stored_files

LOGGER = logging.getLogger(__name__)


def accepted_syntaxes(accept: str, media_type: str = "application/dicom") -> set[str] | None:
    """The transfer syntaxes an Accept header allows for ``media_type`` parts; None for any.

    Raises
    ------
    HTTPException
        406 when no entry of the header allows ``multipart/related`` of ``media_type``.
    """
    if not accept.strip():
        return None
    syntaxes: set[str] = set()
    for entry in accept.split(","):
        kind, params = _media_params(entry)
        part_type = params.get("type", media_type).lower()
        if kind in ("*/*", "multipart/*") or (
                kind == "multipart/related" and part_type in (media_type, "*/*")):
            syntax = params.get("transfer-syntax", "*")
            if syntax == "*":
                return None
            syntaxes.add(syntax)
    if not syntaxes:
        raise HTTPException(406, f'only multipart/related; type="{media_type}" is offered '
                            f"here, not {accept!r}")
    return syntaxes


def _media_params(entry: str) -> tuple[str, dict[str, str]]:
    kind, *rest = [item.strip() for item in entry.split(";")]
    params = {}
    for item in rest:
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip().strip('"')
    return kind.lower(), params


def multipart(parts: Iterator[tuple[str, Iterator[bytes]]], boundary: str) -> Iterator[bytes]:
    """A ``multipart/related`` body of ``(content type, chunks)`` parts."""
    for content_type, chunks in parts:
        yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def retrieve(request: Request) -> Response:
    """Instances of a study, series or instance as stored."""
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    wanted = accepted_syntaxes(request.headers.get("accept", ""))
    params = request.path_params
    try:
        with archive.reader(ae_title) as db:
            files = stored_files(db, archive.area(ae_title), params["study"],
                                 params.get("series"), params.get("instance"))
    except InvalidIdentifier as error:
        raise HTTPException(400, str(error)) from error
    if not files:
        raise HTTPException(404, "no such instances in this area")
    if wanted is not None and any(f.transfer_syntax_uid not in wanted for f in files):
        stored = sorted({f.transfer_syntax_uid for f in files} - wanted)
        raise HTTPException(406, "stored in " + ", ".join(stored) + "; pyqrscp sends "
                            "instances as stored (ask with transfer-syntax=*)")
    boundary = secrets.token_hex(16)
    LOGGER.info("WADO-RS %s: %d instance(s)", request.url.path, len(files))
    return StreamingResponse(
        multipart(_parts(files), boundary),
        media_type=f'multipart/related; type="application/dicom"; boundary={boundary}')


def _parts(files: list[StoredFile]) -> Iterator[tuple[str, Iterator[bytes]]]:
    for stored in files:
        yield (f"application/dicom; transfer-syntax={stored.transfer_syntax_uid}",
               file_chunks(stored.path))


ROUTES = [
    Route("/studies/{study}", retrieve, methods=["GET"]),
    Route("/studies/{study}/series/{series}", retrieve, methods=["GET"]),
    Route("/studies/{study}/series/{series}/instances/{instance}", retrieve,
          methods=["GET"]),
]
