"""``-d`` shows what DCMTK's ``-d`` shows: the negotiation, command sets and identifiers; library
warnings come out as ``W:`` lines naming the peer and the instance."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import have_dcmtk, pyqrscp_process, run_tool, write_config
from pydicom import dcmread
from pydicom.data import get_testdata_file

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")


def _file_with_invalid_is(directory: Path) -> Path:
    """CT_small with InstanceNumber '1x' (an IS that pydicom warns about), bytes patched."""
    dataset = dcmread(str(get_testdata_file("CT_small.dcm")))
    dataset.InstanceNumber = "12"
    dataset.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.424242"
    path = directory / "bad-is.dcm"
    dataset.save_as(path)
    data = path.read_bytes()
    assert data.count(b"\x20\x00\x13\x00IS\x02\x0012") == 1
    path.write_bytes(data.replace(b"\x20\x00\x13\x00IS\x02\x0012", b"\x20\x00\x13\x00IS\x02\x001x"))
    return path


def test_debug_log_shows_negotiation_command_sets_and_identifiers(tmp_path: Path) -> None:
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 10mb) ANY"])
    with pyqrscp_process(config, "-d") as server:
        port = str(server.port)
        worklist = run_tool("findscu", "-W", "-aec", "ARCHIVE", "localhost", port,
                            "-k", "PatientName")
        move = run_tool("movescu", "-S", "-aec", "ARCHIVE", "-aem", "NOWHERE", "localhost",
                        port, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3")
        stored = run_tool("storescu", "-aec", "ARCHIVE", "localhost", port,
                          str(_file_with_invalid_is(tmp_path)))
    assert "No Acceptable Presentation Contexts" in worklist.stderr
    assert "MoveDestinationUnknown" in move.stderr and stored.returncode == 0, stored.stderr
    log = server.log
    assert ("I: Context ID 1: Modality Worklist Information Model - FIND "
            "(1.2.840.10008.5.1.4.31): rejected (abstract syntax not supported)") in log
    assert any(line.startswith("D: Context ID 1: Study Root Query/Retrieve Information Model"
                               " - FIND") and ": accepted, " in line for line in log)
    assert "D: Received C-MOVE command set from MOVESCU (127.0.0.1) -> ARCHIVE:" in log
    assert "D: MoveDestination                       : NOWHERE" in log
    assert "D: Move identifier:" in log
    assert any("Study Instance UID" in line and "1.2.3" in line for line in log)
    assert ("W: STORESCU (127.0.0.1) -> ARCHIVE, instance 1.2.826.0.1.3680043.8.498.424242: "
            "Invalid value for VR IS: '1x'.") in log
    assert not [line for line in log if "UserWarning" in line or "warn_and_log" in line]
