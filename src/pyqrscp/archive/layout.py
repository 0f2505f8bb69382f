"""Where a storage area keeps its files: generated names in two levels of hash folders.

A new file goes to ``3f/a2/CT_0c9e41d87b65a0f1.dcm``: the two folder names are the first four
hex digits of the SHA-256 of its Series Instance UID, so the 65,536 leaf folders share the
series evenly and no folder grows with the archive (one series per folder, typically, up to
several million instances; a folder holds what its series hold).  A series lands in one folder:
a bulk import or a stream of C-STOREs flushes one folder per series instead of one per file,
and a retrieve reads one folder.  The index stores that path, relative to the area.  Areas
written by earlier versions hold their files flat in the area's own folder
(``CT_3fa20c9e41d87b65.dcm``); those stay where they are and are found through the index like
any other.

Nothing of a peer's data reaches a path: folder names are hex digits of a hash, the modality
prefix is filtered to ``[A-Z0-9]`` (as dcmqrscp's ``<Modality>_<random>.dcm`` names), the rest
is random.  Temp files of writes in progress live in the area's own folder only, so finding the
leftovers of interrupted writes lists one small folder, whatever the size of the archive.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from pyqrscp.archive.index.schema import INDEX_FILE_NAME

TEMP_PREFIX = ".pyqrscp-tmp-"
NODE_LOCK_PREFIX = ".pyqrscp-node-"
"""Each process's liveness lock file in an area (:mod:`pyqrscp.archive.liveness`)."""
LOCK_FILE_NAME = ".pyqrscp.lock"
SWEEP_MARKER_NAME = ".pyqrscp-sweep"
IN_USE_MARKER_NAME = ".pyqrscp-in-use"
FILE_NAME = re.compile(r"^[A-Z0-9]{1,8}_[0-9a-f]{16}\.dcm$")
"""A generated file's own name, in either layout."""
GENERATED_NAME = re.compile(r"^(?:[0-9a-f]{2}/[0-9a-f]{2}/)?[A-Z0-9]{1,8}_[0-9a-f]{16}\.dcm$")
"""A generated file's path relative to its area: nested (new) or flat (earlier versions)."""
AREA_OWN_NAMES = frozenset({INDEX_FILE_NAME, f"{INDEX_FILE_NAME}-wal", f"{INDEX_FILE_NAME}-shm",
                            f"{INDEX_FILE_NAME}-journal", LOCK_FILE_NAME, SWEEP_MARKER_NAME,
                            IN_USE_MARKER_NAME})
_HASH_FOLDER = re.compile(r"^[0-9a-f]{2}$")
_MODALITY_CHARS = re.compile(r"[^A-Z0-9]")


def generated_file_name(modality: str, series_instance_uid: str) -> str:
    """A new file's path relative to its area: ``<hh>/<hh>/<Modality>_<16 hex>.dcm``, the
    folders from the series' hash, the name's hex digits random."""
    prefix = _MODALITY_CHARS.sub("", modality.upper())[:8] or "XX"
    folder = hashlib.sha256(series_instance_uid.encode("ascii", "replace")).hexdigest()
    return f"{folder[:2]}/{folder[2:4]}/{prefix}_{secrets.token_hex(8)}.dcm"


def is_safe_relative_name(name: str) -> bool:
    """Whether an index's file name stays inside its area: a plain name (flat layout) or
    ``<hh>/<hh>/<plain name>`` (nested); never absolute, ``..``, or a backslash."""
    parts = name.split("/")
    if len(parts) == 3 and _HASH_FOLDER.match(parts[0]) and _HASH_FOLDER.match(parts[1]):
        parts = parts[2:]
    return len(parts) == 1 and "\\" not in name and parts[0] not in ("", ".", "..")


def folders_of(name: str) -> tuple[str, ...]:
    """The folders a relative name lives in, outermost first: ``("3f", "3f/a2")`` or ``()``."""
    parts = name.split("/")[:-1]
    return tuple("/".join(parts[: depth + 1]) for depth in range(len(parts)))


def is_hash_folder(entry: os.DirEntry[str]) -> bool:
    """A folder of the nested layout (itself, not a link to one)."""
    return _HASH_FOLDER.match(entry.name) is not None and entry.is_dir(follow_symlinks=False)


def leaf_folders(root: Path) -> Iterator[str]:
    """Every ``<hh>/<hh>`` folder of the area, in name order; links are never followed."""
    for top in _sorted_entries(root):
        if is_hash_folder(top):
            for leaf in _sorted_entries(Path(top.path)):
                if is_hash_folder(leaf):
                    yield f"{top.name}/{leaf.name}"


def stored_entries(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """``(relative name, entry)`` of everything that may be a stored file, in both layouts:
    entries of the area's own folder (but the index, lock and temp files and folders) and of
    its leaf folders.  Entries are not followed: the caller checks that each is a regular file.
    """
    for entry in _sorted_entries(root):
        if (entry.name in AREA_OWN_NAMES or entry.name.startswith((TEMP_PREFIX, NODE_LOCK_PREFIX))
                or entry.is_dir(follow_symlinks=False)):
            continue
        yield entry.name, entry
    for leaf in leaf_folders(root):
        for entry in _sorted_entries(root / leaf):
            yield f"{leaf}/{entry.name}", entry


def _sorted_entries(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda entry: entry.name)
