"""A STOW-RS body into temp files of the storage area, parsed and written off the event loop.

The event loop only receives: it hands what arrived to a worker thread, which parses it and
writes the parts' bytes (a write can wait on the disk for as long as the disk likes; the loop
meanwhile answers other requests).  Uploads share a few threads of their own (a
``CapacityLimiter``), so uploads waiting on a slow disk never take the threads that searches,
metadata and the page run in.  While the thread writes, the server gathers what arrives
(up to its flow-control limit), so the slower the disk, the fewer and larger the hand-overs.
Any problem discards every part written so far.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from anyio import CapacityLimiter, move_on_after, to_thread
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from pyqrscp.web.multipart import (
    MalformedMultipart,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    content_type_params,
)
from pyqrscp.web.settings import WebSettings

STOP_CHECK_SECONDS = 0.25


@dataclass(slots=True)
class SpooledPart:
    """One part's bytes in a temp file of the area."""

    path: Path
    fd: int
    size: int = 0


class Upload:
    """The parts of one body, spooled as its bytes are fed; safe to discard from another
    thread while a feed runs (the discard waits for it)."""

    def __init__(self, folder: Path, temp_prefix: str, boundary: str, part_limit: int) -> None:
        self.folder, self.temp_prefix, self.part_limit = folder, temp_prefix, part_limit
        self.parser = MultipartParser(boundary)
        self.parts: list[SpooledPart] = []
        self._current: SpooledPart | None = None
        self._lock = threading.Lock()
        self._discarded = False

    def feed(self, data: bytes) -> None:
        """Parse and write ``data``.

        Raises
        ------
        MalformedMultipart
            See :class:`MultipartParser`.
        HTTPException
            413 a part past its limit, 415 a part that is not application/dicom, 507 no temp
            file or a write that failed (disk full, I/O error).
        """
        with self._lock:
            if self._discarded:
                return
            try:
                self._handle(data)
            except OSError as error:
                raise HTTPException(507, "cannot spool the upload: "
                                    f"{error.strerror or error}") from error

    def _handle(self, data: bytes) -> None:
        """Parse ``data``, writing part bytes as they come; OSError from the file system."""
        for event in self.parser.feed(data):
            if isinstance(event, PartStart):
                _check_part_type(event.headers)
                self._current = _new_part(self.folder, self.temp_prefix)
                self.parts.append(self._current)
            elif isinstance(event, PartData) and self._current is not None:
                self._current.size += len(event.data)
                if self._current.size > self.part_limit:
                    raise HTTPException(413, f"a part is larger than {self.part_limit} "
                                        "bytes")
                _write_all(self._current.fd, event.data)
            elif isinstance(event, PartEnd) and self._current is not None:
                fd, self._current.fd, self._current = self._current.fd, -1, None
                os.close(fd)

    def discard(self) -> None:
        """Close and remove every part; later feeds do nothing."""
        with self._lock:
            self._discarded = True
            discard(self.parts)


async def receive_parts(request: Request, folder: Path, temp_prefix: str,
                        settings: WebSettings, boundary: str, part_limit: int,
                        stopping: threading.Event, threads: CapacityLimiter
                        ) -> list[SpooledPart]:
    """Every part of the body in temp files of ``folder``, written in ``threads``; on any
    problem none is left.

    Raises
    ------
    HTTPException
        400 malformed, 408 too slow, 413 a part or the body past its limit, 415 a part that
        is not application/dicom, 503 the listener is stopping.
    """
    upload = Upload(folder, temp_prefix, boundary, part_limit)
    try:
        async for data in _chunks(request, settings, stopping):
            await to_thread.run_sync(upload.feed, data, limiter=threads)
        upload.parser.finish()
    except MalformedMultipart as error:
        await to_thread.run_sync(upload.discard, limiter=threads)
        raise HTTPException(400, f"malformed multipart body: {error}") from error
    except BaseException:
        await asyncio.shield(to_thread.run_sync(upload.discard, limiter=threads))
        raise
    return upload.parts


async def _chunks(request: Request, settings: WebSettings,
                  stopping: threading.Event) -> AsyncIterator[bytes]:
    """The body, each read bounded by the read timeout, all of it by the body timeout.

    Starlette's ``Request.stream`` without its generator, whose wait cannot be cut short and
    taken up again: each wait for the ASGI server's next message lasts at most
    :data:`STOP_CHECK_SECONDS`, so a stop of the listener is noticed that soon, and a chunk
    that is already there costs one timer (no task, no further wake-up).  A message that
    arrives as its wait is cut short stays with the server for the next ``receive``.

    Raises
    ------
    HTTPException
        408 a read past the read timeout or the body past the body timeout, 503 the listener
        is stopping.
    ClientDisconnect
        The client went away before the body ended.
    """
    deadline = time.monotonic() + settings.body_timeout
    more_body = True
    while more_body:
        message = await _next_message(
            request, min(time.monotonic() + settings.read_timeout, deadline), stopping)
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        more_body = bool(message.get("more_body", False))
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk


async def _next_message(request: Request, read_deadline: float,
                        stopping: threading.Event) -> Message:
    while True:
        if stopping.is_set():
            raise HTTPException(503, "the server is stopping")
        left = read_deadline - time.monotonic()
        if left <= 0:
            raise HTTPException(408, "the body did not arrive in time")
        with move_on_after(min(left, STOP_CHECK_SECONDS)):
            return await request.receive()


def _check_part_type(headers: dict[str, str]) -> None:
    kind = content_type_params(headers.get("content-type", "application/dicom"))[0]
    if kind != "application/dicom":
        raise HTTPException(415, f"a part of type {kind!r}: only application/dicom is taken")


def _new_part(folder: Path, temp_prefix: str) -> SpooledPart:
    path = folder / f"{temp_prefix}{secrets.token_hex(8)}"
    return SpooledPart(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def discard(parts: list[SpooledPart]) -> None:
    """Close and remove the parts' temp files."""
    for part in parts:
        fd, part.fd = part.fd, -1
        try:
            if fd >= 0:
                os.close(fd)
        except OSError:
            pass  # a failing disk; the file goes all the same
        try:
            os.unlink(part.path)
        except FileNotFoundError:
            pass
