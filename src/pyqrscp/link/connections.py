"""Limits on a connection before and during its association: how long a read may wait, and
how many connections may wait for their A-ASSOCIATE-RQ.

A connection that has not yet sent its A-ASSOCIATE-RQ is *unassociated*.  Unassociated
connections have their own allowance (``--max-unassociated``, ``--max-unassociated-per-host``)
and their own, short, time limit (``--unassociated-timeout``), so silent connections never take
the places of associations (MaxAssociations counts associations only) and one host cannot use
up the allowance of all others.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pynetdicom.association import Association

from pyqrscp.config.options import Options
from pyqrscp.link.internals import is_counted

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadTimeouts:
    """The socket timeout of a connection before its A-ASSOCIATE-RQ and after it.

    A read waits only once the peer has begun to send (a PDU's header or its body) or while
    waiting for the A-ASSOCIATE-RQ, so the timeout bounds a peer that stops in the middle of a
    PDU; idle associations are pynetdicom's idle timer's (``-to``).  Sends are bounded by the
    same value: a peer that reads nothing for that long is gone.
    """

    unassociated: float
    associated: float

    @classmethod
    def of(cls, options: Options) -> ReadTimeouts:
        """Before the request: the shorter of ``-ta`` and ``--unassociated-timeout``.  After
        it: ``-to`` or ``-td`` (the shorter when both are given), else ``-ta``."""
        given = [t for t in (options.network_timeout, options.dimse_timeout) if t]
        associated = float(min(given) if given else options.acse_timeout)
        unassociated = float(min(options.acse_timeout, options.unassociated_timeout))
        return cls(unassociated=unassociated, associated=associated)

    def of_phase(self, associated: bool) -> float:
        return self.associated if associated else self.unassociated


def is_unassociated(assoc: Association) -> bool:
    """Has this accepted connection not yet delivered an A-ASSOCIATE-RQ?"""
    return getattr(assoc.requestor, "primitive", None) is None


def shut_connection(assoc: Association) -> None:
    """Shut the association's connection down both ways, from any thread: its reader sees the
    end of the stream at once and pynetdicom closes the socket as for a peer that left.  The
    plain socket's ``shutdown`` even under TLS: ``SSLSocket.shutdown`` also drops the TLS state
    the reading thread may be in."""
    assoc_socket = assoc.dul.socket
    sock = assoc_socket.socket if assoc_socket is not None else None
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def set_read_timeout(assoc: Association, seconds: float) -> None:
    """Bound every read and send of the association's socket (pynetdicom's public path: its
    DUL then closes a connection whose peer stops in the middle of a PDU).  Only ever from one
    timeout to another, so the socket stays non-blocking and a read in progress is unharmed."""
    assoc_socket = assoc.dul.socket
    sock = assoc_socket.socket if assoc_socket is not None else None
    if sock is not None and seconds > 0:
        sock.settimeout(seconds)


Peer = tuple[str, int]
"""A connection's peer, (address, port): unique among the live connections."""


def peer_of(assoc: Association) -> Peer:
    """The association's peer as :class:`UnassociatedAllowance` keys it."""
    return str(assoc.requestor.address), int(assoc.requestor.port)


class UnassociatedAllowance:
    """Counts connections that have not sent an A-ASSOCIATE-RQ yet, in all and per host.

    Live associations are counted from ``associations()`` (pynetdicom's acceptor threads);
    connections not yet handed to pynetdicom (a TLS handshake, the association being created)
    are counted while :meth:`admit`'s caller holds their ticket.  The two overlap: an
    association's thread is live before its handler gives the ticket back.  Both are therefore
    keyed by the peer's (address, port), and a connection in both is counted once.  A
    connection handed straight to its association is admitted in that live thread, which is
    not counted until then (:func:`~pyqrscp.link.internals.set_counted`).
    """

    def __init__(self, associations: Callable[[], Iterable[Association]], total: int,
                 per_host: int) -> None:
        self.associations = associations
        self.total = total
        self.per_host = per_host
        self._lock = threading.Lock()
        self._arriving: set[Peer] = set()

    def admit(self, peer: Peer) -> bool:
        """Take a place for a new connection from ``peer``; False when none is free (the caller
        closes the connection).  A place taken must be given back with :meth:`arrived`."""
        host = peer[0]
        with self._lock:
            waiting = {peer_of(assoc) for assoc in self.associations()
                       if is_unassociated(assoc) and is_counted(assoc)} | self._arriving
            total = len(waiting)
            from_host = sum(1 for address, _port in waiting if address == host)
            if total >= self.total or from_host >= self.per_host:
                limit = ("--max-unassociated", self.total) if total >= self.total else (
                    "--max-unassociated-per-host", self.per_host)
                LOGGER.warning("connection from %s closed: %d connection(s) are waiting for "
                               "their A-ASSOCIATE-RQ (%s %d)", host,
                               total if total >= self.total else from_host, *limit)
                return False
            self._arriving.add(peer)
            return True

    def arrived(self, peer: Peer) -> None:
        """The connection is a live pynetdicom association now (or gone): counted from there."""
        with self._lock:
            self._arriving.discard(peer)
