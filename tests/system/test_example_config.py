"""The example config as the README walkthrough uses it: shipped, quiet, and roomy enough."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import have_dcmtk, index_db, pyqrscp_process, run_tool
from pydicom import dcmread
from pydicom.data import get_testdata_file

from pyqrscp.cli.command import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "dcmqrscp.cfg"
needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")


def test_example_config_is_printed_from_the_wheel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-example-config"]) == 0
    assert capsys.readouterr().out == EXAMPLE.read_text()


def test_example_config_checks_without_warnings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(EXAMPLE.parents[1])  # the README runs it from the checkout
    assert main(["--check-config", "-c", "examples/dcmqrscp.cfg"]) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.out.lower() and captured.err == ""


@needs_dcmtk
def test_walkthrough_study_survives_a_folder_of_test_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-example-config"]) == 0
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text(capsys.readouterr().out)
    ct_small = str(get_testdata_file("CT_small.dcm"))
    with pyqrscp_process(config) as server:
        port = str(server.port)
        walkthrough = run_tool("storescu", "-aet", "ACME1", "-aec", "ACME_STORE", "localhost",
                               port, ct_small)
        assert walkthrough.returncode == 0, walkthrough.stderr
        run_tool("storescu", "-aet", "ACME1", "-aec", "ACME_STORE", "+sd", "-nh", "localhost",
                 port, str(Path(ct_small).parent), timeout=300)
    study_uid = str(dcmread(ct_small).StudyInstanceUID)
    with index_db(tmp_path / "storage" / "ACME_STORE") as db:
        studies = [row[0] for row in db.execute("SELECT study_instance_uid FROM study")]
    assert study_uid in studies
    assert len(studies) > 9  # more than the DCMTK walkthrough's quota of 9 studies
    assert not [line for line in server.log if "quota" in line], server.log_text()
