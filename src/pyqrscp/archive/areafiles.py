"""Opening the files of a storage area without following links someone planted there.

A storage area is writable by the user pyqrscp serves as, and by whoever else its owner lets in;
pyqrscp itself may run as root (``pyqrscp index``, or a server without ``UserName``).  A symbolic
link named like the lock file, the index or a stored file would make that process create, read or
serve a file anywhere.  Every file pyqrscp opens inside an area is therefore opened here: the
last path component is never followed (``O_NOFOLLOW``), FIFOs do not block the open
(``O_NONBLOCK``), and anything that is not a regular file is refused.  The area's own folder is
the configured path and may itself be a link the administrator made.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_NO_FOLLOW_FLAG = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has neither flag nor FIFOs
_NON_BLOCKING = getattr(os, "O_NONBLOCK", 0)
_FLAGS = (_NO_FOLLOW_FLAG | _NON_BLOCKING | getattr(os, "O_CLOEXEC", 0)
          | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0))


class NotRegularFile(OSError):
    """A path inside an area names a link, folder, FIFO or device instead of a regular file."""


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """A descriptor of the regular file ``path`` names itself; raise :class:`NotRegularFile`
    when it is a symbolic link or anything else but a regular file, OSError otherwise."""
    if not _NO_FOLLOW_FLAG and os.path.islink(path):
        raise NotRegularFile(errno.ELOOP, "a symbolic link (not followed)", str(path))
    try:
        fd = os.open(path, flags | _FLAGS, mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "a symbolic link (not followed)",
                                 str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(errno.EINVAL, "not a regular file", str(path))
        if _NON_BLOCKING:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path) -> bytes:
    """The whole content of the regular file ``path`` (see :func:`open_regular`), in one
    ``read`` of the size the file has (no buffered reader, no joined chunks)."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        if len(data) == size:
            return data
        # cut since, grown since, or a read capped by the system (2 GiB on Linux): to the end
        parts = [data]
        while chunk := os.read(fd, 1 << 24):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def reader(path: Path) -> BinaryIO:
    """A binary stream over the regular file ``path`` (see :func:`open_regular`)."""
    return os.fdopen(open_regular(path), "rb")


def is_regular(entry: os.DirEntry[str]) -> bool:
    """Whether a folder entry is itself a regular file (a link to one is not)."""
    return entry.is_file(follow_symlinks=False)
