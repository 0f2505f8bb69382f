"""C-STORE with the real DCMTK tools against pyqrscp served in-process on port 0 (the crash test
kills the real ``pyqrscp`` process).

Outcomes are read where they land: tool output and exit codes, the files in the storage area,
and the SQLite index itself.
"""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (
    DCMTK_ENV,
    ServerInProcess,
    have_dcmtk,
    index_db,
    make_ct,
    pyqrscp_in_process,
    pyqrscp_process,
    run_tool,
    stored_files,
    wait_for_log,
    write_config,
)
from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config

from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.layout import GENERATED_NAME, LOCK_FILE_NAME, TEMP_PREFIX

VERIFICATION = "1.2.840.10008.1.1"

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")

AE_ROWS = [
    "STORE    store    RW (100, 100mb) ANY",
    "RONLY    ronly    R  (100, 100mb) ANY",
    "WONLY    wonly    W  (100, 100mb) ANY",
    "PRIV     priv     RW (100, 100mb) (FRIEND, 127.0.0.1, 1)",
    "STUDIES2 studies2 RW (2, 100mb)   ANY",
    "SMALL    small    RW (100, 3kb)   ANY",
]


@dataclass
class Archive:
    """One running pyqrscp with its config folder."""

    root: Path
    server: ServerInProcess

    @property
    def port(self) -> str:
        return str(self.server.port)

    def area(self, name: str) -> Path:
        return self.root / name

    def index(self, name: str) -> dict[str, str]:
        """SOP Instance UID -> file name, straight from the area's SQLite index."""
        with index_db(self.area(name)) as db:
            return dict(db.execute("SELECT sop_instance_uid, file_name FROM instance"))

    def stored(self, name: str, sop_uid: str) -> Path:
        return self.area(name) / self.index(name)[sop_uid]

    def storescu(self, called: str, *args: str, calling: str = "STORESCU"
                 ) -> subprocess.CompletedProcess[str]:
        return run_tool("storescu", "-v", "-aet", calling, "-aec", called, "127.0.0.1",
                        self.port, *args)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("archive")
    with pyqrscp_in_process(write_config(root, AE_ROWS)) as server:
        yield Archive(root, server)


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    return folder


def assert_same_dataset(sent: Path, stored: Path) -> None:
    sent_ds, stored_ds = dcmread(sent), dcmread(stored)
    assert stored_ds == sent_ds
    assert stored_ds.PixelData == sent_ds.PixelData


def files_and_rows_agree(area: Path) -> None:
    """Every row names a file, every generated file has a row, no temp file is left."""
    with index_db(area) as db:
        indexed = [row[0] for row in db.execute("SELECT file_name FROM instance")]
    present = {name for name in stored_files(area) if GENERATED_NAME.match(name)}
    assert sorted(indexed) == sorted(present)
    assert not [p for p in area.iterdir() if p.name.startswith(TEMP_PREFIX)]


# -- access ---------------------------------------------------------------------------------

def test_echo(archive: Archive) -> None:
    result = run_tool("echoscu", "-v", "-aec", "STORE", "127.0.0.1", archive.port)
    assert result.returncode == 0, result.stderr
    assert "Received Echo Response (Success)" in result.stderr


def test_unknown_called_ae_is_rejected(archive: Archive) -> None:
    result = run_tool("echoscu", "-aec", "NOBODY", "127.0.0.1", archive.port)
    assert result.returncode != 0
    assert "Rejected Permanent" in result.stderr
    assert "Called AE Title Not Recognized" in result.stderr


def test_refused_calling_ae_is_rejected(archive: Archive) -> None:
    enemy = run_tool("echoscu", "-aet", "ENEMY", "-aec", "PRIV", "127.0.0.1", archive.port)
    friend = run_tool("echoscu", "-aet", "FRIEND", "-aec", "PRIV", "127.0.0.1", archive.port)
    assert enemy.returncode != 0
    assert "Calling AE Title Not Recognized" in enemy.stderr
    assert friend.returncode == 0, friend.stderr


