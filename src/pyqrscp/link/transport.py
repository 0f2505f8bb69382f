"""pynetdicom's server, extended through its public ``request_handler`` hook.

Two things need a seat in the connection's own thread, before and around the association:
the TLS handshake (pynetdicom's own TLS server handshakes in its accept loop, so one silent client
would block everyone) and pyqrscp's own C-MOVE/C-GET service (pynetdicom's decodes every file and
opens sub-associations with the server AE's title).  ``ArchiveRequestHandler`` provides both seats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from socketserver import TCPServer
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from pyqrscp.dimse.pdus import ASSOCIATE_RQ, ae_titles, pad_ae_titles
from pyqrscp.errors import ServiceFailed
from pyqrscp.link.connections import UnassociatedAllowance

LOGGER = logging.getLogger(__name__)

RequestRouter = Callable[[Association, Any, int], bool]
"""Called with (association, DIMSE request, context ID); returns True when it served it."""


class ArchiveAssociation(Association):
    """An acceptor association whose requests may be served by pyqrscp before pynetdicom.

    Adds no state: instances are pynetdicom's own associations with this class swapped in, so
    everything pynetdicom does to them keeps working.
    """

    router: RequestRouter | None = None

    def _serve_request(self, msg: Any, context_id: int) -> None:
        router = type(self).router
        if router is not None and not self._sent_release and router(self, msg, context_id):
            return
        try:
            super()._serve_request(msg, context_id)
        except ServiceFailed:
            self.abort()


class ArchiveRequestHandler(RequestHandler):
    """Per-connection handler; runs in the connection's thread (ThreadingMixIn)."""

    server: ArchiveServerSocket

    def handle(self) -> None:
        """Admit the connection within the unassociated allowance, run the preparation (TLS),
        and start pynetdicom's association, which counts itself as unassociated from then on."""
        allowance = self.server.allowance
        host = str(self.client_address[0])
        if allowance is not None and not allowance.admit(host):
            self.request.close()
            return
        try:
            prepare = self.server.prepare_connection
            if prepare is not None and not prepare(self):
                return
            super().handle()
        finally:
            if allowance is not None:
                allowance.arrived(host)

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        assoc.__class__ = self.server.association_class
        watch_association_request(assoc)
        return assoc


class ArchiveServerSocket(ThreadedAssociationServer):
    """The listening server; owns the hooks and stops without touching the AE's private list."""

    association_class: type[ArchiveAssociation] = ArchiveAssociation
    prepare_connection: Callable[[ArchiveRequestHandler], bool] | None = None
    last_turn: float = 0.0
    """When the accept loop last passed (monotonic seconds): the systemd watchdog's proof."""

    def service_actions(self) -> None:
        self.last_turn = time.monotonic()
        super().service_actions()
    allowance: UnassociatedAllowance | None = None

    def shutdown(self) -> None:
        TCPServer.shutdown(self)
        self.server_close()


def watch_association_request(assoc: Any) -> None:
    """Let pynetdicom decode the A-ASSOCIATE-RQ with NUL-padded AE titles (:func:`pad_ae_titles`)
    and log, with the peer and its AE titles, every request refused before the acceptance rules
    see it: undecodable (pynetdicom then aborts) or of an unsupported protocol version
    (pynetdicom rejects).  Only the first A-ASSOCIATE-RQ is watched; later PDUs take
    pynetdicom's own decoder."""
    dul = assoc.dul
    decode = getattr(dul, "_decode_pdu", None)
    if decode is None:
        return

    def decode_pdu(bytestream: bytearray) -> tuple[Any, str]:
        if not bytestream or bytestream[0] != ASSOCIATE_RQ:
            return decode(bytestream)  # type: ignore[no-any-return]
        del dul._decode_pdu
        received = pad_ae_titles(bytes(bytestream))
        try:
            pdu, event = decode(bytearray(received))
        except Exception as exc:
            log_refused_request(assoc, received, f"undecodable A-ASSOCIATE-RQ ({exc})")
            raise
        version = getattr(pdu, "protocol_version", 1)
        if version != 1:
            log_refused_request(assoc, received, f"unsupported protocol version {version}")
        return pdu, event

    dul._decode_pdu = decode_pdu


def log_refused_request(assoc: Any, pdu: bytes, reason: str) -> None:
    """One warning line: peer address, both AE titles as received (escaped), the reason."""
    called, calling = (_printable(title.decode("latin-1").strip()) for title in ae_titles(pdu))
    LOGGER.warning("Association Refused %s: %s -> %s: %s", assoc.requestor.address, calling,
                   called, _printable(reason))


def _printable(text: str) -> str:
    """``text`` with control and non-ASCII characters escaped (``\\x00``), for one log line."""
    return text.encode("unicode_escape").decode("ascii")


def bind_archive_server(ae: AE, address: tuple[str, int], evt_handlers: list[Any],
                        router: RequestRouter | None,
                        prepare_connection: Callable[[ArchiveRequestHandler], bool] | None
                        ) -> ArchiveServerSocket:
    """Bind and listen, not yet serving (``server_address`` has the port).

    Connections wait in the listen queue until :func:`serve_in_background`, so that what must
    happen between the two (a switch of user, opening the storage areas) is done before any
    association is served.
    """
    association_class = type("BoundArchiveAssociation", (ArchiveAssociation,),
                             {"router": staticmethod(router) if router else None})
    server = ae.make_server(address, evt_handlers=evt_handlers,
                            server_class=ArchiveServerSocket,
                            request_handler=ArchiveRequestHandler)
    if not isinstance(server, ArchiveServerSocket):
        raise TypeError("pynetdicom ignored server_class")
    server.association_class = association_class
    server.prepare_connection = prepare_connection
    return server


def serve_in_background(server: ArchiveServerSocket) -> None:
    """Serve a bound server in a daemon thread."""
    thread = threading.Thread(target=server.serve_forever, name="pyqrscp-accept", daemon=True)
    thread.start()
