"""pynetdicom's acceptor loops, made to wait for events instead of sleeping to poll.

pynetdicom's DUL thread sleeps ``_run_loop_delay`` (1 ms) whenever a turn of its loop finds
nothing to do, and an association's reactor sleeps 1 ms at every turn.  On the way of one
C-ECHO that is about six sleeps: before the A-ASSOCIATE-RQ is read, before the A-ASSOCIATE-AC
is sent, before the request is read, served and answered, and the same for the release; some
5 ms of every association, and 2 x 1,000 wake-ups a second for every idle one.

Here both threads wait instead, and are woken by what they wait for:

- the DUL thread in ``select`` on its socket and on a :class:`Waker`, written when something
  is queued for it to send or when it is told to stop;
- the association's thread on a :class:`threading.Event`, set when a DIMSE message or an ACSE
  primitive is queued for it, and when the DUL thread ends.

Both loops are pynetdicom 3.0's, turn for turn (the same steps in the same order); only the
sleeps are replaced, and a wait ends at the latest after :data:`LONGEST_WAIT` so that the ARTIM
and network timers are checked as before.  :func:`install` puts them on an acceptor association
before its threads start; :func:`usable` says whether this pynetdicom has what they rely on
(without it pynetdicom's own loops run, unchanged).
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC
from pynetdicom.pdu_primitives import A_ASSOCIATE, P_DATA
from pynetdicom.utils import set_timer_resolution

_WAKE = "_pyqrscp_wake"
"""Where the reactor's wake-up event is kept on the association (as ``internals.attach``)."""

LONGEST_WAIT = 0.05
"""Longest wait without an event: how late an expired ARTIM or network timer may be seen."""

DUL_LOGGER = logging.getLogger("pynetdicom.dul")
ASSOCIATION_LOGGER = logging.getLogger("pynetdicom.association")
"""pynetdicom's own loggers: the loops say what pynetdicom's would, where it would."""

_DUL_NAMES = ("_kill_thread", "artim_timer", "event_queue", "to_provider_queue", "to_user_queue",
              "_process_recv_primitive", "_is_transport_event", "_idle_timer", "state_machine",
              "socket", "stop_dul", "kill_dul", "_run_loop_delay", "_send")
_ASSOCIATION_NAMES = ("_kill", "_dul_ready", "_reactor_checkpoint", "_is_paused",
                      "_started_dul", "_server", "_timer_resolution",
                      "_serve_request", "network_timeout_response", "kill")
_DIMSE_NAMES = ("get_msg", "msg_queue")
_ACSE_NAMES = ("is_release_requested", "is_aborted", "send_release")


def usable(assoc: Association) -> bool:
    """Does this association's pynetdicom have the internals both loops rely on (those of
    pynetdicom 3.0)?"""
    dul, dimse, acse = (getattr(assoc, name, None) for name in ("dul", "dimse", "acse"))
    return (isinstance(dul, DULServiceProvider) and not dul.is_alive()
            and all(hasattr(dul, name) for name in _DUL_NAMES)
            and all(hasattr(assoc, name) for name in _ASSOCIATION_NAMES)
            and all(hasattr(dimse, name) for name in _DIMSE_NAMES)
            and all(hasattr(acse, name) for name in _ACSE_NAMES))


