"""The PostgreSQL index backend against a real PostgreSQL: what its sessions are set to, a
commit whose connection breaks, transactions the database refuses as transient."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from helpers import identifier, make_ct, poll_until
from pgcluster import Cluster, postgres_cluster

from pyqrscp.archive.dicomfile import Header, read_header
from pyqrscp.archive.index.backend import CommitUnknown
from pyqrscp.archive.index.choice import open_backend
from pyqrscp.archive.index.postgres import POOL_SIZE, area_lock_key, schema_name
from pyqrscp.archive.index.query import STUDY_ROOT, parse_identifier, run_query
from pyqrscp.archive.storage import StorageArea, StoreResult
from pyqrscp.config import Quota
from pyqrscp.errors import PyqrscpError

MB = 1024**2
ROOMY = Quota(100, 100 * MB)


@contextmanager
def postgres_area(root: Path, url: str, quota: Quota = ROOMY) -> Iterator[StorageArea]:
    """An open storage area indexed in ``url``; closed with its backend's pools."""
    backend = open_backend(url)
    area = StorageArea(root, quota, durable=False, backend=backend)
    area.open()
    try:
        yield area
    finally:
        area.close()
        backend.close()


def instance(folder: Path, study_uid: str | None = None, series_uid: str | None = None
             ) -> tuple[Header, bytes]:
    folder.mkdir(exist_ok=True)
    data = make_ct(folder, study_uid=study_uid, series_uid=series_uid, rows=2).read_bytes()
    return read_header(data), data


def instance_rows(area: StorageArea) -> dict[str, str]:
    """SOP Instance UID -> file name, read on a connection of the area's own."""
    db = area.reader()
    try:
        return dict(db.execute("SELECT sop_instance_uid, file_name FROM instance").fetchall())
    finally:
        db.close()


def store_in_thread(area: StorageArea, header: Header, data: bytes
                    ) -> tuple[threading.Thread, list[StoreResult | PyqrscpError]]:
    outcome: list[StoreResult | PyqrscpError] = []

    def store() -> None:
        try:
            outcome.append(area.store(header, data))
        except PyqrscpError as error:
            outcome.append(error)
    thread = threading.Thread(target=store, daemon=True)
    thread.start()
    return thread, outcome


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_sessions_commit_durably_and_read_committed_whatever_the_database_says(
        tmp_path: Path, index_db_url: str) -> None:
    """A database whose default is ``synchronous_commit=off`` could lose an acknowledged
    store; one whose default isolation is serializable would hide commits that came before
    the area's lock was granted: the backend sets both on its own sessions."""
    with psycopg.connect(index_db_url, autocommit=True) as admin:
        name = database_of(index_db_url)
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_isolation = '
                      "'serializable'")
    with postgres_area(tmp_path / "area", index_db_url) as area:
        db = area.reader()
        try:
            assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
            assert db.execute("SHOW default_transaction_isolation").fetchone()[0] == (
                "read committed")
        finally:
            db.close()


@pytest.mark.usefixtures("postgres")  # skips (or fails in CI) without PostgreSQL
def test_a_store_whose_wait_for_a_synchronous_standby_is_cut_off_is_no_success(
        tmp_path: Path) -> None:
    """A commit waits for a synchronous standby that never connects; the wait is cancelled
    (the COMMIT returns with a WARNING) or the session terminated (the connection breaks
    after that WARNING): PostgreSQL committed locally, but a failover to the standby would
    lose the row, so the store fails with its outcome unknown and its file stays for the
    next start-up, as when the database cannot be asked."""
    with postgres_cluster() as cluster, postgres_area(tmp_path / "area", cluster.url) as area:
        cut_off_uids: set[str] = set()
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            _expect_synchronous_standby(cluster, admin, "nobody")
            try:
                for cut_off in ("pg_cancel_backend", "pg_terminate_backend"):
                    header, data = instance(tmp_path / "sources")
                    thread, outcome = store_in_thread(area, header, data)
                    pid = poll_until(lambda: admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                        ).fetchone(), "a commit waiting for the standby")[0]
                    admin.execute(f"SELECT {cut_off}(%s)", (pid,))
                    thread.join(120)
                    assert not thread.is_alive()
                    assert isinstance(outcome[0], CommitUnknown), (cut_off, outcome)
                    cut_off_uids.add(header.sop_instance_uid)
            finally:
                _expect_synchronous_standby(cluster, admin, "")
        rows = instance_rows(area)
        assert rows.keys() == cut_off_uids  # committed locally
        assert all((area.root / name).is_file() for name in rows.values())


