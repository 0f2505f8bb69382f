"""The A-ASSOCIATE-RQ PDUs decoded lately, by their bytes.

A DICOM tool sends the same A-ASSOCIATE-RQ every time it runs with the same options (AE
titles, proposed contexts, role selections), and pynetdicom takes milliseconds to decode a
large one: ``getscu`` proposes ~120 contexts in 17 KB, and decoding them is a fifth of its
association's set-up.  pynetdicom only reads a decoded request (it makes a new primitive of
it for every association), so one decoded PDU can serve every later request of the same
bytes.

A request carrying a User Identity sub-item is never kept: its user name and password (or
Kerberos ticket, SAML assertion, JWT) would stay in memory after its association ended.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from pyqrscp.dimse.pdus import carries_user_identity

KEPT_REQUESTS = 16
"""How many different requests are kept (the least recently used go)."""
LONGEST_KEPT = 64 * 1024
"""Longer requests are decoded every time (a kept one holds its bytes and its objects)."""


class DecodedRequests:
    """A small, thread-safe LRU of ``request bytes -> (decoded PDU, state machine event)``."""

    def __init__(self, kept: int = KEPT_REQUESTS) -> None:
        self._kept = kept
        self._entries: OrderedDict[bytes, tuple[object, str]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, request: bytes) -> tuple[object, str] | None:
        with self._lock:
            found = self._entries.get(request)
            if found is not None:
                self._entries.move_to_end(request)
            return found

    def keep(self, request: bytes, decoded: tuple[object, str]) -> None:
        """Remember ``decoded`` for ``request``, unless it is too long or holds credentials."""
        if len(request) > LONGEST_KEPT or carries_user_identity(request):
            return
        with self._lock:
            self._entries[request] = decoded
            self._entries.move_to_end(request)
            while len(self._entries) > self._kept:
                self._entries.popitem(last=False)
