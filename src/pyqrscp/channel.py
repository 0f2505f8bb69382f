"""An accepted association's socket, held by the thread that serves a stream of messages.

pynetdicom hands every PDU from its DUL thread to the association's thread, and every PDU sent
back the other way, through queues that both threads poll with short sleeps; with a 130 KB
instance in nine 16 KB PDUs that costs more than storing it (issue 8).  While a service holds
the channel, the DUL thread does not read the socket (it still sends what it is given and runs
its timers): the holder reads whole PDUs, serves the messages it takes, writes its answers
directly, and *pushes back* everything else.  Pushed-back bytes are what pynetdicom reads next,
exactly as they came from the peer, so releases, aborts, protocol errors and every other
service keep pynetdicom's handling.

A channel is held only between messages with nothing of the peer's in pynetdicom's hands
(:meth:`Channel.held`), so no message is ever split between the two readers.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyqrscp import pdus
from pyqrscp.commands import command_text, command_us
from pyqrscp.errors import PeerUnavailable
from pyqrscp.idle import ACTIVE_DELAY, polling

LOGGER = logging.getLogger(__name__)

_ATTRIBUTE = "_pyqrscp_channel"
_RECEIVE_EVENTS = frozenset({"Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt17",
                             "Evt19"})
"""State-machine events of PDUs received (PS3.8 9.2.1); the others are of PDUs sent."""

Take = Callable[[int, dict[int, bytes]], bool]
"""Called with (context ID, command elements) once a command is whole: serve it (True) or
push it back for pynetdicom (False)."""


@contextmanager
def held_channel(assoc: Any) -> Iterator[Channel | None]:
    """:meth:`Channel.held` of the association's channel; None when it has none or it cannot
    be held now (the caller then goes through pynetdicom)."""
    channel = Channel.of(assoc)
    if channel is None:
        yield None
        return
    with channel.held() as held:
        yield held


class PushedBack(Exception):
    """What the peer sent is pynetdicom's to handle, and has been given back to it unread."""


@dataclass(frozen=True, slots=True)
class Received:
    """A whole DIMSE message read from a held channel."""

    context_id: int
    command: dict[int, bytes]
    dataset: bytes | None

    def us(self, element: int) -> int:
        """An unsigned short of the command (0 when absent)."""
        return command_us(self.command, element)

    def text(self, element: int) -> str:
        """A UI/AE value of the command, without its padding."""
        return command_text(self.command, element)


_DUL_INTERNALS = ("_is_transport_event", "_read_pdu_data", "_recv_pdu", "event_queue",
                  "_idle_timer", "_run_loop_delay", "state_machine")
_DIMSE_INTERNALS = ("message", "msg_queue")
_WARNED: list[bool] = []


def holdable(assoc: Any) -> bool:
    """Does this association's pynetdicom have the internals a holder relies on (those of
    pynetdicom 3.0, listed in docs/performance.md)?"""
    dul, dimse = getattr(assoc, "dul", None), getattr(assoc, "dimse", None)
    return (all(hasattr(dul, name) for name in _DUL_INTERNALS)
            and all(hasattr(dimse, name) for name in _DIMSE_INTERNALS))


