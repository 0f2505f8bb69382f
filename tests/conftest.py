import contextlib
import functools
import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pgcluster import Cluster, have_postgres, postgres_cluster  # noqa: E402

from pyqrscp import services  # noqa: E402
from pyqrscp.archive import storage  # noqa: E402
from pyqrscp.archive.index.backend import IndexBackend  # noqa: E402
from pyqrscp.archive.index.choice import INDEX_DB_VARIABLE, open_backend  # noqa: E402

_CLUSTER_KEY = pytest.StashKey[Cluster]()
_URL_KEY = pytest.StashKey[str]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless PYQRSCP_SLOW=1 or a ``-m`` expression naming slow was given;
    with PYQRSCP_PYNETDICOM_PUBLIC_ONLY=1 (pynetdicom's public path), skip the tests marked
    ``pynetdicom_internals``: they check what only pyqrscp's hooks into pynetdicom can do;
    skip ``sqlite_only`` tests in the PostgreSQL pass."""
    if os.environ.get("PYQRSCP_PYNETDICOM_PUBLIC_ONLY", "") not in ("", "0"):
        for item in items:
            marker = item.get_closest_marker("pynetdicom_internals")
            if marker is not None:
                item.add_marker(pytest.mark.skip(
                    reason=f"pynetdicom's public path: {marker.kwargs.get('reason', '')}"))
    if _URL_KEY in config.stash:
        only = pytest.mark.skip(reason="looks at the SQLite index file (PostgreSQL pass)")
        for item in items:
            if "sqlite_only" in item.keywords:
                item.add_marker(only)
    if os.environ.get("PYQRSCP_SLOW") == "1" or "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run scripts/run-slow-tests (or PYQRSCP_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


_SESSION_CLUSTER: list[contextlib.ExitStack] = []


def pytest_configure(config: pytest.Config) -> None:
    """PYQRSCP_TEST_POSTGRES=1: the whole suite runs with its indexes in PostgreSQL (a
    throwaway cluster for the session): servers started by the tests read
    $PYQRSCP_INDEX_DB, and in-process storage areas and servers default to it."""
    config.addinivalue_line("markers", "sqlite_only: looks at the SQLite index file itself")
    if os.environ.get("PYQRSCP_TEST_POSTGRES") != "1":
        return
    if os.environ.get(INDEX_DB_VARIABLE):  # a pytest run by a test of the pass: its cluster
        config.stash[_URL_KEY] = os.environ[INDEX_DB_VARIABLE]
        return
    stack = contextlib.ExitStack()
    cluster = stack.enter_context(postgres_cluster())
    _SESSION_CLUSTER.append(stack)
    os.environ[INDEX_DB_VARIABLE] = cluster.url
    config.stash[_CLUSTER_KEY] = cluster
    config.stash[_URL_KEY] = cluster.url


def pytest_unconfigure(config: pytest.Config) -> None:
    while _SESSION_CLUSTER:
        _SESSION_CLUSTER.pop().close()


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the interop tests must run, not skip: missing DCMTK tools fail the run."""
    if os.environ.get("PYQRSCP_REQUIRE_DCMTK") != "1":
        return
    import shutil

    tools = ("echoscu", "storescu", "findscu", "movescu", "getscu", "storescp", "dcmqrscp")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.exit(f"DCMTK tools missing: {', '.join(missing)}", returncode=1)


@pytest.fixture(scope="session")
def postgres(pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """A PostgreSQL cluster for the whole session (started once, always stopped); skips when
    PostgreSQL is not installed, unless PYQRSCP_REQUIRE_POSTGRES=1 (CI)."""
    if _CLUSTER_KEY in pytestconfig.stash:
        yield pytestconfig.stash[_CLUSTER_KEY]
        return
    if not have_postgres():
        if os.environ.get("PYQRSCP_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL (initdb, pg_ctl) is not installed")
        pytest.skip("PostgreSQL (initdb, pg_ctl) is not installed")
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _index_in_postgres(pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the PostgreSQL pass, storage areas and in-process servers built without an index
    database use the session's cluster (servers started as processes read the variable)."""
    pass_url = pytestconfig.stash.get(_URL_KEY, None)
    if pass_url is None:
        return
    shared = _shared_backend(pass_url)
    monkeypatch.setattr(storage, "SqliteBackend", lambda: shared)
    monkeypatch.setattr(services, "open_backend", lambda url: open_backend(url or pass_url))


@functools.cache
def _shared_backend(url: str) -> IndexBackend:
    return open_backend(url)


@pytest.fixture()
def index_db_url(postgres: Cluster, request: pytest.FixtureRequest) -> str:
    """The URL of a new empty PostgreSQL database for one test."""
    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return postgres.create_database(name)


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """Give pyqrscp's and the libraries' loggers back as they were after each test.

    ``main()`` run in-process installs a handler on the ``sys.stderr`` of that moment, which is
    pytest's capture stream; left in place, a later test's log line would hit it closed.
    """
    loggers = [logging.getLogger(name)
               for name in ("pyqrscp", "pynetdicom", "pydicom", "uvicorn")]
    saved = [(log, log.handlers[:], log.level, log.propagate) for log in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (a disk that fills up); skips when it cannot be mounted (not root)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
