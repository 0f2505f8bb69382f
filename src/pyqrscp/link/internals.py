"""Every private name of pynetdicom that pyqrscp uses, and the start-up check of all of them.

pyqrscp serves its busiest paths itself: it routes DIMSE requests to its own services before
pynetdicom's service classes (``Association._serve_request``), holds an association's socket
between messages (the DUL's reader, queues and timers), and bounds what a peer may send
(``AssociationSocket.recv``, ``DIMSEServiceProvider.receive_primitive``).  Those hooks reach
into pynetdicom 3.0's internals; this module is the only place that touches them, through small
typed functions, so that a change in pynetdicom shows up here and nowhere else.

:func:`missing_internals` checks every name of :data:`REQUIRED` (each method's parameters, each
attribute's type) on a new, unconnected association.  :func:`internals_usable` runs it once at
start-up: when a name is missing or differs, or when ``PYQRSCP_PYNETDICOM_PUBLIC_ONLY=1`` asks
for it, one warning line says so and the server serves through pynetdicom's public API only
(event handlers; see docs/performance.md for what that costs).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar, cast

from pynetdicom import AE, evt
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import (
    C_ECHO,
    C_FIND,
    C_GET,
    C_MOVE,
    C_STORE,
    N_ACTION,
    N_CREATE,
    N_DELETE,
    N_EVENT_REPORT,
    N_GET,
    N_SET,
)
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import P_DATA, SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import (
    AddressInformation,
    AssociationServer,
    AssociationSocket,
    RequestHandler,
)

from pyqrscp.errors import ServiceFailed
from pyqrscp.link.negotiated import NegotiatedOutcomes, Outcome, outcome_key
from pyqrscp.link.reactor import (
    accept_inline,
    discard_unstarted,
    record_accept,
    run_reactor,
    send_kept_accept,
)

LOGGER = logging.getLogger(__name__)
ACSE_LOGGER = logging.getLogger("pynetdicom.acse")
"""pynetdicom's ACSE logger: a remembered negotiation says what pynetdicom's would, where."""

PUBLIC_ONLY_VARIABLE = "PYQRSCP_PYNETDICOM_PUBLIC_ONLY"
"""Set to ``1`` to serve through pynetdicom's public API only (a test and diagnostic switch)."""

DimseMessage = (C_ECHO | C_FIND | C_GET | C_MOVE | C_STORE | N_ACTION | N_CREATE | N_DELETE
                | N_EVENT_REPORT | N_GET | N_SET)
"""A decoded DIMSE message as pynetdicom hands it to the association's reactor."""
PduDecoder = Callable[[bytearray], tuple[object, str]]
"""``DULServiceProvider._decode_pdu``: raw PDU bytes to (PDU, state machine event)."""
T = TypeVar("T")
_Bound = tuple[Callable[..., object] | None, list[object] | None]
"""A handler bound on pynetdicom's server, with its extra arguments."""


@dataclass(frozen=True, slots=True)
class Internal:
    """One private name, ``owner.name``: a method with these parameters after ``self``, or
    (``parameters`` None) an attribute, whose value on a new association is a ``kind``."""

    owner: str
    name: str
    parameters: tuple[str, ...] | None = None
    kind: type | None = None

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


