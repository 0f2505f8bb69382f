"""The held channel's reads (``link/channel.py``): a PDU is read whole however the network
segments it, and what follows it stays unread, in order, for the next reader.  A real
socketpair carries the bytes; the channel sits on a pynetdicom association's socket."""

from __future__ import annotations

import socket
import struct
import termios
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

from pyqrscp.dimse.pdus import P_DATA_TF
from pyqrscp.errors import PeerUnavailable
from pyqrscp.link.channel import Channel

try:
    import fcntl
except ImportError:  # no POSIX, as on Windows
    pytest.skip("FIONREAD through fcntl (POSIX)", allow_module_level=True)

SEGMENT = 536
"""A small TCP segment's payload: a peer's large PDU may arrive in pieces this size."""


def _queued(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive queue (FIONREAD)."""
    count = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", count)[0])


class _ReportingSocket(socket.socket):
    """The channel's socket, telling the feeder when a read has left nothing queued."""

    drained: threading.Event

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        self._report()
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        count = super().recv_into(buffer, nbytes, flags)
        self._report()
        return count

    def _report(self) -> None:
        if not _queued(self):
            self.drained.set()


@pytest.fixture
def pair() -> Iterator[tuple[Channel, _ReportingSocket, socket.socket]]:
    plain, peer = socket.socketpair()
    ours = _ReportingSocket(plain.family, plain.type, fileno=plain.detach())
    ours.drained = threading.Event()
    ours.drained.set()
    assoc = Association(AE(), "acceptor")
    assoc.dul.socket = AssociationSocket(assoc, client_socket=ours)
    try:
        yield Channel(assoc, limit=4 << 20), ours, peer
    finally:
        ours.close()
        peer.close()


def _send_in_segments(peer: socket.socket, reader: _ReportingSocket, data: bytes,
                      end: bool = False) -> threading.Thread:
    """Send ``data`` a segment at a time, each once the reader has taken the one before (so
    each of its reads finds one segment)."""
    def feed() -> None:
        try:
            for start in range(0, len(data), SEGMENT):
                if not reader.drained.wait(60):
                    return  # the reader stopped reading: the test fails on what it read
                reader.drained.clear()
                peer.sendall(data[start:start + SEGMENT])
            if end:
                peer.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):  # the test has ended (and closed the sockets)
            return

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    return feeder


def test_a_large_pdu_in_small_segments_is_read_whole_and_what_follows_stays_unread(
        pair: tuple[Channel, _ReportingSocket, socket.socket]) -> None:
    channel, ours, peer = pair
    body = bytes(range(256)) * 4096  # 1 MiB
    following = struct.pack(">BxI", P_DATA_TF, 3) + b"abc"
    pdu = struct.pack(">BxI", P_DATA_TF, len(body)) + body
    feeder = _send_in_segments(peer, ours, pdu + following)
    consumed: list[bytes] = []
    pdu_type, read = channel._read_pdu(consumed)
    assert (pdu_type, read == body) == (P_DATA_TF, True)
    assert b"".join(consumed) == pdu
    feeder.join(timeout=60)
    assert channel._read_pdu([]) == (P_DATA_TF, b"abc")


def test_a_pdu_cut_short_leaves_its_bytes_unread_in_order(
        pair: tuple[Channel, _ReportingSocket, socket.socket]) -> None:
    channel, ours, peer = pair
    head = struct.pack(">BxI", P_DATA_TF, 200_000)
    part = b"x" * 150_000
    feeder = _send_in_segments(peer, ours, head + part, end=True)
    consumed: list[bytes] = []
    with pytest.raises(PeerUnavailable):  # the connection closed mid-PDU
        channel._read_pdu(consumed)
    feeder.join(timeout=60)
    assert b"".join(consumed) + bytes(channel._unread) == head + part
