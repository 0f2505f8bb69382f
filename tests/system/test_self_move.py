"""A C-MOVE to the archive itself, into the area it reads from (dcmqrscp hangs there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    free_port,
    have_dcmtk,
    index_db,
    make_ct,
    pyqrscp_in_process,
    run_tool,
    stored_files,
    write_config,
)

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")


def test_move_into_own_area_completes(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, ["COMMON area RW (10, 1gb) ANY"],
                          host_rows=[f"self = (COMMON, localhost, {port})"])
    incoming = tmp_path / "in"
    incoming.mkdir()
    files = [make_ct(incoming, study_uid="1.2.826.0.1.99.1", series_uid="1.2.826.0.1.99.1.1",
                     instance_number=i) for i in range(5)]
    with pyqrscp_in_process(config, port=port) as server:
        stored = run_tool("storescu", "-aet", "MODALITY", "-aec", "COMMON", "localhost",
                          str(server.port), *map(str, files))
        assert stored.returncode == 0, stored.stderr
        moved = run_tool("movescu", "-v", "-S", "-aet", "MODALITY", "-aec", "COMMON", "-aem",
                         "COMMON", "localhost", str(server.port), "-k",
                         "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.826.0.1.99.1",
                         timeout=60)
        echo = run_tool("echoscu", "-aec", "COMMON", "localhost", str(server.port))
    assert moved.returncode == 0, moved.stderr
    assert "Received Move Response 5 (Pending)" in moved.stderr
    assert "Received Final Move Response (Success)" in moved.stderr
    assert server.log_text().count("(replaced older copy)") == 5
    assert echo.returncode == 0
    with index_db(tmp_path / "area") as db:
        assert db.execute("SELECT COUNT(*) FROM instance").fetchone()[0] == 5
    assert len(stored_files(tmp_path / "area")) == 5
