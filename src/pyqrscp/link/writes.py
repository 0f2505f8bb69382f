"""Writing several buffers to a socket in one system call."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence


def gathers(sock: socket.socket) -> bool:
    """Can several buffers go to ``sock`` in one system call (``sendmsg``; not through TLS,
    which would make a record of each)?"""
    return not isinstance(sock, ssl.SSLSocket) and hasattr(sock, "sendmsg")


def send_parts(sock: socket.socket, parts: Sequence[bytes | memoryview]) -> None:
    """Send every part, in one system call where the socket allows it (one TCP segment train:
    the peer wakes once); part by part through TLS and where there is no ``sendmsg``
    (Windows).  At most 1,024 parts (the system's limit for one ``sendmsg``)."""
    if len(parts) == 1 or not gathers(sock):
        for part in parts:
            sock.sendall(part)
        return
    views = [memoryview(part) for part in parts]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first:] if first else views)
        while first < len(views) and sent >= len(views[first]):
            sent -= len(views[first])
            first += 1
        if first < len(views) and sent:
            views[first] = views[first][sent:]
