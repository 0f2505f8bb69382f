"""An accepted association's socket, held by the thread that serves a stream of messages.

pynetdicom hands every PDU from its DUL thread to the association's thread, and every PDU sent
back the other way, through queues that both threads poll with short sleeps; with a 130 KB
instance in nine 16 KB PDUs that costs more than storing it.  While a service holds
the channel, the DUL thread does not read the socket (it still sends what it is given and runs
its timers): the holder reads whole PDUs, serves the messages it takes, writes its answers
directly, and *pushes back* everything else.  Pushed-back bytes are what pynetdicom reads next,
exactly as they came from the peer, so releases, aborts, protocol errors and every other
service keep pynetdicom's handling.

A channel is held only between messages with nothing of the peer's in pynetdicom's hands
(:meth:`Channel.held`), so no message is ever split between the two readers.

The socket's timeout (:class:`~pyqrscp.link.connections.ReadTimeouts`) is set once before
pynetdicom's reader starts, and changed afterwards only by the thread about to read, with no
send in progress: CPython clears a socket's timeout before it makes the descriptor blocking,
and a ``recv`` or ``send`` of another thread in between fails with ``BlockingIOError``.
"""

from __future__ import annotations

import io
import itertools
import logging
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from pynetdicom.association import Association
from pynetdicom.pdu_primitives import P_DATA

from pyqrscp.dimse import pdus
from pyqrscp.dimse.commands import (
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    COMMAND_FIELD,
    command_text,
    command_us,
)
from pyqrscp.errors import PeerUnavailable
from pyqrscp.link import internals
from pyqrscp.link.connections import ReadTimeouts, is_unassociated
from pyqrscp.link.idle import ACTIVE_DELAY, polling
from pyqrscp.link.reactor import EventDrivenDUL, wait_for_sending
from pyqrscp.link.titles import calling_aet
from pyqrscp.link.writes import gathers, send_parts

LOGGER = logging.getLogger(__name__)

_ATTRIBUTE = "channel"
_RECEIVE_EVENTS = frozenset({"Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt17",
                             "Evt19"})
"""State-machine events of PDUs received (PS3.8 9.2.1); the others are of PDUs sent."""

Take = Callable[[int, dict[int, bytes]], bool]
"""Called with (context ID, command elements) once a command is whole: serve it (True) or
push it back for pynetdicom (False)."""
SinkFactory = Callable[[Association, str, int, str, str], "pdus.DatasetSink | None"]
"""Called with (association, transfer syntax, command field, affected SOP class UID, affected
SOP instance UID) when a message's command is whole and a dataset follows: the
:class:`pdus.DatasetSink` (an ``io.BytesIO``, as pynetdicom requires) that bounds and keeps
its dataset."""


@contextmanager
def held_channel(assoc: Association) -> Iterator[Channel | None]:
    """:meth:`Channel.held` of the association's channel; None when it has none or it cannot
    be held now (the caller then goes through pynetdicom)."""
    channel = Channel.of(assoc)
    if channel is None:
        yield None
        return
    with channel.held() as held:
        yield held


READ_AHEAD = 65536
"""The most a holder's read takes from the socket at once; what it does not use stays unread,
for the holder's next read or, once the hold ends, for pynetdicom."""
QUEUED_PDUS = 64
"""PDUs queued for pynetdicom's DUL at most, per association."""
_ROOM_CHECK = 0.5
"""How often a sender waiting for room looks whether the connection is gone."""


def wait_for_dul_room(assoc: Association) -> None:
    """Return once fewer than :data:`QUEUED_PDUS` PDUs wait in the DUL's queue;
    :class:`PeerUnavailable` when the DUL stops sending (the connection is gone: a peer that
    reads nothing is dropped by the socket's send timeout)."""
    dul = assoc.dul
    while not wait_for_sending(dul, QUEUED_PDUS, _ROOM_CHECK):
        if not dul.is_alive() or internals.dul_state(dul) != "Sta6":
            raise PeerUnavailable("the connection is closed")


class PushedBack(Exception):
    """What the peer sent is pynetdicom's to handle, and has been given back to it unread."""


class MessageBroken(PushedBack):
    """A message taken by the holder failed after too much of it was read to give it back
    (or its dataset overran its limit): the association must be aborted."""


@dataclass(frozen=True, slots=True)
class Received:
    """A whole DIMSE message read from a held channel."""

    context_id: int
    command: dict[int, bytes]
    dataset: bytes | pdus.DatasetSink | None

    def us(self, element: int) -> int:
        """An unsigned short of the command (0 when absent)."""
        return command_us(self.command, element)

    def text(self, element: int) -> str:
        """A UI/AE value of the command, without its padding."""
        return command_text(self.command, element)