REQUIRED: tuple[Internal, ...] = (
    Internal("Association", "_serve_request", ("msg", "context_id")),
    Internal("Association", "_accepted_cx", kind=dict),
    Internal("Association", "_sent_release", kind=bool),
    Internal("Association", "_kill", kind=bool),
    Internal("Association", "_reactor_checkpoint", kind=threading.Event),
    Internal("Association", "_is_paused", kind=bool),
    Internal("Association", "__dict__", kind=dict),
    Internal("RequestHandler", "_create_association", ()),
    Internal("DULServiceProvider", "_is_transport_event", ()),
    Internal("DULServiceProvider", "_read_pdu_data", ()),
    Internal("DULServiceProvider", "_decode_pdu", ("bytestream",)),
    Internal("DULServiceProvider", "_recv_pdu", kind=queue.Queue),
    Internal("DULServiceProvider", "_idle_timer"),
    Internal("DULServiceProvider", "_run_loop_delay", kind=float),
    Internal("DULServiceProvider", "event_queue", kind=queue.Queue),
    Internal("DULServiceProvider", "to_provider_queue", kind=queue.Queue),
    Internal("DULServiceProvider", "to_user_queue", kind=queue.Queue),
    Internal("DULServiceProvider", "state_machine"),
    Internal("DULServiceProvider", "__dict__", kind=dict),
    Internal("StateMachine", "current_state", kind=str),
    Internal("Timer", "_start_time"),
    Internal("Timer", "restart", ()),
    Internal("DIMSEServiceProvider", "receive_primitive", ("primitive",)),
    Internal("DIMSEServiceProvider", "message"),
    Internal("DIMSEServiceProvider", "msg_queue", kind=queue.Queue),
    Internal("DIMSEServiceProvider", "cancel_req", kind=dict),
    Internal("DIMSEMessage", "context_id"),
    Internal("DIMSEMessage", "command_set"),
    Internal("DIMSEMessage", "data_set"),
    Internal("AssociationSocket", "recv", ("nr_bytes",)),
    Internal("AssociationSocket", "send", ("bytestream",)),
    Internal("AssociationSocket", "_shutdown_socket", ()),
    # the event-driven loops (reactor.py)
    Internal("Association", "_run_reactor", ()),
    Internal("Association", "_dul_ready", kind=threading.Event),
    Internal("Association", "_started_dul", kind=bool),
    Internal("Association", "_server"),
    Internal("Association", "name", kind=str),
    Internal("Association", "_timer_resolution"),
    Internal("Association", "network_timeout_response", kind=str),
    Internal("DULServiceProvider", "_kill_thread", kind=bool),
    Internal("DULServiceProvider", "_process_recv_primitive", ()),
    Internal("DULServiceProvider", "artim_timer"),
    Internal("DULServiceProvider", "kill_dul", ()),
    Internal("DULServiceProvider", "stop_dul", ()),
    Internal("DIMSEServiceProvider", "get_msg", ("block",)),
    Internal("ACSE", "is_release_requested", ()),
    Internal("ACSE", "is_aborted", ("abort_type",)),
    Internal("ACSE", "send_release", ("is_response",)),
    # negotiations remembered (negotiated.py)
    Internal("ACSE", "_negotiate_as_acceptor", ()),
    Internal("ACSE", "__dict__", kind=dict),
    Internal("Association", "_rejected_cx", kind=list),
    Internal("PresentationContext", "__dict__", kind=dict),
    Internal("PresentationContext", "_transfer_syntax", kind=list),
    Internal("A_ASSOCIATE_RQ", "to_primitive", ()),
    Internal("A_ASSOCIATE_RQ", "__dict__", kind=dict),
    Internal("DULServiceProvider", "_send", ("pdu",)),
)
"""Every private (or undocumented) name of pynetdicom pyqrscp uses, in the shape it relies on."""


def sample_owners(assoc: Association | None = None) -> dict[str, object]:
    """The objects :data:`REQUIRED` names live on: those of a new, unconnected acceptor
    association (no socket, no thread started), or of ``assoc``."""
    assoc = assoc if assoc is not None else Association(AE(), "acceptor")
    dul = assoc.dul
    return {"Association": assoc, "RequestHandler": RequestHandler, "DULServiceProvider": dul,
            "StateMachine": getattr(dul, "state_machine", None), "ACSE": assoc.acse,
            "Timer": getattr(dul, "_idle_timer", None), "DIMSEServiceProvider": assoc.dimse,
            "DIMSEMessage": C_STORE_RQ(), "AssociationSocket": AssociationSocket,
            "PresentationContext": PresentationContext(), "A_ASSOCIATE_RQ": A_ASSOCIATE_RQ()}


