"""Messages framed ahead by the held channel (``Channel.framed``, used by C-GET to have the
next C-STORE-RQ ready while the receiver stores the current instance): only the first batch
is framed before the send, so a large dataset on a path without gathered writes is not held
framed whole while the previous response is awaited."""

from __future__ import annotations

import socket
import threading
import tracemalloc
from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

from pyqrscp.dimse.pdus import message_stream
from pyqrscp.link.channel import Channel

DATASET_BYTES = 32 << 20
SMALL_MAX_PDU = 2048
"""A peer's maximum PDU below pdus.GATHER_FROM: its PDUs are framed into copies."""


@pytest.fixture
def pair() -> Iterator[tuple[Channel, socket.socket]]:
    ours, peer = socket.socketpair()
    assoc = Association(AE(), "acceptor")
    assoc.dul.socket = AssociationSocket(assoc, client_socket=ours)
    assoc.requestor.maximum_length = SMALL_MAX_PDU
    try:
        yield Channel(assoc, limit=1 << 20), peer
    finally:
        ours.close()
        peer.close()


def _read_all(sock: socket.socket, size: int, into: list[bytes]) -> None:
    received = 0
    while received < size:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        into.append(chunk)
        received += len(chunk)


def test_a_large_dataset_is_framed_ahead_one_batch_at_a_time(
        pair: tuple[Channel, socket.socket]) -> None:
    channel, peer = pair
    dataset = memoryview(bytes(range(256)) * (DATASET_BYTES // 256))
    pending, request = b"\x01" * 100, b"\x02" * 120
    tracemalloc.start()
    try:
        framed = channel.framed([(1, pending, None), (3, request, dataset)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < DATASET_BYTES // 8
    expected = b"".join([*message_stream(1, pending, None, SMALL_MAX_PDU),
                         *message_stream(3, request, dataset, SMALL_MAX_PDU)])
    received: list[bytes] = []
    reader = threading.Thread(target=_read_all, args=(peer, len(expected), received))
    reader.start()
    channel.send_framed(framed)
    reader.join(timeout=120)
    assert b"".join(received) == expected
