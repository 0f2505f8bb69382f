"""Which pyqrscp processes are alive in a storage area: one lock file per process.

Several processes (nodes, on this machine or others sharing the folder) may write into one
area.  Each holds an exclusive lock on its own ``.pyqrscp-node-<id>.lock`` while it has the area
open, and names its temp files ``.pyqrscp-tmp-<id>-<random>``.  At start-up a process removes
the temp files of every node whose lock it can take (that node has ended: killed, crashed, or
its machine restarted), so it never removes a half-written file of a live node; a node stopping
cleanly removes its own.  A lock file
is created under a passing name, locked, then renamed, so nobody ever sees it unlocked while
its node lives.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path

from pyqrscp.archive import filelock
from pyqrscp.archive.areafiles import open_regular
from pyqrscp.archive.durable import unlink_quietly
from pyqrscp.archive.layout import NODE_LOCK_PREFIX, TEMP_PREFIX

LOGGER = logging.getLogger(__name__)

_NODE_LOCK = re.compile(r"^\.pyqrscp-node-([0-9a-f]{16})\.lock(\.new)?$")
_NODE_TEMP = re.compile(r"^\.pyqrscp-tmp-([0-9a-f]{16})-[0-9a-f]+$")


class NodeLock:
    """This process's lock file in one area, and the clean-up of ended nodes' temp files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node_id = secrets.token_hex(8)
        self.temp_prefix = f"{TEMP_PREFIX}{self.node_id}-"
        """Every temp file this process writes into the area starts with this."""
        self._fd: int | None = None

    def claim(self) -> None:
        """Create and lock this node's lock file (OSError when the area is not writable).

        Another node's start-up clean-up may take the passing file's lock in the instant
        before this one does (and remove it): then it starts again under a new id.
        """
        for _attempt in range(5):
            final = self.root / f"{NODE_LOCK_PREFIX}{self.node_id}.lock"
            passing = final.with_name(final.name + ".new")
            fd = open_regular(passing, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            try:
                if filelock.try_lock(fd, exclusive=True):
                    os.replace(passing, final)
                    self._fd = fd
                    return
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                unlink_quietly(passing)
                raise
            os.close(fd)
            self.node_id = secrets.token_hex(8)
            self.temp_prefix = f"{TEMP_PREFIX}{self.node_id}-"
        raise OSError(f"cannot create a lock file in {self.root}")

    def release(self) -> None:
        """Remove this node's temp files (a spool an aborted association left) and its lock
        file, then let the lock go: a clean stop leaves nothing behind, and nothing that no
        later start could tell is unused."""
        if self._fd is None:
            return
        self.remove_own_temps()
        unlink_quietly(self.root / f"{NODE_LOCK_PREFIX}{self.node_id}.lock")
        os.close(self._fd)
        self._fd = None

    def remove_own_temps(self) -> list[str]:
        """Remove the temp files this node has written into the area; their names."""
        removed: list[str] = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.name.startswith(self.temp_prefix):
                    unlink_quietly(Path(entry.path))
                    removed.append(entry.name)
        return removed

    def remove_ended_nodes_temps(self) -> list[str]:
        """Remove the temp files of every ended node, then its lock file; their names."""
        if not filelock.locking_available():
            return []  # cannot tell a live node from an ended one
        entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        ended: dict[str, int] = {}
        for entry in entries:
            match = _NODE_LOCK.match(entry.name)
            if match is None or match.group(1) == self.node_id or match.group(1) in ended:
                continue
            fd = self._lock_if_ended(Path(entry.path))
            if fd is not None:
                ended[match.group(1)] = fd
        removed: list[str] = []
        for entry in entries:
            match = _NODE_TEMP.match(entry.name)
            if match is not None and match.group(1) in ended:
                unlink_quietly(Path(entry.path))
                removed.append(entry.name)
        for node_id, fd in ended.items():
            for name in (f"{NODE_LOCK_PREFIX}{node_id}.lock",
                         f"{NODE_LOCK_PREFIX}{node_id}.lock.new"):
                unlink_quietly(self.root / name)
            os.close(fd)
        if removed:
            LOGGER.warning("%s: removed %d temp file(s) of ended pyqrscp processes", self.root,
                           len(removed))
        return removed

    @staticmethod
    def _lock_if_ended(path: Path) -> int | None:
        try:
            fd = open_regular(path, os.O_RDWR)
        except OSError:
            return None  # gone meanwhile (its node stopped), or not a regular file
        if filelock.try_lock(fd, exclusive=True):
            return fd
        os.close(fd)
        return None
