"""StorageArea on a real folder with a real SQLite index: writes, replacement, quotas, leftovers."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import make_ct

from pyqrscp.archive.dicomfile import Header, read_header
from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.layout import (
    AREA_OWN_NAMES,
    GENERATED_NAME,
    IN_USE_MARKER_NAME,
    LOCK_FILE_NAME,
    NODE_LOCK_PREFIX,
    TEMP_PREFIX,
)
from pyqrscp.archive.storage import StorageArea, StoreResult
from pyqrscp.config import Quota
from pyqrscp.errors import InvalidDataset, QuotaExceeded, StorageFailure

MB = 1024**2
ROOMY = Quota(100, 100 * MB)

pytestmark = pytest.mark.sqlite_only  # reads and breaks the SQLite index file itself


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    return folder


def open_area(root: Path, quota: Quota = ROOMY) -> StorageArea:
    area = StorageArea(root, quota, durable=False)
    area.open()
    return area


@pytest.fixture
def area(tmp_path: Path) -> Iterator[StorageArea]:
    area = open_area(tmp_path / "area")
    yield area
    area.close()


def instance(sources: Path, **kwargs: Any) -> tuple[Header, bytes]:
    data = make_ct(sources, **kwargs).read_bytes()
    return read_header(data), data


def index_rows(area: StorageArea, sql: str) -> list[Any]:
    """Rows read straight from the area's index (whichever backend holds it)."""
    db = area.reader()
    try:
        return list(db.execute(sql).fetchall())
    finally:
        db.close()


def rows(area: StorageArea) -> dict[str, str]:
    """SOP Instance UID -> file name."""
    return dict(index_rows(area, "SELECT sop_instance_uid, file_name FROM instance"))


def studies(area: StorageArea) -> set[str]:
    return {row[0] for row in index_rows(area, "SELECT study_instance_uid FROM study")}


def dicom_files(area: StorageArea) -> set[str]:
    """Every ``.dcm`` file of the area (either layout), by its name relative to the area."""
    return {p.relative_to(area.root).as_posix() for p in area.root.rglob("*.dcm")}


def area_entries(area: StorageArea) -> set[str]:
    """Every file of the area but its own (index, lock file, markers), relative to it."""
    return {p.relative_to(area.root).as_posix() for p in area.root.rglob("*")
            if not p.is_dir() and p.name not in AREA_OWN_NAMES
            and not p.name.startswith(NODE_LOCK_PREFIX)}


@contextmanager
def stopped_uncleanly(area: StorageArea) -> Iterator[sqlite3.Connection]:
    """What a killed process leaves behind: the in-use marker it made at open (only a clean
    close removes it), and an index connection that never closed."""
    (area.root / IN_USE_MARKER_NAME).touch()
    db = sqlite3.connect(area.index_path)
    try:
        db.execute("SELECT COUNT(*) FROM instance").fetchone()
        yield db
    finally:
        db.close()


def test_store_writes_the_bytes_and_one_index_row(area: StorageArea, sources: Path) -> None:
    header, data = instance(sources, sop_uid="1.2.826.0.1.1")
    result = area.store(header, data)
    assert GENERATED_NAME.match(result.file_name)
    folders, _, own_name = result.file_name.rpartition("/")
    series_hash = hashlib.sha256(header.series_instance_uid.encode()).hexdigest()
    assert own_name.startswith("CT_") and folders == f"{series_hash[:2]}/{series_hash[2:4]}"
    assert (area.root / result.file_name).read_bytes() == data
    assert rows(area) == {"1.2.826.0.1.1": result.file_name}
    assert dicom_files(area) == {result.file_name}
    assert not result.replaced and result.evicted_studies == result.evicted_instances == ()


def test_a_duplicate_replaces_file_and_row(area: StorageArea, sources: Path) -> None:
    first_header, first = instance(sources, sop_uid="1.2.826.0.1.2", patient_name="First")
    first_result = area.store(first_header, first)
    second_header, second = instance(sources, sop_uid="1.2.826.0.1.2", patient_name="Second",
                                     study_uid=first_header.study_instance_uid,
                                     series_uid=first_header.series_instance_uid)
    assert first != second
    result = area.store(second_header, second)
    assert result.replaced
    assert not (area.root / first_result.file_name).exists()
    assert (area.root / result.file_name).read_bytes() == second
    assert rows(area) == {"1.2.826.0.1.2": result.file_name}
    assert dicom_files(area) == {result.file_name}