def test_read_only_area_refuses_storage_but_echoes(archive: Archive, sources: Path) -> None:
    path = make_ct(sources)
    stored = archive.storescu("RONLY", str(path))
    echo = run_tool("echoscu", "-aec", "RONLY", "127.0.0.1", archive.port)
    assert stored.returncode != 0
    assert "No Acceptable Presentation Contexts" in stored.stderr
    assert echo.returncode == 0, echo.stderr
    assert archive.index("ronly") == {}
    assert not stored_files(archive.area("ronly"))


def test_write_only_area_stores_but_refuses_find(archive: Archive, sources: Path) -> None:
    path = make_ct(sources)
    stored = archive.storescu("WONLY", str(path))
    found = run_tool("findscu", "-S", "-aec", "WONLY", "-k", "QueryRetrieveLevel=STUDY",
                     "-k", "StudyInstanceUID", "127.0.0.1", archive.port)
    assert stored.returncode == 0, stored.stderr
    assert "Received Store Response (Success)" in stored.stderr
    assert found.returncode != 0
    assert "No Acceptable Presentation Contexts" in found.stderr
    assert_same_dataset(path, archive.stored("wonly", dcmread(path).SOPInstanceUID))


def test_max_associations_rejects_transient_when_full(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["STORE store RW (10, 1mb) ANY"],
                          extra_globals="MaxAssociations = 1")
    with pyqrscp_in_process(config) as server:
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(VERIFICATION)
        held = ae.associate("127.0.0.1", server.port, ae_title="STORE")
        try:
            assert held.is_established
            refused = run_tool("echoscu", "-aec", "STORE", "127.0.0.1", str(server.port))
        finally:
            held.release()
        ae.shutdown()
        # The slot is free again once the held association is released.
        freed = run_tool("echoscu", "-aec", "STORE", "127.0.0.1", str(server.port))
    assert refused.returncode != 0
    assert "Rejected Transient" in refused.stderr
    assert "Local Limit Exceeded" in refused.stderr
    assert freed.returncode == 0, freed.stderr


# -- what is stored -------------------------------------------------------------------------

@pytest.mark.parametrize("proposal,stored_syntax", [
    ("-xe", ExplicitVRLittleEndian),
    ("-xb", ExplicitVRLittleEndian),  # storescu keeps the file's own syntax when it may
    ("-xi", ImplicitVRLittleEndian),  # storescu converts; we store what arrived
])
def test_stored_dataset_equals_what_was_sent(archive: Archive, sources: Path, proposal: str,
                                             stored_syntax: str) -> None:
    paths = [make_ct(sources, study_uid=generate_uid(), instance_number=n) for n in range(3)]
    result = archive.storescu("STORE", proposal, *map(str, paths))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Received Store Response (Success)") == 3
    for path in paths:
        stored = archive.stored("store", dcmread(path).SOPInstanceUID)
        assert_same_dataset(path, stored)
        assert dcmread(stored).file_meta.TransferSyntaxUID == stored_syntax


def test_folder_scan_stores_every_file(archive: Archive, sources: Path) -> None:
    nested = sources / "a" / "b"
    nested.mkdir(parents=True)
    paths = [make_ct(sources), make_ct(sources / "a"), make_ct(nested), make_ct(nested)]
    result = archive.storescu("STORE", "+sd", "+r", str(sources))
    assert result.returncode == 0, result.stderr
    index = archive.index("store")
    for path in paths:
        assert_same_dataset(path, archive.area("store") / index[dcmread(path).SOPInstanceUID])