class Channel:
    """The pair of seats on one association's socket: pynetdicom's and a holder's."""

    def __init__(self, assoc: Any, limit: int) -> None:
        self.assoc = assoc
        self.dul = assoc.dul
        self.assoc_socket = assoc.dul.socket
        self.limit = limit
        self.hold = threading.Lock()
        self.send_lock = threading.Lock()
        self.holder: int | None = None
        self.cancelled: set[int] = set()
        self._unread = bytearray()
        self._recv = self.assoc_socket.recv
        self._send = self.assoc_socket.send
        self.holdable = holdable(assoc)
        self._transport_event: Callable[[], bool] = getattr(self.dul, "_is_transport_event",
                                                            lambda: False)

    @classmethod
    def install(cls, assoc: Any, limit: int) -> Channel:
        """Seat a channel between pynetdicom and the socket of a new connection; ``limit`` is
        the longest PDU accepted (a longer announced length closes the connection).  With a
        pynetdicom whose internals differ from those the holder relies on, the channel only
        bounds PDU lengths and is never held (everything takes pynetdicom's own path)."""
        channel = cls(assoc, limit)
        channel.assoc_socket.recv = channel._pynetdicom_recv
        channel.assoc_socket.send = channel._pynetdicom_send
        if channel.holdable:
            channel.dul._is_transport_event = channel._pynetdicom_transport_event
        elif not _WARNED:
            _WARNED.append(True)
            LOGGER.warning("this pynetdicom's internals differ from 3.0's; streams are served "
                           "through pynetdicom's queues (slower)")
        setattr(channel.dul, _ATTRIBUTE, channel)
        return channel

    @staticmethod
    def of(assoc: Any) -> Channel | None:
        return getattr(getattr(assoc, "dul", None), _ATTRIBUTE, None)

    # -- pynetdicom's seat -----------------------------------------------------------------

    def _pynetdicom_recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.limit:
            raise OSError(f"peer announced a {nr_bytes}-byte PDU (limit {self.limit})")
        if not self._unread:
            received: bytearray = self._recv(nr_bytes)
            return received
        taken = self._unread[:nr_bytes]
        del self._unread[:nr_bytes]
        if len(taken) < nr_bytes:
            taken += self._recv(nr_bytes - len(taken))
        return taken

    def _pynetdicom_send(self, data: bytes) -> None:
        with self.send_lock:
            self._send(data)

    def _pynetdicom_transport_event(self) -> bool:
        """The DUL's "is there a PDU to read?" step: nothing while held; pushed-back bytes
        first."""
        if not self.hold.acquire(blocking=False):
            if self.assoc._kill or self.dul.state_machine.current_state == "Sta13":
                # torn down (an abort from another thread): pynetdicom must be able to close
                # the connection now, not after its ARTIM timeout; the holder then fails out
                return bool(self._transport_event())
            return False
        try:
            if self._unread:
                self.dul._read_pdu_data()
                return True
            return bool(self._transport_event())
        finally:
            self.hold.release()

    # -- the holder's seat -----------------------------------------------------------------

    @contextmanager
    def held(self) -> Iterator[Channel | None]:
        """Hold the socket for this thread; yields None (and holds nothing) when pynetdicom
        has part of a message, a whole one or a PDU not yet handled: that one is its to
        finish."""
        with self.hold:
            if not self.holdable or not self.assoc.is_established or self._in_flight():
                yield None
                return
            self.holder = threading.get_ident()
            try:
                with polling(self.dul, ACTIVE_DELAY):  # the DUL has nothing to read meanwhile
                    yield self
            finally:
                self.holder = None

    def held_here(self) -> bool:
        return self.holder == threading.get_ident()

    def _in_flight(self) -> bool:
        """Has pynetdicom read anything of the peer's that it has not finished with?  (Events
        of PDUs it is sending do not count.)"""
        dimse = self.assoc.dimse
        return bool(self._unread or not self.dul._recv_pdu.empty()
                    or dimse.message is not None or not dimse.msg_queue.empty()
                    or any(event in _RECEIVE_EVENTS for event in list(self.dul.event_queue.queue)))

    def send(self, context_id: int, command: bytes, dataset: bytes | None) -> None:
        """One DIMSE message, framed for the peer's maximum PDU length."""
        data = pdus.message(context_id, command, dataset,
                            int(self.assoc.requestor.maximum_length or 0))
        sock = self.assoc_socket.socket
        if sock is None:
            raise PeerUnavailable("the connection is closed")
        try:
            with self.send_lock:
                sock.sendall(data)
        except OSError as error:
            raise PeerUnavailable(f"sending failed: {error}") from error

    def next_message(self, wait: float, take: Take) -> Received | None:
        """The next message, if ``take`` takes it; None when nothing began within ``wait``
        seconds.  Anything else is pushed back for pynetdicom and :class:`PushedBack` raised:
        a message ``take`` refused, a PDU other than P-DATA (release, abort), anything
        malformed or cut short."""
        assembler = pdus.MessageAssembler()
        consumed: list[bytes] = []
        decided = False
        try:
            while True:
                if not self.assoc.is_established:
                    raise PushedBack("the association has ended")
                if not consumed and not self._ready(wait):
                    return None
                pdu_type, body = self._read_pdu(consumed)
                if pdu_type != pdus.P_DATA_TF:
                    raise PushedBack(f"PDU type 0x{pdu_type:02X}")
                for context_id, header, fragment, end in pdus.pdvs(body):
                    assembler.add(context_id, header, fragment)
                    if not decided and assembler.command is not None:
                        decided = True
                        if not take(context_id, assembler.command):
                            raise PushedBack("a message served by pynetdicom")
                    if assembler.complete and assembler.command is not None:
                        if end < len(body):  # the next message began in the same PDU
                            self._push_back([pdus.p_data_pdu(body[end:])])
                        return Received(context_id, assembler.command, assembler.dataset)
        except Exception as error:  # noqa: BLE001 - whatever it is, pynetdicom gets the bytes
            self._push_back(consumed)
            raise error if isinstance(error, PushedBack) else PushedBack(repr(error)) from error

    def _read_pdu(self, consumed: list[bytes]) -> tuple[int, bytes]:
        """Read one PDU, appending its raw bytes to ``consumed`` as they arrive."""
        head = self._read_exactly(6, consumed)
        pdu_type, length = struct.unpack(">BxI", head)
        if pdu_type not in pdus.PDU_TYPES or length > self.limit:
            raise PushedBack(f"PDU type 0x{pdu_type:02X} of {length} bytes")
        body = self._read_exactly(length, consumed)
        self.dul._idle_timer.restart()
        return pdu_type, body

    def _ready(self, wait: float) -> bool:
        if self._unread:
            return True
        sock = self.assoc_socket.socket
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        readable, _, _ = select.select([sock], [], [], wait)  # ValueError once closed elsewhere
        return bool(readable)

    def _read_exactly(self, size: int, consumed: list[bytes]) -> bytes:
        if self._unread:
            data = bytes(self._unread[:size])
            del self._unread[:size]
            consumed.append(data)
            if len(data) == size:
                return data
            return data + self._read_exactly(size - len(data), consumed)
        sock: socket.socket | None = self.assoc_socket.socket
        if sock is None:
            raise PeerUnavailable("the connection is closed")
        return pdus.read_exactly(sock, size, consumed)

    def _push_back(self, consumed: list[bytes]) -> None:
        """Give bytes back to pynetdicom, ahead of anything still unread."""
        self._unread[:0] = b"".join(consumed)
