"""Temp files of several processes in one storage area: ended nodes' are removed at start-up,
live nodes' never (each StorageArea opened here holds its own lock, as a process would)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyqrscp.archive import filelock
from pyqrscp.archive.layout import NODE_LOCK_PREFIX, TEMP_PREFIX
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota

ROOMY = Quota(100, 1 << 30)


def opened(root: Path) -> StorageArea:
    area = StorageArea(root, ROOMY, durable=False)
    area.open()
    return area


def half_written(area: StorageArea, name: str = "0123abcd") -> Path:
    """A temp file the node is writing (a store or a spool in flight)."""
    path = area.root / f"{area.node.temp_prefix}{name}"
    path.write_bytes(b"half a dataset")
    return path


def die(area: StorageArea) -> None:
    """What kill -9 leaves: the lock is gone with the process, its file and temps stay."""
    assert area.node._fd is not None
    os.close(area.node._fd)
    area.node._fd = None


@pytest.mark.skipif(not filelock.locking_available(), reason="no file locks: nothing tells")
def test_a_starting_node_removes_ended_nodes_temps_and_keeps_live_ones(tmp_path: Path) -> None:
    root = tmp_path / "area"
    live, ended = opened(root), opened(root)
    live_temp, ended_temp = half_written(live), half_written(ended)
    die(ended)
    starting = opened(root)  # the area is in use (not alone): only the node locks tell
    try:
        assert live_temp.exists()
        assert not ended_temp.exists()
        assert not (root / f"{NODE_LOCK_PREFIX}{ended.node.node_id}.lock").exists()
        assert (root / f"{NODE_LOCK_PREFIX}{live.node.node_id}.lock").exists()
    finally:
        starting.close()
        live.close()


def test_a_node_stopping_cleanly_leaves_no_lock_file(tmp_path: Path) -> None:
    area = opened(tmp_path / "area")
    area.close()
    assert not [p for p in area.root.iterdir() if p.name.startswith(NODE_LOCK_PREFIX)]


def test_a_node_stopping_cleanly_removes_its_own_temp_files_only(tmp_path: Path) -> None:
    """A spool an association left behind goes with its node's clean stop: once the node's
    lock file is gone, no later start could tell it ended (the area is never unused while
    other nodes run).  Another live node's temp files stay."""
    root = tmp_path / "area"
    other, stopping = opened(root), opened(root)
    others_temp, own_temp = half_written(other), half_written(stopping)
    stopping.close()
    try:
        assert not own_temp.exists()
        assert others_temp.exists()
    finally:
        other.close()


def test_temp_files_carry_the_node_id(tmp_path: Path) -> None:
    area = opened(tmp_path / "area")
    try:
        assert area.node.temp_prefix.startswith(TEMP_PREFIX)
        assert area.node.node_id in area.node.temp_prefix
    finally:
        area.close()
