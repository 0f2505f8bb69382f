"""Query connections of one SQLite index, kept open between queries.

Opening an SQLite connection is cheap, its first statement is not: SQLite reads the schema and
maps the WAL index then (about 0.3 ms for the index's schema, more than a one-match C-FIND
spends on everything else in the database), and a new connection prepares every statement
afresh.  A storage area therefore hands a query a connection some earlier query gave back.

A connection given back ends every statement begun on it (its cursors still alive are closed): in
autocommit mode SQLite keeps a read snapshot while any statement is unfinished, and a query
abandoned half way (a C-CANCEL, an association gone) would otherwise pin the next query on it
to the index as it was.  A connection inside a transaction is closed, never kept.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

KEPT_READERS = 2
"""Idle connections kept per area (two file descriptors each: the index and its WAL), so a
configuration of many AE titles stays far from the descriptor limit."""


class ReaderPool:
    """Idle query connections of one area's index; safe for many threads at once."""

    def __init__(self, connect: Callable[[], sqlite3.Connection],
                 kept: int = KEPT_READERS) -> None:
        self._connect = connect
        self._kept = kept
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> PooledReader:
        """A connection for one query: an idle one, else a new one; ``close()`` gives it back."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        return PooledReader(connection or self._connect(), self)

    def give_back(self, connection: sqlite3.Connection) -> None:
        """Keep ``connection`` for a later query, or close it (pool full or closed, or still
        inside a transaction)."""
        if not connection.in_transaction:
            with self._lock:
                if not self._closed and len(self._idle) < self._kept:
                    self._idle.append(connection)
                    return
        connection.close()

    def close(self) -> None:
        """Close the idle connections; connections given back later are closed, not kept."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class PooledReader:
    """One query's use of a pooled connection: :class:`sqlite3.Connection`'s ``execute``,
    whose ``close`` ends its statements and gives the connection back."""

    __slots__ = ("_connection", "_pool", "_cursors")

    def __init__(self, connection: sqlite3.Connection, pool: ReaderPool) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._pool = pool
        self._cursors: weakref.WeakSet[sqlite3.Cursor] = weakref.WeakSet()

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> sqlite3.Cursor:
        cursor = self._open().execute(sql, parameters)
        self._cursors.add(cursor)
        return cursor

    def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]], /
                    ) -> sqlite3.Cursor:
        cursor = self._open().executemany(sql, seq_of_parameters)
        self._cursors.add(cursor)
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self._open().in_transaction

    def __getattr__(self, name: str) -> Any:
        """The rest of :class:`sqlite3.Connection` (``setlimit``...), as a reader had it."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._open(), name)

    def close(self) -> None:
        """End every statement of this query and give the connection back (once)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        for cursor in list(self._cursors):
            cursor.close()  # a cursor already collected has ended its statement
        self._cursors.clear()
        self._pool.give_back(connection)
