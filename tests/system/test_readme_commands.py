"""The README's two commands, run as a new user runs them: the server from ``.venv`` in one
terminal, ``scripts/test`` in another, against one checkout; neither may disturb the other."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import have_dcmtk, make_ct, run_tool

REPO = Path(__file__).parents[2]
_LISTENING = re.compile(r"listening on port (\d+)")


def _checkout_copy(target: Path) -> Path:
    """The checkout's files as a user would have them (tracked and new, no venvs or caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True, timeout=60).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _run(command: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYQRSCP_VENV", "VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.slow
@pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")
def test_server_survives_the_test_command_in_the_same_checkout(tmp_path: Path) -> None:
    checkout = _checkout_copy(tmp_path / "pyqrscp")
    base_python = getattr(sys, "_base_executable", sys.executable)
    made = _run([base_python, "-m", "venv", ".venv"], checkout, 300)
    assert made.returncode == 0, made.stderr
    installed = _run([".venv/bin/python", "-m", "pip", "install", "-q", "."], checkout, 600)
    assert installed.returncode == 0, installed.stderr

    server = subprocess.Popen(
        [".venv/bin/pyqrscp", "-d", "--config", "examples/dcmqrscp.cfg", "0"], cwd=checkout,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    log: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            log.append(line.rstrip("\n"))
            if _LISTENING.search(line):
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=60)
        match = next((m for m in map(_LISTENING.search, log) if m), None)
        assert match is not None, "\n".join(log)
        port = match.group(1)
        tests = _run(["scripts/test", "-p", "no:cacheprovider", "tests/unit/test_quota.py"],
                     checkout, 900)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        (tmp_path / "in").mkdir()
        sample = make_ct(tmp_path / "in")
        calls = [
            ("echoscu", "-aet", "ACME1", "-aec", "ACME_STORE", "localhost", port),
            ("storescu", "-aet", "ACME1", "-aec", "ACME_STORE", "localhost", port, str(sample)),
            ("findscu", "-S", "-aet", "ACME1", "-aec", "ACME_STORE", "localhost", port,
             "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"),
        ]
        for call in calls:
            result = run_tool(*call, timeout=60)
            assert result.returncode == 0, f"{call[0]}: {result.stderr}\n" + "\n".join(log)
        assert (checkout / ".venv-test").is_dir()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(10)
        if server.stderr is not None:
            server.stderr.close()
    text = "\n".join(log)
    assert not [line for line in log if line.startswith("E:")], text
    assert "Traceback" not in text and "ImportError" not in text, text
