"""pynetdicom's process-wide settings, applied once by the command line (never at import).

Both are its documented configuration (``pynetdicom._config``), not internals.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from pynetdicom import _config as pynetdicom_config

REMEMBERED_UIDS = 4096
"""How many UIDs :func:`remember_uid_checks` keeps the verdict of (least recently used go)."""


def describe_pdus(enabled: bool) -> None:
    """Whether pynetdicom describes every PDU and DIMSE message it sends or receives (its
    "standard" handlers, bound to every association): a few dozen log calls per association
    that pyqrscp's loggers drop unless asked for pynetdicom's output (``-ll trace``)."""
    pynetdicom_config.LOG_HANDLER_LEVEL = "standard" if enabled else "none"


def remember_uid_checks() -> None:
    """Check each UID pynetdicom meets once, not every time.

    pynetdicom checks every UID it decodes or sets (abstract and transfer syntaxes, SOP
    classes of role selections), several times each while an association is negotiated: a
    ``getscu`` proposing ~120 contexts costs ~4,000 checks, a third of its A-ASSOCIATE-RQ's
    decoding and negotiation.  The same few hundred UIDs come back in every association, so
    each verdict is kept (per UID and conformance setting).  Idempotent.
    """
    check = pynetdicom_config.VALIDATORS["UI"]
    if getattr(check, "remembers", False):
        return
    pynetdicom_config.VALIDATORS["UI"] = _remembering(check)


def _remembering(check: Callable[[Any], tuple[bool, str]]
                 ) -> Callable[[Any], tuple[bool, str]]:
    @lru_cache(maxsize=REMEMBERED_UIDS)
    def verdict(value: str, kind: type, enforced: bool) -> tuple[bool, str]:
        return check(value)

    def remembered(value: Any) -> tuple[bool, str]:
        if not isinstance(value, str):
            return check(value)
        return verdict(value, type(value), bool(pynetdicom_config.ENFORCE_UID_CONFORMANCE))

    remembered.remembers = True  # type: ignore[attr-defined]
    return remembered
