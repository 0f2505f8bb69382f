"""pynetdicom's public path (``PYQRSCP_PYNETDICOM_PUBLIC_ONLY=1``, or a pynetdicom whose
internals differ from those ``link/internals.py`` checks): one warning line at start-up, and
every service still answers DCMTK's tools.  The whole suite also runs in this mode in CI."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from helpers import free_port, have_dcmtk, make_ct, pyqrscp_process, run_tool, write_config
from query_tool import findscu

from pyqrscp.link.internals import PUBLIC_ONLY_VARIABLE, public_path_warning

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]

STUDY = "1.2.826.0.1.3680043.9.7781.40"


def test_forced_public_path_warns_once_and_serves_every_service(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PUBLIC_ONLY_VARIABLE, "1")
    mover_port = free_port()
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'area'} RW (10, 100mb) ANY"],
                          host_rows=[f"mover = (MOVER, localhost, {mover_port})"])
    sent = make_ct(tmp_path, study_uid=STUDY, series_uid=f"{STUDY}.1", sop_uid=f"{STUDY}.1.1",
                   rows=8)
    study_key = f"StudyInstanceUID={STUDY}"
    with pyqrscp_process(config) as server:
        port = str(server.port)
        echo = run_tool("echoscu", "-aec", "ARCHIVE", "localhost", port)
        store = run_tool("storescu", "-aec", "ARCHIVE", "localhost", port, str(sent))
        found = findscu(server.port, "-S", ["QueryRetrieveLevel=STUDY", study_key])
        (tmp_path / "moved").mkdir()
        move = run_tool("movescu", "-S", "-aet", "MOVER", "-aec", "ARCHIVE", "-aem", "MOVER",
                        "--port", str(mover_port), "-od", str(tmp_path / "moved"), "localhost",
                        port, "-k", "QueryRetrieveLevel=STUDY", "-k", study_key)
        (tmp_path / "got").mkdir()
        get = run_tool("getscu", "-S", "-aec", "ARCHIVE", "-od", str(tmp_path / "got"),
                       "localhost", port, "-k", "QueryRetrieveLevel=STUDY", "-k", study_key)
        log = list(server.log)
    assert [echo.returncode, store.returncode, move.returncode, get.returncode] == [0, 0, 0, 0]
    assert [str(ds.StudyInstanceUID) for ds in found.responses] == [STUDY]
    for folder in ("moved", "got"):
        received = [pydicom.dcmread(path) for path in (tmp_path / folder).iterdir()]
        assert [str(ds.SOPInstanceUID) for ds in received] == [f"{STUDY}.1.1"]
        assert received[0].PixelData == pydicom.dcmread(sent).PixelData
    warnings = [line for line in log if line.startswith("W:")]
    assert warnings == [f"W: {PUBLIC_ONLY_VARIABLE} is set: {public_path_warning()}"]
