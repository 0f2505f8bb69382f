"""C-MOVE and C-GET against pyqrscp served in-process on port 0, with DCMTK's movescu, getscu
and storescp.

One archive (one config, one storage folder shared by several AE titles) and one ``storescp``
destination serve the module; what arrives is compared with what was stored, dataset by dataset.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from helpers import (
    DCMTK_ENV,
    ServerInProcess,
    free_port,
    have_dcmtk,
    make_ct,
    pyqrscp_in_process,
    run_tool,
)
from helpers import write_config as write_dcmqrscp_config
from query_tool import dimse_statuses, findscu

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]

SUCCESS, MOVE_DESTINATION_UNKNOWN = 0x0000, 0xA801
OUT_OF_RESOURCES_SUB_OPERATIONS, IDENTIFIER_DOES_NOT_MATCH = 0xA702, 0xA900
ROOT = "1.2.826.0.1.3680043.9.7779"
# study number -> (patient id, ((series number, instances), ...))
LAYOUT = {1: ("P1", ((1, 2), (2, 1))), 2: ("P2", ((1, 1),)), 3: ("P1", ((1, 1),))}


@dataclass(frozen=True)
class Archive:
    server: ServerInProcess
    config: Path
    stored: dict[str, Path]  # SOP instance UID -> the file storescu sent
    acme_port: int  # the port of acme1 = (ACME1, localhost, PORT2)
    destination_dir: Path
    destination_log: Path

    @property
    def port(self) -> int:
        return self.server.port

    def received(self) -> dict[str, pydicom.Dataset]:
        """What the storescp destination holds, by SOP instance UID."""
        return {str(ds.SOPInstanceUID): ds for ds in (
            pydicom.dcmread(path) for path in self.destination_dir.iterdir())}

    def uids_of(self, study: int, series: int | None = None) -> set[str]:
        prefix = f"{ROOT}.{study}." + (f"{series}." if series is not None else "")
        return {uid for uid in self.stored if uid.startswith(prefix)}


def _make_files(directory: Path) -> dict[str, Path]:
    stored: dict[str, Path] = {}
    for study, (patient_id, series_list) in LAYOUT.items():
        for series, count in series_list:
            for instance in range(1, count + 1):
                uid = f"{ROOT}.{study}.{series}.{instance}"
                stored[uid] = make_ct(
                    directory, study_uid=f"{ROOT}.{study}", series_uid=f"{ROOT}.{study}.{series}",
                    sop_uid=uid, patient_id=patient_id, instance_number=instance,
                    patient_name=f"Patient^{patient_id}", rows=8,
                    extra={"Manufacturer": ("LO", "Acme CT Company")})
    return stored


def _wait_for_echo(process: subprocess.Popen[bytes], port: int, called_aet: str) -> None:
    for _ in range(500):
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited with {process.returncode}")
        if run_tool("echoscu", "-to", "2", "-aec", called_aet, "localhost",
                    str(port)).returncode == 0:
            return
    raise RuntimeError("storescp did not answer C-ECHO")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    base = tmp_path_factory.mktemp("retrieve")
    for folder in ("db", "in", "dest"):
        (base / folder).mkdir()
    acme_port, dest_port, down_port = free_port(), free_port(), free_port()
    config = write_dcmqrscp_config(
        base,
        [f"ACME_STORE {base / 'db'} RW (9, 1024mb) acmeCTcompany",
         f"ARCHIVE {base / 'db'} RW (9, 1024mb) ANY",
         f"READER {base / 'db'} R (9, 1024mb) ANY"],
        [f"acme1 = (ACME1, localhost, {acme_port})", "acmeCTcompany = acme1",
         f"dest = (DEST, localhost, {dest_port})", f"down = (DOWN, localhost, {down_port})"],
        ['"Acme CT Company" = acmeCTcompany'])
    stored = _make_files(base / "in")
    log_path = base / "storescp.log"
    with log_path.open("w") as log:
        destination = subprocess.Popen(
            ["storescp", "-d", "-aet", "DEST", "-od", str(base / "dest"), str(dest_port)],
            stdout=log, stderr=subprocess.STDOUT, env=DCMTK_ENV)
    try:
        _wait_for_echo(destination, dest_port, "DEST")
        with pyqrscp_in_process(config) as server:
            sent = run_tool("storescu", "-aec", "ARCHIVE", "localhost", str(server.port),
                            *(str(path) for path in stored.values()))
            assert sent.returncode == 0, sent.stderr
            yield Archive(server, config, stored, acme_port, base / "dest", log_path)
    finally:
        destination.terminate()
        destination.wait(timeout=20)


@pytest.fixture
def archive_clean(archive: Archive) -> Archive:
    """The archive with an empty destination folder (storescp overwrites by name anyway)."""
    for path in archive.destination_dir.iterdir():
        path.unlink()
    return archive


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    output: str
    statuses: list[int]

    @property
    def final_status(self) -> int | None:
        return self.statuses[-1] if self.statuses else None


def movescu(port: int, model: str, keys: Sequence[str], *, destination: str = "DEST",
            called_aet: str = "ARCHIVE", extra: Sequence[str] = ()) -> ToolResult:
    args = ["movescu", model, "-d", "-aec", called_aet, "-aem", destination, *extra,
            "localhost", str(port)]
    for key in keys:
        args += ["-k", key]
    completed = run_tool(*args)
    output = completed.stdout + completed.stderr
    return ToolResult(completed.returncode, output, dimse_statuses(output, "C-MOVE RSP"))


def getscu(port: int, keys: Sequence[str], out: Path, *, called_aet: str = "ARCHIVE") -> ToolResult:
    args = ["getscu", "-S", "-d", "-aec", called_aet, "-od", str(out), "localhost", str(port)]
    for key in keys:
        args += ["-k", key]
    completed = run_tool(*args)
    output = completed.stdout + completed.stderr
    return ToolResult(completed.returncode, output, dimse_statuses(output, "C-GET RSP"))


def assert_same_instances(received: Mapping[str, pydicom.Dataset], stored: Mapping[str, Path],
                          uids: set[str]) -> None:
    """Exactly ``uids`` arrived, each with the stored dataset (PixelData byte for byte)."""
    assert set(received) == uids
    for uid in uids:
        original = pydicom.dcmread(stored[uid])
        copy = received[uid]
        assert copy.PixelData == original.PixelData
        assert copy == original  # every data element, file meta aside


# -- the README walkthrough ------------------------------------------------------------------------


def test_walkthrough_acme(archive: Archive, tmp_path: Path) -> None:
    new = make_ct(tmp_path, study_uid=f"{ROOT}.90", series_uid=f"{ROOT}.90.1",
                  sop_uid=f"{ROOT}.90.1.1", patient_id="ACME", rows=8)
    common = ["-aet", "ACME1", "-aec", "ACME_STORE", "localhost", str(archive.port)]
    assert run_tool("echoscu", *common).returncode == 0
    stored = run_tool("storescu", *common, str(new))
    assert stored.returncode == 0, stored.stderr
    found = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY",
                                         f"StudyInstanceUID={ROOT}.90"],
                    called_aet="ACME_STORE", extra=["-aet", "ACME1"])
    assert (found.final_status, found.values("StudyInstanceUID")) == (SUCCESS, [f"{ROOT}.90"])
    out = tmp_path / "out"
    out.mkdir()
    moved = run_tool("movescu", "-S", "-d", "-aet", "ACME1", "-aec", "ACME_STORE", "-aem", "ACME1",
                     "--port", str(archive.acme_port), "-od", str(out), "localhost",
                     str(archive.port), "-k", "QueryRetrieveLevel=STUDY",
                     "-k", f"StudyInstanceUID={ROOT}.90")
    assert dimse_statuses(moved.stderr + moved.stdout, "C-MOVE RSP")[-1] == SUCCESS
    received = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, out.iterdir())}
    assert_same_instances(received, {f"{ROOT}.90.1.1": new}, {f"{ROOT}.90.1.1"})


def test_unlisted_calling_ae_is_rejected_by_acme_store(archive: Archive) -> None:
    echo = run_tool("echoscu", "-aet", "INTRUDER", "-aec", "ACME_STORE", "localhost",
                    str(archive.port))
    assert echo.returncode != 0
    assert "Association Rejected" in echo.stderr + echo.stdout


# -- C-MOVE to a storescp destination ---------------------------------------------------------


@pytest.mark.parametrize(("model", "keys", "study", "series"), [
    ("-S", ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ROOT}.1"], 1, None),
    ("-S", ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={ROOT}.1",
            f"SeriesInstanceUID={ROOT}.1.1"], 1, 1),
    ("-P", ["QueryRetrieveLevel=STUDY", "PatientID=P2", f"StudyInstanceUID={ROOT}.2"], 2, None),
    ("-P", ["QueryRetrieveLevel=SERIES", "PatientID=P1", f"StudyInstanceUID={ROOT}.1",
            f"SeriesInstanceUID={ROOT}.1.2"], 1, 2),
    ("-O", ["QueryRetrieveLevel=STUDY", "PatientID=P1", f"StudyInstanceUID={ROOT}.3"], 3, None),
])
def test_move_levels_and_models(archive_clean: Archive, model: str, keys: list[str], study: int,
                                series: int | None) -> None:
    result = movescu(archive_clean.port, model, keys)
    assert result.final_status == SUCCESS, result.output[-1500:]
    assert_same_instances(archive_clean.received(), archive_clean.stored,
                          archive_clean.uids_of(study, series))


@pytest.mark.parametrize("model", ["-S", "-P"])
def test_move_image_level(archive_clean: Archive, model: str) -> None:
    uid = f"{ROOT}.1.1.2"
    keys = ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ROOT}.1",
            f"SeriesInstanceUID={ROOT}.1.1", f"SOPInstanceUID={uid}"]
    result = movescu(archive_clean.port, model, [*keys, "PatientID=P1"] if model == "-P"
                     else keys)
    assert result.final_status == SUCCESS
    assert_same_instances(archive_clean.received(), archive_clean.stored, {uid})


def test_move_patient_level_moves_every_study_of_the_patient(archive_clean: Archive) -> None:
    result = movescu(archive_clean.port, "-P", ["QueryRetrieveLevel=PATIENT", "PatientID=P1"])
    assert result.final_status == SUCCESS
    assert_same_instances(archive_clean.received(), archive_clean.stored,
                          archive_clean.uids_of(1) | archive_clean.uids_of(3))


def test_move_uid_list_moves_two_studies(archive_clean: Archive) -> None:
    result = movescu(archive_clean.port, "-S", ["QueryRetrieveLevel=STUDY",
                                                f"StudyInstanceUID={ROOT}.2\\{ROOT}.3"])
    assert result.final_status == SUCCESS
    assert_same_instances(archive_clean.received(), archive_clean.stored,
                          archive_clean.uids_of(2) | archive_clean.uids_of(3))


@pytest.mark.parametrize("called_aet", ["ARCHIVE", "READER"])
def test_destination_sees_the_called_ae_title_as_caller(archive_clean: Archive,
                                                        called_aet: str) -> None:
    before = archive_clean.destination_log.read_text()
    result = movescu(archive_clean.port, "-S", ["QueryRetrieveLevel=STUDY",
                                                f"StudyInstanceUID={ROOT}.2"],
                     called_aet=called_aet)
    assert result.final_status == SUCCESS
    new_lines = archive_clean.destination_log.read_text()[len(before):].splitlines()
    callers = [line.split(":", 2)[2].strip() for line in new_lines
               if "Calling Application Name" in line]
    assert callers and set(callers) == {called_aet}
    assert set(archive_clean.received()) == archive_clean.uids_of(2)


def test_unknown_destination_is_refused(archive_clean: Archive) -> None:
    result = movescu(archive_clean.port, "-S", ["QueryRetrieveLevel=STUDY",
                                                f"StudyInstanceUID={ROOT}.1"],
                     destination="NOWHERE")
    assert result.final_status == MOVE_DESTINATION_UNKNOWN
    assert "MoveDestinationUnknown" in result.output
    assert archive_clean.received() == {}


@pytest.mark.pynetdicom_internals(
    reason=("pynetdicom's C-MOVE answers 0xA801 when the destination does not answer (pyqrscp's "
            "own: 0xA702 with the counts)"))
def test_destination_down_fails_every_sub_operation_and_server_keeps_serving(
        archive: Archive) -> None:
    result = movescu(archive.port, "-S", ["QueryRetrieveLevel=STUDY",
                                          f"StudyInstanceUID={ROOT}.1"], destination="DOWN")
    # DOWN is configured, so not "Move Destination unknown": 0xA702 with counts, as dcmqrscp.
    assert result.final_status == OUT_OF_RESOURCES_SUB_OPERATIONS
    counts = dict(re.findall(r"(Completed|Failed|Warning) Suboperations\s*:\s*(\d+)",
                             result.output))
    assert counts == {"Completed": "0", "Failed": str(len(archive.uids_of(1))), "Warning": "0"}
    assert run_tool("echoscu", "-aec", "ARCHIVE", "localhost", str(archive.port)).returncode == 0


def test_move_aetitle_restriction(archive_clean: Archive) -> None:
    keys = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ROOT}.2"]
    with pyqrscp_in_process(archive_clean.config, "-ZA") as server:
        foreign = movescu(server.port, "-S", keys, extra=["-aet", "MOVESCU"])
        assert foreign.final_status == MOVE_DESTINATION_UNKNOWN
        assert archive_clean.received() == {}
        own = movescu(server.port, "-S", keys, extra=["-aet", "DEST"])
    assert own.final_status == SUCCESS
    assert set(archive_clean.received()) == archive_clean.uids_of(2)


# -- C-GET ------------------------------------------------------------------------------------


@pytest.mark.parametrize("called_aet", ["ARCHIVE", "READER"])
def test_get_study(archive: Archive, tmp_path: Path, called_aet: str) -> None:
    result = getscu(archive.port, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ROOT}.1"],
                    tmp_path, called_aet=called_aet)
    assert result.final_status == SUCCESS, result.output[-1500:]
    received = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, tmp_path.iterdir())}
    assert_same_instances(received, archive.stored, archive.uids_of(1))


def test_read_only_area_refuses_store(archive: Archive, tmp_path: Path) -> None:
    new = make_ct(tmp_path, study_uid=f"{ROOT}.91", rows=2)
    stored = run_tool("storescu", "-aec", "READER", "localhost", str(archive.port), str(new))
    assert stored.returncode != 0
    found = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY",
                                         f"StudyInstanceUID={ROOT}.91"])
    assert (found.final_status, found.responses) == (SUCCESS, [])


def test_disable_get(archive: Archive, tmp_path: Path) -> None:
    with pyqrscp_in_process(archive.config, "--disable-get") as server:
        result = getscu(server.port, ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ROOT}.1"],
                        tmp_path)
        moved_still = run_tool("echoscu", "-aec", "ARCHIVE", "localhost", str(server.port))
    assert result.returncode != 0
    assert result.final_status is None
    assert list(tmp_path.iterdir()) == []
    assert moved_still.returncode == 0


# -- hierarchical rules -----------------------------------------------------------------------


@pytest.mark.parametrize(("model", "keys", "missing"), [
    ("-P", ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={ROOT}.1"], "PatientID"),
    ("-S", ["QueryRetrieveLevel=SERIES", f"SeriesInstanceUID={ROOT}.1.1"], "StudyInstanceUID"),
    ("-S", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ROOT}.1",
            f"SOPInstanceUID={ROOT}.1.1.1"], "SeriesInstanceUID"),
])
def test_move_without_a_unique_key_above_the_level_is_refused(
        archive_clean: Archive, model: str, keys: list[str], missing: str) -> None:
    result = movescu(archive_clean.port, model, keys)
    assert result.final_status == IDENTIFIER_DOES_NOT_MATCH
    assert f"{missing} missing above the" in result.output
    assert archive_clean.received() == {}


def test_get_without_a_unique_key_above_the_level_is_refused(archive: Archive,
                                                             tmp_path: Path) -> None:
    result = getscu(archive.port, ["QueryRetrieveLevel=SERIES",
                                   f"SeriesInstanceUID={ROOT}.1.1"], tmp_path)
    assert result.final_status == IDENTIFIER_DOES_NOT_MATCH
    assert "StudyInstanceUID missing above the SERIES level" in result.output
    assert list(tmp_path.iterdir()) == []


def test_move_ignores_non_unique_keys_above_the_level(archive_clean: Archive) -> None:
    result = movescu(archive_clean.port, "-S", [
        "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={ROOT}.1",
        f"SeriesInstanceUID={ROOT}.1.1", "PatientName=Nobody"])
    assert result.final_status == SUCCESS
    assert_same_instances(archive_clean.received(), archive_clean.stored,
                          archive_clean.uids_of(1, 1))