def test_eviction_alone_is_not_reported_as_replacement(tmp_path: Path, sources: Path) -> None:
    area = open_area(tmp_path / "area", Quota(1, MB))
    area.store(*instance(sources))
    result = area.store(*instance(sources))
    area.close()
    assert len(result.evicted_studies) == 1
    assert not result.replaced


def test_study_quota_evicts_the_least_recently_stored_study(tmp_path: Path,
                                                            sources: Path) -> None:
    area = open_area(tmp_path / "area", Quota(2, MB))
    names: dict[str, set[str]] = {"1.2.3.1": set(), "1.2.3.2": set(), "1.2.3.3": set()}
    for study_uid in ("1.2.3.1", "1.2.3.2", "1.2.3.1"):  # 1.2.3.1 is stored to again, last
        names[study_uid].add(area.store(*instance(sources, study_uid=study_uid)).file_name)
    result = area.store(*instance(sources, study_uid="1.2.3.3"))
    names["1.2.3.3"].add(result.file_name)
    area.close()
    assert result.evicted_studies == ("1.2.3.2",)
    assert studies(area) == {"1.2.3.1", "1.2.3.3"}
    assert dicom_files(area) == names["1.2.3.1"] | names["1.2.3.3"]
    assert set(rows(area).values()) == dicom_files(area)


