"""Soak: mixed store / find / move traffic for a bounded time, with flat memory and no loss.

CI-sized by default (``PYQRSCP_SOAK_SECONDS``, 45 s); ``scripts/run-slow-tests`` runs it, and
``PYQRSCP_SOAK_SECONDS=300 scripts/run-slow-tests -k soak`` is the five-minute form.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from helpers import (
    DCMTK_ENV,
    free_port,
    have_dcmtk,
    index_db,
    make_ct,
    pyqrscp_process,
    run_tool,
    write_config,
)
from pydicom import dcmread

SOAK_SECONDS = float(os.environ.get("PYQRSCP_SOAK_SECONDS", "45"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SOAK_SECONDS + 180),
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak_mixed_traffic_keeps_memory_flat_and_loses_nothing(tmp_path: Path) -> None:
    seconds = SOAK_SECONDS
    destination_port = free_port()
    config = write_config(tmp_path, ["ARCHIVE area RW (100000, 10gb) ANY"],
                          host_rows=[f"dest = (DEST, localhost, {destination_port})"])
    received = tmp_path / "received"
    received.mkdir()
    destination = subprocess.Popen(
        ["storescp", "-aet", "DEST", "-od", str(received), str(destination_port)],
        env=DCMTK_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stored: dict[str, bytes] = {}
    moved_total = 0
    samples: list[int] = []
    try:
        with pyqrscp_process(config) as server:
            port = str(server.port)
            deadline = time.monotonic() + seconds
            round_number = 0
            while time.monotonic() < deadline:
                batch = tmp_path / f"batch{round_number}"
                batch.mkdir()
                study_uid = f"1.2.826.0.1.3680043.10.9.{round_number}"
                files = [make_ct(batch, study_uid=study_uid, patient_id=f"S{round_number}",
                                 instance_number=n) for n in range(5)]
                result = run_tool("storescu", "-aec", "ARCHIVE", "localhost", port,
                                  *map(str, files))
                assert result.returncode == 0, result.stderr
                for path in files:
                    ds = dcmread(path)
                    stored[ds.SOPInstanceUID] = bytes(ds.PixelData)
                found = run_tool("findscu", "-S", "-aec", "ARCHIVE", "localhost", port, "-k",
                                 "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}")
                assert found.returncode == 0, found.stderr
                moved = run_tool("movescu", "-S", "-aec", "ARCHIVE", "-aem", "DEST",
                                 "localhost", port, "-k", "QueryRetrieveLevel=STUDY",
                                 "-k", f"StudyInstanceUID={study_uid}")
                assert moved.returncode == 0, moved.stderr
                moved_total += 5
                samples.append(_rss_kib(server.process.pid))
                round_number += 1
            with index_db(tmp_path / "area") as db:
                rows = dict(db.execute("SELECT sop_instance_uid, file_name FROM instance"))
    finally:
        destination.terminate()
        destination.wait(timeout=30)
    assert set(rows) == set(stored), "an acknowledged instance is missing from the index"
    for sop_uid, pixels in stored.items():
        assert bytes(dcmread(tmp_path / "area" / rows[sop_uid]).PixelData) == pixels
    assert len(list(received.iterdir())) == moved_total
    quarter = max(1, len(samples) // 4)
    early, late = statistics.median(samples[:quarter]), statistics.median(samples[-quarter:])
    print(f"\nSOAK: {round_number} rounds in {seconds:.0f} s, {len(stored)} stored, "
          f"{moved_total} moved, RSS {early / 1024:.1f} -> {late / 1024:.1f} MiB")
    assert late - early < 16 * 1024, f"RSS grew from {early} KiB to {late} KiB"
