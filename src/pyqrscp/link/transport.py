"""pynetdicom's server, extended through its public ``request_handler`` hook.

Two things need a seat in the connection's own thread, before and around the association:
the TLS handshake (pynetdicom's own TLS server handshakes in its accept loop, so one silent client
would block everyone) and pyqrscp's own services (pynetdicom's decode every file and open C-MOVE
sub-associations with the server AE's title).  ``ArchiveRequestHandler`` provides the first,
``RoutedRequestHandler`` both (the second through pynetdicom's internals, :mod:`internals`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from socketserver import TCPServer

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from pyqrscp.dimse.pdus import ASSOCIATE_RQ, ae_titles, pad_ae_titles
from pyqrscp.link import internals
from pyqrscp.link.connections import UnassociatedAllowance, peer_of
from pyqrscp.link.decoded import DecodedRequests
from pyqrscp.link.internals import DimseMessage
from pyqrscp.link.negotiated import NegotiatedOutcomes
from pyqrscp.link.reactor import install as install_event_loops

LOGGER = logging.getLogger(__name__)

RequestRouter = Callable[[Association, DimseMessage, int], bool]
"""Called with (association, DIMSE request, context ID); returns True when it served it."""


class ArchiveRequestHandler(RequestHandler):
    """Per-connection handler; runs in the connection's thread (ThreadingMixIn)."""

    server: ArchiveServerSocket

    def handle(self) -> None:
        """Admit the connection within the unassociated allowance, run the preparation (TLS),
        and start pynetdicom's association, which counts itself as unassociated from then on."""
        allowance = self.server.allowance
        remote = self.remote  # as the association's requestor will have it
        peer = (str(remote.address), int(remote.port))
        if allowance is not None and not allowance.admit(peer):
            self.request.close()
            return
        try:
            prepare = self.server.prepare_connection
            if prepare is not None and not prepare(self):
                return
            self.run_association()
        finally:
            if allowance is not None:
                allowance.arrived(peer)


    def run_association(self) -> None:
        """Create the association and start it (pynetdicom's ``handle``)."""
        super().handle()


class RoutedRequestHandler(internals.CreatesAssociations, ArchiveRequestHandler):
    """:class:`ArchiveRequestHandler` whose associations route their requests to pyqrscp's
    services first and have their A-ASSOCIATE-RQ watched (pynetdicom's internals only)."""

    def association_created(self, assoc: Association) -> None:
        prepare_association(self.server, assoc)

    def association_connected(self, assoc: Association) -> None:
        if assoc.dul.socket is not None:
            internals.close_socket_always(assoc.dul.socket)


def prepare_association(server: ArchiveServerSocket, assoc: Association) -> None:
    """pyqrscp's settings of a new acceptor association, before it has its connection:
    requests routed to pyqrscp's services, the event-driven loops, the A-ASSOCIATE-RQ
    watched, negotiations remembered."""
    routed_class = server.association_class
    if routed_class is not None:
        internals.route_requests(assoc, routed_class)
    install_event_loops(assoc)
    watch_association_request(assoc, server.decoded_requests)
    if server.negotiated is not None:
        internals.remember_negotiations(assoc, server.negotiated)


class ArchiveServerSocket(ThreadedAssociationServer):
    """The listening server; owns the hooks and stops without touching the AE's private list."""

    association_class: type[internals.RoutedAssociation] | None = None
    decoded_requests: DecodedRequests | None = None
    negotiated: NegotiatedOutcomes | None = None
    prepare_connection: Callable[[ArchiveRequestHandler], bool] | None = None
    last_turn: float = 0.0
    """When the accept loop last passed (monotonic seconds): the systemd watchdog's proof."""

    def service_actions(self) -> None:
        self.last_turn = time.monotonic()
        super().service_actions()
    allowance: UnassociatedAllowance | None = None

    spares: internals.SpareAcceptors | None = None
    """Associations made ahead of their connection (pynetdicom's internals only)."""

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket],
                        client_address: tuple[str, int] | str) -> None:
        """Hand a connection straight to a spare association, whose own thread admits it
        (:meth:`admit_in_own_thread`), when nothing must run before the association (no TLS
        handshake); else pynetdicom's way, a handler thread that makes or takes one."""
        spares = self.spares
        if (spares is not None and self.prepare_connection is None
                and isinstance(request, socket.socket) and isinstance(client_address, tuple)):
            assoc = spares.take()
            if assoc is not None:
                internals.open_first(assoc, request, client_address, self.admit_in_own_thread)
                return
        super().process_request(request, client_address)

    def admit_in_own_thread(self, assoc: Association) -> bool:
        """Admit a connection its association's thread serves from the start.  That thread is
        live but not counted until admitted (:func:`~pyqrscp.link.internals.set_counted`):
        two such threads waiting to admit must not refuse each other.  The place taken is
        held until the thread counts, so a connection admitted next counts this one."""
        allowance = self.allowance
        peer = peer_of(assoc)
        if allowance is not None and not allowance.admit(peer):
            return False
        internals.set_counted(assoc, True)
        if allowance is not None:
            allowance.arrived(peer)
        return True

    def shutdown(self) -> None:
        TCPServer.shutdown(self)
        self.server_close()
        if self.spares is not None:
            self.spares.close()

    def bind(self, event: evt.EventType, handler: Callable[..., object],
             args: list[object] | None = None) -> None:
        super().bind(event, handler, args)
        if self.spares is not None:
            self.spares.clear()

    def unbind(self, event: evt.EventType, handler: Callable[..., object]) -> None:
        super().unbind(event, handler)
        if self.spares is not None:
            self.spares.clear()


