"""A storage area: generated file names, crash-safe writes, and the index, under one lock.

Store order: write a temp file, fsync it, rename it to its generated name, fsync the folder,
then index it in one transaction; remove the file when indexing fails.  A file under a
generated name is therefore always complete and durable, and the instance is safe once the
folder is flushed: the index commits without a flush of its own (SQLite WAL,
``synchronous=NORMAL``: atomic and consistent, though a power loss may take the last rows).
Opening the area puts such files back into the index (:meth:`StorageArea.settle_leftovers`).
Rows whose commit removes a file (a replaced copy, a quota eviction) are flushed before the file
goes.  This saves one of three flushes per stored instance.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyqrscp.archive import filelock
from pyqrscp.archive.areafiles import is_regular, open_regular, read_regular
from pyqrscp.archive.dicomfile import Header, read_header
from pyqrscp.archive.index.database import IndexWriter, StoredInstance, connect, create_schema
from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.metadata import create_table as create_metadata_table
from pyqrscp.archive.metadata import keep as keep_metadata
from pyqrscp.archive.quota import EvictionPlan, plan_eviction
from pyqrscp.config import Quota
from pyqrscp.errors import InvalidDataset, PyqrscpError, StorageFailure

LOGGER = logging.getLogger(__name__)

TEMP_PREFIX = ".pyqrscp-tmp-"
LOCK_FILE_NAME = ".pyqrscp.lock"
GENERATED_NAME = re.compile(r"^[A-Z0-9]{1,8}_[0-9a-f]{16}\.dcm$")
_MODALITY_CHARS = re.compile(r"[^A-Z0-9]")


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What a store did: the file it wrote and what it evicted to make room."""

    file_name: str
    evicted_studies: tuple[str, ...]
    evicted_instances: tuple[str, ...]
    replaced: bool


def generated_file_name(modality: str) -> str:
    """dcmqrscp's ``<Modality>_<random>.dcm`` scheme; the peer's text never reaches the path."""
    prefix = _MODALITY_CHARS.sub("", modality.upper())[:8] or "XX"
    return f"{prefix}_{secrets.token_hex(8)}.dcm"


