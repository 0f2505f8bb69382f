"""The outcome of presentation-context negotiation for requests accepted lately.

A DICOM tool run with the same options sends the same A-ASSOCIATE-RQ every time, and the
archive answers it the same way as long as the acceptance rules give the same AE title and
the same supported contexts.  pynetdicom negotiates every context of every association anew
in Python: about a millisecond for ``getscu``'s ~120 contexts and their role selections, on
top of making the request's primitive.  The outcome (the accepted and rejected contexts and
the role-selection replies) depends only on the request and on what the archive supports, so
it is kept here and used again for the same request and the same acceptance, with the
A-ASSOCIATE-AC's bytes (the AC holds the request's AE titles, the outcome and the archive's
own user information: maximum length, implementation class UID and version name, all part
of the key).

Only requests whose decoded PDU is kept (:mod:`pyqrscp.link.decoded`: none with a user
identity) and that carry no extended negotiation beyond role selection qualify: for those,
pynetdicom's negotiation has no other input than the ones in :func:`outcome_key`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from pynetdicom.association import Association
from pynetdicom.pdu_primitives import (
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
)
from pynetdicom.presentation import PresentationContext

from pyqrscp.link.library import unrestricted_storage

KEPT_OUTCOMES = 16
"""How many different outcomes are kept (the least recently used go)."""

_PLAIN_ITEMS = (MaximumLengthNotification, ImplementationClassUIDNotification,
                ImplementationVersionNameNotification, SCP_SCU_RoleSelectionNegotiation)
"""User information items that leave the negotiation to the contexts and roles alone."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One negotiation's result.  ``supported`` are the contexts it was negotiated against:
    held so that their identities, part of the key, stay unique while it is kept.  ``accept``
    gets the A-ASSOCIATE-AC's bytes once the first association has sent them (its DUL thread
    encodes it after the negotiation returns)."""

    supported: tuple[PresentationContext, ...]
    accepted: tuple[PresentationContext, ...]
    rejected: tuple[PresentationContext, ...]
    roles: tuple[SCP_SCU_RoleSelectionNegotiation, ...]
    accept: list[bytes] = field(default_factory=list)



def outcome_key(assoc: Association, request: bytes) -> Hashable | None:
    """What an acceptor's negotiation depends on, for an association whose A-ASSOCIATE-RQ was
    ``request`` (the bytes as decoded); None when it depends on more (extended negotiation, a
    user identity, pynetdicom's unrestricted storage) and is not to be kept."""
    primitive = assoc.requestor.primitive
    acceptor = assoc.acceptor
    if (primitive is None or unrestricted_storage()
            or acceptor.extended_negotiation
            or not all(isinstance(item, _PLAIN_ITEMS) for item in primitive.user_information)):
        return None
    supported = acceptor.supported_contexts
    return (request, acceptor.ae_title, tuple(map(id, supported)), len(supported),
            tuple(assoc.ae.require_calling_aet), assoc.ae.require_called_aet,
            acceptor.maximum_length, str(acceptor.implementation_class_uid),
            acceptor.implementation_version_name)


class NegotiatedOutcomes:
    """A small, thread-safe LRU of ``outcome key -> Outcome``."""

    def __init__(self, kept: int = KEPT_OUTCOMES) -> None:
        self._kept = kept
        self._entries: OrderedDict[Hashable, Outcome] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: Hashable, supported: Sequence[PresentationContext]) -> Outcome | None:
        """The outcome kept for ``key``, if it was negotiated against these very contexts."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            self._entries.move_to_end(key)
        same = len(found.supported) == len(supported) and all(
            kept is given for kept, given in zip(found.supported, supported, strict=True))
        return found if same else None

    def keep(self, key: Hashable, outcome: Outcome) -> None:
        with self._lock:
            self._entries[key] = outcome
            self._entries.move_to_end(key)
            while len(self._entries) > self._kept:
                self._entries.popitem(last=False)
