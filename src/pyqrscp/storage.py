"""A storage area: generated file names, crash-safe writes, and the index, under one lock.

Store order (as Orthanc): write a temp file, fsync, rename into place, fsync the folder, then
index in one transaction; remove the file when indexing fails.  A file no index row names is
never acknowledged, so start-up deletes such leftovers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from pyqrscp.config import Quota
from pyqrscp.dicomfile import Header
from pyqrscp.errors import StorageFailure
from pyqrscp.index.database import IndexWriter, StoredInstance, connect, create_schema
from pyqrscp.index.schema import INDEX_FILE_NAME
from pyqrscp.quota import EvictionPlan, plan_eviction

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

    def __init__(self, root: Path, quota: Quota, durable: bool = True) -> None:
        self.root = root
        self.quota = quota
        self.durable = durable
        self.lock = threading.Lock()
        self.index_path = root / INDEX_FILE_NAME
        self._db: sqlite3.Connection | None = None
        self._lock_file: int | None = None

    def open(self) -> None:
        """Share the area with other pyqrscp processes, open the index, remove leftovers.

        Leftovers (files no index row names) are removed only by a process that finds the area
        unused: with another server or ``pyqrscp index`` at work, such a file may be one it has
        written and is about to index.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = os.open(self.root / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        alone = _try_flock(self._lock_file, fcntl.LOCK_EX)
        self._db = connect(self.index_path, self.durable)
        create_schema(self._db)
        if alone:
            self.remove_leftovers()
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        else:
            LOGGER.info("%s is also used by another pyqrscp process; leftovers kept", self.root)
        fcntl.flock(self._lock_file, fcntl.LOCK_SH)  # waits while a rebuild holds the area

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
        return connect(self.index_path, self.durable)

    def path_of(self, file_name: str) -> Path:
        """The path of an indexed file; refuses anything that is not a plain generated name."""
        if "/" in file_name or "\\" in file_name or file_name in ("", ".", ".."):
            raise StorageFailure(f"refusing suspicious file name {file_name!r}")
        return self.root / file_name

    def remove_leftovers(self) -> list[str]:
        """Delete temp files and generated files that no index row names."""
        with self.lock:
            known = self.writer.all_file_names()
            removed = []
            for entry in os.scandir(self.root):
                name = entry.name
                if name.startswith(TEMP_PREFIX) or (
                        GENERATED_NAME.match(name) and name not in known):
                    os.unlink(entry.path)
                    removed.append(name)
        if removed:
            LOGGER.warning("%s: removed %d leftover file(s) of interrupted writes",
                           self.root, len(removed))
        return removed

    def store(self, header: Header, data: bytes) -> StoreResult:
        """Keep one instance durably and index it; raise QuotaExceeded or StorageFailure."""
        if len(data) > self.quota.max_bytes_per_study:
            plan_eviction(self.quota, len(data), header.study_instance_uid, False, 0, [], [])
        file_name = generated_file_name(header.modality)
        final_path = self.path_of(file_name)
        self._write_file(final_path, data)
        try:
            with self.lock:
                plan, unused, replaced = self._index(header, file_name, len(data))
        except BaseException:
            _unlink_quietly(final_path)
            raise
        for name in unused:
            _unlink_quietly(self.path_of(name))
        return StoreResult(file_name, plan.studies, plan.instances, replaced)

    def _index(self, header: Header, file_name: str, size: int
               ) -> tuple[EvictionPlan, list[str], bool]:
        """Plan and apply quota evictions and the new row in one write transaction.

        The facts (an older copy, study counts and sizes) are read inside ``BEGIN IMMEDIATE`` so
        that no other writer of the same index can change them between planning and applying.
        """
        writer = self.writer
        study_uid = header.study_instance_uid
        try:
            writer.db.execute("BEGIN IMMEDIATE")
            old = writer.instance(header.sop_instance_uid)
            plan = plan_eviction(self.quota, size, study_uid,
                                 *self._quota_facts(study_uid, size),
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
            writer.db.execute("COMMIT")
        except BaseException as error:
            _rollback_quietly(writer.db)
            if isinstance(error, sqlite3.Error):
                raise StorageFailure(f"index update failed: {error}") from error
            raise
        self._log_evictions(plan)
        return plan, unused, old is not None

    def _quota_facts(self, study_uid: str, size: int
                     ) -> tuple[bool, int, list[str], list[tuple[str, int]]]:
        """What :func:`plan_eviction` needs; long lists are read only when a limit is reached,
        so a store into a 20,000-instance area costs what a store into an empty one does."""
        writer = self.writer
        study_is_new = not writer.study_exists(study_uid)
        count = writer.study_count()
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
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp_path, final_path)
            if self.durable:
                _fsync_directory(self.root)
        except OSError as error:
            _unlink_quietly(temp_path)
            _unlink_quietly(final_path)
            raise StorageFailure(f"cannot write {final_path.name}: {error.strerror}") from error

    def instance(self, sop_instance_uid: str) -> StoredInstance | None:
        with self.lock:
            return self.writer.instance(sop_instance_uid)


def _try_flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_area_file(path: Path) -> int:
    """Hold the area alone (``--rebuild``); refuse while any other pyqrscp process uses it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if not _try_flock(fd, fcntl.LOCK_EX):
        os.close(fd)
        raise StorageFailure(f"storage area {path.parent} is in use by another pyqrscp "
                             "process (stop the server first)")
    return fd


def _rollback_quietly(db: sqlite3.Connection) -> None:
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error as error:
        LOGGER.error("index rollback failed: %s", error)


def _fsync_directory(path: Path) -> None:
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
