"""Rendered images and thumbnails (PS3.18 10.4.1.1.3, 10.4.1.1.4) as JPEG or PNG.

Decoding needs numpy and Pillow (``pip install pyqrscp[render]``) and, for compressed pixel
data, pydicom's codec plugins (``pyqrscp[codecs]``).  Without them, or for pixel data no
installed codec decodes, the answer is 501 naming what is missing; an instance without pixel
data, or an Accept header without image/jpeg or image/png, gets 406.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from pydicom import dcmread
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pyqrscp.archive.areafiles import reader
from pyqrscp.web.qido import archive_of
from pyqrscp.web.stored import StoredFile, stored_files

LOGGER = logging.getLogger(__name__)
THUMBNAIL_SIZE = 128
MAX_VIEWPORT = 4096
_MEDIA = {"image/jpeg": "JPEG", "image/png": "PNG"}


def chosen_media(accept: str) -> str:
    """The image type to answer with; 406 when the Accept header allows neither."""
    if not accept.strip():
        return "image/jpeg"
    for entry in accept.split(","):
        kind = entry.split(";")[0].strip().lower()
        if kind in _MEDIA:
            return kind
        if kind in ("*/*", "image/*"):
            return "image/jpeg"
    raise HTTPException(406, f"rendered images are image/jpeg or image/png, not {accept!r}")


def viewport(request: Request, thumbnail: bool) -> tuple[int, int] | None:
    """The largest width and height asked for (``viewport=W,H``); thumbnails default to
    :data:`THUMBNAIL_SIZE`."""
    text = request.query_params.get("viewport")
    if text is None:
        return (THUMBNAIL_SIZE, THUMBNAIL_SIZE) if thumbnail else None
    try:
        width, height = (int(part) for part in text.split(",")[:2])
    except ValueError:
        raise HTTPException(400, "viewport is W,H in pixels") from None
    if not (0 < width <= MAX_VIEWPORT and 0 < height <= MAX_VIEWPORT):
        raise HTTPException(400, f"viewport out of range (1..{MAX_VIEWPORT})")
    return width, height


def render(stored: StoredFile, frame: int, media: str, size: tuple[int, int] | None) -> bytes:
    """One frame as an 8-bit image; HTTPException 406/501 when it cannot be."""
    try:
        import numpy
        from PIL import Image
    except ImportError:
        raise HTTPException(501, "rendering needs numpy and Pillow: pip install "
                            "pyqrscp[render]") from None
    with reader(stored.path) as stream:
        dataset = dcmread(stream)
    if "PixelData" not in dataset:
        raise HTTPException(406, "this instance has no pixel data to render")
    try:
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many kinds for pixel data it cannot decode
        LOGGER.info("cannot decode %s (%s): %s", stored.sop_instance_uid,
                    stored.transfer_syntax_uid, error)
        raise HTTPException(501, "cannot decode pixel data in transfer syntax "
                            f"{stored.transfer_syntax_uid} (pip install pyqrscp[codecs])"
                            ) from error
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        if not 1 <= frame <= frames:
            raise HTTPException(404, f"frame {frame} of {frames}")
        pixels = pixels[frame - 1]
    image = Image.fromarray(_eight_bit(numpy, pixels, dataset))
    if size is not None:
        image.thumbnail(size)
    out = io.BytesIO()
    image.save(out, _MEDIA[media])
    return out.getvalue()


def _eight_bit(numpy: Any, pixels: Any, dataset: Any) -> Any:
    """Scale to 0..255: the first window of the file when there is one, else min..max;
    MONOCHROME1 inverted."""
    values = pixels.astype(numpy.float64)
    if values.ndim == 2:
        values = values * float(dataset.get("RescaleSlope", 1) or 1) + float(
            dataset.get("RescaleIntercept", 0) or 0)
    center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if values.ndim == 2 and center is not None and width is not None:
        center, width = _first(center), max(_first(width), 1.0)
        low, high = center - width / 2, center + width / 2
    else:
        low, high = float(values.min()), float(values.max())
    scaled = numpy.clip((values - low) / max(high - low, 1e-9) * 255.0, 0, 255)
    if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 255.0 - scaled
    return scaled.astype(numpy.uint8)


def _first(value: Any) -> float:
    """The first of a multi-valued number (WindowCenter may list several windows)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0])
    return float(value)


async def _answer(request: Request, thumbnail: bool, middle: bool) -> Response:
    ae_title = request.path_params["aet"]
    archive = archive_of(request)
    archive.entry(ae_title, read=True)
    media = chosen_media(request.headers.get("accept", ""))
    size = viewport(request, thumbnail)
    params = request.path_params

    def find() -> list[StoredFile]:
        with archive.reader(ae_title) as db:
            return stored_files(db, archive.area(ae_title), params["study"],
                                params.get("series"), params.get("instance"))

    files = await run_in_threadpool(find)
    if not files:
        raise HTTPException(404, "no such instances in this area")
    chosen = files[len(files) // 2] if middle else files[0]
    frame = int(params.get("frame", 1))
    body = await run_in_threadpool(render, chosen, frame, media, size)
    return Response(body, media_type=media)


async def instance_rendered(request: Request) -> Response:
    return await _answer(request, thumbnail=False, middle=False)


async def instance_thumbnail(request: Request) -> Response:
    return await _answer(request, thumbnail=True, middle=False)


async def middle_thumbnail(request: Request) -> Response:
    """A series' or study's thumbnail: its middle instance's."""
    return await _answer(request, thumbnail=True, middle=True)


_INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"
ROUTES = [
    Route(_INSTANCE + "/rendered", instance_rendered, methods=["GET"]),
    Route(_INSTANCE + "/thumbnail", instance_thumbnail, methods=["GET"]),
    Route(_INSTANCE + "/frames/{frame:int}/rendered", instance_rendered, methods=["GET"]),
    Route(_INSTANCE + "/frames/{frame:int}/thumbnail", instance_thumbnail, methods=["GET"]),
    Route("/studies/{study}/series/{series}/rendered", middle_thumbnail, methods=["GET"]),
    Route("/studies/{study}/series/{series}/thumbnail", middle_thumbnail, methods=["GET"]),
    Route("/studies/{study}/thumbnail", middle_thumbnail, methods=["GET"]),
]
