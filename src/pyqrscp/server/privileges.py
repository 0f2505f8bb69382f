"""dcmqrscp's UserName/GroupName: bind as root, then run as an unprivileged user."""

from __future__ import annotations

import logging
import os

from pyqrscp.errors import StartupError

try:  # POSIX only: Windows has no setuid, so no UserName/GroupName either
    import grp
    import pwd
except ImportError:
    grp = pwd = None  # type: ignore[assignment]

LOGGER = logging.getLogger(__name__)


def drop_privileges(user_name: str | None, group_name: str | None) -> bool:
    """Switch to ``group_name`` (else the user's primary group) and ``user_name`` when running
    as root, with the user's supplementary groups; warn when not root.

    Called after the port is bound (ports below 1024 such as 104 still work) and before any
    storage area is opened, so that what pyqrscp creates belongs to the user it serves as.
    Returns whether it switched.
    """
    if user_name is None and group_name is None:
        return False
    check_names(user_name, group_name)
    if os.geteuid() != 0:
        LOGGER.warning("not running as root: UserName/GroupName ignored")
        return False
    _preload_codecs()
    user = _user(user_name) if user_name else None
    if group_name:
        gid = _group_id(group_name)
    else:
        gid = user.pw_gid if user is not None else os.getgid()
    _hand_over_log_files(user.pw_uid if user is not None else -1, gid)
    if user is not None:
        os.initgroups(user.pw_name, gid)
    else:
        os.setgroups([gid])
    os.setgid(gid)
    if user is not None:
        os.setuid(user.pw_uid)
    LOGGER.info("running as user %s, group %s, supplementary groups %s",
                user_name or "(unchanged)", _group_name(gid),
                ", ".join(_group_name(g) for g in os.getgroups()))
    return True


def _hand_over_log_files(uid: int, gid: int) -> None:
    """Log files were opened as root before the switch; the user must own them to keep
    writing and rotating them (their folder must be writable by that user for rotation)."""
    handlers = {*logging.getLogger().handlers, *logging.getLogger("pyqrscp").handlers}
    for handler in handlers:
        file_name = getattr(handler, "baseFilename", None)
        if isinstance(file_name, str):
            try:
                os.chown(file_name, uid, gid)
            except OSError as error:
                LOGGER.warning("cannot hand log file %s to the configured user: %s",
                               file_name, error.strerror)


def check_names(user_name: str | None, group_name: str | None) -> None:
    """Fail before listening when a configured user or group does not exist (as root only),
    or when the platform cannot switch users at all (Windows)."""
    if (user_name or group_name) and (pwd is None or grp is None or
                                      not hasattr(os, "geteuid")):
        raise StartupError("UserName/GroupName are not supported on this platform (no "
                           "setuid): remove them from the config file and run pyqrscp as "
                           "that user (e.g. a service account)")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    if group_name:
        _group_id(group_name)
    if user_name:
        _user(user_name)


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise StartupError(f"unknown group {name!r} (GroupName in the config file)") from None


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise StartupError(f"unknown user {name!r} (UserName in the config file)") from None


# Text codecs Python loads on first use; after the switch the new user may not be able to read
# the interpreter's files (a Python installed under /root), so they are loaded while still root.
_LAZY_CODECS = (
    "idna", "ascii", "latin_1", "utf_8", "iso8859_2", "iso8859_3", "iso8859_4", "iso8859_5",
    "iso8859_6", "iso8859_7", "iso8859_8", "iso8859_9", "iso8859_11", "iso8859_15", "tis_620",
    "shift_jis", "iso2022_jp", "iso_ir_58", "euc_kr", "gb18030", "gbk", "gb2312", "big5",
    "cp1252", "utf_16", "utf_32",
)


def _preload_codecs() -> None:
    import codecs

    for name in _LAZY_CODECS:
        try:
            codecs.lookup(name)
        except LookupError:
            LOGGER.debug("codec %s not available", name)
