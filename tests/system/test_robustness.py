"""Regressions found in review: odd identifiers, deflated data, areas shared between processes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from helpers import (
    have_dcmtk,
    index_db,
    make_ct,
    pyqrscp_in_process,
    pyqrscp_process,
    run_tool,
    stored_files,
    write_config,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom import AE

from pyqrscp.cli.index import main as index_main

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def test_non_ascii_level_gets_a_failure_response_not_silence(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["ARCHIVE area RW (10, 1gb) ANY"])
    with pyqrscp_in_process(config) as server:
        client = AE()
        client.dimse_timeout = 10
        client.add_requested_context(STUDY_ROOT_FIND)
        assoc = client.associate("127.0.0.1", server.port, ae_title="ARCHIVE")
        assert assoc.is_established
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pydicom: not a valid CS, on purpose
            identifier = Dataset()
            identifier.SpecificCharacterSet = "ISO_IR 192"
            identifier.QueryRetrieveLevel = "ÉTUDE"
            statuses = [int(status.Status) for status, _ in
                        assoc.send_c_find(identifier, STUDY_ROOT_FIND) if status]
        assoc.release()
    assert statuses and statuses[-1] == 0xA900


def test_deflated_store_is_kept(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["ARCHIVE area RW (10, 1gb) ANY"])
    source = make_ct(tmp_path)
    with pyqrscp_in_process(config, "+xd") as server:
        stored = run_tool("storescu", "-xd", "-aec", "ARCHIVE", "localhost", str(server.port),
                          str(source))
    assert stored.returncode == 0, stored.stderr
    with index_db(tmp_path / "area") as db:
        rows = db.execute("SELECT file_name, transfer_syntax_uid FROM instance").fetchall()
    assert len(rows) == 1 and rows[0][1] == DeflatedExplicitVRLittleEndian
    kept = dcmread(tmp_path / "area" / rows[0][0])
    assert bytes(kept.PixelData) == bytes(dcmread(source).PixelData)


def test_rebuild_refuses_an_area_a_server_is_using(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ["ARCHIVE area RW (10, 1gb) ANY"])
    incoming = tmp_path / "in"
    incoming.mkdir()
    make_ct(incoming)
    with pyqrscp_process(config):
        assert index_main(["-c", str(config), "ARCHIVE", "--rebuild"]) == 2
        assert "in use by another pyqrscp process" in capsys.readouterr().err
        assert index_main(["-c", str(config), "ARCHIVE", str(incoming)]) == 0
    with index_db(tmp_path / "area") as db:
        assert db.execute("SELECT COUNT(*) FROM instance").fetchone()[0] == 1


def test_two_spellings_of_one_folder_share_one_area(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["ONE area RW (10, 1gb) ANY", "TWO ./area/. RW (10, 1gb) ANY"])
    source = make_ct(tmp_path)
    with pyqrscp_in_process(config) as server:
        for called in ("ONE", "TWO"):
            stored = run_tool("storescu", "-aec", called, "localhost", str(server.port),
                              str(source))
            assert stored.returncode == 0, stored.stderr
    assert "leftovers kept" not in server.log_text()
    with index_db(tmp_path / "area") as db:
        assert db.execute("SELECT COUNT(*) FROM instance").fetchone()[0] == 1
    assert len(stored_files(tmp_path / "area")) == 1
