"""A storage area: generated file names, crash-safe writes, and the index, under one lock.

Store order: write a temp file, fsync it, rename it to its generated name (in its hash folders,
see :mod:`pyqrscp.archive.layout`), fsync the folder, then index it in one transaction; remove
the file when indexing fails.  A file under a generated name is therefore always complete and
durable, and the instance is safe once the folder is flushed: the index commits without a flush
of its own (SQLite WAL, ``synchronous=NORMAL``: atomic and consistent, though a power loss may
take the last rows).  Opening the area after an unclean stop puts such files back into the index
(:meth:`StorageArea.settle_leftovers`).  Rows whose commit removes a file (a replaced copy, a
quota eviction) are flushed before the file goes.  This saves one of three flushes per stored
instance.  The bulk import stores a batch at once (:meth:`StorageArea.store_batch`): the same
order, each step done for the whole batch, the index commit flushed at its end.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from pyqrscp.archive import filelock
from pyqrscp.archive.areafiles import open_regular, read_regular, reader
from pyqrscp.archive.describer import Described, MetadataWriter, Pending
from pyqrscp.archive.dicomfile import Header, read_header
from pyqrscp.archive.durable import (
    flush_pool,
    fsync_path,
    place,
    place_all,
    unlink_quietly,
    write_temp,
    write_temps,
)
from pyqrscp.archive.index.backend import (
    CommitUnknown,
    IndexBackend,
    IndexConnection,
    SqliteBackend,
    connect_sqlite,
    run_write,
)
from pyqrscp.archive.index.database import IndexWriter, StoredInstance, create_schema
from pyqrscp.archive.index.migration import UpgradeRefused
from pyqrscp.archive.index.readers import ReaderPool
from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.indexing import index_instance, log_evictions
from pyqrscp.archive.layout import (
    IN_USE_MARKER_NAME,
    LOCK_FILE_NAME,
    SWEEP_MARKER_NAME,
    generated_file_name,
    is_safe_relative_name,
)
from pyqrscp.archive.leftovers import settle
from pyqrscp.archive.liveness import NodeLock
from pyqrscp.archive.metadata import create_table as create_metadata_table
from pyqrscp.archive.metadata import keep as keep_metadata
from pyqrscp.archive.metadata import undescribed
from pyqrscp.archive.quota import EvictionPlan, plan_eviction
from pyqrscp.config import Quota
from pyqrscp.errors import InvalidDataset, PyqrscpError, StorageFailure

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What a store did: the file it wrote and what it evicted to make room."""

    file_name: str
    evicted_studies: tuple[str, ...]
    evicted_instances: tuple[str, ...]
    replaced: bool


