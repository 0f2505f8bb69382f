"""Where the storage areas' indexes live: the seam between the index SQL and a database engine.

Two backends: one SQLite file beside each area's files (the default: one process or one
machine, nothing to set up), or one PostgreSQL database that several pyqrscp nodes share
(:mod:`pyqrscp.index.postgres`, a schema per storage area).  The index SQL is written once, in
the subset both engines speak; a backend supplies connections that behave like :mod:`sqlite3`'s
(``execute``, ``executemany``, cursors, ``in_transaction``, ``close``), the write transaction,
schema creation under a lock, the order of stores, and the flush that makes committed rows
durable before the files they no longer name are removed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pyqrscp.archive.areafiles import open_regular
from pyqrscp.archive.index.dialect import SQLITE, Dialect
from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.errors import StorageFailure

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
#: How often a transaction is run when the database refuses it as transient (a serialisation
#: failure, a deadlock): the first run and four more.
TRANSACTION_ATTEMPTS = 5


class CommitUnknown(StorageFailure):
    """Whether a COMMIT is durable nobody can say: the connection broke and the database could
    not be asked afterwards, or it committed locally without a synchronous standby's
    confirmation.  Its files are kept (a later start settles them)."""


class IndexCursor(Protocol):
    """The part of a DB-API cursor the index uses."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = ...) -> list[Any]: ...

    @property
    def description(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class IndexConnection(Protocol):
    """The part of a :class:`sqlite3.Connection` the index uses (``?`` placeholders)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> IndexCursor: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /
                    ) -> IndexCursor: ...

    @property
    def in_transaction(self) -> bool: ...

    def close(self) -> None: ...


def stream_rows(db: IndexConnection, sql: str, parameters: Sequence[Any], batch: int,
                before_fetch: Callable[[], None] | None = None, first: int = 0
                ) -> Iterator[list[Any]]:
    """The rows of a query in lists of up to ``batch``, never all held at once: a connection
    that streams from the server (PostgreSQL's ``stream``: a server-side cursor) does, else a
    cursor's ``fetchmany`` (SQLite steps through its result as it is read).

    ``before_fetch`` is called before a list is fetched that follows a full one (another
    round trip to the database that may bring more rows): what the caller made of the rows
    so far need not wait for it.  A short list ends the result without another fetch (on
    PostgreSQL only the cursor's CLOSE and its transaction's COMMIT follow), so the caller's
    last rows go out together with its final answer.

    ``first``: the size of the first list where the cursor steps through the result as it is
    read (SQLite), when the caller can use the first rows at once (a C-FIND's first response
    waits for them); PostgreSQL's cursor fetches ``batch`` each time."""
    streaming = getattr(db, "stream", None)
    size = batch if streaming is not None or first <= 0 else first
    fetched: Generator[list[Any], None, None] = (
        streaming(sql, parameters, batch) if streaming is not None
        else _fetched(db, sql, parameters, batch, size))
    try:
        full = False
        while True:
            if full and before_fetch is not None:
                before_fetch()
            rows = next(fetched, None)
            if rows is None:
                return
            full = len(rows) >= size
            size = batch
            yield rows
    finally:
        fetched.close()  # a server-side cursor ends with the caller's loop, not at collection


def _fetched(db: IndexConnection, sql: str, parameters: Sequence[Any], batch: int,
             first: int) -> Generator[list[Any], None, None]:
    cursor = db.execute(sql, parameters)
    size = first
    while rows := cursor.fetchmany(size):
        yield rows
        if len(rows) < size:
            return
        size = batch


class IndexBackend(Protocol):
    """One database engine holding the indexes of every storage area of a process."""

    name: str
    """``SQLite`` or ``PostgreSQL``, for log lines."""
    dialect: Dialect
    """The SQL fragments that differ (its connections name it too: ``dialect_of``)."""
    driver_errors: tuple[type[Exception], ...]
    """The engine's error classes: the store turns them into a failure status."""
    shared: bool
    """True when other nodes may write the same index (PostgreSQL)."""

    def connect(self, root: Path, durable: bool = True, read_only: bool = False,
                reader: bool = False) -> IndexConnection:
        """A connection to the index of the area at ``root`` (created when missing, unless
        ``read_only``: then :meth:`has_index` must be true); ``reader``: for queries only
        (a backend with a pool keeps the writers' connections apart)."""
        ...

    def write_transaction(self, db: IndexConnection) -> AbstractContextManager[None]:
        """One write transaction, serialised with every other writer of the same area."""
        ...

    def schema_statements(self, ddl: str | Sequence[str]) -> list[str]:
        """The DDL (SQLite's types, or ``{pk}``/``{text}`` tokens) as this engine's
        statements, to run in one :meth:`write_transaction`."""
        ...

    def next_store_order(self, db: IndexConnection) -> int:
        """A number larger than any before it in this area (quota eviction order)."""
        ...

    def is_transient(self, error: BaseException) -> bool:
        """Would the same transaction succeed if run again (serialisation failure)?"""
        ...

    def flush(self, root: Path) -> None:
        """Make the area's committed rows durable (before files they dropped are removed).
        Raises OSError when that fails."""
        ...

    def has_index(self, root: Path) -> bool:
        """Does the area have an index already (without creating one)?"""
        ...

    def forget(self, root: Path) -> None:
        """Drop the area's index entirely (``--rebuild`` of an area without one)."""
        ...

    def describe(self, root: Path) -> str:
        """Where the area's index lives, for messages."""
        ...

    def describe_database(self) -> str:
        """The database itself, for the start-up line (no password)."""
        ...

    def close(self) -> None:
        """Release every connection (at shut-down)."""
        ...


class Transactions:
    """The write transaction of every backend, around its own ``begin`` and ``commit``."""

    def begin(self, db: IndexConnection) -> None:
        """Start a write transaction that holds the area's writer lock."""
        raise NotImplementedError

    def commit(self, db: IndexConnection) -> None:
        """Commit; returns only once the transaction is committed."""
        raise NotImplementedError

    @contextmanager
    def write_transaction(self, db: IndexConnection) -> Iterator[None]:
        """One write transaction, serialised with every other writer of the same area; any
        failure rolls it back."""
        self.begin(db)
        try:
            yield
            self.commit(db)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def run_write(backend: IndexBackend, db: IndexConnection, body: Callable[[], T]) -> T:
    """``body()`` in one write transaction, run again (at most :data:`TRANSACTION_ATTEMPTS`
    times in all) while the database refuses it as transient; its result once committed.
    ``body`` must change nothing but the database."""
    attempt = 1
    while True:
        try:
            with backend.write_transaction(db):
                return body()
        except backend.driver_errors as error:
            if attempt >= TRANSACTION_ATTEMPTS or not backend.is_transient(error):
                raise
            LOGGER.info("index transaction run again (%d of %d): %s", attempt + 1,
                        TRANSACTION_ATTEMPTS, str(error).strip())
        attempt += 1


class SqliteBackend(Transactions):
    """One SQLite file per storage area (WAL: queries read while a store writes)."""

    name = "SQLite"
    dialect = SQLITE
    driver_errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    shared = False

    def connect(self, root: Path, durable: bool = True, read_only: bool = False,
                reader: bool = False) -> IndexConnection:
        if read_only:
            return sqlite3.connect(f"file:{root / INDEX_FILE_NAME}?mode=ro", uri=True,
                                   timeout=30, check_same_thread=False)
        return connect_sqlite(root / INDEX_FILE_NAME, flush_commits=durable)

    def begin(self, db: IndexConnection) -> None:
        """``BEGIN IMMEDIATE``: takes the file's write lock before any read, so facts read in
        the transaction stay true until it commits."""
        db.execute("BEGIN IMMEDIATE")

    def commit(self, db: IndexConnection) -> None:
        db.execute("COMMIT")

    def schema_statements(self, ddl: str | Sequence[str]) -> list[str]:
        return split_statements(ddl, pk="INTEGER PRIMARY KEY", text="TEXT")

    def next_store_order(self, db: IndexConnection) -> int:
        return sqlite_store_order(db)

    def is_transient(self, error: BaseException) -> bool:
        return False  # the busy timeout already waited

    def flush(self, root: Path) -> None:
        wal = root / f"{INDEX_FILE_NAME}-wal"
        fd = os.open(wal, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def has_index(self, root: Path) -> bool:
        path = root / INDEX_FILE_NAME
        return path.is_file() and not path.is_symlink()

    def forget(self, root: Path) -> None:
        for stale in (f"{INDEX_FILE_NAME}-wal", f"{INDEX_FILE_NAME}-shm"):
            (root / stale).unlink(missing_ok=True)

    def describe(self, root: Path) -> str:
        return str(root / INDEX_FILE_NAME)

    def describe_database(self) -> str:
        return f"SQLite ({INDEX_FILE_NAME} in each storage area)"

    def close(self) -> None:
        pass


def sqlite_store_order(db: IndexConnection) -> int:
    """The next number of the area's store counter (a row of ``meta``), taken in the caller's
    write transaction: the order in which stores commit, whatever any clock says.  An index
    without the counter starts it above every order already given (clock times, once)."""
    row = db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 "
                     "WHERE key = 'store_order' RETURNING value").fetchone()
    if row is not None:
        return int(row[0])
    start = int(db.execute("SELECT COALESCE(MAX(last_stored), 0) + 1 FROM study").fetchone()[0])
    db.execute("INSERT INTO meta (key, value) VALUES ('store_order', ?)", (str(start),))
    return start


def split_statements(ddl: str | Sequence[str], pk: str, text: str) -> list[str]:
    """DDL as single statements with the ``{pk}`` (integer primary key) and ``{text}``
    (text compared in byte order) tokens replaced."""
    parts = ddl.split(";") if isinstance(ddl, str) else list(ddl)
    return [part.strip().replace("{pk}", pk).replace("{text}", text)
            for part in parts if part.strip()]


def connect_sqlite(path: Path, flush_commits: bool = True) -> sqlite3.Connection:
    """Open (and create) an SQLite index; one connection per thread of use.

    ``flush_commits``: each commit is flushed to disk (``synchronous=FULL``); else only at
    checkpoints (``NORMAL``: still atomic, a power loss may take the last commits).

    SQLite follows a symbolic link named like the index (its journal files it never follows):
    the index is created here without following one, and the file SQLite opened is checked to be
    that one.  Raises StorageFailure when the index is a link or not a regular file.
    """
    _check_index_file(path)
    connection = sqlite3.connect(path, timeout=60.0, isolation_level=None,
                                 check_same_thread=False)
    opened = connection.execute("PRAGMA database_list").fetchone()[2]
    if opened != os.path.join(os.path.realpath(path.parent), path.name):
        connection.close()
        raise StorageFailure(f"cannot open index {path}: it was replaced by a link to {opened}")
    _enter_wal(connection)
    connection.execute(f"PRAGMA synchronous={'FULL' if flush_commits else 'NORMAL'}")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def _enter_wal(connection: sqlite3.Connection) -> None:
    """Switch a new index to WAL mode (an existing one already is: the mode is kept in the
    file).  While another process switches the same new file, SQLite answers "database is
    locked" at once, without its busy timeout: retried until that switch is done."""
    deadline = time.monotonic() + 60.0
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _check_index_file(path: Path) -> None:
    """Refuse an index that is a link or not a regular file; create a missing one without
    following a link.  An existing index is only looked at, never opened and closed: closing
    any descriptor of a file drops every POSIX lock this process holds on it, SQLite's too."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        try:
            os.close(open_regular(path, os.O_RDWR | os.O_CREAT))
        except OSError as error:
            raise StorageFailure(f"cannot open index {path}: {error.strerror}") from error
        return
    except OSError as error:
        raise StorageFailure(f"cannot open index {path}: {error.strerror}") from error
    if stat.S_ISLNK(info.st_mode):
        raise StorageFailure(f"cannot open index {path}: a symbolic link (not followed)")
    if not stat.S_ISREG(info.st_mode):
        raise StorageFailure(f"cannot open index {path}: not a regular file")