class Waker:
    """A socket pair whose reading end becomes readable when :meth:`wake` is called while the
    owner waits (a socket, so that ``select`` takes it on every platform)."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self.waiting = False

    def fileno(self) -> int:
        return self._reader.fileno()

    def wake(self) -> None:
        """Wake the owner if it waits (or is about to: it sets :attr:`waiting` before it
        looks for work one last time)."""
        if self.waiting:
            try:
                self._writer.send(b"\0")
            except OSError:  # full: already woken; closed: the owner has ended
                pass

    def drain(self) -> None:
        try:
            while self._reader.recv(256):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


LAZY_BATCH = 16
"""Items queued lazily (:meth:`WakingQueue.put_lazily`) that wake the consumer."""


class WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that calls ``wake`` after every put, and lets a producer wait until its
    consumer has taken enough (:meth:`wait_below`) instead of polling its size."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake
        self.closed = False

    def _get(self) -> Any:
        item = super()._get()
        self.not_full.notify_all()  # called with the queue's lock held
        return item

    def close(self) -> None:
        """The consumer has stopped: nobody waits in :meth:`wait_below` any longer."""
        with self.not_full:
            self.closed = True
            self.not_full.notify_all()

    def wait_below(self, count: int, timeout: float) -> bool:
        """Wait until fewer than ``count`` items are queued; False after ``timeout`` seconds
        or once the consumer has stopped with ``count`` or more still queued."""
        with self.not_full:
            self.not_full.wait_for(lambda: self._qsize() < count or self.closed, timeout)
            return self._qsize() < count

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()

    def put_lazily(self, item: Any) -> None:
        """Queue without waking the consumer for this item alone: it goes with the next item
        put, once :data:`LAZY_BATCH` wait, or at the consumer's next look (within
        :data:`LONGEST_WAIT`); for messages nobody waits for at once."""
        super().put(item)
        if self.qsize() >= LAZY_BATCH:
            self._wake()


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DUL service provider with a loop that waits in ``select``.

    Instances are pynetdicom's own providers with this class swapped in (before the thread
    starts) and a :class:`Waker` added; ``socket_held`` and ``input_buffered`` are set by
    the association's channel when it has one.
    """

    waker: Waker
    wake_user: Callable[[], None]
    socket_held: Callable[[], bool] = staticmethod(lambda: False)
    input_buffered: Callable[[], bool] = staticmethod(lambda: False)
    kept_accept: bytes | None = None
    """The A-ASSOCIATE-AC to send as it is, for an acceptance kept (:func:`send_kept_accept`)."""
    accept_sent: Callable[[bytes], None] | None = None
    """Told the bytes of the A-ASSOCIATE-AC once sent (:func:`record_accept`)."""

    def run(self) -> None:
        try:
            self._event_loop()
        finally:
            self.waker.close()
            if isinstance(self.to_provider_queue, WakingQueue):
                self.to_provider_queue.close()
            self.wake_user()

    def _event_loop(self) -> None:
        """pynetdicom 3.0's ``run_reactor``, with :meth:`_wait` for its sleep."""
        self._idle_timer.start()
        self.assoc._dul_ready.set()
        while not self._kill_thread and self._turn():
            pass

    def _turn(self) -> bool:
        """One turn of the loop; False when it failed and ended the association
        (:meth:`_abort_hard`)."""
        if self.artim_timer.expired:
            self.event_queue.put("Evt18")
        try:
            if self._process_recv_primitive():
                pass
            elif self._is_transport_event():
                self._idle_timer.restart()
        except Exception:  # noqa: BLE001 - pynetdicom's own reaction, kept as it is
            self._abort_hard()
            return False
        try:
            event = self.event_queue.get(block=False)
        except queue.Empty:
            self._wait()
            return True
        if event != "Evt7" or not self._send_kept_accept():
            self.state_machine.do_action(event)
        return True

    def turn_until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Run the loop's turns in the calling thread, before this DUL's own thread starts
        (:func:`accept_inline`), until ``done()``; False when the loop was told to stop,
        failed, or ``deadline`` (monotonic seconds) passed first.  A failure of a state
        machine action ends the association as a failed turn does."""
        self._idle_timer.start()
        while not done():
            if self._kill_thread or time.monotonic() >= deadline:
                return False
            try:
                if not self._turn():
                    return False
            except Exception:  # noqa: BLE001 - in the DUL's thread it would end the loop
                self._abort_hard()
                return False
        return True

    def _send_kept_accept(self) -> bool:
        """pynetdicom's AE-7 (Sta3 + Evt7 -> Sta6) with the A-ASSOCIATE-AC's bytes kept from an
        earlier association of the same request and acceptance, instead of building and
        encoding the PDU from the primitive again; False (nothing done) without them."""
        encoded, self.kept_accept = self.kept_accept, None
        machine = self.state_machine
        if encoded is None or machine.current_state != "Sta3" or self.socket is None:
            return False
        self.to_provider_queue.get(False)  # the A-ASSOCIATE primitive the bytes stand for
        self.socket.send(encoded)
        evt.trigger(self.assoc, evt.EVT_FSM_TRANSITION,
                    {"action": "AE-7", "current_state": "Sta3", "fsm_event": "Evt7",
                     "next_state": "Sta6"})
        machine.transition("Sta6")
        return True

    def _send(self, pdu: Any) -> None:
        """pynetdicom's, which tells :attr:`accept_sent` the A-ASSOCIATE-AC's bytes."""
        recorder = self.accept_sent
        if recorder is None or not isinstance(pdu, A_ASSOCIATE_AC) or self.socket is None:
            super()._send(pdu)
            return
        self.accept_sent = None
        encoded = pdu.encode()
        self.socket.send(encoded)
        evt.trigger(self.assoc, evt.EVT_PDU_SENT, {"pdu": pdu})
        recorder(bytes(encoded))

    def _abort_hard(self) -> None:
        """What pynetdicom does when its loop fails: an A-ABORT straight to the socket,
        bypassing the state machine, and both threads stopped."""
        DUL_LOGGER.exception("Exception in DUL.run(), aborting association")
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        if self.socket is not None:
            self.socket.send(abort_pdu.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True

    def _wait(self) -> None:
        """Until the socket has data, something is queued to send, or a stop is asked for."""
        waker = self.waker
        waker.waiting = True
        try:
            if (self._kill_thread or not self.to_provider_queue.empty()
                    or not self.event_queue.empty()):
                return
            watched: list[Any] = [waker]
            if self.socket_held():  # the holder reads (pushed-back bytes too), wakes us after
                pass
            elif self.input_buffered():
                return
            else:
                sock = self.socket.socket if self.socket is not None else None
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    return
                if sock is not None:
                    watched.append(sock)
            try:
                readable, _, _ = select.select(watched, [], [], LONGEST_WAIT)
            except (OSError, ValueError):  # closed by another thread: the next turn sees it
                return
            if waker in readable:
                waker.drain()
        finally:
            waker.waiting = False

    def kill_dul(self) -> None:
        super().kill_dul()
        self.waker.wake()

    def stop_dul(self) -> bool:
        """pynetdicom's: stop the loop once the state machine is idle (Sta1), and wait for it;
        woken at once and joined instead of polled."""
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self.waker.wake()
        if threading.current_thread() is not self and self.is_alive():
            self.join()
        return True


def install(assoc: Association) -> bool:
    """Make a new acceptor association's DUL and reactor wait for events; False (nothing
    changed) when this pynetdicom lacks what they rely on.  Call before its threads start;
    the association's class must run :func:`run_reactor` as its ``_run_reactor``."""
    if not usable(assoc):
        return False
    wake_user = threading.Event()
    dul = assoc.dul
    dul.__class__ = EventDrivenDUL
    event_dul = cast(EventDrivenDUL, dul)
    event_dul.waker = Waker()
    event_dul.wake_user = wake_user.set
    event_dul.to_provider_queue = WakingQueue(event_dul.waker.wake)
    event_dul.to_user_queue = WakingQueue(wake_user.set)
    assoc.dimse.msg_queue = WakingQueue(wake_user.set)
    assoc.__dict__[_WAKE] = wake_user
    return True