def test_parallel_storescu_processes_index_every_instance_once(archive: Archive,
                                                               sources: Path) -> None:
    study = generate_uid()
    shared = [make_ct(sources, study_uid=study) for _ in range(5)]
    own = [[make_ct(sources, study_uid=generate_uid()) for _ in range(10)] for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda batch: archive.storescu(
            "WONLY", *map(str, batch + shared)), own))
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("Received Store Response (Success)") == 15
    expected = {dcmread(p).SOPInstanceUID for p in shared + sum(own, [])}
    with index_db(archive.area("wonly")) as db:
        counts = dict(db.execute("SELECT sop_instance_uid, COUNT(*) FROM instance "
                                 "GROUP BY sop_instance_uid"))
    assert expected <= set(counts)
    assert {counts[uid] for uid in expected} == {1}
    files_and_rows_agree(archive.area("wonly"))


def test_duplicate_keeps_one_row_with_the_second_content(archive: Archive,
                                                         sources: Path) -> None:
    sop_uid, study_uid, series_uid = generate_uid(), generate_uid(), generate_uid()
    (sources / "first").mkdir()
    first = make_ct(sources / "first", sop_uid=sop_uid, study_uid=study_uid,
                    series_uid=series_uid, patient_name="First^Copy")
    second = make_ct(sources, sop_uid=sop_uid, study_uid=study_uid, series_uid=series_uid,
                     patient_name="Second^Copy")
    for path in (first, second):
        result = archive.storescu("STORE", str(path))
        assert result.returncode == 0, result.stderr
    with index_db(archive.area("store")) as db:
        assert db.execute("SELECT COUNT(*) FROM instance WHERE sop_instance_uid=?",
                          (sop_uid,)).fetchone()[0] == 1
    assert_same_dataset(second, archive.stored("store", sop_uid))
    assert str(dcmread(archive.stored("store", sop_uid)).PatientName) == "Second^Copy"
    wait_for_log(archive.server, "replaced older copy")
    files_and_rows_agree(archive.area("store"))


# -- quotas -----------------------------------------------------------------------------------

def test_study_quota_evicts_the_least_recently_stored_study(archive: Archive,
                                                            sources: Path) -> None:
    study_a, study_b, study_c = (generate_uid() for _ in range(3))
    a1, b1 = make_ct(sources, study_uid=study_a), make_ct(sources, study_uid=study_b)
    a2, c1 = make_ct(sources, study_uid=study_a), make_ct(sources, study_uid=study_c)
    result = archive.storescu("STUDIES2", *map(str, (a1, b1, a2, c1)))
    assert result.returncode == 0, result.stderr
    with index_db(archive.area("studies2")) as db:
        studies = {row[0] for row in db.execute("SELECT study_instance_uid FROM study")}
    assert studies == {study_a, study_c}
    assert set(archive.index("studies2")) == {dcmread(p).SOPInstanceUID for p in (a1, a2, c1)}
    files_and_rows_agree(archive.area("studies2"))


def test_byte_quota_evicts_the_oldest_instance_and_refuses_a_too_large_one(
        archive: Archive, sources: Path) -> None:
    study = generate_uid()
    paths = [make_ct(sources, study_uid=study, instance_number=n) for n in range(3)]
    result = archive.storescu("SMALL", *map(str, paths))
    assert result.returncode == 0, result.stderr
    with index_db(archive.area("small")) as db:
        sizes = [row[0] for row in db.execute("SELECT file_size FROM instance")]
    assert 2 * max(sizes) <= 3 * 1024 < 3 * min(sizes)  # the sizes this test relies on
    kept = archive.index("small")
    assert set(kept) == {dcmread(p).SOPInstanceUID for p in paths[1:]}

    too_large = make_ct(sources, study_uid=study, rows=64)
    refused = run_tool("storescu", "-d", "-aec", "SMALL", "127.0.0.1", archive.port,
                       str(too_large))
    assert "0xa700" in refused.stdout + refused.stderr
    assert archive.index("small") == kept
    for uid, name in kept.items():
        assert (archive.area("small") / name).exists(), uid
    files_and_rows_agree(archive.area("small"))


# -- odd requests ---------------------------------------------------------------------------

