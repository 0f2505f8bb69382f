"""Whole-file advisory locks, shared or exclusive, on every platform pyqrscp runs on.

Several pyqrscp processes share a storage area (shared lock); start-up clean-up and
``index --rebuild`` need it alone (exclusive).  POSIX has ``flock``; Windows has ``LockFileEx``
(shared or exclusive byte-range locks, reached through ``msvcrt.get_osfhandle``).  Where neither
exists, locking is skipped with one warning: one process per area is then the user's care.
"""

from __future__ import annotations

import logging
import os
from typing import Any

LOGGER = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # Windows, or a platform without it
    fcntl = None  # type: ignore[assignment]

try:
    import msvcrt
except ImportError:
    msvcrt = None  # type: ignore[assignment]

_warned: list[bool] = []


def _unavailable() -> bool:
    if not _warned:
        _warned.append(True)
        LOGGER.warning("file locking is not available on this platform: storage areas are not "
                       "protected against a second pyqrscp process")
    return True


def try_lock(fd: int, exclusive: bool) -> bool:
    """Take the lock without waiting; False when another process holds a conflicting one."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if msvcrt is not None:
        return _windows_lock(fd, exclusive, wait=False)
    return _unavailable()


def lock_shared(fd: int) -> None:
    """Wait for a shared lock (while another process holds the file alone)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_SH)
    elif msvcrt is not None:
        _windows_lock(fd, exclusive=False, wait=True)
    else:
        _unavailable()


def unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:
        _windows_unlock(fd)


# -- Windows: LockFileEx over the first byte, through ctypes (no pywin32 needed) ---------------

_LOCKFILE_FAIL_IMMEDIATELY = 0x1
_LOCKFILE_EXCLUSIVE_LOCK = 0x2


def _overlapped() -> Any:
    import ctypes
    from ctypes import wintypes

    class Overlapped(ctypes.Structure):
        _fields_ = [("Internal", ctypes.c_void_p), ("InternalHigh", ctypes.c_void_p),
                    ("Offset", wintypes.DWORD), ("OffsetHigh", wintypes.DWORD),
                    ("hEvent", wintypes.HANDLE)]

    return Overlapped()


def _windows_lock(fd: int, exclusive: bool, wait: bool) -> bool:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    flags = (_LOCKFILE_EXCLUSIVE_LOCK if exclusive else 0) | (
        0 if wait else _LOCKFILE_FAIL_IMMEDIATELY)
    handle = msvcrt.get_osfhandle(fd)  # type: ignore[attr-defined]
    overlapped = _overlapped()
    if kernel32.LockFileEx(handle, flags, 0, 1, 0, ctypes.byref(overlapped)):
        return True
    if wait:
        raise OSError(ctypes.get_last_error(), "LockFileEx failed")  # type: ignore[attr-defined]
    return False


def _windows_unlock(fd: int) -> None:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = msvcrt.get_osfhandle(fd)  # type: ignore[attr-defined]
    kernel32.UnlockFileEx(handle, 0, 1, 0, ctypes.byref(_overlapped()))


def fsync_folder_supported() -> bool:
    """Windows cannot open a folder to flush it (NTFS journals the rename itself)."""
    return os.name != "nt"


def locking_available() -> bool:
    """Can this platform lock files at all (else every ``try_lock`` succeeds)?"""
    return fcntl is not None or msvcrt is not None
