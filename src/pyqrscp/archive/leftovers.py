"""Start-up clean-up of a storage area: temp files of interrupted writes, lost index rows.

Temp files live in the area's own folder only (:mod:`pyqrscp.archive.layout`), so removing
them lists one small folder.  Files whose index rows a power loss took (the index commits
without a flush of its own) can only exist after an unclean stop; only then are the hash
folders swept, one folder's indexed names at a time, so memory stays flat whatever the size of
the archive.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pyqrscp.archive.areafiles import is_regular
from pyqrscp.archive.durable import unlink_quietly
from pyqrscp.archive.layout import FILE_NAME, TEMP_PREFIX, leaf_folders

LOGGER = logging.getLogger(__name__)


class KnownFiles(Protocol):
    """Which file names the index holds (the area's IndexWriter)."""

    def has_file(self, file_name: str) -> bool: ...

    def file_names_in(self, folder: str) -> set[str]: ...


@dataclass(slots=True)
class Settled:
    """What the clean-up did, by verdict."""

    indexed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def log(self, root: Path) -> None:
        if self.indexed:
            LOGGER.warning("%s: indexed %d stored file(s) whose index rows were lost", root,
                           len(self.indexed))
        if self.removed:
            LOGGER.warning("%s: removed %d leftover file(s) of interrupted writes", root,
                           len(self.removed))


def settle(root: Path, sweep: bool, known: KnownFiles, adopt: Callable[[str], str]) -> Settled:
    """Remove the temp files; with ``sweep``, hand every generated file no index row names
    to ``adopt`` (which answers "indexed", "remove" or "keep").  Links and anything else that
    is not a regular file are never adopted (nor followed)."""
    settled = Settled()
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                unlink_quietly(Path(entry.path))
                settled.removed.append(entry.name)
            elif sweep and FILE_NAME.match(entry.name) and not known.has_file(entry.name):
                _settle(root, entry.name, entry, adopt, settled)
    if sweep:
        for folder in leaf_folders(root):
            indexed = known.file_names_in(folder)
            with os.scandir(root / folder) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    name = f"{folder}/{entry.name}"
                    if FILE_NAME.match(entry.name) and name not in indexed:
                        _settle(root, name, entry, adopt, settled)
    return settled


def _settle(root: Path, name: str, entry: os.DirEntry[str], adopt: Callable[[str], str],
            settled: Settled) -> None:
    if not is_regular(entry):
        LOGGER.error("%s: %s is not a regular file (a link?): not indexed", root, name)
        return
    verdict = adopt(name)
    if verdict == "indexed":
        settled.indexed.append(name)
    elif verdict == "remove":
        unlink_quietly(Path(entry.path))
        settled.removed.append(name)
    else:
        settled.kept.append(name)
