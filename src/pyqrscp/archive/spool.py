"""A received dataset as its bytes arrive: counted against a limit, and kept in a bounded way.

pynetdicom and the held channel (``channel.py``) both write the fragments of a message's
dataset into one of these.  Up to :data:`SPOOL_THRESHOLD` bytes stay in memory (most instances,
and every identifier); past it, a C-STORE dataset goes on into a temp file in its storage area,
which later becomes the stored file itself (``StorageArea.store``), so a store of any size
holds about one PDU in memory.  Past ``limit`` nothing more is kept (the service answers with
the refusal), and past ``limit`` plus :data:`DISCARD_ALLOWANCE` the peer is aborted.

It is a :class:`io.BytesIO` because pynetdicom's primitives accept nothing else.
"""

from __future__ import annotations

import io
import mmap
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyqrscp.archive.layout import TEMP_PREFIX
from pyqrscp.errors import PyqrscpError, QuotaExceeded, StorageFailure

SPOOL_THRESHOLD = 1 << 20
"""Bytes of a dataset kept in memory before it goes to a temp file."""
DISCARD_ALLOWANCE = 64 << 20
"""Bytes read (and dropped) past the limit so that the peer gets a response; past them, the
peer is aborted."""


class ReceivedDataset(io.BytesIO):
    """The dataset of one incoming DIMSE message.

    ``prefix`` (a Part-10 file header) counts as received; ``folder`` is where to spool (None:
    never, the limit bounds the memory), in a temp file whose name starts with ``temp_prefix``
    (the storage area's, naming this process); ``keep`` False only counts (the bytes are not
    wanted); ``what`` names the dataset in the refusal.
    """

    def __init__(self, limit: int, limit_text: str, folder: Path | None = None,
                 prefix: bytes = b"", keep: bool = True, what: str = "dataset",
                 temp_prefix: str = TEMP_PREFIX) -> None:
        super().__init__()
        self.temp_prefix = temp_prefix
        self.limit = limit
        self.limit_text = limit_text
        self.what = what
        self.folder = folder
        self.keep = keep
        self.size = 0
        self.refusal: PyqrscpError | None = None
        self.spool_path: Path | None = None
        self._spool: Any = None
        if prefix:
            self.write(prefix)

    @property
    def overrun(self) -> bool:
        """Has the peer gone on past the limit and the discard allowance?"""
        return self.size > self.limit + DISCARD_ALLOWANCE

    def write(self, fragment: Any) -> int:
        length = len(fragment)
        self.size += length
        if self.refusal is not None or not self.keep:
            return length
        if self.size > self.limit:
            self.refusal = QuotaExceeded(f"{self.what} exceeds {self.limit_text}")
            self.discard()
            return length
        try:
            if self._spool is not None:
                self._spool.write(fragment)
            elif self.folder is not None and self.size > SPOOL_THRESHOLD:
                self._start_spool(fragment)
            else:
                super().write(fragment)
        except OSError as error:
            self.refusal = StorageFailure(f"cannot spool the dataset: {error.strerror}")
            self.discard()
        return length

    def _start_spool(self, fragment: Any) -> None:
        if self.folder is None:
            raise StorageFailure("no folder to spool to")
        self.spool_path = self.folder / f"{self.temp_prefix}{secrets.token_hex(8)}"
        self._spool = open(self.spool_path, "x+b", buffering=1 << 16)  # noqa: SIM115
        self._spool.write(self.getbuffer())
        self._spool.write(fragment)
        self.seek(0)
        self.truncate()

    @contextmanager
    def contents(self) -> Iterator[bytes]:
        """Everything received (prefix included): bytes, or a read-only map of the spool (a
        bytes-like object; pages are read as they are touched)."""
        if self._spool is None:
            yield self.getvalue()
            return
        self._spool.flush()
        # the open descriptor, not the name: a link put in its place is never read
        with mmap.mmap(self._spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped  # type: ignore[misc]

    def take_spool(self) -> Path | None:
        """The spool file, closed and written (the caller renames or removes it)."""
        if self._spool is None:
            return None
        self._spool.close()
        self._spool = None
        path, self.spool_path = self.spool_path, None
        return path

    def discard(self) -> None:
        """Drop what was kept: the memory, and the spool file if any."""
        self.seek(0)
        self.truncate()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self.spool_path is not None:
            try:
                os.unlink(self.spool_path)
            except FileNotFoundError:
                pass
            self.spool_path = None
