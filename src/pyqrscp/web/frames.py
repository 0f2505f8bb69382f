"""WADO-RS frames (PS3.18 10.4.1.1.5): pixel data frames as stored, never decoded.

Native pixel data is cut into frames of Rows x Columns x SamplesPerPixel x BitsAllocated/8
bytes (``application/octet-stream``); encapsulated pixel data gives each frame's fragments
(the compressed bitstream, typed by its transfer syntax: ``image/jpeg``, ``image/jls``,
``image/jp2``, ...).  Transcoding is not offered: a request that lists transfer syntaxes the
file is not in gets 406.
"""

from __future__ import annotations

import secrets

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyqrscp.archive.areafiles import reader
from pyqrscp.web.qido import archive_of
from pyqrscp.web.stored import StoredFile, stored_files
from pyqrscp.web.wado import multipart

MAX_FRAMES_LISTED = 10_000
_MEDIA_OF_SYNTAX = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc", "1.2.840.10008.1.2.5": "image/dicom-rle",
}


def frame_numbers(text: str) -> list[int]:
    """``1,3,5`` as numbers (1-based); 400 for anything else."""
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise HTTPException(400, "frames are listed as 1,2,3") from None
    if not numbers or len(numbers) > MAX_FRAMES_LISTED or min(numbers) < 1:
        raise HTTPException(400, "frame numbers start at 1")
    return numbers


def read_frames(stored: StoredFile, numbers: list[int]) -> tuple[str, list[bytes]]:
    """``(media type, frames)`` of one instance; 404 for a frame it does not have."""
    with reader(stored.path) as stream:
        dataset = dcmread(stream)
    if "PixelData" not in dataset:
        raise HTTPException(404, "this instance has no pixel data")
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    if max(numbers) > count:
        raise HTTPException(404, f"frame {max(numbers)} of {count}")
    syntax = UID(stored.transfer_syntax_uid)
    if syntax.is_encapsulated:
        frames = list(generate_frames(dataset.PixelData, number_of_frames=count))
        media = _MEDIA_OF_SYNTAX.get(str(syntax), "application/octet-stream")
    else:
        frames = _native_frames(dataset, count)
        media = "application/octet-stream"
    return f"{media}; transfer-syntax={syntax}", [frames[n - 1] for n in numbers]


def _native_frames(dataset: Dataset, count: int) -> list[bytes]:
    bits = int(dataset.BitsAllocated)
    if bits % 8:
        raise HTTPException(501, f"frames of {bits}-bit pixel data are not cut out")
    size = int(dataset.Rows) * int(dataset.Columns) * int(
        dataset.get("SamplesPerPixel", 1) or 1) * bits // 8
    data = bytes(dataset.PixelData)
    return [data[index * size:(index + 1) * size] for index in range(count)]


async def frames(request: Request) -> Response:
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    numbers = frame_numbers(request.path_params["frames"])
    params = request.path_params

    def find() -> list[StoredFile]:
        with archive.reader(ae_title) as db:
            return stored_files(db, archive.area(ae_title), params["study"], params["series"],
                                params["instance"])

    files = await run_in_threadpool(find)
    if not files:
        raise HTTPException(404, "no such instance in this area")
    _check_accept(request.headers.get("accept", ""), files[0].transfer_syntax_uid)
    media, found = await run_in_threadpool(read_frames, files[0], numbers)
    boundary = secrets.token_hex(16)
    body = b"".join(multipart(iter((media, iter([frame])) for frame in found), boundary))
    part_type = media.split(";")[0]
    return Response(body, media_type=f'multipart/related; type="{part_type}"; '
                    f"boundary={boundary}")


def _check_accept(accept: str, stored_syntax: str) -> None:
    """406 when every entry of the Accept header names another transfer syntax."""
    syntaxes = [item.split("=", 1)[1].strip().strip('"') for entry in accept.split(",")
                for item in entry.split(";") if item.strip().startswith("transfer-syntax=")]
    if syntaxes and "*" not in syntaxes and stored_syntax not in syntaxes:
        raise HTTPException(406, f"frames are sent as stored ({stored_syntax}); pyqrscp does "
                            "not transcode (ask with transfer-syntax=*)")


ROUTES = [
    Route("/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", frames,
          methods=["GET"]),
]
