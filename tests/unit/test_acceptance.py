"""Association acceptance and move destinations: dcmqrscp's rules, without sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyqrscp.config import AEEntry, Config, Peer, parse_config, resolve_move_destination
from pyqrscp.link.hostnames import FAILURE_SECONDS, HostLookup, host_matches, peer_host_names
from pyqrscp.server.acceptance import (
    AccessPolicy,
    AssociationRequest,
    Rejection,
    RejectReason,
    RejectResult,
    RejectSource,
    decide,
)

CONFIG_TEXT = """
HostTable BEGIN
byname    = (MODALITY, localhost, 5678)
byaddress = (WORKSTATION, 127.0.0.1, 5679)
remote    = (FARAWAY, 192.0.2.44, 104)
group     = byname, byaddress
dupe      = (MODALITY, 192.0.2.9, 9999)
only_host = (HOSTONLY, 192.0.2.10, 4242)
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
PUBLIC   /srv/public   RW (10, 1mb) ANY
PRIVATE  /srv/private  RW (10, 1mb) group
FARONLY  /srv/far      R  (10, 1mb) remote
mixed    /srv/mixed    W  (10, 1mb) (Lower, 127.0.0.1, 1000)
AETable END
"""


@pytest.fixture(scope="module")
def config() -> Config:
    return parse_config(CONFIG_TEXT, Path("/srv/dcmqrscp.cfg"))


def request(called: str, calling: str = "ANYONE", address: str = "127.0.0.1",
            implementation_uid: str | None = "1.2.276.0.7230010.3.0.3.6.7"
            ) -> AssociationRequest:
    return AssociationRequest(called, calling, address, implementation_uid)


def accepted(decision: AEEntry | Rejection) -> str:
    assert isinstance(decision, AEEntry), decision
    return decision.ae_title


def rejected(decision: AEEntry | Rejection) -> Rejection:
    assert isinstance(decision, Rejection), decision
    return decision


def test_any_accepts_every_calling_ae_from_anywhere(config: Config) -> None:
    for calling, address in (("ANYONE", "127.0.0.1"), ("x", "192.0.2.1"), ("", "::1")):
        assert accepted(decide(config, AccessPolicy(), request("PUBLIC", calling, address))) \
            == "PUBLIC"


def test_unknown_called_ae_is_rejected_permanently(config: Config) -> None:
    rejection = rejected(decide(config, AccessPolicy(), request("NOBODY")))
    assert (rejection.result, rejection.source, rejection.reason) == (
        RejectResult.PERMANENT, RejectSource.SERVICE_USER,
        RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED)
    assert "NOBODY" in rejection.why


def test_called_ae_title_is_case_sensitive(config: Config) -> None:
    assert rejected(decide(config, AccessPolicy(), request("public"))).reason \
        == RejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED
    assert accepted(decide(config, AccessPolicy(), request("mixed", "Lower"))) == "mixed"


def test_known_calling_ae_from_its_host_is_accepted(config: Config) -> None:
    assert accepted(decide(config, AccessPolicy(), request("PRIVATE", "WORKSTATION"))) \
        == "PRIVATE"


def test_calling_ae_title_must_match_exactly(config: Config) -> None:
    for calling in ("workstation", "WORKSTATIO", "WORKSTATION2", "OTHER"):
        rejection = rejected(decide(config, AccessPolicy(), request("PRIVATE", calling)))
        assert rejection.reason == RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED
        assert rejection.result == RejectResult.PERMANENT
    rejection = rejected(decide(config, AccessPolicy(), request("mixed", "LOWER")))
    assert rejection.reason == RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED


def test_known_calling_ae_from_another_host_is_rejected(config: Config) -> None:
    rejection = rejected(decide(config, AccessPolicy(disable_host_lookup=True),
                                request("PRIVATE", "WORKSTATION", "192.0.2.200")))
    assert rejection.reason == RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED
    assert "192.0.2.200" in rejection.why


def test_host_given_by_name_matches_its_address(config: Config) -> None:
    # MODALITY is configured on "localhost"; the peer connects from 127.0.0.1.
    assert accepted(decide(config, AccessPolicy(), request("PRIVATE", "MODALITY"))) == "PRIVATE"


def test_host_given_by_name_is_not_resolved_with_dhl(config: Config) -> None:
    rejection = rejected(decide(config, AccessPolicy(disable_host_lookup=True),
                                request("PRIVATE", "MODALITY")))
    assert rejection.reason == RejectReason.CALLING_AE_TITLE_NOT_RECOGNIZED
    # An address in the HostTable still matches without any lookup.
    assert accepted(decide(config, AccessPolicy(disable_host_lookup=True),
                           request("PRIVATE", "WORKSTATION"))) == "PRIVATE"


def test_peer_host_names_include_reverse_lookup_unless_dhl() -> None:
    assert "localhost" in peer_host_names("127.0.0.1", HostLookup())
    assert peer_host_names("127.0.0.1", None) == frozenset({"127.0.0.1"})


def test_host_comparison_ignores_case() -> None:
    peer = Peer("A", "LocalHost", 1)
    assert host_matches(peer, "127.0.0.1", frozenset({"127.0.0.1", "localhost"}), None)
    assert not host_matches(peer, "127.0.0.1", frozenset({"127.0.0.1"}), None)


def test_a_host_name_that_did_not_resolve_is_asked_again(config: Config) -> None:
    """A failed forward lookup is kept for a moment only: once the name resolves, the peer
    is accepted without a restart."""
    now = [0.0]
    answers: dict[str, frozenset[str]] = {}

    def forward(host: str) -> frozenset[str]:
        if host not in answers:
            raise OSError("temporary failure in name resolution")
        return answers[host]

    def reverse(_address: str) -> frozenset[str]:
        raise OSError("no reverse entry")

    policy = AccessPolicy(hosts=HostLookup(forward, reverse, clock=lambda: now[0]))
    assert rejected(decide(config, policy, request("PRIVATE", "MODALITY")))
    answers["localhost"] = frozenset({"127.0.0.1"})
    assert rejected(decide(config, policy, request("PRIVATE", "MODALITY")))  # still cached
    now[0] += FAILURE_SECONDS
    assert accepted(decide(config, policy, request("PRIVATE", "MODALITY"))) == "PRIVATE"


def test_refuse_rejects_everything_even_any(config: Config) -> None:
    rejection = rejected(decide(config, AccessPolicy(refuse=True), request("PUBLIC")))
    assert (rejection.result, rejection.source, rejection.reason) == (
        RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.NO_REASON_GIVEN)


def test_reject_requires_an_implementation_class_uid(config: Config) -> None:
    policy = AccessPolicy(reject_without_implementation_uid=True)
    rejection = rejected(decide(config, policy, request("PUBLIC", implementation_uid=None)))
    assert rejection.reason == RejectReason.NO_REASON_GIVEN
    assert "implementation class UID" in rejection.why
    assert rejected(decide(config, policy, request("PUBLIC", implementation_uid=""))).reason \
        == RejectReason.NO_REASON_GIVEN
    assert accepted(decide(config, policy, request("PUBLIC"))) == "PUBLIC"
    # Without --reject a missing implementation UID is fine.
    assert accepted(decide(config, AccessPolicy(), request("PUBLIC", implementation_uid=None))) \
        == "PUBLIC"


def test_move_destination_from_an_aetable_peer(config: Config) -> None:
    assert resolve_move_destination(config, "WORKSTATION") == Peer("WORKSTATION", "127.0.0.1",
                                                                   5679)
    assert resolve_move_destination(config, "Lower") == Peer("Lower", "127.0.0.1", 1000)


def test_move_destination_takes_the_first_triple_with_that_title(config: Config) -> None:
    # MODALITY appears in "byname" (used by PRIVATE) and in "dupe": the AETable's peer wins.
    assert resolve_move_destination(config, "MODALITY") == Peer("MODALITY", "localhost", 5678)


def test_move_destination_from_the_host_table_only(config: Config) -> None:
    assert resolve_move_destination(config, "HOSTONLY") == Peer("HOSTONLY", "192.0.2.10", 4242)


def test_move_destination_is_case_sensitive_and_may_be_unknown(config: Config) -> None:
    assert resolve_move_destination(config, "workstation") is None
    assert resolve_move_destination(config, "NOBODY") is None