def accept_inline(assoc: Association) -> bool:
    """Run an acceptor association in the calling thread (its own) with its DUL's loop turned
    there too until the A-ASSOCIATE-AC is sent, and only then start the DUL's thread; False
    (nothing done) where :func:`install` did not install the event-driven DUL.

    pynetdicom starts the DUL's thread first and hands the A-ASSOCIATE-RQ to the association's
    thread, which hands the A-ASSOCIATE-AC back: two hand-offs between threads and a thread
    start before the peer has its answer.  Here one thread reads the request, negotiates
    (``EVT_REQUESTED``, the acceptance rules, pynetdicom's negotiation) and sends the answer,
    the same steps in the same order; the DUL's thread starts while the peer reads it.
    Anything else than a request in time (the peer closes, the ACSE timeout, a failure) is
    left to pynetdicom's own acceptor once the DUL's thread runs, as before."""
    dul = assoc.dul
    if not isinstance(dul, EventDrivenDUL) or assoc._started_dul or not assoc.is_acceptor:
        return False
    assoc._started_dul = True
    to_user, to_provider, events = dul.to_user_queue, dul.to_provider_queue, dul.event_queue
    machine = dul.state_machine
    timeout = assoc.acse_timeout
    deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
    # Sta1 with nothing queued: the connection closed (Sta1 with Evt5 queued: not yet opened)
    dul.turn_until(lambda: not to_user.empty()
                   or (machine.current_state == "Sta1" and events.empty()), deadline)
    waiting = list(to_user.queue)[:1]
    if not waiting or not isinstance(waiting[0], A_ASSOCIATE):
        dul.start()
        Association.run_reactor(assoc)  # pynetdicom's acceptor: it finds what is queued
        return True
    assoc.requestor.primitive = dul.receive_pdu(wait=False)
    evt.trigger(assoc, evt.EVT_REQUESTED, {})
    if not assoc.is_aborted and not assoc.is_rejected:
        assoc.acse.negotiate_association()
    dul.turn_until(lambda: to_provider.empty() and events.empty(),
                   time.monotonic() + LONGEST_WAIT)
    dul.start()
    if assoc.is_established:
        with set_timer_resolution(assoc._timer_resolution):
            assoc._run_reactor()
    else:  # rejected or aborted: pynetdicom's kill waits for the DUL to close the connection
        assoc.kill()
    sock = dul.socket
    server = assoc._server
    if server is not None and sock is not None and sock.socket is not None:
        server.shutdown_request(sock.socket)
    return True


