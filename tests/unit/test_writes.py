"""link/writes.py: gathered writes send every byte, in order, also when the socket takes
only part of them at a time."""

from __future__ import annotations

import socket
import threading

from pyqrscp.link.writes import gathers, send_parts


def test_parts_larger_than_the_socket_buffer_arrive_whole_and_in_order() -> None:
    parts: list[bytes | memoryview] = []
    for n in range(1000):
        chunk = bytes([n % 251]) * (1 + n % 3000)
        parts.append(memoryview(chunk)[1:] if n % 2 else chunk)
    expected = b"".join(parts)
    writer, reader = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    received = bytearray()

    def read_all() -> None:
        while chunk := reader.recv(65536):
            received.extend(chunk)

    thread = threading.Thread(target=read_all)
    thread.start()
    try:
        assert gathers(writer)
        send_parts(writer, parts)
    finally:
        writer.close()
        thread.join(60)
        reader.close()
    assert bytes(received) == expected
