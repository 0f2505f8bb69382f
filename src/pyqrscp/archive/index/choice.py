"""Which index backend a process uses: ``--index-db`` > ``IndexDatabase`` > ``$PYQRSCP_INDEX_DB``
> SQLite.  PostgreSQL's driver is imported only when a PostgreSQL URL is named (it is the
optional ``postgres`` extra)."""

from __future__ import annotations

from collections.abc import Mapping

from pyqrscp.archive.index.backend import IndexBackend, SqliteBackend
from pyqrscp.config.model import Config, redact_url
from pyqrscp.errors import StorageFailure


def open_backend(url: str | None) -> IndexBackend:
    """The backend an ``IndexDatabase`` / ``--index-db`` value names (None: SQLite).

    Raises
    ------
    StorageFailure
        An unknown scheme, the ``postgres`` extra not installed, or the database unreachable.
    """
    if not url or url == "sqlite":
        return SqliteBackend()
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from pyqrscp.archive.index.postgres import PostgresBackend  # the optional extra
        except ImportError as error:
            raise StorageFailure(f"index database {redact_url(url)} needs psycopg: pip install "
                                 f"'pyqrscp[postgres]' ({error})") from error
        return PostgresBackend(url)
    raise StorageFailure(f"index database {redact_url(url)}: expected sqlite or a "
                         "postgresql://user@host:port/database URL")


#: The index database when neither ``--index-db`` nor the config's ``IndexDatabase`` names one.
INDEX_DB_VARIABLE = "PYQRSCP_INDEX_DB"


def index_database_url(explicit: str | None, config: Config,
                       environ: Mapping[str, str]) -> str | None:
    """The index database in force: ``--index-db`` > ``IndexDatabase`` > ``$PYQRSCP_INDEX_DB``
    (None: SQLite)."""
    chosen = explicit or config.index_database or environ.get(INDEX_DB_VARIABLE) or None
    return None if chosen == "sqlite" else chosen
