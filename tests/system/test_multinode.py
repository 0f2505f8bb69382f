"""Several pyqrscp nodes, one archive: the same config, one PostgreSQL index database and one
storage folder; DCMTK's tools store into every node at once, then every instance is checked on
every node (C-FIND, and C-GET byte for byte), and the quota is exact."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from helpers import (
    DCMTK_ENV,
    TOOL_TIMEOUT,
    RunningServer,
    have_dcmtk,
    index_db,
    make_ct,
    poll_until,
    pyqrscp_process,
    run_tool,
    wait_for_log,
    write_config,
)
from pgcluster import postgres_cluster
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from query_tool import findscu

from pyqrscp.archive.commitment_delivery import CLAIM_SECONDS
from pyqrscp.archive.commitments import CommitmentLedger, Reference
from pyqrscp.archive.index.choice import open_backend
from pyqrscp.archive.layout import NODE_LOCK_PREFIX, TEMP_PREFIX
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")

MAX_STUDIES = 5


def config_for(base: Path, url: str, quota: str = f"({MAX_STUDIES}, 1mb)") -> Path:
    return write_config(base, [f"ARCHIVE {base / 'area'} RW {quota} ANY"],
                        extra_globals=f'IndexDatabase = "{url}"')


@contextlib.contextmanager
def nodes(config: Path, count: int) -> Iterator[list[RunningServer]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(pyqrscp_process(config)) for _ in range(count)]


def storescu(port: int, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["storescu", "-aec", "ARCHIVE", "localhost", str(port),
                           *map(str, files)], capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT * 2, env=DCMTK_ENV)


def image_uids(port: int, study_uid: str) -> set[str]:
    found = findscu(port, "-S", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={study_uid}",
                                 f"SeriesInstanceUID={study_uid}.1", "SOPInstanceUID"])
    assert found.final_status == 0, found.output[-1500:]
    return set(found.values("SOPInstanceUID"))


def study_uids(port: int) -> set[str]:
    found = findscu(port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
    assert found.final_status == 0, found.output[-1500:]
    return set(found.values("StudyInstanceUID"))


def get_study(port: int, study_uid: str, out: Path) -> dict[str, Dataset]:
    out.mkdir(parents=True)
    done = run_tool("getscu", "-S", "-aec", "ARCHIVE", "-od", str(out), "localhost", str(port),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}")
    assert done.returncode == 0, done.stderr[-1500:]
    return {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, out.iterdir())}


def index_rows(area: Path, url: str) -> dict[str, str]:
    with index_db(area, url) as db:
        return {str(uid): str(name) for uid, name in
                db.execute("SELECT sop_instance_uid, file_name FROM instance").fetchall()}


def stored_files(area: Path) -> set[str]:
    return {p.relative_to(area).as_posix() for p in area.rglob("*.dcm")}


def test_stores_on_three_nodes_are_found_and_retrieved_on_each_and_the_quota_is_exact(
        tmp_path: Path, index_db_url: str) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    studies = {f"1.2.826.0.1.3680043.9.7781.18.{s}": [
        make_ct(sources, study_uid=f"1.2.826.0.1.3680043.9.7781.18.{s}",
                series_uid=f"1.2.826.0.1.3680043.9.7781.18.{s}.1",
                sop_uid=f"1.2.826.0.1.3680043.9.7781.18.{s}.1.{i}", instance_number=i)
        for i in range(1, 4)] for s in range(1, 13)}
    config = config_for(tmp_path, index_db_url)
    with nodes(config, 3) as servers:
        jobs = [(servers[n % 3].port, files) for n, files in enumerate(studies.values())]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:  # 3 nodes x 4 associations
            results = list(pool.map(lambda job: storescu(*job), jobs))
        for result in results:
            assert result.returncode == 0, result.stderr[-1500:]
        rows = index_rows(tmp_path / "area", index_db_url)
        kept = study_uids(servers[0].port)
        assert len(kept) == MAX_STUDIES  # exact: concurrent stores on 3 nodes, one quota
        assert set(rows.values()) == stored_files(tmp_path / "area")  # one file per row
        originals = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f)
                     for files in studies.values() for f in files}
        for n, server in enumerate(servers):
            assert study_uids(server.port) == kept
            for study_uid in kept:
                uids = image_uids(server.port, study_uid)
                assert uids and uids <= set(rows)
                received = get_study(server.port, study_uid, tmp_path / f"get{n}" / study_uid)
                assert set(received) == uids
                for uid, dataset in received.items():
                    assert dataset == originals[uid]
                    assert dataset.PixelData == originals[uid].PixelData


def test_the_same_instances_stored_on_every_node_at_once_end_as_one_row_and_one_file_each(
        tmp_path: Path, index_db_url: str) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    files = [make_ct(sources, study_uid="1.2.826.0.1.3680043.9.7781.18.100",
                     series_uid="1.2.826.0.1.3680043.9.7781.18.100.1",
                     sop_uid=f"1.2.826.0.1.3680043.9.7781.18.100.1.{i}", instance_number=i)
             for i in range(1, 11)]
    config = config_for(tmp_path, index_db_url, quota="(10, 64mb)")
    with nodes(config, 3) as servers:
        jobs = [(server.port, files) for server in servers for _ in range(2)]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = list(pool.map(lambda job: storescu(*job), jobs))
        for result in results:
            assert result.returncode == 0, result.stderr[-1500:]
        rows = index_rows(tmp_path / "area", index_db_url)
        assert set(rows) == {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
        assert set(rows.values()) == stored_files(tmp_path / "area")
        for server in servers:
            assert image_uids(server.port, "1.2.826.0.1.3680043.9.7781.18.100") == set(rows)


def node_ids(area: Path) -> set[str]:
    return {p.name[len(NODE_LOCK_PREFIX):-len(".lock")] for p in area.iterdir()
            if p.name.startswith(NODE_LOCK_PREFIX) and p.name.endswith(".lock")}


def test_a_node_killed_mid_store_loses_nothing_acknowledged_and_its_temps_go_at_restart(
        tmp_path: Path, index_db_url: str) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    files = [make_ct(sources, study_uid="1.2.826.0.1.3680043.9.7781.18.200", rows=64,
                     series_uid="1.2.826.0.1.3680043.9.7781.18.200.1", instance_number=i,
                     sop_uid=f"1.2.826.0.1.3680043.9.7781.18.200.1.{i}") for i in range(1, 301)]
    area = tmp_path / "area"
    config = config_for(tmp_path, index_db_url, quota="(10, 256mb)")
    with pyqrscp_process(config) as killed:
        first = node_ids(area)
        with pyqrscp_process(config) as survivor:
            client = subprocess.Popen(
                ["storescu", "-v", "-aec", "ARCHIVE", "localhost", str(killed.port),
                 *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, env=DCMTK_ENV)
            poll_until(lambda: len(index_rows(area, index_db_url)) >= 20, "20 stored instances")
            killed.process.kill()  # SIGKILL, mid-association
            killed.process.wait(timeout=30)
            output, _ = client.communicate(timeout=TOOL_TIMEOUT)
            acknowledged = acknowledged_files(output)
            assert 20 <= len(acknowledged) < len(files)
            rows = index_rows(area, index_db_url)
            found = image_uids(survivor.port, "1.2.826.0.1.3680043.9.7781.18.200")
            for path in acknowledged:
                uid = str(pydicom.dcmread(path).SOPInstanceUID)
                assert uid in found and uid in rows
                assert pydicom.dcmread(area / rows[uid]).PixelData == \
                    pydicom.dcmread(path).PixelData
            (killed_id,), (survivor_id,) = first, node_ids(area) - first
            killed_temp = area / f"{TEMP_PREFIX}{killed_id}-0123abcd"
            killed_temp.write_bytes(b"what the killed node was writing")
            survivor_temp = area / f"{TEMP_PREFIX}{survivor_id}-0123abcd"
            survivor_temp.write_bytes(b"a store the survivor is writing")
            with pyqrscp_process(config):
                assert not [p for p in area.iterdir()
                            if p.name.startswith(f"{TEMP_PREFIX}{killed_id}")]
                assert survivor_temp.exists()  # a live node's temp file is never removed
                assert killed_id not in node_ids(area) and survivor_id in node_ids(area)


def acknowledged_files(storescu_output: str) -> list[Path]:
    """The files storescu -v saw a success response for."""
    acknowledged: list[Path] = []
    sending: Path | None = None
    for line in storescu_output.splitlines():
        if "Sending file:" in line:
            sending = Path(line.split("Sending file:", 1)[1].strip())
        elif "Received Store Response (Success)" in line and sending is not None:
            acknowledged.append(sending)
            sending = None
    return acknowledged


def test_a_database_restart_mid_association_fails_that_store_and_the_node_reconnects(
        tmp_path: Path) -> None:
    """Every store acknowledged with success is indexed; the node serves again by itself."""
    sources = tmp_path / "sources"
    sources.mkdir()
    files = [make_ct(sources, study_uid="1.2.826.0.1.3680043.9.7781.18.300",
                     series_uid="1.2.826.0.1.3680043.9.7781.18.300.1", instance_number=i,
                     sop_uid=f"1.2.826.0.1.3680043.9.7781.18.300.1.{i}") for i in range(1, 41)]
    with postgres_cluster() as cluster:  # its own: the restart must not touch other tests
        config = config_for(tmp_path, cluster.url, quota="(10, 64mb)")
        with pyqrscp_process(config) as server:
            assoc = associate(server.port)
            statuses = {files[0]: int(assoc.send_c_store(files[0]).Status)}
            cluster.restart()
            for path in files[1:3]:
                response = assoc.send_c_store(path)
                statuses[path] = int(response.Status) if response else -1
            assoc.release()
            assert statuses[files[0]] == 0x0000
            assert any(status != 0x0000 for status in statuses.values())  # the store in the gap
            wait_for_log(server, "index update failed")
            later = iter(files[3:])
            statuses.update(poll_until(lambda: success_or_none(server.port, next(later)),
                                       "a store that succeeds after the restart"))
            rows = index_rows(tmp_path / "area", cluster.url)
            for path, status in statuses.items():
                uid = str(pydicom.dcmread(path).SOPInstanceUID)
                assert (uid in rows) == (status == 0x0000), (path.name, hex(status))


def associate(port: int) -> Association:
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    return assoc


def success_or_none(port: int, path: Path) -> dict[Path, int] | None:
    """Store one file on a new association: ``{path: 0}`` on success, else None."""
    assoc = associate(port)
    try:
        response = assoc.send_c_store(path)
    finally:
        assoc.release()
    return {path: 0} if response and int(response.Status) == 0 else None


def test_on_a_shared_database_a_nodes_clock_neither_takes_a_live_claim_nor_delivers_early(
        tmp_path: Path, index_db_url: str) -> None:
    """Two nodes on one PostgreSQL database, the second's clock an hour ahead: the claim the
    first holds and the retry the first scheduled run by the database's clock, so the second
    neither takes the request over nor finds it due (nor makes it due at its start)."""
    backend = open_backend(index_db_url)
    area = StorageArea(tmp_path / "area", Quota(10, 1 << 20), durable=False, backend=backend)
    area.open()
    first = CommitmentLedger(area)
    ahead = CommitmentLedger(area, clock=lambda: time.time() + 3600)
    try:
        pk = first.add("1.2", "REQUESTER", "ARCHIVE", [Reference("1.2.3", "1.2.3.4")]).pk
        assert ahead.due() == [(pk, "REQUESTER")]
        assert first.claim(pk, CLAIM_SECONDS)
        assert ahead.due() == []
        assert not ahead.claim(pk, CLAIM_SECONDS)
        assert ahead.make_all_due() == 0 and ahead.due() == []
        first.reschedule(pk, 1, 60.0)
        assert ahead.due() == [] and not ahead.claim(pk, CLAIM_SECONDS)
        due_in = ahead.next_due()
        assert due_in is not None and 0 < due_in <= 60
    finally:
        first.close()
        ahead.close()
        area.close()
        backend.close()