def missing_internals(owners: Mapping[str, object] | None = None) -> list[str]:
    """The :data:`REQUIRED` names this pynetdicom lacks or has in another shape (a method with
    other parameters, an attribute of another type), each as ``Owner.name (why)``."""
    owners = sample_owners() if owners is None else owners
    missing = []
    for internal in REQUIRED:
        why = _mismatch(owners.get(internal.owner), internal)
        if why:
            missing.append(f"{internal} ({why})")
    return missing


def _mismatch(owner: object, internal: Internal) -> str:
    if owner is None or not hasattr(owner, internal.name):
        return "missing"
    value = getattr(owner, internal.name)
    if internal.parameters is not None:
        if not callable(value):
            return "not a method"
        try:
            names = tuple(inspect.signature(value).parameters)
        except (TypeError, ValueError):
            return "no signature"
        names = names[1:] if names[:1] == ("self",) else names
        return "" if names == internal.parameters else f"parameters {names}"
    if internal.kind is not None and not isinstance(value, internal.kind):
        return f"a {type(value).__name__}"
    return ""


PUBLIC_PATH_LOSSES = (
    "no held channel (slower; C-FIND and C-GET responses encoded by pydicom)",
    "datasets bounded only once whole and held in memory",
    "no limit on the announced PDU length and no stall timeout",
    "NUL-padded AE titles refused",
    "a P-DATA-TF ending one message and starting the next is aborted",
    "a connection closed before its A-ASSOCIATE-RQ holds its --max-unassociated place",
    "C-MOVE to a destination that does not answer gets 0xA801, not 0xA702",
)
"""What the public path does differently (docs/performance.md lists them in full), named in
its warning line."""


def internals_usable(environ: Mapping[str, str] = os.environ,
                     owners: Mapping[str, object] | None = None) -> bool:
    """May pyqrscp use pynetdicom's internals?  Decided once, at start-up; when not, one
    warning line says why (the switch, or every name that differs on ``owners``, see
    :func:`missing_internals`) and what is lost (:data:`PUBLIC_PATH_LOSSES`)."""
    if environ.get(PUBLIC_ONLY_VARIABLE, "") not in ("", "0"):
        reason = f"{PUBLIC_ONLY_VARIABLE} is set"
    elif missing := missing_internals(owners):
        reason = f"pynetdicom lacks internals pyqrscp relies on ({'; '.join(missing)})"
    else:
        return True
    LOGGER.warning("%s: %s", reason, public_path_warning())
    return False


def public_path_warning() -> str:
    """The public path's warning, after its reason: what it serves through and what is lost."""
    return ("serving through pynetdicom's public API only; lost: "
            + "; ".join(PUBLIC_PATH_LOSSES))


# -- the association ------------------------------------------------------------------------


class RoutedAssociation(Association):
    """An acceptor association whose requests ``route`` may serve before pynetdicom does.

    Adds no state: pynetdicom's own associations get this class swapped in
    (:func:`route_requests`), so everything pynetdicom does to them keeps working.
    """

    route: Callable[[Association, DimseMessage, int], bool] | None = None
    ended: Callable[[], None] | None = None
    """Called in the association's thread once it has ended (:meth:`SpareAcceptors.refill`)."""

    def _serve_request(self, msg: DimseMessage, context_id: int) -> None:
        route = type(self).route
        if route is not None and not self._sent_release and route(self, msg, context_id):
            return
        try:
            super()._serve_request(msg, context_id)
        except ServiceFailed:
            self.abort()

    def _run_reactor(self) -> None:
        if not run_reactor(self):
            super()._run_reactor()

    def run(self) -> None:
        """The association's thread: opened first when its connection was handed to it
        directly (:func:`open_first`), then negotiated there with the DUL's loop turned inline
        (:func:`~pyqrscp.link.reactor.accept_inline`) where the event-driven loops are
        installed, else pynetdicom's ``run_reactor`` as it comes."""
        try:
            opening = self.__dict__.pop(_OPENING, None)
            if opening is None or opening(self):
                if not accept_inline(self):
                    super().run()
            else:
                discard_unstarted(self)
        finally:
            set_counted(self, False)  # over: not counted while it makes the next spare
            ended = type(self).ended
            if ended is not None:
                ended()


