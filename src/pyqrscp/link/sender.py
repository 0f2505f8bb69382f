"""pyqrscp's own C-STORE SCU for C-MOVE sub-associations: PDUs packed with ``struct``.

One thread writes a request and reads its response on a blocking socket; there is no reactor
thread that could take the response first (pynetdicom's ``send_c_store`` can lose a C-STORE-RSP to
its association reactor and then waits the whole DIMSE timeout, see docs/performance.md).
Datasets travel as the bytes given, never decoded here.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from collections.abc import Sequence

from pyqrscp.dimse.acse import (
    AcceptedContext,
    ProposedContext,
    associate_rq,
    parse_associate_ac,
)
from pyqrscp.dimse.commands import store_request
from pyqrscp.dimse.pdus import (
    ABORT,
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    P_DATA_TF,
    RELEASE_RQ,
    Buffer,
    MessageAssembler,
    message_buffers,
    pdvs,
    read_pdu,
)
from pyqrscp.errors import PeerUnavailable
from pyqrscp.link.responses import Reply, StoreResponse, await_store_response
from pyqrscp.link.writes import gathers, send_parts

LOGGER = logging.getLogger(__name__)




class StoreAssociation:
    """An established association on which pyqrscp is the C-STORE SCU."""

    def __init__(self, sock: socket.socket, accepted: dict[int, AcceptedContext],
                 peer_max_pdu: int, dimse_timeout: float, acse_timeout: float) -> None:
        self.sock = sock
        self.accepted = accepted
        self.peer_max_pdu = peer_max_pdu
        self.dimse_timeout = dimse_timeout
        self.acse_timeout = acse_timeout

    @classmethod
    def open(cls, host: str, port: int, calling_aet: str, called_aet: str,
             contexts: Sequence[ProposedContext], *, max_pdu: int = 16384,
             acse_timeout: float = 30, dimse_timeout: float = 60,
             ssl_context: ssl.SSLContext | None = None) -> StoreAssociation:
        """Connect and negotiate; raise :class:`PeerUnavailable` when that fails."""
        try:
            sock: socket.socket = socket.create_connection((host, port), timeout=acse_timeout)
        except OSError as error:
            raise PeerUnavailable(f"cannot connect to {host}:{port}: {error}") from error
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
            sock.sendall(associate_rq(calling_aet, called_aet, contexts, max_pdu))
            pdu_type, body = read_pdu(sock)
        except (OSError, PeerUnavailable) as error:
            sock.close()
            raise PeerUnavailable(f"association with {called_aet} failed: {error}") from error
        if pdu_type == ASSOCIATE_AC:
            accepted, peer_max_pdu = parse_associate_ac(body, contexts)
            return cls(sock, accepted, peer_max_pdu, dimse_timeout, acse_timeout)
        sock.close()
        if pdu_type == ASSOCIATE_RJ and len(body) >= 4:
            raise PeerUnavailable(f"{called_aet} rejected the association (result {body[1]}, "
                                  f"source {body[2]}, reason {body[3]})")
        raise PeerUnavailable(f"{called_aet} answered the association request with PDU "
                              f"type 0x{pdu_type:02X}")

    def context_for(self, sop_class: str, transfer_syntax: str,
                    convertible: Sequence[str] = ()) -> AcceptedContext | None:
        """The context that takes the bytes as stored; else the first accepted one in a syntax
        of ``convertible`` (in proposal order)."""
        candidates = [cx for cx in self.accepted.values() if cx.abstract_syntax == sop_class]
        exact = next((cx for cx in candidates if cx.transfer_syntax == transfer_syntax), None)
        if exact is not None:
            return exact
        return next((cx for cx in sorted(candidates, key=lambda c: c.context_id)
                     if cx.transfer_syntax in convertible), None)

    def send_c_store(self, context: AcceptedContext, sop_instance: str, dataset: Buffer,
                     message_id: int, originator_aet: str = "",
                     originator_message_id: int | None = None) -> StoreResponse:
        """Send one C-STORE-RQ and wait for its response; :class:`PeerUnavailable` on a lost
        association, another response, or when the DIMSE timeout passes (the caller aborts)."""
        self.send_request(context, sop_instance, dataset, message_id, originator_aet,
                          originator_message_id)
        return self.read_response(sop_instance, message_id)

    def send_request(self, context: AcceptedContext, sop_instance: str, dataset: Buffer,
                     message_id: int, originator_aet: str = "",
                     originator_message_id: int | None = None) -> None:
        """The first half of :meth:`send_c_store`: the request, its command and the first
        batch of its dataset in one write where the socket allows it."""
        command = store_request(context.abstract_syntax, sop_instance, message_id,
                                originator_aet, originator_message_id)
        try:
            self.sock.settimeout(self.dimse_timeout)
            for buffers in message_buffers(context.context_id, command, dataset,
                                           self.peer_max_pdu, gathers(self.sock)):
                send_parts(self.sock, buffers)
        except OSError as error:
            raise PeerUnavailable(f"C-STORE of {sop_instance}: {error}") from error

    def read_response(self, sop_instance: str, message_id: int) -> StoreResponse:
        """The second half of :meth:`send_c_store`: the C-STORE-RSP to ``message_id``."""
        def unexpected(_reply: Reply) -> None:
            raise PeerUnavailable(f"unexpected response to C-STORE of {sop_instance}")

        try:
            response = await_store_response(self._read_reply, message_id, self.dimse_timeout,
                                            unexpected)
        except OSError as error:
            raise PeerUnavailable(f"C-STORE of {sop_instance}: {error}") from error
        if response is None:
            raise PeerUnavailable(f"C-STORE of {sop_instance}: no response within "
                                  f"{self.dimse_timeout} s")
        return response

    def _read_reply(self, wait: float) -> Reply:
        """The next message's command, read within ``wait`` seconds."""
        self.sock.settimeout(wait)
        return Reply.of_command(self._read_command())

    def _read_command(self) -> dict[int, bytes]:
        """Read P-DATA until a whole message; its command (a dataset after it is dropped)."""
        assembler = MessageAssembler()
        while True:
            pdu_type, body = read_pdu(self.sock)
            if pdu_type != P_DATA_TF:
                raise PeerUnavailable(f"peer sent PDU type 0x{pdu_type:02X} instead of P-DATA")
            for context_id, header, fragment, _end in pdvs(body):
                assembler.add(context_id, header, fragment)
                if assembler.complete and assembler.command is not None:
                    return assembler.command

    def release(self) -> None:
        """A-RELEASE (bounded by the ACSE timeout); abort when the peer does not answer."""
        try:
            self.sock.settimeout(self.acse_timeout)
            self.sock.sendall(struct.pack(">BxI4x", RELEASE_RQ, 4))
            while read_pdu(self.sock)[0] == P_DATA_TF:
                pass
        except (OSError, PeerUnavailable) as error:
            LOGGER.warning("release of the sub-association failed: %s", error)
        self.close()

    def abort(self) -> None:
        try:
            self.sock.settimeout(1)
            self.sock.sendall(struct.pack(">BxI2xBB", ABORT, 4, 0, 0))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