class StorageArea:
    """Files plus index of one AETable storage area; safe for many threads at once."""

    def __init__(self, root: Path, quota: Quota, durable: bool = True,
                 uid_padding: bool = False, backend: IndexBackend | None = None) -> None:
        self.root = root
        self.backend: IndexBackend = backend or SqliteBackend()
        self._index_failures: tuple[type[Exception], ...] = (PyqrscpError,
                                                             *self.backend.driver_errors)
        self.node = NodeLock(root)
        """This process's liveness lock in the area; its temp files carry the node id."""
        self.quota = quota
        self.durable = durable
        self.uid_padding = uid_padding
        self.lock = threading.Lock()
        self.index_path = root / INDEX_FILE_NAME
        self._db: IndexConnection | None = None
        self._readers = (ReaderPool(lambda: connect_sqlite(self.index_path, flush_commits=False))
                         if type(self.backend) is SqliteBackend else None)
        self._lock_file: int | None = None
        self._flush_pool: ThreadPoolExecutor | None = None
        self.describer: MetadataWriter | None = None
        """Keeps each new instance's DICOM JSON (see :meth:`describe_new_instances`)."""

    def open(self) -> None:
        """Share the area with other pyqrscp processes, open the index, remove leftovers.

        Leftovers (temp files, files no index row names) are settled only by a process that
        finds the area unused: with another server or ``pyqrscp index`` at work, such a file may
        be one it has written and is about to index.  Only after an unclean stop (the marker
        ``.pyqrscp-in-use`` that the last process to close the area removes is still there) or
        without an index are the hash folders searched for files whose rows were lost;
        otherwise start-up lists the area's own folder only.  Raises StorageFailure when the
        lock file or the index is a link or not a regular file.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_file = _open_lock_file(self.root / LOCK_FILE_NAME)
        try:
            self.node.claim()
        except OSError as error:
            raise StorageFailure(f"cannot create a lock file in {self.root}: {error}") from error
        self.node.remove_ended_nodes_temps()
        alone = filelock.try_lock(self._lock_file, exclusive=True)
        unclean = alone and (not self.backend.has_index(self.root) or any(
            os.path.lexists(self.root / name) for name in (IN_USE_MARKER_NAME,
                                                           SWEEP_MARKER_NAME)))
        wal_left = os.path.lexists(f"{self.index_path}-wal")
        try:
            self._db = self.backend.connect(self.root, durable=False)  # see the module docstring
            try:
                create_schema(self._db, self.backend, may_upgrade=alone)
            except UpgradeRefused as refusal:
                self._await_upgrade(refusal)
            create_metadata_table(self._db, self.backend)
            first_with_markers = self._first_open_with_markers()
        except self.backend.driver_errors as error:
            raise StorageFailure(f"cannot open index {self.backend.describe(self.root)}: "
                                 f"{error}") from error
        unclean |= alone and wal_left and first_with_markers
        _touch(self.root / IN_USE_MARKER_NAME)
        self._flush_folders_quietly([""])  # the marker and the WAL file survive a power loss
        if alone:
            self.settle_leftovers(sweep=unclean)
            filelock.unlock(self._lock_file)
        else:
            LOGGER.info("%s is also used by another pyqrscp process; leftovers kept", self.root)
        filelock.lock_shared(self._lock_file)  # waits while a rebuild holds the area

    def _await_upgrade(self, refusal: UpgradeRefused) -> None:
        """The index needs an upgrade and another process holds the area: one starting alone
        upgrades it, so wait until it holds the area no more, then look again.  Raises
        UpgradeRefused when the index is still old (an older pyqrscp process uses the area)."""
        if self._db is None or self._lock_file is None:
            raise refusal
        LOGGER.info("%s: %s; waiting for the pyqrscp process starting in this area", self.root,
                    str(refusal).split(":")[0])
        filelock.lock_shared(self._lock_file)  # waits while a starting process holds it alone
        create_schema(self._db, self.backend, may_upgrade=False)

    def describe_new_instances(self, describe: Callable[[BinaryIO], bytes]) -> None:
        """From now on keep each stored instance's DICOM JSON (``describe`` makes it from the
        file, opened link-safely, reading what it needs), in a thread that works while stores
        pause (:mod:`pyqrscp.archive.describer`)."""
        if self.describer is None:
            self.describer = MetadataWriter(self.undescribed,
                                            lambda name: reader(self.path_of(name)),
                                            describe, self.keep_metadata, str(self.root))
            self.describer.start()

    def close(self) -> None:
        """Close the index; the last process to close the area marks the stop clean."""
        if self.describer is not None:
            self.describer.stop()
            self.describer = None
        if self._flush_pool is not None:
            self._flush_pool.shutdown()
            self._flush_pool = None
        if self._readers is not None:
            self._readers.close()
        with self.lock:  # a metadata writer not waited for may be keeping a batch
            if self._db is not None:
                self._db.close()
                self._db = None
        if self._lock_file is not None:
            if filelock.try_lock(self._lock_file, exclusive=True):
                (self.root / IN_USE_MARKER_NAME).unlink(missing_ok=True)
            os.close(self._lock_file)  # closing releases the flock
            self._lock_file = None
        self.node.release()

    def _first_open_with_markers(self) -> bool:
        """Whether this area was last used by a version without the in-use marker (whose
        unclean stops only the index's WAL file tells); notes that it is no more."""
        db = self.writer.db
        if db.execute("SELECT 1 FROM meta WHERE key='in_use_marker'").fetchone() is not None:
            return False
        # two processes (or nodes) opening one area at once: the second finds it noted
        db.execute("INSERT INTO meta (key, value) VALUES ('in_use_marker', '1') "
                   "ON CONFLICT (key) DO NOTHING")
        return True

    @property
    def writer(self) -> IndexWriter:
        if self._db is None:
            raise StorageFailure(f"storage area {self.root} is not open")
        return IndexWriter(self._db, self._next_order)

    def _next_order(self) -> int:
        return self.backend.next_store_order(self.writer.db)

    def reader(self) -> IndexConnection:
        """A connection for one query, closed by the caller (readers never wait for the
        writer: SQLite WAL, PostgreSQL MVCC); an SQLite one kept from earlier queries
        (:mod:`pyqrscp.archive.index.readers`)."""
        if self._readers is not None:
            return self._readers.take()
        return self.backend.connect(self.root, durable=False, reader=True)

    def path_of(self, file_name: str) -> Path:
        """The path of an indexed file (either layout); refuses any name that could leave the
        area."""
        if not is_safe_relative_name(file_name):
            raise StorageFailure(f"refusing suspicious file name {file_name!r}")
        return self.root / file_name

    def settle_leftovers(self, sweep: bool = True) -> tuple[list[str], list[str]]:
        """``(indexed, removed)``: temp files of interrupted writes are removed.  With ``sweep``
        (after an unclean stop), generated files no index row names are indexed again (their
        row was lost to a power loss after they were acknowledged), or removed when they are
        not a valid instance or copy one indexed under another file.  A file that cannot be
        indexed now (unreadable, index or quota refusal) stays and the next start sweeps again;
        anything that is not a regular file stays too (a link is never followed)."""
        with self.lock:
            settled = settle(self.root, sweep, self.writer, self._adopt)
        if sweep:
            self._mark_for_sweep(bool(settled.kept))
        settled.log(self.root)
        return settled.indexed, settled.removed

    def _mark_for_sweep(self, needed: bool) -> None:
        """Keep (or drop) the marker that makes the next start sweep even after a clean stop."""
        marker = self.root / SWEEP_MARKER_NAME
        if needed:
            _touch(marker)
        else:
            try:
                marker.unlink(missing_ok=True)
            except OSError as error:
                LOGGER.error("%s: %s: %s", self.root, marker.name, error.strerror)

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
            self._refuse_oversized(header, len(data))
            file_name = generated_file_name(header.modality, header.series_instance_uid)
            if spooled is None:
                temp_path = write_temp(self.root, data, self.durable, self.node.temp_prefix)
            else:
                temp_path = self._flushed(spooled)
        except BaseException:
            if spooled is not None:
                unlink_quietly(spooled)
            raise
        place(self.root, temp_path, file_name, self.durable)
        try:
            with self.lock:
                plan, unused, replaced = self._index(header, file_name, len(data))
        except CommitUnknown:
            self._mark_for_sweep(True)  # its row may be there: the file stays for the sweep
            raise
        except BaseException:
            self._discard([file_name])
            raise
        self._remove_unused(unused)
        if self.describer is not None:
            self.describer.stored(header.sop_instance_uid, file_name)
        return StoreResult(file_name, plan.studies, plan.instances, replaced)

    def store_batch(self, items: Sequence[tuple[Header, bytes]]
                    ) -> list[StoreResult | PyqrscpError]:
        """Store many instances as :meth:`store` stores one, each durability step done once
        for the whole batch: the files written and flushed in parallel, renamed, their folders
        flushed, then one index transaction (a savepoint per instance, so a refusal costs only
        its own instance) whose commit is flushed.  Every StoreResult returned is durable, file
        and row; a refused instance leaves nothing behind."""
        outcome: list[StoreResult | PyqrscpError | None] = [None] * len(items)
        names = [generated_file_name(header.modality, header.series_instance_uid)
                 for header, _ in items]
        for number, (header, data) in enumerate(items):
            try:
                self._refuse_oversized(header, len(data))
            except PyqrscpError as error:
                outcome[number] = error
        todo = [number for number, result in enumerate(outcome) if result is None]
        if self._flush_pool is None:
            self._flush_pool = flush_pool()
        pool = self._flush_pool
        temps = write_temps(self.root, [items[number][1] for number in todo], self.durable, pool,
                            self.node.temp_prefix)
        moves = [(number, temp) for number, temp in zip(todo, temps, strict=True)
                 if not isinstance(temp, StorageFailure)]
        for number, temp in zip(todo, temps, strict=True):
            if isinstance(temp, StorageFailure):
                outcome[number] = temp
        placed = place_all(self.root, [(temp, names[number]) for number, temp in moves],
                           self.durable, pool)
        for (number, _temp), failure in zip(moves, placed, strict=True):
            outcome[number] = failure
        self._index_batch(items, names, outcome)
        return [result if result is not None else StorageFailure("not stored")
                for result in outcome]

    def _index_batch(self, items: Sequence[tuple[Header, bytes]], names: list[str],
                     outcome: list[StoreResult | PyqrscpError | None]) -> None:
        """Index the placed files (``None`` in ``outcome``) in one transaction, then flush it."""
        placed = [number for number, result in enumerate(outcome) if result is None]

        def index_all() -> list[tuple[StoreResult, list[str]] | PyqrscpError]:
            return [self._index_one_of_many(items[number][0], names[number],
                                            len(items[number][1]))
                    for number in placed]
        try:
            with self.lock:
                results = _run_write(self.backend, self.writer.db, index_all)
            self._flush_index()
        except PyqrscpError as error:
            for number in placed:
                outcome[number] = error
            if isinstance(error, CommitUnknown):
                self._mark_for_sweep(True)
            elif not isinstance(error, _FlushFailed):  # committed, though not flushed
                self._discard([names[number] for number in placed])
            return
        unused: list[str] = []
        for number, result in zip(placed, results, strict=True):
            if isinstance(result, PyqrscpError):
                outcome[number] = result
            else:
                outcome[number], gone = result
                unused += gone
        self._discard([names[number] for number in placed
                       if isinstance(outcome[number], PyqrscpError)])
        for (header, _data), stored in zip(items, outcome, strict=True):
            if isinstance(stored, StoreResult):
                log_evictions(self.root, EvictionPlan(stored.evicted_studies,
                                                      stored.evicted_instances))
                if self.describer is not None:
                    self.describer.stored(header.sop_instance_uid, stored.file_name)
        self._remove_unused(unused, flushed=True)

    def _index_one_of_many(self, header: Header, file_name: str, size: int
                           ) -> tuple[StoreResult, list[str]] | PyqrscpError:
        """Index one instance of a batch inside a savepoint of the batch's transaction."""
        db = self.writer.db
        db.execute("SAVEPOINT one_instance")
        try:
            plan, unused, replaced = index_instance(self.writer, self.quota, header, file_name,
                                                    size)
        except self._index_failures as error:
            if self.backend.is_transient(error):
                raise  # the whole batch runs again
            db.execute("ROLLBACK TO one_instance")
            db.execute("RELEASE one_instance")
            if isinstance(error, PyqrscpError):
                return error
            return StorageFailure(f"index update failed: {error}")
        db.execute("RELEASE one_instance")
        return StoreResult(file_name, plan.studies, plan.instances, replaced), unused

    def _refuse_oversized(self, header: Header, size: int) -> None:
        """Refuse at once an instance larger than the per-study quota (nothing is evicted)."""
        if size > self.quota.max_bytes_per_study:
            plan_eviction(self.quota, size, header.study_instance_uid, False, 0, [], [])

    def _flushed(self, temp_path: Path) -> Path:
        """A temp file written without flushes (a spool), flushed."""
        if self.durable:
            try:
                fsync_path(temp_path)
            except OSError as error:
                raise StorageFailure(f"cannot write the spooled dataset: {error.strerror}"
                                     ) from error
        return temp_path

    def _discard(self, file_names: list[str]) -> None:
        """Remove placed files that were not indexed, and flush their folders: a refused
        instance must not come back as a leftover."""
        for name in file_names:
            unlink_quietly(self.root / name)
        self._flush_folders_quietly(sorted({name.rpartition("/")[0] for name in file_names}))

    def _flush_folders_quietly(self, folders: list[str]) -> None:
        if not self.durable:
            return
        for folder in folders:
            try:
                fsync_path(self.root / folder if folder else self.root)
            except OSError as error:
                LOGGER.error("%s: folder flush failed: %s", self.root, error.strerror)

    def _flush_index(self) -> None:
        """Flush the index's committed transactions (the WAL file); raise _FlushFailed."""
        if self.durable:
            try:
                self.backend.flush(self.root)
            except OSError as error:
                raise _FlushFailed(f"index flush failed: {error.strerror}") from error

    def _remove_unused(self, file_names: list[str], flushed: bool = False) -> None:
        """Delete the files of replaced or evicted instances, once the commit that dropped their
        rows is flushed (else a power loss could bring back rows naming deleted files).  When
        that flush fails the files stay and the next start sweeps: replaced copies go then,
        evicted instances are indexed again (nothing is lost on a failing disk)."""
        if not file_names:
            return
        if not flushed:
            try:
                self._flush_index()
            except _FlushFailed as error:
                LOGGER.error("%s: %s; %d replaced or evicted file(s) kept", self.root, error,
                             len(file_names))
                self._mark_for_sweep(True)
                return
        for name in file_names:
            unlink_quietly(self.path_of(name))

    def _index(self, header: Header, file_name: str, size: int
               ) -> tuple[EvictionPlan, list[str], bool]:
        """Plan and apply quota evictions and the new row in one write transaction."""
        writer = self.writer
        result = _run_write(self.backend, writer.db, lambda: index_instance(
            writer, self.quota, header, file_name, size))
        log_evictions(self.root, result[0])
        return result

    def delete(self, level: str, uid: str) -> tuple[int, int]:
        """Delete a study, series or instance: rows in one committed transaction, then files
        (as quota eviction does: a crash in between leaves files no row names, which the next
        start-up removes).  Returns (instances, bytes) deleted."""
        writer = self.writer
        with self.lock:
            rows = _run_write(self.backend, writer.db, lambda: writer.delete_under(level, uid))
        self._remove_unused([str(row[1]) for row in rows])
        return len(rows), sum(int(row[2]) for row in rows)

    def instance(self, sop_instance_uid: str) -> StoredInstance | None:
        with self.lock:
            return self.writer.instance(sop_instance_uid)

    def undescribed(self, entries: list[Pending]) -> list[Pending]:
        """Those of ``entries`` whose row still names the file and has no JSON yet; raises
        StorageFailure when the index cannot say; none once the area is closed."""
        if self._db is None:
            return []
        try:
            db = self.reader()
            try:
                return undescribed(db, entries)
            finally:
                db.close()
        except self.backend.driver_errors as error:
            raise StorageFailure(f"index query failed: {error}") from error

    def keep_metadata(self, rows: list[Described]) -> None:
        """Keep the DICOM JSON of instances (``(SOP Instance UID, file name, JSON)``), each
        only while its row names that file; nothing once the area is closed."""
        with self.lock:
            if self._db is None:
                LOGGER.debug("%s is closed: metadata of %d instance(s) not kept", self.root,
                             len(rows))
                return
            writer = self.writer

            def keep_all() -> None:
                for sop_instance_uid, file_name, metadata in rows:
                    keep_metadata(writer.db, sop_instance_uid, file_name, metadata)
            _run_write(self.backend, writer.db, keep_all)


class _FlushFailed(StorageFailure):
    """The index committed, but its flush failed: the rows may not survive a power loss."""


def _touch(marker: Path) -> None:
    """Create an empty marker file (never through a link); a failure is logged."""
    try:
        os.close(open_regular(marker, os.O_WRONLY | os.O_CREAT))
    except OSError as error:
        LOGGER.error("%s: %s", marker, error.strerror)


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


def _run_write(backend: IndexBackend, db: IndexConnection, body: Callable[[], T]) -> T:
    """``body()`` in one write transaction of the backend (SQLite ``BEGIN IMMEDIATE``;
    PostgreSQL the area's advisory lock, run again on a serialisation failure or deadlock):
    any failure rolls back, and a database error becomes a StorageFailure (the one status the
    services map index trouble to)."""
    try:
        return run_write(backend, db, body)
    except backend.driver_errors as error:
        raise StorageFailure(f"index update failed: {error}") from error
