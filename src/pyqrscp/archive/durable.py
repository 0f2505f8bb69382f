"""Durable file placement in a storage area: temp file, fsync, rename, folder fsync.

A file reaches its generated name only complete and flushed, and the rename is flushed before
anyone is told the file is kept.  New hash folders are flushed in their parents too.  The bulk
import places many files at once (:func:`write_temps`, :func:`place_all`): each flush is issued
from a pool of threads, so the file system commits them together instead of one journal commit
per file, and the batch's folders are flushed once each.  Knows nothing of DICOM or the index.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyqrscp.archive import filelock
from pyqrscp.archive.layout import TEMP_PREFIX, folders_of
from pyqrscp.errors import StorageFailure

LOGGER = logging.getLogger(__name__)

FLUSH_THREADS = 16
"""Flushes in flight at once: enough for the disk to commit them together."""


def new_temp_path(root: Path, prefix: str = TEMP_PREFIX) -> Path:
    """A fresh temp file name in the area's own folder (where start-up looks for leftovers);
    ``prefix`` names the process writing it (see :mod:`pyqrscp.archive.liveness`)."""
    return root / f"{prefix}{secrets.token_hex(8)}"


def write_temp(root: Path, data: bytes, durable: bool, prefix: str = TEMP_PREFIX) -> Path:
    """Write ``data`` to a new temp file of the area (flushed when ``durable``)."""
    temp_path = new_temp_path(root, prefix)
    try:
        fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        unlink_quietly(temp_path)
        raise StorageFailure(f"cannot write a temp file: {error.strerror}") from error
    return temp_path


def flush_pool() -> ThreadPoolExecutor:
    """The threads that write and flush a batch's files (see :data:`FLUSH_THREADS`)."""
    return ThreadPoolExecutor(FLUSH_THREADS, thread_name_prefix="pyqrscp-flush")


def write_temps(root: Path, contents: Sequence[bytes], durable: bool, pool: ThreadPoolExecutor,
                prefix: str = TEMP_PREFIX) -> list[Path | StorageFailure]:
    """:func:`write_temp` for many files at once, the flushes in parallel."""
    def write(data: bytes) -> Path | StorageFailure:
        try:
            return write_temp(root, data, durable, prefix)
        except StorageFailure as error:
            return error

    return list(pool.map(write, contents))


def place(root: Path, temp_path: Path, name: str, durable: bool) -> None:
    """Rename a written temp file to its name in the area and flush that; on failure the temp
    file is gone and StorageFailure raised."""
    try:
        new_folders = make_folders(root, folders_of(name))
        os.replace(temp_path, root / name)
        if durable:
            flush_folders(root, [*_parents(new_folders), *(folders_of(name)[-1:] or [""])],
                          pool=None)
    except OSError as error:
        unlink_quietly(temp_path)
        unlink_quietly(root / name)
        raise StorageFailure(f"cannot write {name}: {error.strerror}") from error


def place_all(root: Path, moves: Sequence[tuple[Path, str]], durable: bool,
              pool: ThreadPoolExecutor) -> list[StorageFailure | None]:
    """:func:`place` for many files; the folders are flushed once each, after every rename."""
    outcome: list[StorageFailure | None] = []
    touched: set[str] = set()
    for temp_path, name in moves:
        try:
            new_folders = make_folders(root, folders_of(name))
            os.replace(temp_path, root / name)
        except OSError as error:
            unlink_quietly(temp_path)
            outcome.append(StorageFailure(f"cannot write {name}: {error.strerror}"))
            continue
        touched.update(_parents(new_folders))
        touched.update(folders_of(name)[-1:] or [""])
        outcome.append(None)
    if durable and touched:
        try:
            flush_folders(root, sorted(touched), pool)
        except OSError as error:
            failure = StorageFailure(f"folder flush failed: {error.strerror}")
            for (_temp, name), result in zip(moves, outcome, strict=True):
                if result is None:
                    unlink_quietly(root / name)
            return [failure for _ in moves]
    return outcome


def make_folders(root: Path, folders: Iterable[str]) -> list[str]:
    """Create the missing ones of ``folders`` (outermost first); return those created."""
    created: list[str] = []
    for folder in folders:
        try:
            os.mkdir(root / folder)
        except FileExistsError:
            continue
        created.append(folder)
    return created


def _parents(folders: Iterable[str]) -> list[str]:
    """The folders whose entries changed when ``folders`` were created ("" is the root)."""
    return [folder.rpartition("/")[0] for folder in folders]


def flush_folders(root: Path, folders: Iterable[str], pool: ThreadPoolExecutor | None) -> None:
    """fsync each folder (relative to ``root``; "" is the root itself)."""
    paths = [root / folder if folder else root for folder in folders]
    if pool is None:
        for path in paths:
            fsync_path(path)
    else:
        list(pool.map(fsync_path, paths))


def fsync_path(path: Path) -> None:
    """Flush a file (or folder) by name: on Linux fsync covers every descriptor's writes.
    Folders cannot be flushed on Windows (nor need to be: NTFS journals renames)."""
    if not filelock.fsync_folder_supported() and path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        LOGGER.error("cannot remove %s: %s", path, error)