def route_requests(assoc: Association, routed_class: type[RoutedAssociation]) -> None:
    """Make a new association serve its requests through ``routed_class.route`` first."""
    assoc.__class__ = routed_class


class CreatesAssociations(RequestHandler):
    """pynetdicom's per-connection handler that takes a spare association made ahead when
    there is one (:class:`SpareAcceptors`, the server's ``spares``), with a seat right after it
    creates one itself and one once the association has its connection (before its thread
    starts)."""

    def _create_association(self) -> Association:
        spares = getattr(self.server, "spares", None)
        assoc = spares.take() if isinstance(spares, SpareAcceptors) else None
        if assoc is None:
            assoc = super()._create_association()
            self.association_created(assoc)
        else:
            connect_acceptor(assoc, self.request, self.client_address)
        self.association_connected(assoc)
        return assoc

    def association_created(self, assoc: Association) -> None:
        """Called with each association made for its connection, before it starts."""

    def association_connected(self, assoc: Association) -> None:
        """Called with each association once it has its connection, before it starts."""


def unconnected_acceptor(server: AssociationServer) -> Association:
    """pynetdicom's acceptor association for a connection to ``server`` (as its request
    handler makes one), without the connection: no socket, no peer address, no thread name."""
    ae = server.ae
    assoc = Association(ae, "acceptor")
    assoc._server = server
    acceptor = assoc.acceptor
    acceptor.maximum_length = ae.maximum_pdu_size
    acceptor.ae_title = server.ae_title
    acceptor.address_info = AddressInformation.from_tuple(server.server_address)
    acceptor.implementation_class_uid = ae.implementation_class_uid
    acceptor.implementation_version_name = ae.implementation_version_name
    acceptor.supported_contexts = copy.deepcopy(server.contexts)
    for event in server.get_events():
        bound = server.get_handlers(event)
        if event.is_intervention:  # (handler, args), (None, None) when none is bound
            handler, args = cast(_Bound, bound) if bound else (None, None)
            if handler is not None:
                assoc.bind(event, handler, args)
        else:
            for notified, notified_args in cast(list[_Bound], bound):
                if notified is not None:
                    assoc.bind(event, notified, notified_args)
    return assoc


def connect_acceptor(assoc: Association, request: socket.socket,
                     client_address: tuple[str, int]) -> None:
    """Give an :func:`unconnected_acceptor` its connection, as pynetdicom's request handler
    does: the socket, the peer's address and the thread's name."""
    assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
    assoc.set_socket(AssociationSocket(assoc, client_socket=request))
    assoc.requestor.address_info = AddressInformation.from_tuple(client_address)


_OPENING = "_pyqrscp_opening"


