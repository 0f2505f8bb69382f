"""The HTTP listener: uvicorn serving the web application in a thread of the archive process.

The socket is bound first (with the privileges pyqrscp started with, as the DICOM port is);
serving starts once the storage areas are open and stops before they close.  With TLS on, the
DICOM server's own SSL context is used, so the key, certificate, profile and client
certificate rule are the same on both ports.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time

import uvicorn
from starlette.types import ASGIApp

from pyqrscp.errors import ListenError, StartupError
from pyqrscp.web.settings import WebSettings

LOGGER = logging.getLogger(__name__)
START_DEADLINE = 60.0
STOP_GRACE = 10


class WebListener:
    """Bind, serve, stop; :attr:`port` is the real port (useful with port 0)."""

    def __init__(self, settings: WebSettings, tls: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.tls = tls
        self.socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        """Set first thing by :meth:`stop`, for requests that wait on their client."""

    @property
    def port(self) -> int:
        if self.socket is None:
            raise StartupError("the HTTP listener is not bound")
        return int(self.socket.getsockname()[1])

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def bind(self) -> None:
        """Bind the listening socket; ListenError when that is refused.

        Its protocol is named (``IPPROTO_TCP``, not 0) so that asyncio turns Nagle's
        algorithm off on each connection, as it does for the sockets it creates itself: with
        it on, an answer written in two pieces (headers, then body) waited for the client's
        delayed acknowledgement, about 40 ms per request on a kept-alive connection.
        """
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            sock.listen(128)
        except OSError as error:
            sock.close()
            raise ListenError(f"cannot listen for HTTP on {host}:{port}: "
                              f"{error.strerror or error}") from error
        sock.set_inheritable(True)
        self.socket = sock

    def start(self, app: ASGIApp) -> None:
        """Serve ``app`` in a thread; return once uvicorn accepts connections."""
        if self.socket is None:
            self.bind()
        sock = self.socket
        if sock is None:
            raise StartupError("the HTTP listener is not bound")
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                timeout_keep_alive=5, timeout_graceful_shutdown=STOP_GRACE,
                                server_header=False)
        config.load()
        config.ssl = self.tls
        server = uvicorn.Server(config)
        sockets = [sock]
        self._server = server
        self._thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets)),
                                        name="pyqrscp-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_DEADLINE
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StartupError("the HTTP listener did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop accepting, let running requests finish (bounded), close the socket."""
        self.stopping.set()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(timeout=STOP_GRACE + 5)
        if self.socket is not None:
            self.socket.close()
            self.socket = None
