"""Register existing DICOM files into an AE title's storage area, or rebuild its index.

Two modes:

* :func:`add_files` copies every file found (folders recursively) through
  :meth:`StorageArea.store_batch`, so file names are generated and quotas apply as for C-STORE.
  Files go in by batches: each batch's files are flushed together, then its index rows are
  committed and flushed at once, and only then counted as in.  That is what makes a bulk import
  run at thousands of small files a second instead of one flush-bound file at a time.  It
  shares the area with a running server, as another server would
  (:meth:`StorageArea.open`).
* :func:`rebuild` recreates the index rows from the area's own files (in either layout, see
  :mod:`pyqrscp.archive.layout`) in one transaction, keeping every file where it is.  It holds
  the area alone and refuses while any other pyqrscp process uses it.

A file that cannot go in is reported and skipped, never fatal; what is reported and how (lines,
progress bar) is the caller's :class:`ImportReport`.  The command (``pyqrscp index``) is
:mod:`pyqrscp.cli.index`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from pyqrscp.archive.areafiles import is_regular, read_regular
from pyqrscp.archive.dicomfile import Header, read_header
from pyqrscp.archive.index.backend import IndexBackend, SqliteBackend
from pyqrscp.archive.index.database import IndexWriter, create_schema
from pyqrscp.archive.layout import (
    IN_USE_MARKER_NAME,
    LOCK_FILE_NAME,
    SWEEP_MARKER_NAME,
    stored_entries,
)
from pyqrscp.archive.storage import StorageArea, StoreResult, lock_area_file
from pyqrscp.config import AEEntry
from pyqrscp.errors import PyqrscpError
from pyqrscp.loglines import log_context

IGNORED_NAMES = frozenset({"DICOMDIR"})
BATCH_FILES = 500
"""Files stored per batch: one index commit and one flush of each folder per batch."""
BATCH_BYTES = 64 << 20
"""A batch ends early past this many bytes (large files are held in memory until stored)."""


class ImportReport(Protocol):
    """Where a run reports what it does (the command prints it, with a progress bar)."""

    def begin(self, total: int) -> None:
        """``total`` files were found and will be handled."""

    def advance(self, count: int) -> None:
        """``count`` more files were handled (went in or skipped)."""

    def skip(self, path: Path, reason: str) -> None:
        """One file did not go in."""

    def indexed(self, count: int) -> None:
        """``count`` more files went in, durably."""


def add_files(entry: AEEntry, paths: Sequence[Path], report: ImportReport,
              areas: Sequence[Path] = (), follow_links: bool = False,
              backend: IndexBackend | None = None) -> None:
    """Copy every DICOM file under ``paths`` into ``entry``'s area, by batches.

    Nothing inside a storage area (``entry``'s or one of ``areas``) is copied.  Links found in
    folders are skipped unless ``follow_links``; a followed link never leads into an area.
    """
    roots = tuple({area.resolve() for area in (entry.storage_area, *areas)})
    files = list(_files_under(paths, roots, follow_links, report))
    report.begin(len(files))
    area = StorageArea(entry.storage_area, entry.quota, backend=backend)
    area.open()
    try:
        # one batch is stored (mostly waiting for the disk) while the next one is read
        with ThreadPoolExecutor(1, thread_name_prefix="pyqrscp-store") as storer:
            storing: tuple[list[Path], Future[list[StoreResult | PyqrscpError]]] | None = None
            for batch in _batches(files, report):
                if storing is not None:
                    _report(*storing, report)
                storing = ([path for path, _header, _data in batch], storer.submit(
                    area.store_batch, [(header, data) for _path, header, data in batch]))
            if storing is not None:
                _report(*storing, report)
    finally:
        area.close()


def _batches(files: Sequence[tuple[Path, bool]], report: ImportReport
             ) -> Iterator[list[tuple[Path, Header, bytes]]]:
    """The readable DICOM files, ``(path, header, bytes)``, by batches."""
    batch: list[tuple[Path, Header, bytes]] = []
    size = 0
    for path, follow in files:
        item = _read(path, follow, report)
        if item is not None:
            batch.append(item)
            size += len(item[2])
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _read(path: Path, follow: bool, report: ImportReport
          ) -> tuple[Path, Header, bytes] | None:
    """The file's header and bytes, or None (reported as skipped).  Library warnings about a
    file are shown only when it goes on to be stored: a skipped file gets one line, its
    reason."""
    try:
        data = path.read_bytes() if follow else read_regular(path)
        with log_context(str(path)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                header = read_header(data)
            for warning in caught:
                warnings.showwarning(warning.message, warning.category, warning.filename,
                                     warning.lineno)
    except (OSError, PyqrscpError) as error:
        report.skip(path, getattr(error, "strerror", None) or str(error))
        report.advance(1)
        return None
    return path, header, data


def _report(paths: list[Path], storing: Future[list[StoreResult | PyqrscpError]],
            report: ImportReport) -> None:
    """Wait for a batch to be stored, durably, and report it."""
    stored = 0
    for path, result in zip(paths, storing.result(), strict=True):
        if isinstance(result, StoreResult):
            stored += 1
        else:
            report.skip(path, str(result))
    report.indexed(stored)
    report.advance(len(paths))


def _files_under(paths: Sequence[Path], areas: tuple[Path, ...], follow_links: bool,
                 report: ImportReport) -> Iterator[tuple[Path, bool]]:
    """``(file, whether to follow it)`` for every file to copy, in path order.

    A path named on the command line is followed (as ``find -H`` does); links inside folders
    only with ``follow_links``.
    """
    for path in paths:
        if not os.path.lexists(path):
            report.skip(path, "no such file or folder")
        elif _inside(path.resolve(), areas):
            report.skip(path, "inside a storage area (use --rebuild for an area's own files)")
        elif path.is_dir():
            yield from _folder_files(path, areas, follow_links, report, set())
        else:
            yield path, True


def _folder_files(folder: Path, areas: tuple[Path, ...], follow_links: bool,
                  report: ImportReport, seen: set[tuple[int, int]]
                  ) -> Iterator[tuple[Path, bool]]:
    info = folder.stat()
    if (info.st_dev, info.st_ino) in seen:  # a followed link back up the tree
        return
    seen.add((info.st_dev, info.st_ino))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as error:
        report.skip(folder, error.strerror or str(error))
        return
    for item in entries:
        path = Path(item.path)
        if item.name in IGNORED_NAMES:
            continue
        if item.is_symlink() and not follow_links:
            report.skip(path, "a symbolic link (not followed; see --follow-links)")
        elif _inside(path.resolve(), areas):
            if item.is_symlink():  # a folder holding an area leaves it out quietly
                report.skip(path, "a link into a storage area (never followed)")
        elif item.is_dir():
            yield from _folder_files(path, areas, follow_links, report, seen)
        elif item.is_file():
            yield path, item.is_symlink()
        else:
            report.skip(path, "not a regular file")


def _inside(path: Path, areas: tuple[Path, ...]) -> bool:
    return any(path.is_relative_to(area) for area in areas)


def rebuild(entry: AEEntry, report: ImportReport, backend: IndexBackend | None = None
            ) -> None:
    """Drop every index row and index the area's own files again, in one transaction."""
    backend = backend or SqliteBackend()
    root = entry.storage_area
    if not backend.has_index(root):
        backend.forget(root)
    lock = lock_area_file(root / LOCK_FILE_NAME)
    files = _area_files(root, report)
    report.begin(len(files))
    db = backend.connect(root)
    try:
        create_schema(db, backend)
        writer = IndexWriter(db, lambda: backend.next_store_order(db))
        with backend.write_transaction(db):
            for table in ("instance", "series", "study", "patient"):
                db.execute(f"DELETE FROM {table}")
            count = _index_in_place(writer, root, files, report)
    finally:
        db.close()
        os.close(lock)
    for marker in (IN_USE_MARKER_NAME, SWEEP_MARKER_NAME):  # every file is indexed now
        (root / marker).unlink(missing_ok=True)
    report.indexed(count)


def _index_in_place(writer: IndexWriter, root: Path, files: Sequence[str],
                    report: ImportReport) -> int:
    """Index each file under its name relative to the area; return how many are indexed (a
    file whose SOP Instance UID a newer file has too is reported, not counted)."""
    count = 0
    for name in files:
        path = root / name
        try:
            data = read_regular(path)
            with log_context(str(path)):
                header = read_header(data)
        except (OSError, PyqrscpError) as error:
            report.skip(path, getattr(error, "strerror", None) or str(error))
        else:
            earlier = writer.instance(header.sop_instance_uid)
            if earlier is not None:
                report.skip(root / earlier.file_name,
                            f"same SOP Instance UID as the newer {name}")
                count -= 1
            writer.add_instance(header, name, len(data))
            count += 1
        report.advance(1)
    return count


def _area_files(root: Path, report: ImportReport) -> list[str]:
    """The area's own files in either layout, oldest first (so that quota eviction order
    survives a rebuild), by their names relative to the area; anything that is not a regular
    file (a link, a FIFO) is reported, never followed."""
    found: list[tuple[int, str]] = []
    for name, item in stored_entries(root):
        if not is_regular(item):
            report.skip(root / name, "not a regular file (links are never followed)")
            continue
        found.append((item.stat(follow_symlinks=False).st_mtime_ns, name))
    return [name for _, name in sorted(found)]
