"""The host name cache policy, with plain functions for the lookups and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyqrscp.link.hostnames import ANSWER_SECONDS, FAILURE_SECONDS, HostLookup


@dataclass
class Resolver:
    """A lookup table that counts its calls; a missing key fails like a DNS error."""

    table: dict[str, frozenset[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(self, key: str) -> frozenset[str]:
        self.calls.append(key)
        if key not in self.table:
            raise OSError(f"cannot resolve {key}")
        return self.table[key]


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def lookup(forward: Resolver, reverse: Resolver | None = None, clock: Clock | None = None,
           max_entries: int = 1024) -> HostLookup:
    return HostLookup(forward, reverse or Resolver(), clock=clock or Clock(),
                      max_entries=max_entries)


def test_an_answer_is_kept_for_its_lifetime_then_asked_again() -> None:
    forward, clock = Resolver({"pacs": frozenset({"10.0.0.1"})}), Clock()
    hosts = lookup(forward, clock=clock)
    assert hosts.addresses("pacs") == frozenset({"10.0.0.1"})
    forward.table["pacs"] = frozenset({"10.0.0.2"})
    clock.now += ANSWER_SECONDS - 1
    assert hosts.addresses("pacs") == frozenset({"10.0.0.1"})
    clock.now += 1
    assert hosts.addresses("pacs") == frozenset({"10.0.0.2"})
    assert forward.calls == ["pacs", "pacs"]


def test_a_failure_is_kept_briefly_only() -> None:
    forward, clock = Resolver(), Clock()
    hosts = lookup(forward, clock=clock)
    assert hosts.addresses("modality") == frozenset()
    assert hosts.addresses("modality") == frozenset()  # a burst asks the resolver once
    forward.table["modality"] = frozenset({"10.0.0.7"})
    clock.now += FAILURE_SECONDS
    assert hosts.addresses("modality") == frozenset({"10.0.0.7"})
    assert forward.calls == ["modality", "modality"]
    assert FAILURE_SECONDS <= 5 < ANSWER_SECONDS


def test_an_empty_answer_counts_as_a_failure() -> None:
    forward, clock = Resolver({"empty": frozenset()}), Clock()
    hosts = lookup(forward, clock=clock)
    hosts.addresses("empty")
    clock.now += FAILURE_SECONDS
    hosts.addresses("empty")
    assert forward.calls == ["empty", "empty"]


def test_reverse_and_forward_are_cached_apart() -> None:
    forward = Resolver({"ws": frozenset({"10.0.0.9"})})
    reverse = Resolver({"10.0.0.9": frozenset({"ws"})})
    hosts = lookup(forward, reverse)
    assert (hosts.addresses("ws"), hosts.names("10.0.0.9")) == (frozenset({"10.0.0.9"}),
                                                               frozenset({"ws"}))
    assert hosts.names("ws") == frozenset()
    assert (forward.calls, reverse.calls) == (["ws"], ["10.0.0.9", "ws"])


def test_the_cache_is_bounded() -> None:
    forward = Resolver({f"h{n}": frozenset({f"10.0.0.{n}"}) for n in range(5)})
    hosts = lookup(forward, max_entries=3)
    for n in range(5):
        hosts.addresses(f"h{n}")
    hosts.addresses("h4")
    hosts.addresses("h0")  # pushed out by h3 and h4: asked again
    assert forward.calls == ["h0", "h1", "h2", "h3", "h4", "h0"]


def test_the_real_resolvers_answer_for_localhost() -> None:
    hosts = HostLookup()
    assert "127.0.0.1" in hosts.addresses("localhost")
    assert "localhost" in hosts.names("127.0.0.1")
    assert hosts.addresses("no-such-host.invalid") == frozenset()
