"""Host name lookups for the HostTable rules, cached for a bounded time.

dcmqrscp resolves at every association.  Resolving once per process instead would turn one DNS
hiccup at the first association into a lockout until restart, and would never see a peer that
changes address; so an answer is kept for :data:`ANSWER_SECONDS`, a failure (or an empty
answer) for :data:`FAILURE_SECONDS` only.  The resolvers and the clock are parameters: the
cache policy is tested with plain functions, the real lookups by a system test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from pyqrscp.config import Peer

Resolver = Callable[[str], frozenset[str]]
"""A lookup: raises :class:`OSError` when it fails."""

ANSWER_SECONDS = 60.0
FAILURE_SECONDS = 2.0
MAX_ENTRIES = 1024


def addresses_of(host: str) -> frozenset[str]:
    """The addresses a host name resolves to (forward lookup)."""
    return frozenset(str(info[4][0]) for info in socket.getaddrinfo(host, None))


def names_of(address: str) -> frozenset[str]:
    """The names (lower case) an address resolves to (reverse lookup)."""
    name, aliases, _ = socket.gethostbyaddr(address)
    return frozenset(n.lower() for n in (name, *aliases))


class _Cache:
    """One lookup's answers by key, each with the clock time it expires at."""

    def __init__(self, resolve: Resolver, clock: Callable[[], float], answer_seconds: float,
                 failure_seconds: float, max_entries: int) -> None:
        self.resolve = resolve
        self.clock = clock
        self.answer_seconds = answer_seconds
        self.failure_seconds = failure_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> frozenset[str]:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and self.clock() < entry[0]:
            return entry[1]
        try:
            found = self.resolve(key)
        except (OSError, UnicodeError):  # UnicodeError: a name the IDNA codec refuses
            found = frozenset()
        lifetime = self.answer_seconds if found else self.failure_seconds
        with self._lock:
            self._entries[key] = (self.clock() + lifetime, found)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return found


class HostLookup:
    """Forward and reverse lookups with bounded-lifetime caching; safe for many threads."""

    def __init__(self, forward: Resolver = addresses_of, reverse: Resolver = names_of, *,
                 clock: Callable[[], float] = time.monotonic,
                 answer_seconds: float = ANSWER_SECONDS,
                 failure_seconds: float = FAILURE_SECONDS,
                 max_entries: int = MAX_ENTRIES) -> None:
        self._forward = _Cache(forward, clock, answer_seconds, failure_seconds, max_entries)
        self._reverse = _Cache(reverse, clock, answer_seconds, failure_seconds, max_entries)

    def addresses(self, host: str) -> frozenset[str]:
        """The addresses of ``host``; empty when it does not resolve (now)."""
        return self._forward.get(host)

    def names(self, address: str) -> frozenset[str]:
        """The names of ``address``; empty when it has none (now)."""
        return self._reverse.get(address)


def peer_host_names(peer_address: str, hosts: HostLookup | None) -> frozenset[str]:
    """The peer's address and the names its reverse lookup gives (lower case); no lookup when
    ``hosts`` is None (``-dhl``)."""
    names = {peer_address.lower()}
    if hosts is not None:
        names.update(hosts.names(peer_address))
    return frozenset(names)


def host_matches(peer: Peer, peer_address: str, host_names: frozenset[str],
                 hosts: HostLookup | None) -> bool:
    """Does the configured host of ``peer`` denote the connecting machine?"""
    configured = peer.host.lower()
    if configured in host_names:
        return True
    if hosts is None:
        return False
    return peer_address in hosts.addresses(configured)