class StorageArea:
    """Files plus index of one AETable storage area; safe for many threads at once."""

    def __init__(self, root: Path, quota: Quota, durable: bool = True,
                 uid_padding: bool = False) -> None:
        self.root = root
        self.quota = quota
        self.durable = durable
        self.uid_padding = uid_padding
        self.lock = threading.Lock()
        self.index_path = root / INDEX_FILE_NAME
        self._db: sqlite3.Connection | None = None
        self._lock_file: int | None = None
        self.describe: Callable[[bytes], bytes] | None = None
        """Set (by the HTTP listener) to keep each instance's DICOM JSON with its row."""

    def open(self) -> None:
        """Share the area with other pyqrscp processes, open the index, remove leftovers.

        Leftovers (files no index row names) are removed only by a process that finds the area
        unused: with another server or ``pyqrscp index`` at work, such a file may be one it has
        written and is about to index.  Raises StorageFailure when the lock file or the index
        is a link or not a regular file.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = _open_lock_file(self.root / LOCK_FILE_NAME)
        alone = filelock.try_lock(self._lock_file, exclusive=True)
        self._db = connect(self.index_path, flush_commits=False)  # see the module docstring
        create_schema(self._db)
        create_metadata_table(self._db)
        if alone:
            self.settle_leftovers()
            filelock.unlock(self._lock_file)
        else:
            LOGGER.info("%s is also used by another pyqrscp process; leftovers kept", self.root)
        filelock.lock_shared(self._lock_file)  # waits while a rebuild holds the area

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            os.close(self._lock_file)  # closing releases the flock
            self._lock_file = None

    @property
    def writer(self) -> IndexWriter:
        if self._db is None:
            raise StorageFailure(f"storage area {self.root} is not open")
        return IndexWriter(self._db)

    def reader(self) -> sqlite3.Connection:
        """A fresh connection for one query (WAL readers never wait for the writer)."""
        return connect(self.index_path, flush_commits=False)

    def path_of(self, file_name: str) -> Path:
        """The path of an indexed file; refuses anything that is not a plain generated name."""
        if "/" in file_name or "\\" in file_name or file_name in ("", ".", ".."):
            raise StorageFailure(f"refusing suspicious file name {file_name!r}")
        return self.root / file_name

    def settle_leftovers(self) -> tuple[list[str], list[str]]:
        """``(indexed, removed)``: generated files no index row names are indexed again (their
        row was lost to a power loss after they were acknowledged).  Removed are temp files, and
        generated files that are not a valid instance or copy one indexed under another file.
        A file that cannot be indexed now (unreadable, index or quota refusal) stays, and so does
        anything that is not a regular file (a link is never followed, so never indexed)."""
        indexed: list[str] = []
        removed: list[str] = []
        with self.lock:
            known = self.writer.all_file_names()
            for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
                name = entry.name
                if name.startswith(TEMP_PREFIX):
                    verdict = "remove"
                elif not GENERATED_NAME.match(name) or name in known:
                    continue
                elif not is_regular(entry):
                    LOGGER.error("%s: %s is not a regular file (a link?): not indexed",
                                 self.root, name)
                    continue
                else:
                    verdict = self._adopt(name)
                if verdict == "indexed":
                    indexed.append(name)
                elif verdict == "remove":
                    _unlink_quietly(Path(entry.path))
                    removed.append(name)
        if indexed:
            LOGGER.warning("%s: indexed %d stored file(s) whose index rows were lost",
                           self.root, len(indexed))
        if removed:
            LOGGER.warning("%s: removed %d leftover file(s) of interrupted writes",
                           self.root, len(removed))
        return indexed, removed

    def _adopt(self, file_name: str) -> str:
        """Index one unindexed file (the caller holds the lock): "indexed", "remove" or
        "keep"."""
        try:
            data = read_regular(self.path_of(file_name))
            header = read_header(data, self.uid_padding)
            if self.writer.instance(header.sop_instance_uid) is not None:
                return "remove"  # an older copy a committed replacement left behind
            _plan, unused, _replaced = self._index(header, file_name, len(data))
        except InvalidDataset as error:
            LOGGER.warning("%s: removing leftover %s: %s", self.root, file_name, error)
            return "remove"
        except (OSError, PyqrscpError) as error:
            LOGGER.error("%s: cannot index stored file %s now (kept): %s", self.root, file_name,
                         error)
            return "keep"
        self._remove_unused(unused)
        return "indexed"

    def store(self, header: Header, data: bytes, spooled: Path | None = None) -> StoreResult:
        """Keep one instance durably and index it; raise QuotaExceeded or StorageFailure.

        ``spooled`` is a temp file in this area that already holds ``data`` (a large dataset
        written as it arrived): it becomes the stored file (or is removed on failure).
        """
        try:
            if len(data) > self.quota.max_bytes_per_study:
                plan_eviction(self.quota, len(data), header.study_instance_uid, False, 0, [],
                              [])
            file_name = generated_file_name(header.modality)
            final_path = self.path_of(file_name)
        except BaseException:
            if spooled is not None:
                _unlink_quietly(spooled)
            raise
        metadata = self._described(header, data)
        if spooled is None:
            self._write_file(final_path, data)
        else:
            self._place_file(spooled, final_path)
        try:
            with self.lock:
                plan, unused, replaced = self._index(header, file_name, len(data), metadata)
        except BaseException:
            _unlink_quietly(final_path)
            self._flush_folder_quietly()  # a refused instance must not come back as a leftover
            raise
        self._remove_unused(unused)
        return StoreResult(file_name, plan.studies, plan.instances, replaced)

    def _described(self, header: Header, data: bytes) -> bytes | None:
        """The instance's DICOM JSON when it is kept; None (filled in later) if that fails."""
        if self.describe is None:
            return None
        try:
            return self.describe(data)
        except PyqrscpError as error:
            LOGGER.warning("%s: no metadata kept for %s: %s", self.root,
                           header.sop_instance_uid, error)
            return None

    def _flush_folder_quietly(self) -> None:
        if self.durable:
            try:
                _fsync_path(self.root)
            except OSError as error:
                LOGGER.error("%s: folder flush failed: %s", self.root, error.strerror)

    def _remove_unused(self, file_names: list[str]) -> None:
        """Delete the files of replaced or evicted instances, once the commit that dropped their
        rows is flushed (else a power loss could bring back rows naming deleted files).  When
        that flush fails the files stay: replaced copies go at the next start, evicted instances
        are indexed again then (nothing is lost on a failing disk)."""
        if not file_names:
            return
        if self.durable:
            try:
                _fsync_path(self.index_path.with_name(self.index_path.name + "-wal"))
            except OSError as error:
                LOGGER.error("%s: index flush failed (%s); %d replaced or evicted file(s) kept",
                             self.root, error.strerror, len(file_names))
                return
        for name in file_names:
            _unlink_quietly(self.path_of(name))

    def _index(self, header: Header, file_name: str, size: int, metadata: bytes | None = None
               ) -> tuple[EvictionPlan, list[str], bool]:
        """Plan and apply quota evictions and the new row in one write transaction.

        The facts (an older copy, study counts and sizes) are read inside ``BEGIN IMMEDIATE`` so
        that no other writer of the same index can change them between planning and applying.
        """
        writer = self.writer
        study_uid = header.study_instance_uid
        with _write_transaction(writer.db):
            old = writer.instance(header.sop_instance_uid)
            plan = plan_eviction(self.quota, size, study_uid,
                                 *self._quota_facts(study_uid, size, old),
                                 old.sop_instance_uid if old else None)
            unused: list[str] = [old.file_name] if old else []
            for evicted_study in plan.studies:
                unused += writer.delete_study(evicted_study)
            for evicted_uid in plan.instances:
                evicted = writer.instance(evicted_uid)
                if evicted is not None:
                    unused.append(evicted.file_name)
                    writer.delete_instance(evicted_uid)
            writer.add_instance(header, file_name, size)
            if metadata is not None:
                keep_metadata(writer.db, header.sop_instance_uid, metadata)
        self._log_evictions(plan)
        return plan, unused, old is not None

    def _quota_facts(self, study_uid: str, size: int, old: StoredInstance | None
                     ) -> tuple[bool, int, list[str], list[tuple[str, int]]]:
        """What :func:`plan_eviction` needs; long lists are read only when a limit is reached,
        so a store into a 20,000-instance area costs what a store into an empty one does.
        A study that the replaced copy ``old`` leaves empty is not counted: it goes with it."""
        writer = self.writer
        study_is_new = not writer.study_exists(study_uid)
        count = writer.study_count()
        if study_is_new and old is not None and writer.only_instance_of_its_study(
                old.sop_instance_uid):
            count -= 1
        studies: list[str] = []
        if study_is_new and count >= self.quota.max_studies:
            studies = writer.studies_least_recent_first(count - self.quota.max_studies + 2)
        instances: list[tuple[str, int]] = []
        if writer.study_bytes(study_uid) + size > self.quota.max_bytes_per_study:
            instances = [(i.sop_instance_uid, i.file_size)
                         for i in writer.study_instances_oldest_first(study_uid)]
        return study_is_new, count, studies, instances

    def _log_evictions(self, plan: EvictionPlan) -> None:
        for study_uid in plan.studies:
            LOGGER.warning("%s: quota: deleted study %s (least recently stored)", self.root,
                           study_uid)
        for instance_uid in plan.instances:
            LOGGER.warning("%s: quota: deleted instance %s to fit the per-study quota", self.root,
                           instance_uid)

    def _write_file(self, final_path: Path, data: bytes) -> None:
        temp_path = self.root / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            fd = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError as error:
            _unlink_quietly(temp_path)
            raise StorageFailure(f"cannot write {final_path.name}: {error.strerror}") from error
        self._place_file(temp_path, final_path)

    def _place_file(self, temp_path: Path, final_path: Path) -> None:
        """fsync a written temp file, rename it to its generated name, fsync the folder."""
        try:
            if self.durable:
                _fsync_path(temp_path)
            os.replace(temp_path, final_path)
            if self.durable:
                _fsync_path(self.root)
        except OSError as error:
            _unlink_quietly(temp_path)
            _unlink_quietly(final_path)
            raise StorageFailure(f"cannot write {final_path.name}: {error.strerror}") from error

    def delete(self, level: str, uid: str) -> tuple[int, int]:
        """Delete a study, series or instance: rows in one committed transaction, then files
        (as quota eviction does: a crash in between leaves files no row names, which the next
        start-up removes).  Returns (instances, bytes) deleted."""
        writer = self.writer
        with self.lock, _write_transaction(writer.db):
            rows = writer.delete_under(level, uid)
        self._remove_unused([str(row[1]) for row in rows])
        return len(rows), sum(int(row[2]) for row in rows)

    def keep_metadata(self, rows: list[tuple[str, bytes]]) -> None:
        """Keep the DICOM JSON of instances stored without it (``(SOP Instance UID, JSON)``)."""
        writer = self.writer
        with self.lock, _write_transaction(writer.db):
            for sop_instance_uid, metadata in rows:
                keep_metadata(writer.db, sop_instance_uid, metadata)

    def instance(self, sop_instance_uid: str) -> StoredInstance | None:
        with self.lock:
            return self.writer.instance(sop_instance_uid)


