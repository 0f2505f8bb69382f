"""An in-process pyqrscp with its HTTP listener on port 0, for the DICOMweb and page tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from helpers import write_config
from pydicom.data import get_testdata_file

from pyqrscp.config import load_config
from pyqrscp.config.options import Options
from pyqrscp.server.server import ArchiveServer


@dataclass
class WebServer:
    server: ArchiveServer
    root: str
    """``http://127.0.0.1:PORT``"""
    areas: dict[str, Path]

    def dicomweb(self, ae_title: str = "ARCHIVE") -> str:
        return f"{self.root}/dicomweb/{ae_title}"

    @property
    def dicom_port(self) -> int:
        return self.server.port


def sample(name: str) -> Path:
    """One of pydicom's bundled test files."""
    return Path(str(get_testdata_file(name)))


def split_multipart(response: requests.Response) -> list[bytes]:
    """The parts of a ``multipart/related`` response, exactly as sent."""
    content_type = response.headers["content-type"]
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    parts = []
    for chunk in response.content.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.partition(b"\r\n\r\n")
        parts.append(body[:-2])  # the CRLF before the next delimiter
    return parts


@contextmanager
def web_server(tmp_path: Path, rows: Sequence[str] = ("ARCHIVE {a} RW (100, 1024mb) ANY",
                                                      "READONLY {a} R (100, 1024mb) ANY"),
               extra_globals: str = "", read_timeout: float | None = None,
               body_timeout: float | None = None, **options: object) -> Iterator[WebServer]:
    """Start pyqrscp in-process with ``--http 127.0.0.1:0``; always stop it.

    ``{a}`` in a row is the shared area folder ``tmp_path/a``; ``{b}`` a second one.
    ``read_timeout`` and ``body_timeout`` replace the listener's (no flag sets them).
    """
    areas = {"a": tmp_path / "a", "b": tmp_path / "b"}
    config = write_config(tmp_path, [row.format(**{k: str(v) for k, v in areas.items()})
                                     for row in rows], extra_globals=extra_globals)
    merged = dataclasses.replace(Options(), port=0, http="127.0.0.1:0")
    if options:
        merged = dataclasses.replace(merged, **options)  # type: ignore[arg-type]
    server = ArchiveServer(load_config(config), merged, host="127.0.0.1")
    settings = server.web_settings
    if settings is not None:
        server.web_settings = dataclasses.replace(
            settings, read_timeout=read_timeout or settings.read_timeout,
            body_timeout=body_timeout or settings.body_timeout)
    server.start()
    try:
        yield WebServer(server, f"http://127.0.0.1:{server.http_port}", areas)
    finally:
        server.stop()