def test_a_warning_of_another_kind_at_commit_leaves_the_store_a_success(
        tmp_path: Path, index_db_url: str) -> None:
    """A deferred constraint trigger raises a WARNING at every COMMIT that stores an
    instance (a site's audit, say): the commit is as durable as any, the store succeeds."""
    with postgres_area(tmp_path / "area", index_db_url) as area:
        schema = schema_name(area.root)
        with psycopg.connect(index_db_url, autocommit=True) as admin:
            admin.execute(f"""
                CREATE FUNCTION "{schema}".audit() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE WARNING 'audited %', NEW.sop_instance_uid; RETURN NULL; END $$""")
            admin.execute(f"""
                CREATE CONSTRAINT TRIGGER audit AFTER INSERT ON "{schema}".instance
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "{schema}".audit()
                """)
        header, data = instance(tmp_path / "sources")
        area.store(header, data)
        assert header.sop_instance_uid in instance_rows(area)


def _expect_synchronous_standby(cluster: Cluster, admin: psycopg.Connection[object],
                                names: str) -> None:
    if names:
        admin.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
    else:
        admin.execute("ALTER SYSTEM RESET synchronous_standby_names")
    admin.execute("SELECT pg_reload_conf()")

    def in_force() -> bool:
        with psycopg.connect(cluster.url, autocommit=True) as fresh:
            shown = fresh.execute("SHOW synchronous_standby_names").fetchone()
        return shown is not None and shown[0] == names
    poll_until(in_force, f"synchronous_standby_names = {names!r}")


def test_a_store_chosen_as_a_deadlock_victim_is_run_again(tmp_path: Path,
                                                          index_db_url: str) -> None:
    """Another session holds the study's row and waits for the area's lock that the store
    holds; the store, held up on the patient's row until then, asks for the study's row last
    and so closes the cycle: PostgreSQL ends the store's transaction (deadlock_detected),
    however long either waited before; the store runs it again once the other is done, and
    succeeds."""
    with psycopg.connect(index_db_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database_of(index_db_url)}" '
                      "SET deadlock_timeout = '100ms'")
    with postgres_area(tmp_path / "area", index_db_url) as area:
        area.store(*instance(tmp_path / "sources", study_uid="1.2.3.7"))
        renamed = make_ct(tmp_path / "sources", study_uid="1.2.3.7", patient_name="Doe^Jane",
                          rows=2).read_bytes()  # the store updates the patient's row first
        schema = schema_name(area.root)
        with psycopg.connect(index_db_url) as patient_holder, psycopg.connect(
                index_db_url) as other, psycopg.connect(index_db_url,
                                                        autocommit=True) as watcher:
            other.execute("SET deadlock_timeout = '10min'")  # the store checks first; bounded
            patient_holder.execute(f'SELECT 1 FROM "{schema}".patient WHERE patient_id = %s '
                                   "FOR UPDATE", ("PID1",))
            other.execute(f'SELECT 1 FROM "{schema}".study WHERE study_instance_uid = %s '
                          "FOR UPDATE", ("1.2.3.7",))
            thread, outcome = store_in_thread(area, read_header(renamed), renamed)
            poll_until(lambda: watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND "
                "wait_event_type = 'Lock' AND query LIKE 'UPDATE patient%%'").fetchone(),
                "the store holding the area's lock, waiting for the patient's row")
            other_thread, other_error = _lock_and_commit(other, area_lock_key(schema))
            poll_until(lambda: watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'advisory'",
                (other.info.backend_pid,)).fetchone(), "the other waiting for the area's lock")
            patient_holder.commit()
            thread.join(120)
            other_thread.join(120)
        assert not thread.is_alive() and not other_thread.is_alive()
        assert other_error == [], other_error
        assert isinstance(outcome[0], StoreResult), outcome
        assert len(instance_rows(area)) == 2


