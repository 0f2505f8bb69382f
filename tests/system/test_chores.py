"""``pyqrscp ls`` and ``pyqrscp rm`` against a running server: rows and files checked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import have_dcmtk, index_db, make_ct, pyqrscp_process, run_tool, write_config

pytestmark = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")

STUDY_A, STUDY_B = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.72"
SERIES_A1, SERIES_A2 = "1.2.826.0.1.3680043.8.498.71.1", "1.2.826.0.1.3680043.8.498.71.2"


def _pyqrscp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyqrscp", *args], capture_output=True,
                          text=True, timeout=120)


def _rows(area: Path) -> list[tuple[str, str, str]]:
    with index_db(area) as db:
        return sorted(db.execute(
            "SELECT study.study_instance_uid, series.series_instance_uid, instance.file_name "
            "FROM instance JOIN series ON series.pk=instance.series_pk "
            "JOIN study ON study.pk=series.study_pk").fetchall())


def test_ls_and_rm_while_the_server_runs(tmp_path: Path) -> None:
    area = tmp_path / "archive"
    config = write_config(tmp_path, [f"ARCHIVE {area} RW (9, 10mb) ANY",
                                     f"READONLY {tmp_path / 'ro'} R (9, 10mb) ANY"])
    sources = tmp_path / "in"
    sources.mkdir()
    for study, series, count in ((STUDY_A, SERIES_A1, 2), (STUDY_A, SERIES_A2, 1),
                                 (STUDY_B, None, 1)):
        for _ in range(count):
            make_ct(sources, study_uid=study, series_uid=series)
    with pyqrscp_process(config) as server:
        port = str(server.port)
        stored = run_tool("storescu", "-aec", "ARCHIVE", "+sd", "localhost", port, str(sources))
        assert stored.returncode == 0, stored.stderr

        listed = _pyqrscp("ls", "-c", str(config), "ARCHIVE", "--json")
        assert listed.returncode == 0, listed.stderr
        (tree,) = json.loads(listed.stdout)
        assert tree["instances"] == 4 and tree["bytes"] > 0
        studies = {s["study_instance_uid"]: s for p in tree["patients"] for s in p["studies"]}
        assert studies[STUDY_A]["instances"] == 3 and len(studies[STUDY_A]["series"]) == 2
        text = _pyqrscp("ls", "-c", str(config), "ARCHIVE", "--study", STUDY_A).stdout
        assert f"study {STUDY_A}" in text and STUDY_B not in text and "2 series" in text

        before = _rows(area)
        gone = [r[2] for r in before if r[1] == SERIES_A1]
        gone_bytes = sum((area / name).stat().st_size for name in gone)
        removed = _pyqrscp("rm", "-c", str(config), "ARCHIVE", "--series", SERIES_A1)
        assert removed.returncode == 0, removed.stderr
        assert [line for line in removed.stderr.splitlines()
                if not line.startswith("W: file locking is not available")] == [
            f"I: deleted series {SERIES_A1} from ARCHIVE ({area}): 2 instance(s), "
            f"{gone_bytes} bytes"]
        after = _rows(area)
        assert after == [r for r in before if r[1] != SERIES_A1] and len(after) == 2
        assert len(gone) == 2 and not any((area / name).exists() for name in gone)
        assert all((area / r[2]).exists() for r in after)

        assert _pyqrscp("rm", "-c", str(config), "ARCHIVE", "--study", STUDY_B).returncode == 0
        again = _pyqrscp("rm", "-c", str(config), "ARCHIVE", "--study", STUDY_B)
        assert again.returncode == 1 and "no study" in again.stderr
        refused = _pyqrscp("rm", "-c", str(config), "READONLY", "--study", STUDY_A)
        assert refused.returncode == 2 and "read-only" in refused.stderr

        # the server keeps serving the area it shares with rm
        found = run_tool("findscu", "-S", "-aec", "ARCHIVE", "localhost", port,
                         "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={STUDY_A}",
                         "-k", "SeriesInstanceUID")
        assert found.returncode == 0, found.stderr
        assert run_tool("storescu", "-aec", "ARCHIVE", "+sd", "localhost", port,
                        str(sources)).returncode == 0
    assert len(_rows(area)) == 4
    assert "E:" not in server.log_text()


def test_ls_says_when_the_files_were_stored(tmp_path: Path) -> None:
    """"last stored" is a local time between the store and the listing, at every level."""
    area = tmp_path / "archive"
    config = write_config(tmp_path, [f"ARCHIVE {area} RW (9, 10mb) ANY"])
    sources = tmp_path / "in"
    sources.mkdir()
    make_ct(sources, study_uid=STUDY_A, series_uid=SERIES_A1)
    make_ct(sources, study_uid=STUDY_A, series_uid=SERIES_A2)
    started = time.time() - 1  # file times may come from a coarser clock
    with pyqrscp_process(config) as server:
        stored = run_tool("storescu", "-aec", "ARCHIVE", "+sd", "localhost", str(server.port),
                          str(sources))
        assert stored.returncode == 0, stored.stderr
    listed = _pyqrscp("ls", "-c", str(config), "ARCHIVE")
    ended = time.time() + 1
    assert listed.returncode == 0, listed.stderr
    printed = re.findall(r"last stored (\S+ \S+)", listed.stdout)
    assert len(printed) == 5, listed.stdout  # area, patient, study, two series
    earliest, latest = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))
                        for moment in (started, ended))
    assert all(earliest <= text <= latest for text in printed), (earliest, latest, printed)