def open_first(assoc: Association, request: socket.socket, client_address: tuple[str, int],
               opening: Callable[[Association], bool]) -> None:
    """Give a spare association (:class:`SpareAcceptors`) its connection and start its thread,
    which first runs ``opening`` (admission, which counts the association with
    :func:`set_counted`; False: the connection is closed and the
    association never runs) and triggers EVT_CONN_OPEN, as pynetdicom's request handler does
    in a thread of its own before it starts the association's: one thread start less between
    a connection's arrival and its A-ASSOCIATE-AC.  The socket is closed whenever pynetdicom
    shuts it down (:func:`close_socket_always`).  The association's class must be a
    :class:`RoutedAssociation`."""
    connect_acceptor(assoc, request, client_address)
    if assoc.dul.socket is not None:
        close_socket_always(assoc.dul.socket)

    def open_connection(opened: Association) -> bool:
        try:
            admitted = opening(opened)
        except BaseException:
            request.close()
            raise
        if not admitted:
            request.close()
            return False
        evt.trigger(opened, evt.EVT_CONN_OPEN, {"address": client_address})
        return True
    assoc.__dict__[_OPENING] = open_connection
    set_counted(assoc, False)  # until ``opening`` admits it
    try:
        assoc.start()
    except BaseException:  # no thread: the accept loop closes the connection
        discard_unstarted(assoc)
        raise


class SpareAcceptors:
    """Acceptor associations made before their connection arrives.

    pynetdicom's association (its DUL, ACSE and DIMSE providers, queues, timers, two service
    users checking UIDs, the bound handlers) and pyqrscp's settings of it take ~0.3 ms to
    make, all of it between a connection's arrival and its A-ASSOCIATE-AC, and none of it
    depends on the connection.  So one is made ahead: when the server starts and in the
    thread of each association that ends, after its connection is closed; the next
    connection takes it (:meth:`take`) and gets its socket and address.  With none waiting
    (connections arriving together) the connection makes its own, as before.
    """

    def __init__(self, make: Callable[[], Association], kept: int = 1) -> None:
        self._make = make
        self._kept = kept
        self._spares: list[Association] = []
        self._lock = threading.Lock()
        self._closed = False
        self._generation = 0  # of the server's handlers: a spare made before a clear is stale

    def __len__(self) -> int:
        with self._lock:
            return len(self._spares)

    def take(self) -> Association | None:
        """A spare, or None."""
        with self._lock:
            return self._spares.pop() if self._spares else None

    def refill(self) -> None:
        """Make spares until ``kept`` wait (none once closed)."""
        while True:
            with self._lock:
                if self._closed or len(self._spares) >= self._kept:
                    return
                generation = self._generation
            made = self._make()
            with self._lock:
                stale = generation != self._generation  # made with handlers since changed
                kept = not self._closed and not stale and len(self._spares) < self._kept
                if kept:
                    self._spares.append(made)
            if kept:
                continue
            discard_unstarted(made)
            if not stale:
                return

    def clear(self) -> None:
        """Drop the spares (the server's handlers changed: they were bound to the old)."""
        with self._lock:
            self._generation += 1
            dropped, self._spares = self._spares, []
        for assoc in dropped:
            discard_unstarted(assoc)

    def close(self) -> None:
        """Drop the spares and make no more (the server stops)."""
        with self._lock:
            self._closed = True
        self.clear()


def serve_request(assoc: Association, msg: DimseMessage, context_id: int) -> None:
    """Hand a request to the association's own dispatch (routing first, then pynetdicom)."""
    assoc._serve_request(msg, context_id)


def accepted_context(assoc: Association, context_id: int) -> PresentationContext | None:
    """An accepted presentation context by ID (pynetdicom's public list is rebuilt per call)."""
    return assoc._accepted_cx.get(context_id)


def release_sent(assoc: Association) -> bool:
    """Has this side sent an A-RELEASE-RQ (no new requests are served then)?"""
    return assoc._sent_release


def is_ending(assoc: Association) -> bool:
    """Is the association's reactor told to stop (an abort from another thread)?"""
    return assoc._kill


def paused_reactor(assoc: Association, timeout: float, send: Callable[[], T]) -> T | None:
    """Run ``send`` (a ``send_*`` of pynetdicom) from a thread other than the association's,
    with its reactor parked; None when the reactor does not park within ``timeout`` seconds
    or the association ends first (pynetdicom's own wait would spin forever then)."""
    assoc._reactor_checkpoint.clear()
    deadline = time.monotonic() + timeout
    try:
        while not assoc._is_paused:
            if not assoc.is_established or time.monotonic() > deadline:
                return None
            time.sleep(0.001)
        if not assoc.is_established:
            return None
        return send()
    finally:
        assoc._reactor_checkpoint.set()


