"""Who may talk to which AE title: dcmqrscp's association rules as pure functions.

Kept free of sockets so that every rule is unit-tested; the server feeds it what it saw.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pyqrscp.config import AEEntry, Config
from pyqrscp.link.hostnames import HostLookup, host_matches, peer_host_names


class RejectResult(enum.IntEnum):
    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(enum.IntEnum):
    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReason(enum.IntEnum):
    """A-ASSOCIATE-RJ reasons of PS3.8 Table 9-21 (service-user / presentation sources)."""

    NO_REASON_GIVEN = 1
    CALLING_AE_TITLE_NOT_RECOGNIZED = 3
    CALLED_AE_TITLE_NOT_RECOGNIZED = 7
    LOCAL_LIMIT_EXCEEDED = 2


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an association is refused, in DICOM terms and in words for the log."""

    result: RejectResult
    source: RejectSource
    reason: RejectReason
    why: str


@dataclass(frozen=True, slots=True)
class AssociationRequest:
    """What the server knows about an incoming A-ASSOCIATE-RQ."""

    called_aet: str
    calling_aet: str
    peer_address: str
    implementation_class_uid: str | None


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """The server-wide switches that affect acceptance (``--refuse``, ``--reject``, ``-dhl``)
    and the server's host name lookups."""

    refuse: bool = False
    reject_without_implementation_uid: bool = False
    disable_host_lookup: bool = False
    hosts: HostLookup = field(default_factory=HostLookup)

    @property
    def lookups(self) -> HostLookup | None:
        """The lookups to use, None with ``-dhl``."""
        return None if self.disable_host_lookup else self.hosts


def decide(config: Config, policy: AccessPolicy, request: AssociationRequest
           ) -> AEEntry | Rejection:
    """Return the AETable entry serving this request, or the reason to reject it."""
    if policy.refuse:
        return Rejection(RejectResult.PERMANENT, RejectSource.SERVICE_USER,
                         RejectReason.NO_REASON_GIVEN, "refusing all associations (--refuse)")
    if policy.reject_without_implementation_uid and not request.implementation_class_uid:
        return Rejection(RejectResult.PERMANENT, RejectSource.SERVICE_USER,
                         RejectReason.NO_REASON_GIVEN,
                         "no implementation class UID provided (--reject)")
    entry = config.ae(request.called_aet)
    if entry is None:
        return Rejection(RejectResult.PERMANENT, RejectSource.SERVICE_USER,
                         RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED,
                         f"called AE title {request.called_aet!r} is not in the AETable")
    if entry.peers is None:
        return entry
    host_names = peer_host_names(request.peer_address, policy.lookups)
    for peer in entry.peers:
        if peer.ae_title == request.calling_aet and host_matches(
                peer, request.peer_address, host_names, policy.lookups):
            return entry
    return Rejection(RejectResult.PERMANENT, RejectSource.SERVICE_USER,
                     RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED,
                     f"calling AE title {request.calling_aet!r} at {request.peer_address} is "
                     f"not a peer of {entry.ae_title}")
