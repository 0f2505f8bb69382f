"""Foundation: the pyqrscp command, its config errors, and a running server answering C-ECHO."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import have_dcmtk, pyqrscp_process, run_tool, write_config

from pyqrscp.cli.command import main

EXAMPLE = Path(__file__).parents[2] / "examples" / "dcmqrscp.cfg"
needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")


def _walkthrough_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path, ["ACME_STORE store RW (9, 1024mb) acmeCTcompany"],
        host_rows=["acme1 = (ACME1, localhost, 5678)", "acmeCTcompany = acme1"],
        vendor_rows=['"Acme CT Company" = acmeCTcompany'])


def test_check_config_prints_resolved_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check-config", "-c", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "ACME_STORE" in out
    assert "(ACME1, localhost, 5678)" in out
    assert "1073741824 bytes per study" in out


def test_broken_config_exits_2_with_location(tmp_path: Path) -> None:
    config = tmp_path / "dcmqrscp.cfg"
    config.write_text("NetworkTCPPort = 104\nAETable BEGIN\nX db RW (9, 1024mb) acme3\n"
                      "AETable END\n")
    result = subprocess.run([sys.executable, "-m", "pyqrscp", "-c", str(config), "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{config}:3:" in result.stderr
    assert "acme3" in result.stderr
    assert "listening" not in result.stderr


def test_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(tmp_path / "nope.cfg"), "0"]) == 2
    assert "nope.cfg" in capsys.readouterr().err


def test_version_and_python_m() -> None:
    result = subprocess.run([sys.executable, "-m", "pyqrscp", "--version"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("pyqrscp ")


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-such-option"]) == 2


@needs_dcmtk
def test_echo_against_running_server(tmp_path: Path) -> None:
    config = _walkthrough_config(tmp_path)
    with pyqrscp_process(config) as server:
        ok = run_tool("echoscu", "-aet", "ACME1", "-aec", "ACME_STORE", "localhost",
                      str(server.port))
        refused = run_tool("echoscu", "-aet", "OTHER", "-aec", "ACME_STORE", "localhost",
                           str(server.port))
    assert ok.returncode == 0, ok.stderr
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stderr
    log = server.log_text()
    assert "Association Received 127.0.0.1: ACME1 -> ACME_STORE" in log
    assert "Received Echo Request from ACME1" in log
    assert server.process.returncode == 0


@needs_dcmtk
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly(tmp_path: Path, signum: int) -> None:
    config = _walkthrough_config(tmp_path)
    with pyqrscp_process(config) as server:
        server.process.send_signal(signum)
        assert server.process.wait(timeout=30) == 0
    assert (tmp_path / "store").is_dir()


@needs_dcmtk
def test_unimplemented_option_is_named_in_a_warning(tmp_path: Path) -> None:
    config = _walkthrough_config(tmp_path)
    with pyqrscp_process(config, "+ac") as server:
        assert run_tool("echoscu", "-aet", "ACME1", "-aec", "ACME_STORE", "localhost",
                        str(server.port)).returncode == 0
    assert "W: option +ac is not implemented yet and is ignored" in server.log_text()


def test_unknown_user_is_a_startup_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["A store RW (9, 1024mb) ANY"],
                          extra_globals="UserName = no-such-user-pyqrscp")
    result = subprocess.run([sys.executable, "-m", "pyqrscp", "-c", str(config), "0"],
                            capture_output=True, text=True, timeout=60)
    import os

    if os.geteuid() == 0:
        assert result.returncode == 2
        assert "unknown user 'no-such-user-pyqrscp'" in result.stderr
    else:
        assert "not running as root" in result.stderr or result.returncode != 0