# -- negotiation ----------------------------------------------------------------------------


def remember_primitive(pdu: A_ASSOCIATE_RQ) -> None:
    """Have a kept A-ASSOCIATE-RQ PDU make its primitive once: pynetdicom makes a new one
    for each association (``getscu``'s ~120 contexts: 2 ms), and only reads it."""
    # pynetdicom 3.0 writes to the primitive only in AE-6, to reject a protocol version other
    # than 1 (result, source, diagnostic); such requests are never kept (link/transport.py)
    make = pdu.to_primitive
    made: list[object] = []

    def to_primitive() -> object:
        if not made:
            made.append(make())
        return made[0]
    pdu.__dict__["to_primitive"] = to_primitive


def remember_negotiations(assoc: Association, outcomes: NegotiatedOutcomes) -> None:
    """Let a new acceptor association take a kept outcome of negotiation for a request it
    received as bytes that were kept (:func:`note_request`)."""
    assoc.acse.__class__ = RememberingACSE
    assoc.acse.__dict__["_pyqrscp_outcomes"] = outcomes


def note_request(assoc: Association, request: bytes) -> None:
    """The association's A-ASSOCIATE-RQ, as bytes whose decoded PDU is kept."""
    attach(assoc, "request", request)


class RememberingACSE(ACSE):
    """pynetdicom's ACSE, whose acceptor negotiation takes a kept outcome for a request and
    acceptance it has seen (:mod:`negotiated`); instances are pynetdicom's own, this class
    swapped in before the association starts."""

    def _negotiate_as_acceptor(self) -> None:
        assoc = self.assoc
        outcomes = self.__dict__.get("_pyqrscp_outcomes")
        request = attached(assoc, "request")
        key = (outcome_key(assoc, request) if isinstance(outcomes, NegotiatedOutcomes)
               and isinstance(request, bytes) else None)
        supported = self.acceptor.supported_contexts
        kept = outcomes.get(key, supported) if key is not None and outcomes else None
        if kept is None or _over_capacity(assoc):
            accept: list[bytes] = []
            if key is not None:
                record_accept(assoc.dul, accept.append)
            super()._negotiate_as_acceptor()
            if key is not None and outcomes is not None and assoc.is_established:
                outcomes.keep(key, Outcome(
                    tuple(supported), tuple(map(_context_copy, assoc._accepted_cx.values())),
                    tuple(map(_context_copy, assoc._rejected_cx)),
                    tuple(item for item in self.acceptor.user_information
                          if isinstance(item, SCP_SCU_RoleSelectionNegotiation)), accept))
            return
        self._accept_as_kept(kept)

    def _accept_as_kept(self, kept: Outcome) -> None:
        """pynetdicom 3.0's acceptance, for a request without extended negotiation, with the
        kept contexts and role replies in place of negotiating them."""
        assoc = self.assoc
        primitive = self.requestor.primitive
        self.requestor.ae_title = primitive.calling_ae_title if primitive else ""
        accepted = [_context_copy(context) for context in kept.accepted]
        assoc._accepted_cx = {int(context.context_id or 0): context for context in accepted}
        assoc._rejected_cx = [_context_copy(context) for context in kept.rejected]
        for role in kept.roles:
            self.acceptor.add_negotiation_item(role)
        if kept.accept:  # sent by the first association's DUL (until then, encoded again)
            send_kept_accept(assoc.dul, kept.accept[0])
        ACSE_LOGGER.info("Accepting Association")
        self.send_accept()
        evt.trigger(assoc, evt.EVT_ACCEPTED, {})
        assoc.is_established = True
        evt.trigger(assoc, evt.EVT_ESTABLISHED, {})