def _lock_and_commit(db: psycopg.Connection[tuple[object, ...]], key: int
                     ) -> tuple[threading.Thread, list[psycopg.Error]]:
    """In a thread: take advisory lock ``key`` in ``db``'s transaction, then commit."""
    errors: list[psycopg.Error] = []

    def run() -> None:
        try:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            db.commit()
        except psycopg.Error as error:
            errors.append(error)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_query_streams_its_matches_from_a_server_side_cursor(tmp_path: Path,
                                                               index_db_url: str) -> None:
    """A C-FIND of many matches reads them from the server a batch at a time (memory stays
    flat however many match); a query left unfinished leaves no transaction open."""
    study, series = "1.2.3.9", "1.2.3.9.1"
    with postgres_area(tmp_path / "area", index_db_url) as area, psycopg.connect(
            index_db_url, autocommit=True) as watcher:
        stored = area.store_batch([instance(tmp_path / "sources", study, series)
                                   for _ in range(450)])
        assert all(isinstance(result, StoreResult) for result in stored)
        query = parse_identifier(identifier("IMAGE", StudyInstanceUID=study,
                                            SeriesInstanceUID=series, SOPInstanceUID=""),
                                 STUDY_ROOT)

        def sessions(where: str) -> list[tuple[str, str]]:
            return [(str(row[0]), str(row[1])) for row in watcher.execute(
                "SELECT state, query FROM pg_stat_activity WHERE datname = current_database()"
                f" AND pid <> pg_backend_pid() AND {where}").fetchall()]
        db = area.reader()
        try:
            matches = run_query(db, query)
            next(matches)
            assert [(state, text.split(" FROM ")[0]) for state, text in
                    sessions("query LIKE 'FETCH%'")] == [("idle in transaction",
                                                         "FETCH FORWARD 200")]
            assert len(list(matches)) == 449
            unfinished = run_query(db, query)
            next(unfinished)
        finally:
            db.close()
        assert sessions("state = 'idle in transaction'") == []


def test_a_query_read_slowly_outlives_the_databases_idle_in_transaction_timeout(
        tmp_path: Path, index_db_url: str) -> None:
    """A C-FIND streams its matches in one transaction, idle while the peer reads: a database
    whose ``idle_in_transaction_session_timeout`` is short does not end it midway."""
    study, series = "1.2.3.10", "1.2.3.10.1"
    with psycopg.connect(index_db_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database_of(index_db_url)}" '
                      "SET idle_in_transaction_session_timeout = '1s'")
    with postgres_area(tmp_path / "area", index_db_url) as area, psycopg.connect(
            index_db_url, autocommit=True) as watcher:
        stored = area.store_batch([instance(tmp_path / "sources", study, series)
                                   for _ in range(250)])
        assert all(isinstance(result, StoreResult) for result in stored)
        query = parse_identifier(identifier("IMAGE", StudyInstanceUID=study,
                                            SeriesInstanceUID=series, SOPInstanceUID=""),
                                 STUDY_ROOT)
        db = area.reader()
        try:
            matches = run_query(db, query)
            next(matches)
            (pid,) = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
                "state = 'idle in transaction'").fetchone() or (None,)
            assert pid is not None

            def idle_long_or_gone() -> bool:
                row = watcher.execute(
                    "SELECT clock_timestamp() - state_change > interval '3s' "
                    "FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                return row is None or bool(row[0])
            poll_until(idle_long_or_gone, "the query's session idle for 3 s (or ended)")
            assert len(list(matches)) == 249
        finally:
            db.close()


def test_queries_holding_every_readers_connection_leave_stores_theirs(
        tmp_path: Path, index_db_url: str) -> None:
    """After the database dropped every session (a restart), as many queries as the readers'
    pool holds are under way: a store still gets a connection of its own at once."""
    with postgres_area(tmp_path / "area", index_db_url) as area, psycopg.connect(
            index_db_url, autocommit=True) as admin:
        area.store(*instance(tmp_path / "sources"))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "datname = current_database() AND pid <> pg_backend_pid()")
        poll_until(lambda: _store_fails_or_none(area, tmp_path / "sources"),
                   "a store meeting the dropped connection")  # it fails; the next reconnects
        readers = [area.reader() for _ in range(POOL_SIZE)]
        try:
            for reader in readers:
                reader.execute("SELECT 1").fetchall()
            stored = area.store(*instance(tmp_path / "sources"))
        finally:
            for reader in readers:
                reader.close()
        assert stored.file_name in instance_rows(area).values()


def _store_fails_or_none(area: StorageArea, sources: Path) -> bool:
    try:
        area.store(*instance(sources))
    except PyqrscpError:
        return True
    return False


def test_eviction_follows_the_database_order_when_a_nodes_clock_steps_back(
        tmp_path: Path, index_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Least recently stored is the database's order of stores (a sequence), whatever the
    clock of the node that stored says."""
    with postgres_area(tmp_path / "area", index_db_url, Quota(2, MB)) as area:
        area.store(*instance(tmp_path / "sources", "1.2.3.1"))
        real_time_ns = time.time_ns
        monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() - 3600 * 10**9)
        area.store(*instance(tmp_path / "sources", "1.2.3.2"))
        result = area.store(*instance(tmp_path / "sources", "1.2.3.3"))
    assert result.evicted_studies == ("1.2.3.1",)
