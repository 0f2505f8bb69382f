"""pynetdicom's and pydicom's process-wide settings, applied once by the command line (never
at import): pynetdicom's documented configuration (``pynetdicom._config``) and pydicom's
table of value checks (``pydicom.valuerep.VALIDATORS``), not internals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from pydicom import valuerep
from pynetdicom import _config as pynetdicom_config

REMEMBERED_UIDS = 4096
"""How many UIDs :func:`remember_uid_checks` keeps the verdict of (least recently used go)."""


@contextmanager
def serving_settings(describe: bool) -> Iterator[None]:
    """pyqrscp's settings of both libraries (:func:`describe_pdus`, :func:`remember_uid_checks`)
    for as long as the server runs, and the libraries' own again when it returns: a command
    run in-process (the tests, a program embedding ``main``) leaves them as it found them."""
    saved_level = pynetdicom_config.LOG_HANDLER_LEVEL
    saved_checks = pynetdicom_config.VALIDATORS["UI"], valuerep.VALIDATORS["UI"]
    describe_pdus(describe)
    remember_uid_checks()
    try:
        yield
    finally:
        pynetdicom_config.LOG_HANDLER_LEVEL = saved_level
        pynetdicom_config.VALIDATORS["UI"], valuerep.VALIDATORS["UI"] = saved_checks


def unrestricted_storage() -> bool:
    """Does pynetdicom accept every storage SOP class whatever the supported contexts say
    (its ``UNRESTRICTED_STORAGE_SERVICE``; pyqrscp leaves it off)?"""
    return bool(pynetdicom_config.UNRESTRICTED_STORAGE_SERVICE)


def describe_pdus(enabled: bool) -> None:
    """Whether pynetdicom describes every PDU and DIMSE message it sends or receives (its
    "standard" handlers, bound to every association): a few dozen log calls per association
    that pyqrscp's loggers drop unless asked for pynetdicom's output (``-ll trace``)."""
    pynetdicom_config.LOG_HANDLER_LEVEL = "standard" if enabled else "none"


def remember_uid_checks() -> None:
    """Check each UID pynetdicom meets once, not every time.

    pynetdicom checks every UID it decodes or sets (abstract and transfer syntaxes, SOP
    classes of role selections), several times each while an association is negotiated: a
    ``getscu`` proposing ~120 contexts costs ~4,000 checks of its own and ~1,800 of pydicom's
    (every ``UID`` made), most of its A-ASSOCIATE-RQ's decoding and negotiation.  The same few
    hundred UIDs come back in every association, so each verdict is kept (per UID, and per
    conformance setting for pynetdicom's); an invalid value is still reported every time it
    is met.  Idempotent.
    """
    check = pynetdicom_config.VALIDATORS["UI"]
    if not getattr(check, "remembers", False):
        pynetdicom_config.VALIDATORS["UI"] = _remembering(
            check, lambda: bool(pynetdicom_config.ENFORCE_UID_CONFORMANCE))
    value_check = valuerep.VALIDATORS["UI"]
    if not getattr(value_check, "remembers", False):
        valuerep.VALIDATORS["UI"] = _remembering(value_check, lambda: None)


def _remembering(check: Callable[..., tuple[bool, str]], setting: Callable[[], object]
                 ) -> Callable[..., tuple[bool, str]]:
    """``check`` with its verdicts kept per arguments (the checked value last), the value's
    type and ``setting()`` (pynetdicom's conformance switch; pydicom has none)."""
    @lru_cache(maxsize=REMEMBERED_UIDS)
    def verdict(args: tuple[Any, ...], kind: type, now: object) -> tuple[bool, str]:
        return check(*args)

    def remembered(*args: Any) -> tuple[bool, str]:
        if not isinstance(args[-1], str):
            return check(*args)
        return verdict(args, type(args[-1]), setting())

    remembered.remembers = True  # type: ignore[attr-defined]
    remembered.__wrapped__ = check  # type: ignore[attr-defined]
    return remembered