def _open_lock_file(path: Path) -> int:
    try:
        return open_regular(path, os.O_RDWR | os.O_CREAT)
    except OSError as error:
        raise StorageFailure(f"cannot open lock file {path}: {error.strerror}") from error


def lock_area_file(path: Path) -> int:
    """Hold the area alone (``--rebuild``); refuse while any other pyqrscp process uses it."""
    fd = _open_lock_file(path)
    if not filelock.try_lock(fd, exclusive=True):
        os.close(fd)
        raise StorageFailure(f"storage area {path.parent} is in use by another pyqrscp "
                             "process (stop the server first)")
    return fd


@contextmanager
def _write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT``: any failure rolls back, and an SQLite error
    becomes a StorageFailure (the one status the services map index trouble to)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    except BaseException as error:
        _rollback_quietly(db)
        if isinstance(error, sqlite3.Error):
            raise StorageFailure(f"index update failed: {error}") from error
        raise


def _rollback_quietly(db: sqlite3.Connection) -> None:
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error as error:
        LOGGER.error("index rollback failed: %s", error)


def _fsync_path(path: Path) -> None:
    """Flush a file (or folder) by name: on Linux fsync covers every descriptor's writes.
    Folders cannot be flushed on Windows (nor need to be: NTFS journals renames)."""
    if not filelock.fsync_folder_supported() and path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        LOGGER.error("cannot remove %s: %s", path, error)
