"""A ZIP of stored files, produced as it is read (nothing is held but one chunk)."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator

from pyqrscp.web.stored import StoredFile, file_chunks


class _Sink:
    """A write-only stream whose written bytes are taken out as they come."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(files: list[StoredFile]) -> Iterator[bytes]:
    """The stored files, uncompressed (pixel data rarely shrinks), each named
    ``<SOPInstanceUID>.dcm`` (a UID the index checked: digits and dots only)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for stored in files:
            with archive.open(f"{stored.sop_instance_uid}.dcm", "w",
                              force_zip64=True) as member:
                for chunk in file_chunks(stored.path):
                    member.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
