"""An association's threads wait for events, not for a poll interval (``reactor.py``).

pynetdicom's DUL thread sleeps its poll delay whenever it is idle and an association's reactor
sleeps 1 ms per turn; every step of an association (reading the request, answering, releasing)
waited for those sleeps.  Here the poll delays are made absurdly long (two minutes, longer than
the tools' deadline): an association that still depended on them could not finish, while
event-driven loops serve every service at once.  Nothing is timed; the deadlines are generous.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, have_dcmtk, make_ct, run_tool, write_config
from pynetdicom import AE

from pyqrscp.config import load_config
from pyqrscp.config.options import Options
from pyqrscp.link import idle, reactor
from pyqrscp.server.server import ArchiveServer

pytestmark = [pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed"),
              pytest.mark.pynetdicom_internals(reason="the event-driven loops replace "
                                               "pynetdicom's own")]

NEVER = 120.0
"""A poll delay no tool waits out: each tool below gives up after 60 s."""
STUDY = "1.2.826.0.1.3680043.9.7781.17"


@pytest.fixture
def slow_pollers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every poll delay pyqrscp and pynetdicom would sleep between looks: two minutes (the idle
    governor applies it to each association at once)."""
    for name in ("BUSY_DELAY", "ACTIVE_DELAY", "IDLE_DELAY"):
        monkeypatch.setattr(idle, name, NEVER)
    monkeypatch.setattr(idle, "IDLE_AFTER", 0.0)
    monkeypatch.setattr(idle, "CHECK_EVERY", 0.001)
    monkeypatch.setattr(reactor, "LONGEST_WAIT", NEVER)


@pytest.fixture
def archive(tmp_path: Path, slow_pollers: None) -> Iterator[tuple[int, int]]:
    """An in-process archive on port 0 with a C-MOVE destination; yields (port, dest port)."""
    dest_port = free_port()
    config = load_config(write_config(
        tmp_path, [f"ARCHIVE {tmp_path / 'area'} RW (10, 1gb) ANY"],
        host_rows=[f"dest = (DEST, 127.0.0.1, {dest_port})"]))
    server = ArchiveServer(config, dataclasses.replace(Options(), port=0), host="127.0.0.1")
    server.start()
    try:
        yield server.port, dest_port
    finally:
        server.stop()


def test_every_service_is_served_without_waiting_for_a_poll(archive: tuple[int, int],
                                                            tmp_path: Path) -> None:
    port, dest_port = archive
    files = [make_ct(tmp_path, study_uid=STUDY, series_uid=f"{STUDY}.1",
                     sop_uid=f"{STUDY}.1.{n}", instance_number=n) for n in (1, 2, 3)]
    at = ("-aec", "ARCHIVE", "127.0.0.1", str(port))
    study = ("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}")
    assert run_tool("echoscu", *at).returncode == 0
    stored = run_tool("storescu", *at, *map(str, files))
    assert stored.returncode == 0, stored.stderr
    found = run_tool("findscu", "-S", "-v", *at, *study)
    assert found.returncode == 0 and found.stderr.count("(Pending)") == 1, found.stderr
    out = tmp_path / "out"
    out.mkdir()
    got = run_tool("getscu", "-S", "-od", str(out), *at, *study)
    assert got.returncode == 0 and len(list(out.iterdir())) == 3, got.stderr
    moved_to = tmp_path / "moved"
    moved_to.mkdir()
    moved = run_tool("movescu", "-S", "-aet", "DEST", "-aem", "DEST", "--port", str(dest_port),
                     "-od", str(moved_to), *at, *study)
    assert moved.returncode == 0 and len(list(moved_to.iterdir())) == 3, moved.stderr


def test_an_association_left_open_is_still_served_and_released(archive: tuple[int, int]
                                                               ) -> None:
    """Requests on one association, then a release: each answered without a poll."""
    port, _ = archive
    client = AE()
    client.acse_timeout = client.dimse_timeout = client.network_timeout = 60
    client.add_requested_context("1.2.840.10008.1.1")
    assoc = client.associate("127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        for _ in range(3):
            assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()
    assert assoc.is_released
