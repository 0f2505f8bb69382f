"""Register existing DICOM files into an AE title's storage area, or rebuild its index.

Two modes, both meant for a stopped server (opening an area removes leftovers of writes that
another process may still be doing):

* :func:`add_files` copies every file found (folders recursively) through
  :meth:`StorageArea.store`, so file names are generated and quotas apply as for C-STORE;
* :func:`rebuild` recreates the index rows from the area's own files in one transaction,
  keeping every file where it is.

A file that cannot go in is reported and skipped, never fatal.  The command
(``pyqrscp index``) is :mod:`pyqrscp.cli.index`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pyqrscp.archive.areafiles import is_regular, read_regular
from pyqrscp.archive.dicomfile import read_header
from pyqrscp.archive.index.database import IndexWriter, connect, create_schema
from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.storage import LOCK_FILE_NAME, TEMP_PREFIX, StorageArea, lock_area_file
from pyqrscp.config import AEEntry
from pyqrscp.errors import PyqrscpError
from pyqrscp.loglines import log_context

IGNORED_NAMES = frozenset({"DICOMDIR"})
_INDEX_FILES = frozenset({INDEX_FILE_NAME, f"{INDEX_FILE_NAME}-wal", f"{INDEX_FILE_NAME}-shm",
                          f"{INDEX_FILE_NAME}-journal"})


@dataclass(slots=True)
class Report:
    """What one run did, printed as it goes; ``skipped`` decides the exit code."""

    err: TextIO
    total: int = 0
    indexed: int = 0
    skipped: list[str] = field(default_factory=list)
    show_progress: bool = False

    not_dicom: list[str] = field(default_factory=list)

    def skip(self, path: Path, reason: str) -> None:
        """One line per file that is DICOM but cannot go in; non-DICOM files are summed up."""
        self.skipped.append(str(path))
        if _NOT_DICOM in reason:
            self.not_dicom.append(str(path))
            return
        self._clear_progress()
        print(f"pyqrscp index: skipped {path}: {reason}", file=self.err)

    def progress(self, done: int) -> None:
        if self.show_progress:
            print(f"\rindexing {done}/{self.total} file(s)", end="", file=self.err, flush=True)

    def _clear_progress(self) -> None:
        if self.show_progress:
            print("\r\033[K", end="", file=self.err, flush=True)

    def finish(self, what: str) -> int:
        self._clear_progress()
        if len(self.not_dicom) == 1:
            print(f"pyqrscp index: skipped {self.not_dicom[0]}: not DICOM (no DICOM file meta "
                  "information)", file=self.err)
        elif self.not_dicom:
            print(f"pyqrscp index: skipped {len(self.not_dicom)} file(s) that are not DICOM "
                  f"(no DICOM file meta information), e.g. {self.not_dicom[0]}", file=self.err)
        print(f"{what}: {self.indexed} file(s) indexed, {len(self.skipped)} skipped")
        return 1 if self.skipped else 0


_NOT_DICOM = "File is missing DICOM File Meta Information"


def add_files(entry: AEEntry, paths: Sequence[Path], report: Report,
              areas: Sequence[Path] = (), follow_links: bool = False) -> int:
    """Copy every DICOM file under ``paths`` into ``entry``'s area through the normal store.

    Nothing inside a storage area (``entry``'s or one of ``areas``) is copied.  Links found in
    folders are skipped unless ``follow_links``; a followed link never leads into an area.
    """
    roots = tuple({area.resolve() for area in (entry.storage_area, *areas)})
    files = list(_files_under(paths, roots, follow_links, report))
    report.total = len(files)
    area = StorageArea(entry.storage_area, entry.quota)
    area.open()
    try:
        for done, (path, follow) in enumerate(files, 1):
            try:
                data = path.read_bytes() if follow else read_regular(path)
                with log_context(str(path)):
                    area.store(read_header(data), data)
            except (OSError, PyqrscpError) as error:
                report.skip(path, getattr(error, "strerror", None) or str(error))
            else:
                report.indexed += 1
            report.progress(done)
    finally:
        area.close()
    return report.finish(f"{entry.ae_title} ({entry.storage_area})")


def _files_under(paths: Sequence[Path], areas: tuple[Path, ...], follow_links: bool,
                 report: Report) -> Iterator[tuple[Path, bool]]:
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


def _folder_files(folder: Path, areas: tuple[Path, ...], follow_links: bool, report: Report,
                  seen: set[tuple[int, int]]) -> Iterator[tuple[Path, bool]]:
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


def rebuild(entry: AEEntry, report: Report) -> int:
    """Drop every index row and index the area's own files again, in one transaction."""
    root = entry.storage_area
    index_path = root / INDEX_FILE_NAME
    if not index_path.exists():
        for stale in (f"{INDEX_FILE_NAME}-wal", f"{INDEX_FILE_NAME}-shm"):
            (root / stale).unlink(missing_ok=True)
    lock = lock_area_file(root / LOCK_FILE_NAME)
    files = _area_files(root, report)
    report.total = len(files)
    db = connect(index_path)
    try:
        create_schema(db)
        writer = IndexWriter(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("instance", "series", "study", "patient"):
                db.execute(f"DELETE FROM {table}")
            _index_in_place(writer, files, report)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.close()
        os.close(lock)
    return report.finish(f"{entry.ae_title} ({root}) rebuilt")


def _index_in_place(writer: IndexWriter, files: Sequence[Path], report: Report) -> None:
    seen: dict[str, Path] = {}
    for done, path in enumerate(files, 1):
        try:
            data = read_regular(path)
            with log_context(str(path)):
                header = read_header(data)
        except (OSError, PyqrscpError) as error:
            report.skip(path, getattr(error, "strerror", None) or str(error))
        else:
            earlier = seen.get(header.sop_instance_uid)
            if earlier is not None:
                report.skip(earlier, f"same SOP Instance UID as the newer {path.name}")
                report.indexed -= 1
            writer.add_instance(header, path.name, len(data))
            seen[header.sop_instance_uid] = path
            report.indexed += 1
        report.progress(done)


def _area_files(root: Path, report: Report) -> list[Path]:
    """The area's own files, oldest first (so that quota eviction order survives a rebuild);
    anything that is not a regular file (a link, a FIFO) is reported, never followed."""
    found: list[tuple[int, str, Path]] = []
    for item in os.scandir(root):
        if (item.name in _INDEX_FILES or item.name == LOCK_FILE_NAME
                or item.name.startswith(TEMP_PREFIX) or item.is_dir(follow_symlinks=False)):
            continue
        if not is_regular(item):
            report.skip(Path(item.path), "not a regular file (links are never followed)")
            continue
        found.append((item.stat(follow_symlinks=False).st_mtime_ns, item.name, Path(item.path)))
    return [path for _, _, path in sorted(found)]