def _over_capacity(assoc: Association) -> bool:
    """pynetdicom's own limit on acceptors (it rejects the association past it)."""
    acceptors = [other for other in assoc.ae.active_associations if other.is_acceptor]
    return len(acceptors) > assoc.ae.maximum_associations


def _context_copy(context: PresentationContext) -> PresentationContext:
    """A copy of a negotiated context, its attributes as they are (no checks run again), with
    a transfer syntax list of its own: a kept outcome's contexts are copied for every
    association, and what one does to its list must not reach the others."""
    copied = object.__new__(PresentationContext)
    copied.__dict__.update(context.__dict__)
    copied.__dict__["_transfer_syntax"] = list(context.__dict__["_transfer_syntax"])
    return copied


def attach(target: Association | DULServiceProvider, name: str, value: object) -> None:
    """Keep a pyqrscp object on a pynetdicom object (its name starts with ``_pyqrscp_``)."""
    target.__dict__[f"_pyqrscp_{name}"] = value


def set_counted(assoc: Association, counted: bool) -> None:
    """Count the association's thread against the limits (MaxAssociations, the unassociated
    allowance) or not: a thread given its connection directly is not counted until it has
    admitted it (nor after it refused it), and one that has ended is not counted while it
    goes on to make the next spare association."""
    attach(assoc, "uncounted", not counted)


def is_counted(assoc: Association) -> bool:
    """Does the association's thread count against the limits (:func:`set_counted`)?"""
    return attached(assoc, "uncounted") is not True


def attached(target: Association | DULServiceProvider, name: str) -> object:
    """What :func:`attach` kept there, or None."""
    return target.__dict__.get(f"_pyqrscp_{name}")


# -- the DUL (upper layer) ------------------------------------------------------------------


def replace_transport_event(dul: DULServiceProvider, step: Callable[[], bool]
                            ) -> Callable[[], bool]:
    """Seat ``step`` as the DUL's "is there a PDU to read?" check; returns pynetdicom's."""
    original: Callable[[], bool] = dul._is_transport_event
    dul._is_transport_event = step  # type: ignore[method-assign]
    return original


def read_pdu(dul: DULServiceProvider) -> None:
    """Have the DUL read, decode and queue the next PDU (in the DUL's thread)."""
    dul._read_pdu_data()


def replace_pdu_decoder(dul: DULServiceProvider, wrap: Callable[[PduDecoder], PduDecoder]
                        ) -> None:
    """Seat ``wrap(pynetdicom's decoder)`` as the DUL's PDU decoder."""
    dul._decode_pdu = wrap(dul._decode_pdu)  # type: ignore[method-assign, assignment]


def restore_pdu_decoder(dul: DULServiceProvider) -> None:
    """Give the DUL back pynetdicom's own PDU decoder."""
    dul.__dict__.pop("_decode_pdu", None)


def has_received_unhandled(assoc: Association, receive_events: frozenset[str]) -> bool:
    """Has pynetdicom read anything of the peer's it has not finished with: a PDU or a
    state-machine event of ``receive_events`` queued, or a DIMSE message begun or complete?"""
    dul, dimse = assoc.dul, assoc.dimse
    return bool(not dul._recv_pdu.empty() or dimse.message is not None
                or not dimse.msg_queue.empty()
                or any(event in receive_events for event in list(dul.event_queue.queue)))


def restart_idle_timer(dul: DULServiceProvider) -> None:
    """A PDU arrived: the network timeout (``-to``) starts again."""
    dul._idle_timer.restart()


def last_received(dul: DULServiceProvider) -> float | None:
    """When (``time.time()``) the DUL last received a PDU; None before the first."""
    started: float | None = dul._idle_timer._start_time
    return started


def poll_delay(dul: DULServiceProvider) -> float:
    """How long the DUL's loop sleeps when it finds nothing to do."""
    return dul._run_loop_delay