def test_ignore_answers_success_and_stores_nothing(tmp_path: Path, sources: Path) -> None:
    config = write_config(tmp_path, ["STORE store RW (10, 1mb) ANY"])
    paths = [make_ct(sources) for _ in range(3)]
    with pyqrscp_in_process(config, "--ignore") as server:
        result = run_tool("storescu", "-v", "-aec", "STORE", "127.0.0.1", str(server.port),
                          *map(str, paths))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Received Store Response (Success)") == 3
    assert not stored_files(tmp_path / "store")
    with index_db(tmp_path / "store") as db:
        assert db.execute("SELECT COUNT(*) FROM instance").fetchone()[0] == 0


def test_dataset_uid_differing_from_the_command_is_refused(
        archive: Archive, sources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunked, pynetdicom sends a *file* unparsed and takes the command's UIDs from its meta.
    monkeypatch.setattr(pynetdicom_config, "STORE_SEND_CHUNKED_DATASET", True)
    path = make_ct(sources)
    tampered = dcmread(path)
    command_uid = generate_uid()
    tampered.file_meta.MediaStorageSOPInstanceUID = command_uid
    tampered.save_as(path)  # enforce_file_format would reset the meta UID
    dataset_uid = tampered.SOPInstanceUID

    ae = AE(ae_title="TAMPERER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", archive.server.port, ae_title="STORE")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
    finally:
        assoc.release()
        ae.shutdown()
    assert status.Status & 0xFF00 == 0xA900, hex(status.Status)
    assert status.ErrorComment.startswith("SOP Instance UID differs from the command")
    index = archive.index("store")
    assert dataset_uid not in index and command_uid not in index


# -- crash safety -----------------------------------------------------------------------------

def test_sigkill_mid_burst_loses_nothing_acknowledged(tmp_path: Path, sources: Path) -> None:
    """storescu's output goes through a one-page pipe read unbuffered: it blocks a dozen files
    ahead of what the test has read, however slowly the test runs, so the kill lands mid-burst
    (with the usual 64 KiB pipe a loaded test could read the 20th answer after the 60th)."""
    config = write_config(tmp_path, ["STORE store RW (100, 100mb) ANY"])
    paths = [make_ct(sources, study_uid=f"1.2.826.0.1.77.{n % 3}") for n in range(60)]
    acknowledged: list[str] = []
    killed = False
    with pyqrscp_process(config) as server:
        with subprocess.Popen(
                ["storescu", "-v", "-aec", "STORE", "127.0.0.1", str(server.port),
                 *map(str, paths)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                bufsize=0, env=DCMTK_ENV) as sender:
            assert sender.stderr is not None
            fcntl.fcntl(sender.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
            sending = ""
            for line in map(bytes.decode, iter(sender.stderr.readline, b"")):
                if "Sending file:" in line:
                    sending = line.split("Sending file:", 1)[1].strip()
                elif "Received Store Response (Success)" in line:
                    acknowledged.append(Path(sending).stem)
                    if len(acknowledged) == 20:
                        server.process.kill()
                        killed = True
        server.process.wait(timeout=20)
    assert killed, "storescu finished before the server could be killed"
    assert 20 <= len(acknowledged) < 60

    with pyqrscp_process(config) as restarted:
        echo = run_tool("echoscu", "-aec", "STORE", "127.0.0.1", str(restarted.port))
    assert echo.returncode == 0, echo.stderr
    area = tmp_path / "store"
    with index_db(area) as db:
        index = dict(db.execute("SELECT sop_instance_uid, file_name FROM instance"))
    assert set(acknowledged) <= set(index)
    for sop_uid, name in index.items():
        assert_same_dataset(sources / f"{sop_uid}.dcm", area / name)
    files_and_rows_agree(area)
    every_file = {p.relative_to(area).as_posix() for p in area.rglob("*") if p.is_file()}
    assert every_file - set(index.values()) <= {
        INDEX_FILE_NAME, f"{INDEX_FILE_NAME}-wal", f"{INDEX_FILE_NAME}-shm", LOCK_FILE_NAME}