def discard_unstarted(assoc: Association) -> None:
    """Free what :func:`install` gave an association that will never run (its wake-up
    socket pair)."""
    dul = assoc.dul
    if isinstance(dul, EventDrivenDUL):
        dul.waker.close()


def run_reactor(assoc: Association) -> bool:
    """Run the association's reactor, pynetdicom 3.0's ``_run_reactor`` turn for turn, but
    waiting for its wake-up event instead of sleeping 1 ms per turn; False (nothing run) when
    :func:`install` did not install the event."""
    wake = assoc.__dict__.get(_WAKE)
    if not isinstance(wake, threading.Event):
        return False
    messages = assoc.dimse.msg_queue
    while not assoc._kill:
        # parked while it waits, so that a thread pausing it (pynetdicom's send_* methods, a
        # Storage Commitment report) need not wait for a turn; it stops at the checkpoint
        assoc._is_paused = True
        # a turn serves one message: with more queued (one wake-up for several) the event
        # is already spent, so waiting would leave them for up to LONGEST_WAIT
        if messages.empty():
            wake.wait(LONGEST_WAIT)
        wake.clear()
        assoc._reactor_checkpoint.wait()
        assoc._is_paused = False
        if _turn(assoc):
            return True
    return True


def _turn(assoc: Association) -> bool:
    """One turn of pynetdicom's reactor loop; True when the association has ended."""
    logger = ASSOCIATION_LOGGER
    context_id, msg = assoc.dimse.get_msg(block=False)
    if msg and context_id is not None:
        assoc._serve_request(msg, context_id)
    if assoc.is_established and assoc.acse.is_release_requested():
        assoc.acse.send_release(is_response=True)
        logger.info("Association Released")
        assoc.is_released = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_RELEASED, {})
        assoc.kill()
        return True
    if assoc.acse.is_aborted():
        text = "Association Aborted"
        if assoc.acse.is_aborted("a-p-abort"):
            text += " (A-P-ABORT)"
        logger.info(text)
        assoc.dul.receive_pdu(wait=False)  # EVT_ACSE_RECV for its subscribers
        assoc.is_aborted = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_ABORTED, {})
        assoc.kill()
        return True
    if not assoc.dul.is_alive():
        assoc.kill()
        return True
    if assoc.dul.idle_timer_expired():
        logger.error("Network timeout reached")
        if assoc.network_timeout_response == "A-RELEASE":
            assoc._is_paused = True
            assoc._reactor_checkpoint.wait()
            assoc.release()
            assoc._is_paused = False
        else:
            assoc.abort()
        assoc.kill()
        return True
    return False



def record_accept(dul: DULServiceProvider, recorder: Callable[[bytes], None]) -> None:
    """Have the DUL tell ``recorder`` the bytes of the A-ASSOCIATE-AC it sends (nothing where
    the event-driven loop is not installed)."""
    if isinstance(dul, EventDrivenDUL):
        dul.accept_sent = recorder


def send_kept_accept(dul: DULServiceProvider, encoded: bytes) -> bool:
    """Have the DUL send ``encoded`` for the A-ASSOCIATE-AC about to be queued, as it is;
    False where the event-driven loop is not installed, or while pynetdicom's PDU events have
    handlers (they are given the PDU object, which is not made then)."""
    if not isinstance(dul, EventDrivenDUL) or dul.assoc.get_handlers(evt.EVT_PDU_SENT):
        return False
    dul.kept_accept = encoded
    return True


def send_pdu_lazily(dul: DULServiceProvider, primitive: P_DATA) -> None:
    """Queue a P-DATA primitive for the DUL thread without a wake-up of its own (pending
    C-MOVE responses: one wake-up of the DUL per batch instead of per response); pynetdicom's
    ``send_pdu`` where the event-driven loop is not installed."""
    queued = getattr(dul, "to_provider_queue", None)
    if isinstance(queued, WakingQueue):
        queued.put_lazily(primitive)
    else:
        dul.send_pdu(primitive)


def wait_for_sending(dul: DULServiceProvider, count: int, timeout: float) -> bool:
    """Wait until fewer than ``count`` primitives wait for the DUL thread to send them; False
    after ``timeout`` seconds or once the DUL has stopped.  Woken by the DUL taking one where
    the event-driven loop is installed; pynetdicom's own DUL is looked at every 0.5 ms."""
    queued = getattr(dul, "to_provider_queue", None)
    if isinstance(queued, WakingQueue):
        return queued.wait_below(count, timeout)
    deadline = time.monotonic() + timeout
    while dul.to_provider_queue.qsize() >= count:
        if not dul.is_alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True