class Channel:
    """The pair of seats on one association's socket: pynetdicom's and a holder's."""

    def __init__(self, assoc: Association, limit: int, sink_of: SinkFactory | None = None,
                 timeouts: ReadTimeouts | None = None) -> None:
        assoc_socket = assoc.dul.socket
        if assoc_socket is None:
            raise ValueError("a channel needs the association's socket")
        self.assoc = assoc
        self.sink_of = sink_of
        self._aborting = False
        self.dul = assoc.dul
        self.assoc_socket = assoc_socket
        self.limit = limit
        self.timeouts = timeouts
        self.stalled = False
        self._timeout: float | None = None
        self.hold = threading.Lock()
        self.send_lock = threading.Lock()
        self.holder: int | None = None
        self.cancelled: set[int] = set()
        self._unread = bytearray()
        self._recv: Callable[[int], bytearray] = assoc_socket.recv
        self._send: Callable[[bytes], None] = assoc_socket.send
        self._transport_event: Callable[[], bool] = lambda: False
        self._deferred: list[bytes] = []

    @classmethod
    def install(cls, assoc: Association, limit: int, sink_of: SinkFactory | None = None,
                timeouts: ReadTimeouts | None = None) -> Channel:
        """Seat a channel between pynetdicom and the socket of a new connection, before
        pynetdicom's threads start; ``limit`` is the longest PDU accepted (a longer announced
        length closes the connection); ``sink_of`` gives every message's dataset its bound,
        whoever reads it; ``timeouts`` bound every read and send.  Only with pynetdicom's
        internals usable (:func:`internals.internals_usable`)."""
        channel = cls(assoc, limit, sink_of, timeouts)
        channel._settle_timeout()
        channel._recv, channel._send = internals.replace_socket_io(
            channel.assoc_socket, channel._pynetdicom_recv, channel._pynetdicom_send)
        channel._transport_event = internals.replace_transport_event(
            channel.dul, channel._pynetdicom_transport_event)
        if sink_of is not None:
            internals.replace_receive_primitive(assoc.dimse, channel._pynetdicom_receive)
        if isinstance(channel.dul, EventDrivenDUL):
            channel.dul.socket_held = channel.hold.locked
            channel.dul.input_buffered = lambda: bool(channel._unread)
        internals.attach(channel.dul, _ATTRIBUTE, channel)
        return channel

    @staticmethod
    def of(assoc: Association) -> Channel | None:
        """The association's channel; None when it has none (pynetdicom's public path)."""
        channel = internals.attached(assoc.dul, _ATTRIBUTE)
        return channel if isinstance(channel, Channel) else None

    # -- pynetdicom's seat -----------------------------------------------------------------

    def _pynetdicom_recv(self, nr_bytes: int) -> bytearray:
        if nr_bytes > self.limit:
            raise OSError(f"peer announced a {nr_bytes}-byte PDU (limit {self.limit})")
        if self.stalled:
            raise TimeoutError("the peer stopped in the middle of a PDU")
        if not self._unread:
            return self._recv_from_socket(nr_bytes)
        taken = self._unread[:nr_bytes]
        del self._unread[:nr_bytes]
        if len(taken) < nr_bytes:
            taken += self._recv_from_socket(nr_bytes - len(taken))
        return taken

    def _recv_from_socket(self, nr_bytes: int) -> bytearray:
        self._settle_timeout()
        try:
            return self._recv(nr_bytes)
        except TimeoutError:
            self._log_stall()
            raise

    def _pynetdicom_send(self, data: bytes) -> None:
        """What pynetdicom's DUL sends, one PDV per P-DATA-TF (``pdus.one_pdv_per_pdu``)."""
        with self.send_lock:
            self._send(pdus.one_pdv_per_pdu(data))

    def _pynetdicom_transport_event(self) -> bool:
        """The DUL's "is there a PDU to read?" step: nothing while held; pushed-back bytes
        first."""
        if not self.hold.acquire(blocking=False):
            if internals.is_ending(self.assoc) or internals.dul_state(self.dul) == "Sta13":
                # torn down (an abort from another thread): pynetdicom must be able to close
                # the connection now, not after its ARTIM timeout; the holder then fails out
                return self._transport_event()
            return False
        try:
            if self._unread:
                internals.read_pdu(self.dul)
                return True
            return self._transport_event()
        finally:
            self.hold.release()

    def _pynetdicom_receive(self, receive: Callable[[P_DATA], None], primitive: P_DATA) -> None:
        """The DIMSE provider's P-DATA step (in the DUL thread): once a message's command is
        whole, its dataset goes on into a sink instead of pynetdicom's unbounded buffer; a peer
        that overruns the sink is aborted (pynetdicom's own reaction to an invalid PDU)."""
        receive(primitive)
        message = internals.message_in_progress(self.assoc.dimse)
        if message is None or message.context_id is None or message.data_set is None:
            return
        sink = message.data_set
        if type(sink) is io.BytesIO:
            command = message.command_set
            bound = self._sink(int(message.context_id), int(command.CommandField or 0),
                               str(command.get("AffectedSOPClassUID") or ""),
                               str(command.get("AffectedSOPInstanceUID") or ""))
            if bound is None:
                return
            bound.write(sink.getvalue())
            message.data_set = cast(io.BytesIO, bound)
            sink = message.data_set
        if getattr(sink, "overrun", False) and not self._aborting:
            self._aborting = True
            LOGGER.error("Aborting the association of %s: %s sent past its limit",
                         self.peer(), type(message).__name__)
            internals.abort_from_dul(self.dul)

    def drop_unfinished(self) -> None:
        """The association is over: drop the datasets of messages pynetdicom never finished or
        that were complete but never served (a spool file must not outlive its connection)."""
        dimse = self.assoc.dimse
        message = internals.message_in_progress(dimse)
        datasets: list[object] = [message.data_set if message is not None else None]
        datasets += internals.queued_message_datasets(dimse)
        for dataset in datasets:
            discard = getattr(dataset, "discard", None)
            if discard is not None:
                discard()

    def _sink(self, context_id: int, command_field: int, sop_class_uid: str,
              sop_instance_uid: str) -> pdus.DatasetSink | None:
        """The sink for a message's dataset, None without a factory or a known context."""
        context = internals.accepted_context(self.assoc, context_id)
        if self.sink_of is None or context is None:
            return None
        try:
            return self.sink_of(self.assoc, str(context.transfer_syntax[0]), command_field,
                                sop_class_uid, sop_instance_uid)
        except Exception:  # noqa: BLE001 - in the DUL thread: keep pynetdicom's buffer
            LOGGER.exception("no dataset bound for %s", self.peer())
            return None

    def peer(self) -> str:
        """``CALLING (address)`` for log lines."""
        return f"{calling_aet(self.assoc)} ({self.assoc.requestor.address})"

    # -- the holder's seat -----------------------------------------------------------------

    @contextmanager
    def held(self) -> Iterator[Channel | None]:
        """Hold the socket for this thread; yields None (and holds nothing) when pynetdicom
        has part of a message, a whole one or a PDU not yet handled: that one is its to
        finish."""
        try:
            with self.hold:
                if not self.assoc.is_established or self._in_flight():
                    yield None
                    return
                self.holder = threading.get_ident()
                try:
                    with polling(self.dul, ACTIVE_DELAY):  # the DUL has nothing to read now
                        yield self
                finally:
                    self.holder = None
                    self._flush_at_release()
        finally:
            if isinstance(self.dul, EventDrivenDUL):
                self.dul.waker.wake()  # the socket is the DUL's to watch again

    def _flush_at_release(self) -> None:
        try:
            self.flush()
        except PeerUnavailable as error:  # pynetdicom finds the connection closed next
            LOGGER.error("response to %s not sent: %s", self.peer(), error)

    def held_here(self) -> bool:
        return self.holder == threading.get_ident()

    def _in_flight(self) -> bool:
        """Has pynetdicom read anything of the peer's that it has not finished with?  (Events
        of PDUs it is sending do not count.)"""
        return bool(self._unread) or internals.has_received_unhandled(self.assoc,
                                                                      _RECEIVE_EVENTS)

    def send(self, context_id: int, command: bytes, dataset: pdus.Buffer | None,
             defer: bool = False) -> None:
        """One DIMSE message, framed for the peer's maximum PDU length as it is sent.

        ``defer``: a short message (a pending response) may wait, and go out in one write with
        the next message sent, or before the holder next waits for the peer, or when the hold
        ends, whichever comes first: the order on the wire is unchanged."""
        max_pdu = int(self.assoc.requestor.maximum_length or 0)
        if defer:
            self._deferred.append(pdus.message(context_id, command, bytes(dataset)
                                               if dataset is not None else None, max_pdu))
            return
        self._send_batches(context_id, command, dataset, max_pdu)

    def flush(self) -> None:
        """Send what :meth:`send` deferred."""
        if self._deferred:
            self._send_batches()

    def framed(self, messages: list[tuple[int, bytes, pdus.Buffer | None]]
               ) -> Iterator[list[pdus.Buffer]]:
        """``(context ID, command, dataset)`` messages framed for this peer ahead of time, as
        :meth:`send` would send them one after the other: the batches for
        :meth:`send_framed`, the short messages before the last in its first batch.  Only the
        first batch is framed now; the rest is framed as it is sent (without gathered writes
        each batch is a copy: a large dataset is never held framed whole)."""
        sock = self.assoc_socket.socket
        if sock is None:
            raise PeerUnavailable("the connection is closed")
        max_pdu = int(self.assoc.requestor.maximum_length or 0)
        *leading, (context_id, command, dataset) = messages
        lead: list[pdus.Buffer] = [
            pdus.message(lead_context, lead_command,
                         bytes(lead_dataset) if lead_dataset is not None else None, max_pdu)
            for lead_context, lead_command, lead_dataset in leading]
        batches = pdus.message_buffers(context_id, command, dataset, max_pdu, gathers(sock))
        return itertools.chain([[*lead, *next(batches)]], batches)

    def send_framed(self, batches: Iterator[list[pdus.Buffer]]) -> None:
        """Send what :meth:`framed` made (after anything deferred, in the same write)."""
        self._send_batches(framed=batches)

    def _send_batches(self, context_id: int = 0, command: bytes | None = None,
                      dataset: pdus.Buffer | None = None, max_pdu: int = 0,
                      framed: Iterator[list[pdus.Buffer]] | None = None) -> None:
        """What was deferred, then the message (if any) in the same write: PDU headers and
        views of the data gathered (no copy of the dataset) where the socket allows it."""
        sock = self.assoc_socket.socket
        deferred, self._deferred = self._deferred, []
        if sock is None:
            raise PeerUnavailable("the connection is closed")
        batches: Iterator[list[pdus.Buffer]] = framed if framed is not None else iter(())
        if command is not None:
            batches = pdus.message_buffers(context_id, command, dataset, max_pdu, gathers(sock))
        try:
            with self.send_lock:
                send_parts(sock, [*deferred, *next(batches, [])])
                for batch in batches:
                    send_parts(sock, batch)
        except OSError as error:
            raise PeerUnavailable(f"sending failed: {error}") from error

    def next_message(self, wait: float, take: Take) -> Received | None:
        """The next message, if ``take`` takes it; None when nothing began within ``wait``
        seconds.  Anything else is pushed back for pynetdicom and :class:`PushedBack` raised:
        a message ``take`` refused, a PDU other than P-DATA (release, abort), anything
        malformed or cut short.  A taken message too long to give back (more than a PDU's
        limit) that fails, or whose dataset overruns its sink, raises :class:`MessageBroken`
        instead."""
        assembler = pdus.MessageAssembler()
        consumed: list[bytes] = []
        decided = kept = False
        try:
            while True:
                if not self.assoc.is_established:
                    raise PushedBack("the association has ended")
                if not consumed and not kept and not self._ready(wait):
                    return None
                pdu_type, body = self._read_pdu(consumed)
                if pdu_type != pdus.P_DATA_TF:
                    raise PushedBack(f"PDU type 0x{pdu_type:02X}")
                if decided and sum(map(len, consumed)) > self.limit:
                    consumed.clear()  # a dataset is not kept twice: past here, no push-back
                    kept = True
                for context_id, header, fragment, end in pdus.pdvs(body):
                    assembler.add(context_id, header, fragment)
                    if not decided and assembler.command is not None:
                        decided = True
                        if not take(context_id, assembler.command):
                            raise PushedBack("a message served by pynetdicom")
                        self._bind_sink(assembler)
                    if assembler.sink is not None and assembler.sink.overrun:
                        raise MessageBroken("the dataset went on past its limit")
                    if assembler.complete and assembler.command is not None:
                        if end < len(body):  # the next message began in the same PDU
                            self._push_back([pdus.p_data_pdu(body[end:])])
                        return Received(context_id, assembler.command, assembler.dataset)
        except Exception as error:  # noqa: BLE001 - whatever it is, pynetdicom gets the bytes
            if assembler.sink is not None:
                assembler.sink.discard()
            if kept or isinstance(error, MessageBroken):
                raise error if isinstance(error, MessageBroken) else MessageBroken(
                    repr(error)) from error
            self._push_back(consumed)
            raise error if isinstance(error, PushedBack) else PushedBack(repr(error)) from error

    def _bind_sink(self, assembler: pdus.MessageAssembler) -> None:
        command = assembler.command
        if command is None or not assembler.has_dataset or assembler.context_id is None:
            return
        assembler.sink = self._sink(assembler.context_id, command_us(command, COMMAND_FIELD),
                                    command_text(command, AFFECTED_SOP_CLASS_UID),
                                    command_text(command, AFFECTED_SOP_INSTANCE_UID))

    def _read_pdu(self, consumed: list[bytes]) -> tuple[int, bytes]:
        """Read one PDU, appending its raw bytes to ``consumed`` as they arrive."""
        head = self._read_exactly(6, consumed)
        pdu_type, length = struct.unpack(">BxI", head)
        if pdu_type not in pdus.PDU_TYPES or length > self.limit:
            raise PushedBack(f"PDU type 0x{pdu_type:02X} of {length} bytes")
        body = self._read_exactly(length, consumed)
        internals.restart_idle_timer(self.dul)
        return pdu_type, body

    def _ready(self, wait: float) -> bool:
        self.flush()  # the peer may be waiting for it
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
        """``size`` bytes of the peer's, the unread ones first, appended to ``consumed``.  A
        short read takes what has arrived, up to :data:`READ_AHEAD` bytes, and keeps the rest
        unread (a small PDU, header and body, in one system call); a longer one is received
        into one buffer of ``size`` bytes (and copied once more into the bytes returned).
        Bytes read before a failure stay unread, in order, for the next reader."""
        if len(self._unread) < size and size > READ_AHEAD:
            data = self._receive_into(size)
        else:
            while len(self._unread) < size:
                self._read_ahead()
            data = bytes(self._unread[:size])
            del self._unread[:size]
        consumed.append(data)
        return data

    def _read_ahead(self) -> None:
        """One read of the socket into the unread bytes: at least one byte, at most
        :data:`READ_AHEAD`; :class:`PeerUnavailable` when the connection closes."""
        sock = self._reading_socket()
        try:
            received = sock.recv(READ_AHEAD)
        except TimeoutError:
            self._log_stall()
            raise
        if not received:
            raise PeerUnavailable("connection closed by peer")
        self._unread += received

    def _receive_into(self, size: int) -> bytes:
        """``size`` bytes, the unread ones first, the rest received in place."""
        buffer = bytearray(size)
        filled = len(self._unread)
        buffer[:filled] = self._unread
        self._unread.clear()
        view = memoryview(buffer)
        try:
            while filled < size:
                sock = self._reading_socket()
                try:
                    received = sock.recv_into(view[filled:])
                except TimeoutError:
                    self._log_stall()
                    raise
                if not received:
                    raise PeerUnavailable("connection closed by peer")
                filled += received
        except BaseException:
            self._unread[:0] = view[:filled]
            raise
        return bytes(buffer)

    def _reading_socket(self) -> socket.socket:
        sock: socket.socket | None = self.assoc_socket.socket
        if sock is None:
            raise PeerUnavailable("the connection is closed")
        self._settle_timeout()
        return sock

    # -- timeouts --------------------------------------------------------------------------

    def _settle_timeout(self) -> None:
        """Give the socket the timeout of the connection's phase (before or after its
        A-ASSOCIATE-RQ).  Called only by the thread about to read (pynetdicom's DUL thread, or
        the holder), and under the send lock, so no other thread is inside ``recv`` or
        ``send`` while the socket's mode changes."""
        if self.timeouts is None:
            return
        wanted = self.timeouts.of_phase(associated=not is_unassociated(self.assoc))
        sock = self.assoc_socket.socket
        if wanted == self._timeout or sock is None:
            return
        with self.send_lock:
            sock.settimeout(wanted)
        self._timeout = wanted

    def _log_stall(self) -> None:
        if not self.stalled:
            self.stalled = True
            requestor = self.assoc.requestor
            calling = str(requestor.ae_title or "").strip() or "(no AE title yet)"
            LOGGER.warning("%s (%s) sent part of a PDU and then nothing for %s s: closing the "
                           "connection", calling, requestor.address, self._timeout)

    def _push_back(self, consumed: list[bytes]) -> None:
        """Give bytes back to pynetdicom, ahead of anything still unread."""
        self._unread[:0] = b"".join(consumed)