def watch_association_request(assoc: Association,
                              decoded: DecodedRequests | None = None) -> None:
    """Let pynetdicom decode the A-ASSOCIATE-RQ with NUL-padded AE titles (:func:`pad_ae_titles`)
    and log, with the peer and its AE titles, every request refused before the acceptance rules
    see it: undecodable (pynetdicom then aborts) or of an unsupported protocol version
    (pynetdicom rejects).  Only the first A-ASSOCIATE-RQ is watched; later PDUs take
    pynetdicom's own decoder.  With ``decoded``, a request of the same bytes as one decoded
    lately is not decoded again (unless pynetdicom's PDU events have handlers: they would
    miss it), makes its primitive once, and is noted on the association, whose negotiation
    may then take a kept outcome (:mod:`negotiated`)."""
    dul = assoc.dul
    if decoded is not None and (assoc.get_handlers(evt.EVT_PDU_RECV)
                                or assoc.get_handlers(evt.EVT_DATA_RECV)):
        decoded = None

    def watching(decode: internals.PduDecoder) -> internals.PduDecoder:
        def decode_pdu(bytestream: bytearray) -> tuple[object, str]:
            if not bytestream or bytestream[0] != ASSOCIATE_RQ:
                return decode(bytestream)
            internals.restore_pdu_decoder(dul)
            received = pad_ae_titles(bytes(bytestream))
            known = decoded.get(received) if decoded is not None else None
            if known is not None:
                internals.note_request(assoc, received)
                return known
            try:
                pdu, event = decode(bytearray(received))
            except Exception as exc:
                log_refused_request(assoc, received, f"undecodable A-ASSOCIATE-RQ ({exc})")
                raise
            version = getattr(pdu, "protocol_version", 1)
            if version != 1:
                log_refused_request(assoc, received, f"unsupported protocol version {version}")
            elif decoded is not None:
                decoded.keep(received, (pdu, event))
                if isinstance(pdu, A_ASSOCIATE_RQ) and decoded.get(received) is not None:
                    internals.remember_primitive(pdu)  # kept: not a request with credentials
                    internals.note_request(assoc, received)
            return pdu, event
        return decode_pdu

    internals.replace_pdu_decoder(dul, watching)


def log_refused_request(assoc: Association, pdu: bytes, reason: str) -> None:
    """One warning line: peer address, both AE titles as received (escaped), the reason."""
    called, calling = (_printable(title.decode("latin-1").strip()) for title in ae_titles(pdu))
    LOGGER.warning("Association Refused %s: %s -> %s: %s", assoc.requestor.address, calling,
                   called, _printable(reason))


def _printable(text: str) -> str:
    """``text`` with control and non-ASCII characters escaped (``\\x00``), for one log line."""
    return text.encode("unicode_escape").decode("ascii")


def bind_archive_server(ae: AE, address: tuple[str, int], evt_handlers: list[EventHandlerType],
                        router: RequestRouter | None,
                        prepare_connection: Callable[[ArchiveRequestHandler], bool] | None
                        ) -> ArchiveServerSocket:
    """Bind and listen, not yet serving (``server_address`` has the port).

    With a ``router`` (pynetdicom's internals usable), each association routes its requests
    to it before pynetdicom's service classes; without, pynetdicom serves every request
    through ``evt_handlers``.  Connections wait in the listen queue until
    :func:`serve_in_background`, so that what must happen between the two (a switch of user,
    opening the storage areas) is done before any association is served.
    """
    handler_class = ArchiveRequestHandler if router is None else RoutedRequestHandler
    server = ae.make_server(address, evt_handlers=evt_handlers,
                            server_class=ArchiveServerSocket, request_handler=handler_class)
    if not isinstance(server, ArchiveServerSocket):
        raise TypeError("pynetdicom ignored server_class")
    if router is not None:
        spares = internals.SpareAcceptors(
            lambda: _prepared(server, internals.unconnected_acceptor(server)))
        server.association_class = type("BoundArchiveAssociation",
                                        (internals.RoutedAssociation,),
                                        {"route": staticmethod(router),
                                         "ended": staticmethod(spares.refill)})
        server.spares = spares
    else:
        server.bind(evt.EVT_CONN_OPEN, close_socket_at_end)
    server.prepare_connection = prepare_connection
    server.decoded_requests = DecodedRequests()
    server.negotiated = NegotiatedOutcomes()
    # every association gets its contexts from the acceptance rules (EVT_REQUESTED): a copy of
    # the AE's for each new connection would be thrown away
    server.contexts = []
    return server


def _prepared(server: ArchiveServerSocket, assoc: Association) -> Association:
    prepare_association(server, assoc)
    return assoc


def close_socket_at_end(event: evt.Event) -> None:
    """EVT_CONN_OPEN, on the public path: close the connection's socket once pynetdicom has
    shut it down (EVT_CONN_CLOSE), which pynetdicom 3.0 skips when the shutdown fails (the
    peer reset the connection); with the internals, :func:`internals.close_socket_always`."""
    assoc_socket = event.assoc.dul.socket
    sock = assoc_socket.socket if assoc_socket is not None else None
    if sock is not None:
        event.assoc.bind(evt.EVT_CONN_CLOSE, _close_socket, [sock])


def _close_socket(_event: evt.Event, sock: socket.socket) -> None:
    sock.close()


def serve_in_background(server: ArchiveServerSocket) -> None:
    """Serve a bound server in a daemon thread."""
    if server.spares is not None:
        server.spares.refill()
    thread = threading.Thread(target=server.serve_forever, name="pyqrscp-accept", daemon=True)
    thread.start()