def test_eviction_follows_the_order_of_stores_when_the_clock_steps_back(
        tmp_path: Path, sources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The least recently stored study is the one stored first, even when the machine's clock
    was set back by an hour between two stores (NTP, a hand-set clock, another node)."""
    area = open_area(tmp_path / "area", Quota(2, MB))
    area.store(*instance(sources, study_uid="1.2.3.1"))
    real_time_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() - 3600 * 10**9)
    area.store(*instance(sources, study_uid="1.2.3.2"))
    result = area.store(*instance(sources, study_uid="1.2.3.3"))
    area.close()
    assert result.evicted_studies == ("1.2.3.1",)
    assert studies(area) == {"1.2.3.2", "1.2.3.3"}


def test_an_index_with_clock_orders_goes_on_counting_above_them(tmp_path: Path,
                                                                 sources: Path) -> None:
    """An index whose orders are clock times (an older pyqrscp) keeps its least recently
    stored study first: the counter starts above the clock times."""
    area = open_area(tmp_path / "area", Quota(2, MB))
    area.store(*instance(sources, study_uid="1.2.3.1"))
    with closing(sqlite3.connect(area.index_path)) as db, db:
        db.execute("UPDATE study SET last_stored = ?", (time.time_ns(),))
        db.execute("UPDATE instance SET received = ?", (time.time_ns(),))
        db.execute("DELETE FROM meta WHERE key = 'store_order'")
    area.store(*instance(sources, study_uid="1.2.3.2"))
    result = area.store(*instance(sources, study_uid="1.2.3.3"))
    area.close()
    assert result.evicted_studies == ("1.2.3.1",)


def test_byte_quota_evicts_the_oldest_instances_of_that_study_only(tmp_path: Path,
                                                                   sources: Path) -> None:
    size = len(instance(sources)[1])
    area = open_area(tmp_path / "area", Quota(10, int(size * 2.5)))
    # 1.2.3.55 has 1.2.3.5 as a prefix: its instances must never count for 1.2.3.5.
    neighbour = {area.store(*instance(sources, study_uid="1.2.3.55")).file_name,
                 area.store(*instance(sources, study_uid="1.2.3.55")).file_name}
    stored = [area.store(*instance(sources, study_uid="1.2.3.5", sop_uid=f"1.2.3.5.{n}"))
              for n in (1, 2, 3)]
    area.close()
    assert stored[2].evicted_instances == ("1.2.3.5.1",)
    assert stored[2].evicted_studies == ()
    assert dicom_files(area) == neighbour | {r.file_name for r in stored[1:]}
    assert {uid for uid in rows(area) if uid.startswith("1.2.3.5.")} == {"1.2.3.5.2",
                                                                         "1.2.3.5.3"}
    assert studies(area) == {"1.2.3.5", "1.2.3.55"}


def test_an_instance_over_the_study_limit_is_refused_and_nothing_deleted(
        tmp_path: Path, sources: Path) -> None:
    small_header, small = instance(sources, rows=4)
    area = open_area(tmp_path / "area", Quota(1, len(small) + 100))
    kept = area.store(small_header, small)
    with pytest.raises(QuotaExceeded):
        area.store(*instance(sources, rows=64))
    area.close()
    assert dicom_files(area) == {kept.file_name}
    assert not [p for p in area.root.iterdir() if p.name.startswith(TEMP_PREFIX)]
    assert rows(area) == {small_header.sop_instance_uid: kept.file_name}


def test_a_replaced_duplicate_does_not_count_against_the_quota(tmp_path: Path,
                                                               sources: Path) -> None:
    header, data = instance(sources, sop_uid="1.2.826.0.1.3", study_uid="1.2.3.9")
    other_header, other = instance(sources, study_uid="1.2.3.9")
    area = open_area(tmp_path / "area", Quota(1, len(data) + len(other) + 10))
    area.store(other_header, other)
    area.store(header, data)
    result = area.store(header, data)  # resent: the old copy does not count
    area.close()
    assert result.evicted_instances == ()
    assert set(rows(area)) == {"1.2.826.0.1.3", other_header.sop_instance_uid}


def test_leftovers_are_removed_when_the_area_opens(tmp_path: Path, sources: Path) -> None:
    area = open_area(tmp_path / "area")
    kept = area.store(*instance(sources)).file_name
    area.close()
    (area.root / f"{TEMP_PREFIX}0123456789abcdef").write_bytes(b"half a file")
    (area.root / "CT_0123456789abcdef.dcm").write_bytes(b"renamed, never indexed")
    (area.root / "01" / "23").mkdir(parents=True)
    (area.root / "01/23/CT_0123456789abcdee.dcm").write_bytes(b"renamed, never indexed")
    (area.root / "notes.txt").write_text("not ours")
    (area.root / "ct_0123456789abcdef.dcm").write_text("not a generated name")
    with stopped_uncleanly(area):
        reopened = open_area(area.root)
        reopened.close()
    assert area_entries(area) == {kept, "notes.txt", "ct_0123456789abcdef.dcm"}


def test_a_clean_start_removes_temp_files_and_lists_no_hash_folder(tmp_path: Path,
                                                                   sources: Path) -> None:
    """Start-up work must not grow with the archive: after a clean stop only the area's own
    folder is listed (for temp files); the files of the hash folders are not looked at."""
    area = open_area(tmp_path / "area")
    kept = area.store(*instance(sources)).file_name
    area.close()
    assert not (area.root / IN_USE_MARKER_NAME).exists()
    with closing(sqlite3.connect(f"file:{area.index_path}?mode=ro", uri=True)) as reader:
        reader.execute("SELECT COUNT(*) FROM instance").fetchone()  # as pyqrscp ls does
    assert (area.root / f"{INDEX_FILE_NAME}-wal").exists()  # a reader cannot remove it
    (area.root / f"{TEMP_PREFIX}0123456789abcdef").write_bytes(b"half a file")
    (area.root / "01" / "23").mkdir(parents=True)
    (area.root / "01/23/CT_0123456789abcdee.dcm").write_bytes(b"not looked at")
    (area.root / "CT_0123456789abcdef.dcm").write_bytes(b"not looked at either")
    reopened = open_area(area.root)
    reopened.close()
    assert area_entries(area) == {kept, "01/23/CT_0123456789abcdee.dcm",
                                  "CT_0123456789abcdef.dcm"}


def test_a_process_killed_between_rename_and_index_leaves_a_file_the_next_start_indexes(
        tmp_path: Path, sources: Path) -> None:
    """A real kill: the index's WAL file survives it, and that is what makes the next start
    search the hash folders."""
    area = open_area(tmp_path / "area")
    area.close()
    header, data = instance(sources)
    (sources / "data.dcm").write_bytes(data)
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from pyqrscp.config import Quota\n"
        "from pyqrscp.archive.durable import place, write_temp\n"
        "from pyqrscp.archive.storage import StorageArea\n"
        "area = StorageArea(Path(sys.argv[1]), Quota(100, 1 << 30))\n"
        "area.open()\n"
        "place(area.root, write_temp(area.root, Path(sys.argv[2]).read_bytes(), True),\n"
        "      '0a/0b/CT_0a0b000000000001.dcm', True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", script, str(area.root),
                             str(sources / "data.dcm")], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    reopened = open_area(area.root)
    reopened.close()
    assert rows(area) == {header.sop_instance_uid: "0a/0b/CT_0a0b000000000001.dcm"}


OPEN_TOGETHER = (
    "import os, sys, time\n"
    "from pathlib import Path\n"
    "from pyqrscp.config import Quota\n"
    "from pyqrscp.archive.storage import StorageArea\n"
    "top, openers, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])\n"
    "failed = False\n"
    "for n in range(rounds):\n"
    "    gate = top / f'gate{n}'\n"
    "    gate.mkdir(exist_ok=True)\n"
    "    (gate / str(os.getpid())).touch()\n"
    "    while len(os.listdir(gate)) < openers:\n"
    "        time.sleep(0.0005)\n"
    "    area = StorageArea(top / f'area{n}', Quota(100, 1 << 30), durable=False)\n"
    "    try:\n"
    "        area.open()\n"
    "    except Exception as error:  # go on: the others wait for this one each round\n"
    "        print(f'round {n}: {error!r}', file=sys.stderr)\n"
    "        failed = True\n"
    "    area.close()\n"
    "sys.exit(1 if failed else 0)\n")


def test_processes_opening_one_new_area_at_once_all_open_it(tmp_path: Path) -> None:
    """Servers (or a server and ``pyqrscp index``) started together on a new area: each one
    opens it, none fails on what another is creating at that moment (each round, the openers
    wait for each other, then open a new area together)."""
    openers = [subprocess.Popen([sys.executable, "-c", OPEN_TOGETHER, str(tmp_path), "4", "40"],
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        failures = [errors for opener in openers
                    for _, errors in [opener.communicate(timeout=300)] if opener.returncode]
    finally:
        for opener in openers:
            if opener.poll() is None:
                opener.kill()
                opener.wait()
    assert failures == []


def lose_rows(db: sqlite3.Connection, *sop_instance_uids: str) -> None:
    """What a power loss does to commits that were not flushed yet: the rows are gone."""
    db.execute("PRAGMA foreign_keys=ON")
    for uid in sop_instance_uids:
        db.execute("DELETE FROM instance WHERE sop_instance_uid=?", (uid,))
    db.commit()


def test_files_whose_rows_were_lost_are_indexed_again_when_the_area_opens(
        tmp_path: Path, sources: Path) -> None:
    area = open_area(tmp_path / "area")
    first_header, first = instance(sources)
    second_header, second = instance(sources)
    first_name = area.store(first_header, first).file_name
    second_name = area.store(second_header, second).file_name
    area.close()
    with stopped_uncleanly(area) as db:
        lose_rows(db, first_header.sop_instance_uid, second_header.sop_instance_uid)
        assert rows(area) == {}
        reopened = open_area(area.root)
        assert reopened.settle_leftovers() == ([], [])  # nothing left to settle the second time
        reopened.close()
    assert rows(area) == {first_header.sop_instance_uid: first_name,
                          second_header.sop_instance_uid: second_name}
    assert (area.root / first_name).read_bytes() == first


def test_a_leftover_copy_of_an_indexed_instance_is_removed_not_indexed(
        tmp_path: Path, sources: Path) -> None:
    area = open_area(tmp_path / "area")
    header, data = instance(sources)
    kept = area.store(header, data).file_name
    area.close()
    stale = "CT_00000000000000ff.dcm"  # a replaced copy whose removal a crash interrupted
    (area.root / stale).write_bytes(data)
    with stopped_uncleanly(area):
        reopened = open_area(area.root)
        reopened.close()
    assert rows(area) == {header.sop_instance_uid: kept}
    assert dicom_files(area) == {kept}


def test_leftovers_are_indexed_under_the_quota(tmp_path: Path, sources: Path) -> None:
    area = open_area(tmp_path / "area", Quota(1, 100 * MB))
    old_header, old = instance(sources, study_uid="1.2.3.1")
    new_header, new = instance(sources, study_uid="1.2.3.2")
    area.store(old_header, old)
    new_name = area.store(new_header, new).file_name  # evicts study 1.2.3.1
    area.close()
    with stopped_uncleanly(area) as db:
        lose_rows(db, new_header.sop_instance_uid)
        reopened = open_area(area.root, Quota(1, 100 * MB))
        reopened.close()
    assert rows(area) == {new_header.sop_instance_uid: new_name}
    assert studies(area) == {"1.2.3.2"}


@pytest.mark.sqlite_only
def test_a_file_that_cannot_be_indexed_now_is_kept_not_deleted(tmp_path: Path,
                                                               sources: Path) -> None:
    """Re-indexing refused by the index (disk full, say) must not cost an acknowledged file."""
    area = open_area(tmp_path / "area")
    header, data = instance(sources)
    name = area.store(header, data).file_name
    area.close()
    with stopped_uncleanly(area) as db:
        lose_rows(db, header.sop_instance_uid)
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON instance "
                   "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        reopened = open_area(area.root)
        reopened.close()
        assert (area.root / name).read_bytes() == data
        db.execute("DROP TRIGGER refuse")
    # the stop was clean now, but the file still waits: the next start sweeps again
    assert not (area.root / IN_USE_MARKER_NAME).exists()
    again = open_area(area.root)
    again.close()
    assert rows(area) == {header.sop_instance_uid: name}


def test_leftovers_are_read_with_the_servers_uid_padding(tmp_path: Path, sources: Path) -> None:
    area = StorageArea(tmp_path / "area", ROOMY, durable=False, uid_padding=True)
    area.open()
    data = make_ct(sources, sop_uid="1.2.3.4.5").read_bytes().replace(b"1.2.3.4.5\x00",
                                                                       b" 1.2.3.4.5")
    header = read_header(data, uid_padding=True)
    name = area.store(header, data).file_name
    area.close()
    with stopped_uncleanly(area) as db:
        lose_rows(db, header.sop_instance_uid)
        reopened = StorageArea(area.root, ROOMY, durable=False, uid_padding=True)
        reopened.open()
        reopened.close()
    assert rows(area) == {"1.2.3.4.5": name}


@pytest.mark.sqlite_only
def test_a_failing_index_write_leaves_no_file(area: StorageArea, sources: Path) -> None:
    kept_header, kept_data = instance(sources)
    kept = area.store(kept_header, kept_data).file_name
    with sqlite3.connect(area.index_path) as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON instance "
                   "BEGIN SELECT RAISE(ABORT, 'simulated disk full'); END")
    with pytest.raises(StorageFailure, match="simulated disk full"):
        area.store(*instance(sources))
    assert area_entries(area) == {kept}
    assert rows(area) == {kept_header.sop_instance_uid: kept}
    # A failed store of a duplicate keeps the old copy.
    with pytest.raises(StorageFailure):
        area.store(kept_header, kept_data)
    assert (area.root / kept).read_bytes() == kept_data


@pytest.mark.sqlite_only  # a PostgreSQL connection is replaced: see test_postgres_index
def test_a_closed_index_fails_the_store_and_leaves_no_file(tmp_path: Path,
                                                           sources: Path) -> None:
    area = open_area(tmp_path / "area")
    assert area._db is not None
    area._db.close()  # the connection dies under the area (as on an I/O error)
    with pytest.raises(StorageFailure):
        area.store(*instance(sources))
    assert area_entries(area) == set()


@pytest.mark.parametrize("modality", ["../../x", "..\\..\\x", "/etc/passwd", "", "A" * 40])
def test_a_malicious_modality_never_escapes_the_area(tmp_path: Path, sources: Path,
                                                     modality: str) -> None:
    area = open_area(tmp_path / "deep" / "area")
    header, data = instance(sources)
    header = dataclasses.replace(header, series={**header.series, "Modality": modality})
    result = area.store(header, data)
    area.close()
    assert GENERATED_NAME.match(result.file_name)
    assert (area.root / result.file_name).read_bytes() == data
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and area.root not in p.parents
               and sources not in p.parents]
    assert outside == []


def test_path_of_refuses_names_that_are_not_plain(area: StorageArea) -> None:
    for name in ("../x.dcm", "a/b.dcm", "..", "", "a\\b", "ab/cd/..", "ab/../x.dcm",
                 "/etc/passwd", "ab/cd/ef/x.dcm", "AB/cd/x.dcm", "ab/cd/", "ab/cd/a\\b"):
        with pytest.raises(StorageFailure):
            area.path_of(name)
    for name in ("ab/cd/CT_abcd000000000000.dcm", "CT_abcd000000000000.dcm"):
        assert area.path_of(name) == area.root / name


@pytest.mark.parametrize("field,uid", [
    ("sop_uid", "../etc"), ("sop_uid", "1." + "2" * 63), ("sop_uid", "1.2.abc"),
    ("study_uid", "../etc"), ("series_uid", "1.2..3"), ("study_uid", "1.2.3 4"),
])
def test_read_header_refuses_invalid_uids(sources: Path, field: str, uid: str) -> None:
    with warnings.catch_warnings():
        # pydicom warns about the invalid value on write and on read; read_header must refuse it.
        warnings.filterwarnings("ignore", category=UserWarning,
                                message="(Invalid value for VR UI|The value length)")
        attributes: dict[str, Any] = {field: uid}
        data = make_ct(sources, **attributes).read_bytes()
        with pytest.raises(InvalidDataset, match="invalid"):
            read_header(data)


def test_read_header_refuses_what_is_not_dicom() -> None:
    for data in (b"", b"plain text, not DICOM", b"\0" * 128 + b"DICM"):
        with pytest.raises(InvalidDataset):
            read_header(data)


def test_parallel_stores_index_every_instance_once(area: StorageArea, sources: Path) -> None:
    batches = [[instance(sources, study_uid=f"1.2.7.{t}") for _ in range(8)] for t in range(4)]
    errors: list[BaseException] = []

    def run(batch: list[tuple[Header, bytes]]) -> None:
        try:
            for header, data in batch:
                area.store(header, data)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    expected = {header.sop_instance_uid for batch in batches for header, _ in batch}
    assert set(rows(area)) == expected
    assert set(rows(area).values()) == dicom_files(area)
    assert len(dicom_files(area)) == 32


def _parents(area: StorageArea) -> tuple[set[str], set[str], set[str]]:
    """(patient IDs, study UIDs, series UIDs) in the index."""
    return ({row[0] for row in index_rows(area, "SELECT patient_id FROM patient")},
            {row[0] for row in index_rows(area, "SELECT study_instance_uid FROM study")},
            {row[0] for row in index_rows(area, "SELECT series_instance_uid FROM series")})


def test_an_instance_moved_to_another_study_leaves_no_empty_parents(area: StorageArea,
                                                                    sources: Path) -> None:
    area.store(*instance(sources, sop_uid="1.2.826.0.1.7", patient_id="OLD",
                         study_uid="1.2.3.70", series_uid="1.2.3.70.1"))
    moved = area.store(*instance(sources, sop_uid="1.2.826.0.1.7", patient_id="NEW",
                                 study_uid="1.2.3.71", series_uid="1.2.3.71.1"))
    assert moved.replaced
    assert _parents(area) == ({"NEW"}, {"1.2.3.71"}, {"1.2.3.71.1"})
    assert rows(area) == {"1.2.826.0.1.7": moved.file_name}


def test_an_instance_moved_to_another_series_keeps_the_parents_still_used(
        area: StorageArea, sources: Path) -> None:
    area.store(*instance(sources, sop_uid="1.2.826.0.1.8", study_uid="1.2.3.80",
                         series_uid="1.2.3.80.1"))
    area.store(*instance(sources, sop_uid="1.2.826.0.1.9", study_uid="1.2.3.80",
                         series_uid="1.2.3.80.1"))
    area.store(*instance(sources, sop_uid="1.2.826.0.1.8", study_uid="1.2.3.80",
                         series_uid="1.2.3.80.2"))
    assert _parents(area) == ({"PID1"}, {"1.2.3.80"}, {"1.2.3.80.1", "1.2.3.80.2"})
    area.store(*instance(sources, sop_uid="1.2.826.0.1.9", study_uid="1.2.3.80",
                         series_uid="1.2.3.80.2"))
    assert _parents(area) == ({"PID1"}, {"1.2.3.80"}, {"1.2.3.80.2"})


def test_a_study_emptied_by_a_replacement_takes_no_study_quota(tmp_path: Path,
                                                               sources: Path) -> None:
    area = open_area(tmp_path / "area", Quota(3, MB))
    kept = area.store(*instance(sources, study_uid="1.2.3.90")).file_name
    area.store(*instance(sources, sop_uid="1.2.826.0.1.10", study_uid="1.2.3.91"))
    area.store(*instance(sources, study_uid="1.2.3.92"))
    area.store(*instance(sources, sop_uid="1.2.826.0.1.10", study_uid="1.2.3.92"))
    result = area.store(*instance(sources, study_uid="1.2.3.93"))
    area.close()
    # 1.2.3.91 holds nothing now: the oldest real study must not be evicted for it.
    assert result.evicted_studies == ()
    assert studies(area) == {"1.2.3.90", "1.2.3.92", "1.2.3.93"}
    assert kept in dicom_files(area)


def test_moving_a_studys_only_instance_to_a_new_study_evicts_nothing(tmp_path: Path,
                                                                     sources: Path) -> None:
    area = open_area(tmp_path / "area", Quota(2, MB))
    kept = area.store(*instance(sources, study_uid="1.2.3.94")).file_name
    area.store(*instance(sources, sop_uid="1.2.826.0.1.11", study_uid="1.2.3.95"))
    result = area.store(*instance(sources, sop_uid="1.2.826.0.1.11", study_uid="1.2.3.96"))
    area.close()
    # Two studies after the store (1.2.3.95 goes empty): nothing to evict.
    assert result.evicted_studies == ()
    assert studies(area) == {"1.2.3.94", "1.2.3.96"}
    assert kept in dicom_files(area)


@pytest.mark.timeout(30)
def test_a_fifo_or_link_named_like_a_stored_file_is_left_alone(tmp_path: Path,
                                                                sources: Path) -> None:
    """Neither blocks the start (a FIFO opened for reading would) nor gets indexed."""
    root = tmp_path / "area"
    root.mkdir()
    os.mkfifo(root / "CT_0000000000000001.dcm")
    (root / "CT_0000000000000002.dcm").symlink_to(make_ct(sources))
    (root / "00" / "00").mkdir(parents=True)
    os.mkfifo(root / "00/00/CT_0000000000000003.dcm")
    (root / "00/00/CT_0000000000000004.dcm").symlink_to(make_ct(sources))
    (root / "11").symlink_to(sources)  # a linked hash folder is never entered
    make_ct(sources).rename(sources / "CT_1100000000000005.dcm")
    area = open_area(root)
    area.close()
    with stopped_uncleanly(area):
        area = open_area(root)
        try:
            assert rows(area) == {}
        finally:
            area.close()
    assert (root / "CT_0000000000000002.dcm").is_symlink()
    assert (root / "00/00/CT_0000000000000004.dcm").is_symlink()


@pytest.mark.parametrize("name", [LOCK_FILE_NAME, pytest.param(
    INDEX_FILE_NAME, marks=pytest.mark.sqlite_only)])
def test_a_linked_lock_file_or_index_stops_the_area_from_opening(tmp_path: Path,
                                                                 name: str) -> None:
    root = tmp_path / "area"
    root.mkdir()
    (root / name).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StorageFailure, match="a symbolic link"):
        open_area(root)
    assert not (tmp_path / "elsewhere").exists()


def test_a_batch_stores_every_instance_durably_in_hash_folders(area: StorageArea,
                                                                sources: Path) -> None:
    items = [instance(sources, study_uid=f"1.2.8.{n % 3}") for n in range(30)]
    results = area.store_batch(items)
    assert all(isinstance(result, StoreResult) for result in results)
    stored = {header.sop_instance_uid: result.file_name
              for (header, _), result in zip(items, results, strict=True)
              if isinstance(result, StoreResult)}
    assert rows(area) == stored
    assert dicom_files(area) == set(stored.values())
    for (_, data), result in zip(items, results, strict=True):
        assert isinstance(result, StoreResult) and GENERATED_NAME.match(result.file_name)
        assert (area.root / result.file_name).read_bytes() == data
    assert not [p for p in area.root.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_a_refused_instance_costs_only_itself_in_a_batch(tmp_path: Path, sources: Path) -> None:
    good = [instance(sources, rows=4, study_uid="1.2.8.50") for _ in range(3)]
    too_large = instance(sources, rows=64, study_uid="1.2.8.50")
    refused_by_index = instance(sources, rows=4, study_uid="1.2.8.50", sop_uid="1.2.826.0.1.99")
    area = open_area(tmp_path / "area", Quota(10, len(good[0][1]) * 2 + 200))
    with sqlite3.connect(area.index_path) as db:
        db.execute("CREATE TRIGGER refuse BEFORE INSERT ON instance WHEN "
                   "NEW.sop_instance_uid='1.2.826.0.1.99' "
                   "BEGIN SELECT RAISE(ABORT, 'simulated refusal'); END")
    results = area.store_batch([good[0], too_large, good[1], refused_by_index, good[2]])
    area.close()
    assert isinstance(results[1], QuotaExceeded)
    assert isinstance(results[3], StorageFailure) and "simulated refusal" in str(results[3])
    stored = [result for result in results if isinstance(result, StoreResult)]
    assert len(stored) == 3
    assert stored[2].evicted_instances == (good[0][0].sop_instance_uid,)  # per-study bytes
    assert rows(area) == {header.sop_instance_uid: result.file_name
                          for (header, _), result in zip(good[1:], stored[1:], strict=True)}
    assert area_entries(area) == {result.file_name for result in stored[1:]}


def test_a_duplicate_within_a_batch_replaces_the_earlier_copy(area: StorageArea,
                                                              sources: Path) -> None:
    first = instance(sources, sop_uid="1.2.826.0.1.98", patient_name="First")
    second = instance(sources, sop_uid="1.2.826.0.1.98", patient_name="Second")
    results = area.store_batch([first, second])
    assert isinstance(results[1], StoreResult) and results[1].replaced
    assert rows(area) == {"1.2.826.0.1.98": results[1].file_name}
    assert area_entries(area) == {results[1].file_name}
    assert (area.root / results[1].file_name).read_bytes() == second[1]


def test_a_batch_evicts_studies_by_the_quota_in_store_order(tmp_path: Path,
                                                            sources: Path) -> None:
    area = open_area(tmp_path / "area", Quota(2, MB))
    items = [instance(sources, study_uid=f"1.2.9.{n}") for n in range(4)]
    results = area.store_batch(items)
    area.close()
    assert [r.evicted_studies for r in results if isinstance(r, StoreResult)] == [
        (), (), ("1.2.9.0",), ("1.2.9.1",)]
    assert studies(area) == {"1.2.9.2", "1.2.9.3"}
    assert area_entries(area) == set(rows(area).values())


def flatten(area: StorageArea) -> None:
    """Make the area what an earlier version wrote: every file flat in the area's folder."""
    with sqlite3.connect(area.index_path) as db:
        for name in [row[0] for row in db.execute("SELECT file_name FROM instance")]:
            flat = name.rpartition("/")[2]
            (area.root / name).rename(area.root / flat)
            db.execute("UPDATE instance SET file_name=? WHERE file_name=?", (flat, name))
    for folder in sorted(area.root.glob("*/*")) + sorted(area.root.glob("*")):
        if folder.is_dir():
            folder.rmdir()


def test_an_area_of_flat_files_keeps_working(tmp_path: Path, sources: Path) -> None:
    """Files of an earlier version stay where they are: found, replaced, evicted and deleted
    through their index rows, while new files go into hash folders."""
    area = open_area(tmp_path / "area", Quota(2, MB))
    old = {study: area.store(*instance(sources, study_uid=study, sop_uid=f"{study}.1"))
           for study in ("1.2.10.1", "1.2.10.2")}
    area.close()
    flatten(area)
    assert dicom_files(area) == {r.file_name.rpartition("/")[2] for r in old.values()}
    area = open_area(area.root, Quota(2, MB))
    flat_names = set(rows(area).values())
    again = instance(sources, study_uid="1.2.10.2", sop_uid="1.2.10.2.1")
    replaced = area.store(*again)
    assert replaced.replaced and "/" in replaced.file_name
    evicting = area.store(*instance(sources, study_uid="1.2.10.3"))
    assert evicting.evicted_studies == ("1.2.10.1",)
    assert dicom_files(area) == {replaced.file_name, evicting.file_name}
    assert not flat_names & dicom_files(area)
    area.close()

    flatten(area)
    area = open_area(area.root, Quota(2, MB))
    assert area.delete("study", "1.2.10.2") == (1, len(again[1]))
    assert dicom_files(area) == set(rows(area).values()) and len(rows(area)) == 1
    area.close()


def test_a_sweep_after_an_unclean_stop_finds_flat_and_nested_files(tmp_path: Path,
                                                                   sources: Path) -> None:
    area = open_area(tmp_path / "area")
    flat_header, flat_data = instance(sources)
    nested_header, nested_data = instance(sources)
    area.store(flat_header, flat_data)
    area.close()
    flatten(area)
    area = open_area(area.root)
    nested = area.store(nested_header, nested_data).file_name
    area.close()
    flat = rows(area)[flat_header.sop_instance_uid]
    with stopped_uncleanly(area) as db:
        lose_rows(db, flat_header.sop_instance_uid, nested_header.sop_instance_uid)
        reopened = open_area(area.root)
        reopened.close()
    assert rows(area) == {flat_header.sop_instance_uid: flat,
                          nested_header.sop_instance_uid: nested}
