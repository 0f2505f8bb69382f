"""Idle associations poll slower; a request brings them back (issue 8: idle cost)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from helpers import poll_until, write_config
from pynetdicom import AE

from pyqrscp.config import load_config
from pyqrscp.config.options import Options
from pyqrscp.link.idle import ACTIVE_DELAY, IDLE_AFTER, IDLE_DELAY
from pyqrscp.server.server import ArchiveServer


@pytest.mark.pynetdicom_internals(
    reason="the idle governor sets the DUL's poll delay")
def test_idle_association_polls_slower_until_a_request_arrives(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ["ARCHIVE area RW (10, 1gb) ANY"]))
    server = ArchiveServer(config, dataclasses.replace(Options(), port=0), host="127.0.0.1")
    server.start()
    client = AE()
    client.add_requested_context("1.2.840.10008.1.1")
    started = time.monotonic()  # before the association: load can only lengthen what is seen
    assoc = client.associate("127.0.0.1", server.port, ae_title="ARCHIVE")
    try:
        assert assoc.is_established
        accepted = server.listener.active_associations
        assert len(accepted) == 1
        dul = accepted[0].dul
        poll_until(lambda: dul._run_loop_delay == IDLE_DELAY, "the idle poll delay")
        assert time.monotonic() - started >= IDLE_AFTER * 0.5
        assert assoc.send_c_echo().Status == 0
        poll_until(lambda: dul._run_loop_delay == ACTIVE_DELAY, "the active poll delay")
    finally:
        assoc.release()
        server.stop()
