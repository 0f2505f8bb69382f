"""One pynetdicom server on one port serving every AE title of the AETable.

Association checks happen in ``EVT_REQUESTED`` (pynetdicom's documented hook for rejecting), where
the called AE title picks the presentation contexts its access rules allow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

from pyqrscp import __version__
from pyqrscp.archive.metadata import describe
from pyqrscp.config import AEEntry, Config, prepare_storage_areas
from pyqrscp.config.options import Options
from pyqrscp.dimse.contexts import contexts_for, negotiation_lines
from pyqrscp.errors import ListenError, StartupError
from pyqrscp.link.channel import Channel
from pyqrscp.link.connections import (
    ReadTimeouts,
    UnassociatedAllowance,
    is_unassociated,
    set_read_timeout,
    shut_connection,
)
from pyqrscp.link.idle import IdleGovernor
from pyqrscp.link.internals import end_wait_for_request, internals_usable, is_counted
from pyqrscp.link.tls import build_contexts, handshake_hook
from pyqrscp.link.transport import ArchiveServerSocket, bind_archive_server, serve_in_background
from pyqrscp.loglines import STARTUP_LOGGER
from pyqrscp.server.acceptance import (
    AccessPolicy,
    AssociationRequest,
    Rejection,
    RejectReason,
    RejectResult,
    RejectSource,
    decide,
)
from pyqrscp.server.notify import Watchdog, notify, watchdog_interval
from pyqrscp.server.privileges import check_names, drop_privileges
from pyqrscp.server.stopping import StopRequests
from pyqrscp.services import Services
from pyqrscp.web.settings import WebSettings, settings_of

if TYPE_CHECKING:
    from pyqrscp.web.listener import WebListener

LOGGER = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


def validate_options(options: Options) -> None:
    """Refuse option values dcmqrscp refuses, before anything listens."""
    if options.port is None:
        raise StartupError("no port given: pass one or set NetworkTCPPort in the config file")
    if not 0 <= options.port <= 65535:
        raise StartupError(f"port {options.port} out of range (0..65535)")
    if options.max_pdu is not None and options.max_pdu != 0 and not (
            4096 <= options.max_pdu <= 131072):
        raise StartupError(f"max PDU {options.max_pdu} out of range (4096..131072)")
    for name in ("max_store_size", "max_request_size"):
        if getattr(options, name) < 1:
            raise StartupError(f"--{name.replace('_', '-')} must be at least 1 byte")
    for name in ("unassociated_timeout", "max_unassociated", "max_unassociated_per_host"):
        if getattr(options, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise StartupError(f"{flag} {getattr(options, name)} out of range (1 or more)")


class ArchiveServer:
    """The running archive: AE, handlers, and a graceful stop."""

    def __init__(self, config: Config, options: Options, host: str = "") -> None:
        self.config = config
        self.options = options
        self.host = host
        self.internals = internals_usable()
        self.services = Services(config, options, internals=self.internals)
        self.tls = build_contexts(options)
        self.services.client_tls = self.tls.client if self.tls else None
        self.policy = AccessPolicy(refuse=options.refuse,
                                   reject_without_implementation_uid=options.reject,
                                   disable_host_lookup=options.disable_host_lookup,
                                   hosts=self.services.hosts)
        self.stop_requests: StopRequests | None = None
        """Set within :meth:`stop_signals`: SIGINT/SIGTERM (or its ``request()`` from any
        thread) end :meth:`serve_until_signalled`."""
        self._server: ArchiveServerSocket | None = None
        self._governor: IdleGovernor | None = None
        self._watchdog: Watchdog | None = None
        self._store_associations: dict[str, int] = {}
        self._store_slot_of: weakref.WeakKeyDictionary[Association, str] = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()
        self._stopping = False
        """Set under ``_lock`` when :meth:`stop` begins: later requests are rejected."""
        self.timeouts = ReadTimeouts.of(options)
        self.web_settings: WebSettings | None = settings_of(options.http, config.http)
        self.web: WebListener | None = None

    @property
    def listener(self) -> ArchiveServerSocket:
        """The listening pynetdicom server (its ``active_associations``), once started."""
        if self._server is None:
            raise RuntimeError("the server is not listening")
        return self._server

    @property
    def port(self) -> int:
        """The port really listened on (useful with port 0)."""
        if self._server is None:
            raise RuntimeError("the server is not listening")
        return int(self._server.server_address[1])

    def build_ae(self) -> AE:
        ae = AE(ae_title="PYQRSCP")
        ae.maximum_pdu_size = self.options.receive_pdu_size
        # MaxAssociations is checked in EVT_REQUESTED, counting associations only; pynetdicom's
        # own check would count connections still waiting for their A-ASSOCIATE-RQ
        ae.maximum_associations = 1 << 30
        ae.acse_timeout = self.options.acse_timeout
        ae.dimse_timeout = self.options.dimse_timeout
        ae.network_timeout = self.options.network_timeout
        ae.require_called_aet = False
        ae.require_calling_aet = []
        ae.add_supported_context("1.2.840.10008.1.1")
        return ae

    def handlers(self) -> list[EventHandlerType]:
        return [
            (evt.EVT_CONN_OPEN, self._on_connection_open),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ESTABLISHED, self._on_established),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
            (evt.EVT_CONN_CLOSE, self._on_connection_closed),
            *self.services.handlers(),
        ]

    def start(self) -> None:
        """Bind, switch to UserName/GroupName, then open the storage areas and serve.

        Only binding (ports below 1024) and loading the TLS keys (in ``__init__``) are done
        with the privileges pyqrscp was started with: everything created in the storage areas
        belongs to the user it serves as.

        Raises
        ------
        StartupError
            The port cannot be bound, or the user or group does not exist.
        ConfigError
            A storage area cannot be created or written (pointing at its AETable row).
        StorageFailure
            An area's lock file or index cannot be opened (also: is a link).
        """
        check_names(self.config.user_name, self.config.group_name)
        ae = self.build_ae()
        port = self.options.port or 0
        handshake = (handshake_hook(self.tls.server, self.timeouts.unassociated)
                     if self.tls else None)
        try:
            router = self.services.route_request if self.internals else None
            server = bind_archive_server(ae, (self.host, port), self.handlers(), router=router,
                                         prepare_connection=handshake)
        except OSError as error:
            where = f"{self.host}:{port}" if self.host else f"port {port}"
            raise ListenError(f"cannot listen on {where}: {error.strerror or error}") from error
        try:
            self.web = self._bind_web()
            drop_privileges(self.config.user_name, self.config.group_name)
            prepare_storage_areas(self.config)
            self.services.open()
            self._start_web()
        except BaseException:
            server.server_close()
            if self.web is not None:
                self.web.stop()
            self.services.close()
            raise
        server.allowance = UnassociatedAllowance(lambda: server.active_associations,
                                                 self.options.max_unassociated,
                                                 self.options.max_unassociated_per_host)
        self._server = server
        serve_in_background(server)
        if self.internals:
            self._governor = IdleGovernor(lambda: server.active_associations)
            self._governor.start()
        web = (f"; DICOMweb and the page on {self.web.scheme}://{_http_host(self.web)}/"
               if self.web is not None else "")
        logging.getLogger(STARTUP_LOGGER).info(
            "pyqrscp %s listening on port %d (%s) with AE titles %s%s; config %s", __version__,
            self.port, self.host or "all interfaces",
            ", ".join(entry.ae_title for entry in self.config.ae_table) or "(none)", web,
            self.config.path)
        self._announce_ready(server)

    def _bind_web(self) -> WebListener | None:
        """Bind the HTTP listener's socket (``--http``/``HTTPPort``), or None when it is off.

        Raises
        ------
        StartupError
            The web extra is not installed.
        ListenError
            The HTTP port cannot be bound.
        """
        if self.web_settings is None:
            return None
        try:
            from pyqrscp.web.listener import WebListener  # an optional extra
        except ImportError as error:
            raise StartupError(f"--http/HTTPPort needs the web extra ({error.name} is "
                               "missing): pip install 'pyqrscp[web]'") from error
        listener = WebListener(self.web_settings, self.tls.server if self.tls else None)
        listener.bind()
        return listener

    def _start_web(self) -> None:
        if self.web is None or self.web_settings is None:
            return
        from pyqrscp.web.app import build_app  # present: _bind_web imported the extra
        from pyqrscp.web.archive import WebArchive

        entries = {entry.ae_title: entry for entry in self.config.ae_table}
        for area in self.services.areas.values():
            area.describe_new_instances(describe)  # /metadata answers from kept JSON
        archive = WebArchive(
            entries, {title: self.services.area_for(entry) for title, entry in entries.items()},
            self.web_settings, case_sensitive_pn=self.options.case_sensitive_pn,
            uid_padding=self.options.uid_padding, max_store_size=self.options.max_store_size,
            stopping=self.web.stopping)
        self.web.start(build_app(archive))

    @property
    def http_port(self) -> int | None:
        """The HTTP listener's real port, None when it is off."""
        return self.web.port if self.web is not None else None

    def _announce_ready(self, server: ArchiveServerSocket) -> None:
        """Under systemd (``Type=notify``): READY, and a watchdog fed by the accept loop."""
        server.last_turn = time.monotonic()
        notify(f"READY=1\nSTATUS=listening on port {self.port}\nMAINPID={os.getpid()}")
        interval = watchdog_interval()
        if interval is not None:
            self._watchdog = Watchdog(interval, lambda: float(server.last_turn))
            self._watchdog.start()

    def stop(self) -> None:
        """Stop accepting, close connections that have not associated, let running
        associations finish (each bounded by ``SHUTDOWN_GRACE_SECONDS``), then close the areas.

        A connection still without its A-ASSOCIATE-RQ has nothing to finish: it is closed at
        once, not waited for until its unassociated timeout.  With pynetdicom's internals its
        thread then ends (``_on_connection_closed``); on the public path pynetdicom's acceptor
        thread waits out that timeout holding nothing but a closed socket, and is not joined.
        A request handed to the acceptance rules after the stop began is rejected
        (transient), so nothing is served on the closed areas.  Two narrow windows remain:
        a request read but not yet decoded when the connections are listed is closed without
        an A-ASSOCIATE-RJ (the peer sees the connection end), and an association whose thread
        starts after the listing is rejected but not joined.
        """
        if self._server is None:
            return
        with self._lock:
            self._stopping = True
        notify("STOPPING=1")
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        server, self._server = self._server, None
        if self._governor is not None:
            self._governor.stop()
        server.shutdown()
        if self.web is not None:
            self.web.stop()
            self.web = None
        associations = list(server.active_associations)
        unassociated = [assoc for assoc in associations if is_unassociated(assoc)]
        for assoc in unassociated:
            shut_connection(assoc)
        for assoc in associations:
            if not self.internals and assoc in unassociated:
                continue
            assoc.join(timeout=SHUTDOWN_GRACE_SECONDS)
            if assoc.is_alive():
                assoc.abort()
        self.services.close()

    @contextlib.contextmanager
    def stop_signals(self) -> Iterator[StopRequests]:
        """SIGINT/SIGTERM (and Windows' SIGBREAK) request a graceful stop while the block runs;
        enter it before :meth:`start` announces the port, so a signal sent the moment the
        server is ready is not fatal.  On leaving, the handlers found are put back and the
        stop requests' socket pair is closed, whether the server ran or failed to start."""
        stop_requests = StopRequests()

        def request_stop(signum: int, _frame: FrameType | None) -> None:
            stop_requests.request(signum)  # no lock, no logging: see server/stopping.py

        found: dict[int, Callable[[int, FrameType | None], Any] | int] = {}
        try:
            # SIGBREAK is Windows' Ctrl-Break; SIGTERM there comes only from os.kill
            for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
                if hasattr(signal, name):
                    signum = int(getattr(signal, name))
                    before = signal.signal(signum, request_stop)
                    found[signum] = before if before is not None else signal.SIG_DFL
            self.stop_requests = stop_requests
            yield stop_requests
        finally:
            for signum, handler in found.items():
                signal.signal(signum, handler)
            self.stop_requests = None
            stop_requests.close()

    def serve_until_signalled(self, wake_every: float = 0.5) -> int:
        """Block until SIGINT/SIGTERM, then stop cleanly; exit code 0.  Outside
        :meth:`stop_signals` the handlers are installed for the wait and put back after it.

        The wait wakes every ``wake_every`` seconds: on Windows a signal handler runs only
        when the main thread passes between two bytecodes, never inside ``select()``.
        """
        if self.stop_requests is None:
            with self.stop_signals():
                return self.serve_until_signalled(wake_every)
        stop_requests = self.stop_requests
        while not stop_requests.wait(timeout=wake_every):
            pass
        if stop_requests.signum is not None:
            LOGGER.info("received signal %d, shutting down", stop_requests.signum)
        self.stop()
        return 0

    # -- association events -------------------------------------------------------------

    def _on_connection_open(self, event: Event) -> None:
        assoc_socket = event.assoc.dul.socket
        sock = assoc_socket.socket if assoc_socket else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.internals:
                Channel.install(event.assoc, max(1 << 20, self.options.receive_pdu_size),
                                self.services.dataset_sink, self.timeouts)
            else:
                set_read_timeout(event.assoc, self.timeouts.unassociated)
        # the wait for the A-ASSOCIATE-RQ (pynetdicom waits the association's ACSE timeout)
        event.assoc.acse_timeout = self.timeouts.unassociated

    def _on_requested(self, event: Event) -> None:
        assoc = event.assoc
        assoc.acse_timeout = self.options.acse_timeout
        if not self.internals:
            set_read_timeout(assoc, self.timeouts.associated)
        primitive = assoc.requestor.primitive
        if primitive is None:
            return
        request = AssociationRequest(
            called_aet=_text(primitive.called_ae_title),
            calling_aet=_text(primitive.calling_ae_title),
            peer_address=str(assoc.requestor.address),
            implementation_class_uid=primitive.implementation_class_uid or None,
        )
        LOGGER.info("Association Received %s: %s -> %s", request.peer_address,
                    request.calling_aet, request.called_aet)
        decision = self._while_running(assoc) or decide(self.config, self.policy, request)
        if not isinstance(decision, Rejection):
            decision = self._check_capacity(decision)
        if isinstance(decision, Rejection):
            LOGGER.warning("Association Rejected %s: %s -> %s: %s", request.peer_address,
                           request.calling_aet, request.called_aet, decision.why)
            assoc.acse.send_reject(int(decision.result), int(decision.source),
                                   int(decision.reason))
            assoc.kill()
            return
        get_roles = frozenset(
            str(item.sop_class_uid) for item in primitive.user_information
            if isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.scp_role)
        allow_store = self._claim_store_slot(assoc, decision.ae_title)
        assoc.acceptor.ae_title = decision.ae_title
        proposed = frozenset(str(cx.abstract_syntax) for cx in
                             primitive.presentation_context_definition_list)
        assoc.acceptor.supported_contexts = contexts_for(
            decision.access, self.options, get_roles, allow_store=allow_store, proposed=proposed)

    def _while_running(self, assoc: Association) -> Rejection | None:
        """A transient rejection once :meth:`stop` has begun (the services are closing).
        pynetdicom sets the request's primitive before this runs, so :meth:`stop` already
        counts such an association as associated and waits for it."""
        with self._lock:
            if not self._stopping:
                return None
        return Rejection(RejectResult.TRANSIENT, RejectSource.SERVICE_PROVIDER_PRESENTATION,
                         RejectReason.LOCAL_LIMIT_EXCEEDED, "the server is stopping")

    def _check_capacity(self, entry: AEEntry) -> AEEntry | Rejection:
        """MaxAssociations: one association more than allowed gets a transient reject
        (connections that have not sent their A-ASSOCIATE-RQ do not count)."""
        server = self._server
        active = [a for a in server.active_associations
                  if a.is_acceptor and not is_unassociated(a) and is_counted(a)] if server else []
        if len(active) > self.options.max_associations:
            return Rejection(RejectResult.TRANSIENT, RejectSource.SERVICE_PROVIDER_PRESENTATION,
                             RejectReason.LOCAL_LIMIT_EXCEEDED,
                             f"MaxAssociations ({self.options.max_associations}) reached")
        return entry

    def _claim_store_slot(self, assoc: Association, ae_title: str) -> bool:
        """``--no-parallel-store``: one storing association per AE title at a time."""
        if not self.options.no_parallel_store:
            return True
        with self._lock:
            if self._store_associations.get(ae_title, 0) > 0:
                LOGGER.info("refusing storage contexts for %s: another association is storing "
                            "(--no-parallel-store)", ae_title)
                return False
            self._store_associations[ae_title] = 1
            self._store_slot_of[assoc] = ae_title
            return True

    def _on_established(self, event: Event) -> None:
        assoc = event.assoc
        LOGGER.info("Association Acknowledged %s: %s -> %s (max send PDV: %s)",
                    assoc.requestor.address, _text(assoc.requestor.ae_title),
                    _text(assoc.acceptor.ae_title), assoc.requestor.maximum_length)
        accepted = assoc.accepted_contexts
        if not accepted:
            LOGGER.info("No Acceptable Presentation Contexts for %s: %s -> %s:\n%s",
                        assoc.requestor.address, _text(assoc.requestor.ae_title),
                        _text(assoc.acceptor.ae_title),
                        "\n".join(negotiation_lines(accepted, assoc.rejected_contexts)))
        elif LOGGER.isEnabledFor(logging.DEBUG):  # the lines cost ~1 ms for 120 contexts
            LOGGER.debug("Presentation contexts of %s: %s -> %s:\n%s",
                         assoc.requestor.address, _text(assoc.requestor.ae_title),
                         _text(assoc.acceptor.ae_title),
                         "\n".join(negotiation_lines(accepted, assoc.rejected_contexts)))

    def _on_ended(self, event: Event) -> None:
        assoc = event.assoc
        _drop_unfinished(assoc)
        verb = "Released" if assoc.is_released else "Aborted"
        LOGGER.info("Association %s %s: %s -> %s", verb, assoc.requestor.address,
                    _text(assoc.requestor.ae_title), _text(assoc.acceptor.ae_title))

    def _on_connection_closed(self, event: Event) -> None:
        assoc = event.assoc
        _drop_unfinished(assoc)
        if self.internals and assoc.is_acceptor and assoc.requestor.primitive is None:
            # pynetdicom's acceptor waits the full ACSE timeout for an A-ASSOCIATE-RQ even
            # after the peer is gone, holding a MaxAssociations slot; this ends that wait.
            end_wait_for_request(assoc.dul)
        ae_title = self._store_slot_of.pop(assoc, None)
        if ae_title is not None:
            with self._lock:
                self._store_associations[ae_title] = 0


def _http_host(web: WebListener) -> str:
    host = web.settings.host
    return f"[{host}]:{web.port}" if ":" in host else f"{host}:{web.port}"


def _drop_unfinished(assoc: Association) -> None:
    channel = Channel.of(assoc)
    if channel is not None:
        channel.drop_unfinished()


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip()
