"""Writing several buffers to a socket in one system call."""

from __future__ import annotations

import socket
import ssl


def send_parts(sock: socket.socket, parts: list[bytes]) -> None:
    """Send every part, in one system call where the socket allows it (one TCP segment train:
    the peer wakes once); part by part through TLS and where there is no ``sendmsg``
    (Windows)."""
    if len(parts) == 1 or isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg"):
        for part in parts:
            sock.sendall(part)
        return
    views = [memoryview(part) for part in parts]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]