def set_poll_delay(dul: DULServiceProvider, delay: float) -> None:
    dul._run_loop_delay = delay


def dul_state(dul: DULServiceProvider) -> str:
    """The upper layer's state (PS3.8 9.2: ``Sta6`` is established, ``Sta13`` closing)."""
    return str(dul.state_machine.current_state)


def queued_to_send(dul: DULServiceProvider) -> int:
    """PDUs waiting in the DUL's queue to be sent."""
    return dul.to_provider_queue.qsize()


def abort_from_dul(dul: DULServiceProvider) -> None:
    """Have the DUL abort the association as for an invalid PDU (state-machine event 19)."""
    dul.event_queue.put("Evt19")


def end_wait_for_request(dul: DULServiceProvider) -> None:
    """End an acceptor's wait for its A-ASSOCIATE-RQ (the peer is gone)."""
    dul.to_user_queue.put(None)


def close_socket_always(assoc_socket: AssociationSocket) -> None:
    """Have the connection's socket closed whenever pynetdicom shuts it down.  pynetdicom 3.0
    closes it only after a successful ``shutdown``, which fails (ENOTCONN) once the peer has
    reset the connection or :func:`connections.shut_connection` shut it; the socket then stays
    open until garbage collection, whose ResourceWarning surfaces anywhere."""

    def shutdown_socket() -> None:
        sock = assoc_socket.socket
        if sock is None:
            return
        try:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
    assoc_socket._shutdown_socket = shutdown_socket  # type: ignore[method-assign]


def replace_socket_io(assoc_socket: AssociationSocket, recv: Callable[[int], bytearray],
                      send: Callable[[bytes], None]
                      ) -> tuple[Callable[[int], bytearray], Callable[[bytes], None]]:
    """Seat ``recv``/``send`` as what the DUL reads and writes with; returns pynetdicom's."""
    original = assoc_socket.recv, assoc_socket.send
    assoc_socket.recv = recv  # type: ignore[method-assign, assignment]
    assoc_socket.send = send  # type: ignore[method-assign, assignment]
    return original


# -- the DIMSE provider ---------------------------------------------------------------------


def replace_receive_primitive(dimse: DIMSEServiceProvider,
                              step: Callable[[Callable[[P_DATA], None], P_DATA], None]) -> None:
    """Seat ``step(pynetdicom's own, primitive)`` as the DIMSE provider's P-DATA step."""
    receive = dimse.receive_primitive
    dimse.receive_primitive = (  # type: ignore[method-assign]
        lambda primitive: step(receive, primitive))


def message_in_progress(dimse: DIMSEServiceProvider) -> DIMSEMessage | None:
    """The DIMSE message pynetdicom is assembling, if any."""
    return dimse.message


def queued_message_datasets(dimse: DIMSEServiceProvider) -> list[object]:
    """The datasets of complete messages pynetdicom has queued for the reactor."""
    return [getattr(item[1], "DataSet", None) for item in list(dimse.msg_queue.queue)]


def next_queued_message(dimse: DIMSEServiceProvider, timeout: float
                        ) -> tuple[int, DimseMessage] | None:
    """The next complete message pynetdicom queued for the reactor, waiting up to
    ``timeout`` seconds (for callers that are the reactor's own thread)."""
    try:
        context_id, message = dimse.msg_queue.get(timeout=timeout)
    except queue.Empty:
        return None
    if message is None or context_id is None:
        return None
    return int(context_id), message


def take_cancel(dimse: DIMSEServiceProvider, message_id: int) -> bool:
    """Has pynetdicom filed a C-CANCEL-RQ for ``message_id``?  Consumed when found."""
    return dimse.cancel_req.pop(message_id, None) is not None


def forget_cancels(dimse: DIMSEServiceProvider) -> None:
    """Drop every C-CANCEL-RQ pynetdicom filed (they belong to a finished request)."""
    dimse.cancel_req = {}
