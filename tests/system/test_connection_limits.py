"""One peer's bounded share of the connection layer: socket timeouts changed only by the reading
thread, every read bounded, unassociated connections outside MaxAssociations.

Hostile timing is written with raw sockets (PDUs by hand, PS3.8 9.3); DCMTK's tools check that
normal clients are served.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from helpers import (
    POLL_DEADLINE,
    have_dcmtk,
    make_ct,
    poll_until,
    pyqrscp_process,
    run_tool,
    still_open,
    wait_for_log,
    write_config,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet,
)

from pyqrscp.config import load_config
from pyqrscp.config.options import Options
from pyqrscp.link.internals import PUBLIC_ONLY_VARIABLE
from pyqrscp.server import server as server_module
from pyqrscp.server.server import ArchiveServer

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]

VERIFICATION = "1.2.840.10008.1.1"


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq() -> bytes:
    """An A-ASSOCIATE-RQ from HOSTILE to ARCHIVE proposing Verification."""
    context = _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, VERIFICATION.encode())
                    + _item(0x40, b"1.2.840.10008.1.2"))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + b"ARCHIVE".ljust(16) + b"HOSTILE".ljust(16) + bytes(32)
            + _item(0x10, b"1.2.840.10008.3.1.1.1") + context + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def read_pdu_type(sock: socket.socket) -> int | None:
    head = b""
    while len(head) < 6:
        part = sock.recv(6 - len(head))
        if not part:
            return None
        head += part
    _kind, length = struct.unpack(">BxI", head)
    remaining = length
    while remaining:
        part = sock.recv(min(remaining, 65536))
        if not part:
            return None
        remaining -= len(part)
    return head[0]


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Does the server close the connection within ``seconds`` (a generous deadline)?"""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def config_for(base: Path, extra_globals: str = "") -> Path:
    config = write_config(base, [f"ARCHIVE {base / 'db'} RW (1000, 1024mb) ANY"],
                          extra_globals=extra_globals)
    if extra_globals:
        config.write_text(config.read_text().replace("MaxAssociations = 16\n", ""))
    return config


# -- the socket's timeout is the reader's ------------------------------------------------------

@pytest.mark.pynetdicom_internals(
    reason="the socket timeouts and the stall line are the channel's")
def test_only_the_reading_thread_changes_the_socket_timeout(tmp_path: Path) -> None:
    """CPython clears a socket's timeout before it makes the descriptor blocking: a ``recv`` of
    another thread in between raises BlockingIOError, which pynetdicom takes for a closed
    connection (a storing client's first C-STORE then fails under CPU load).  Every timeout
    change on the accepted socket, once it is read, must come from a thread that reads it."""
    config = load_config(config_for(tmp_path))
    server = ArchiveServer(config, dataclasses.replace(Options(), port=0), host="127.0.0.1")
    server.start()
    port = server.port
    events: list[tuple[str, str]] = []

    def profile(_frame: FrameType, event: str, arg: Any) -> None:
        if event != "c_call" or getattr(arg, "__name__", "") not in (
                "settimeout", "recv", "recv_into"):
            return
        owner = getattr(arg, "__self__", None)
        if (isinstance(owner, socket.socket) and owner.fileno() >= 0
                and owner.family in (socket.AF_INET, socket.AF_INET6)):  # not a wake-up pair
            try:
                local_port = owner.getsockname()[1]
            except OSError:
                return
            if local_port == port:
                events.append((arg.__name__, threading.current_thread().name))

    threading.setprofile(profile)
    try:
        client = AE()
        client.add_requested_context(VERIFICATION)
        assoc = client.associate("127.0.0.1", port, ae_title="ARCHIVE")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
    finally:
        threading.setprofile(None)
        server.stop()
    first_read = next(n for n, (call, _t) in enumerate(events) if call != "settimeout")
    readers = {thread for call, thread in events if call != "settimeout"}
    changers = {thread for call, thread in events[first_read:] if call == "settimeout"}
    assert changers <= readers, (changers, readers)


@pytest.mark.slow
def test_fresh_storing_associations_under_cpu_load_never_fail(tmp_path: Path) -> None:
    """Many fresh storescu associations while every core is busy: zero failures."""
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True)
               for _ in range(4)]
    instance = make_ct(tmp_path, rows=256)
    failures: list[str] = []
    for burner in burners:
        burner.start()
    try:
        with pyqrscp_process(config_for(tmp_path)) as server:
            for _ in range(200):
                result = run_tool("storescu", "-aec", "ARCHIVE", "localhost",
                                  str(server.port), str(instance), timeout=120)
                if result.returncode != 0:
                    failures.append(result.stderr)
            errors = [line for line in server.log if line.startswith("E:")]
    finally:
        stop.set()
        for burner in burners:
            burner.join(10)
    assert failures == [], failures[:3]
    assert errors == []


def _burn(stop: Any) -> None:
    while not stop.is_set():
        sum(range(10000))


# -- every read is bounded -----------------------------------------------------------------------

@pytest.mark.pynetdicom_internals(
    reason="the socket timeouts and the stall line are the channel's")
@pytest.mark.parametrize("flags", [("-to", "2"), ("-td", "2"), ("-ta", "2")],
                         ids=["network-timeout", "dimse-timeout", "acse-timeout"])
def test_a_peer_stopping_inside_a_pdu_after_association_is_dropped(
        tmp_path: Path, flags: tuple[str, str]) -> None:
    with pyqrscp_process(config_for(tmp_path), *flags) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(associate_rq())
            assert read_pdu_type(sock) == 0x02
            # a P-DATA-TF announcing 100 bytes, of which 10 arrive
            sock.sendall(struct.pack(">BxI", 0x04, 100) + bytes(10))
            assert closed_within(sock, 30), "the server kept a peer stalled inside a PDU"
        assert run_tool("echoscu", "-aec", "ARCHIVE", "localhost",
                        str(server.port)).returncode == 0
        wait_for_log(server, "sent part of a PDU and then nothing for 2.0 s")
        wait_for_log(server, "HOSTILE (127.0.0.1)")
        # pynetdicom's own error records come through, in pyqrscp's format
        wait_for_log(server, "E: Connection closed before the entire PDU was received")


# -- connections without an A-ASSOCIATE-RQ ---------------------------------------------------------

@contextmanager
def silent_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(count)]
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_silent_connections_take_no_association_place(tmp_path: Path) -> None:
    config = config_for(tmp_path, "MaxAssociations = 2")
    with pyqrscp_process(config, "--unassociated-timeout", "120") as server:
        with silent_connections(server.port, 10) as silent:
            for _ in range(3):
                result = run_tool("echoscu", "-aec", "ARCHIVE", "localhost", str(server.port))
                assert result.returncode == 0, result.stderr
            for sock in silent:  # still open: served while the silent ones wait
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)


@pytest.mark.pynetdicom_internals(
    reason=("ending pynetdicom's wait for the A-ASSOCIATE-RQ of a peer that is gone needs its "
            "queues"))
def test_unassociated_connections_have_their_own_bounded_allowance(tmp_path: Path) -> None:
    with pyqrscp_process(config_for(tmp_path), "--unassociated-timeout", "120", "-ta", "120",
                         "--max-unassociated-per-host", "3") as server:
        with silent_connections(server.port, 4) as connections:
            # each connection is admitted in its own thread: whichever of the four comes last
            # (not necessarily the last opened) finds the three places taken and is closed
            closed = poll_until(lambda: [s for s in connections if not still_open(s)] or None,
                                "a connection beyond the allowance to be closed")
            assert len(closed) == 1
            assert sum(still_open(s) for s in connections) == 3
        assert run_tool("echoscu", "-aec", "ARCHIVE", "localhost",
                        str(server.port)).returncode == 0
        wait_for_log(server, "connection from 127.0.0.1 closed")
        wait_for_log(server, "--max-unassociated-per-host 3")


def test_a_connection_admitted_in_its_own_association_thread_is_not_counted_twice(
        tmp_path: Path) -> None:
    """A connection handed straight to an association made ahead is admitted in that
    association's thread, which is live before it admits: with one place per host the first
    connection keeps it (its request is answered) and the second, arriving while the first
    waits, is the one closed."""
    with pyqrscp_process(config_for(tmp_path), "--unassociated-timeout", "120", "-ta", "120",
                         "--max-unassociated-per-host", "1") as server:
        with silent_connections(server.port, 1) as (first,):
            with silent_connections(server.port, 1) as (second,):
                wait_for_log(server, "--max-unassociated-per-host 1")
                poll_until(lambda: not still_open(second), "the second connection closed")
            first.sendall(associate_rq())  # answered only where the first was admitted
            assert first.recv(1) == bytes([0x02]), "the connection within the allowance was closed"


def test_a_connection_handed_to_its_association_is_counted_once(tmp_path: Path) -> None:
    """A connection's association thread is live a moment before its handler gives back the
    place it took on arrival; a connection from the same host arriving in that moment must
    see one connection waiting, not two.  The first connection's handler is held exactly
    there (a profile hook on its return from starting the association's thread) until the
    second connection has been admitted or closed."""
    options = dataclasses.replace(Options(), port=0, acse_timeout=120,
                                  unassociated_timeout=120, max_unassociated_per_host=2)
    server = ArchiveServer(load_config(config_for(tmp_path)), options, host="127.0.0.1")
    server.start()
    spares = server.listener.spares
    if spares is not None:
        spares.close()  # connections go through handler threads, the path held here
    in_handover = threading.Event()
    release = threading.Event()
    second_started = threading.Event()
    start_code = threading.Thread.start.__code__

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if (event != "return" or frame.f_code is not start_code
                or not isinstance(frame.f_locals.get("self"), Association)):
            return
        if not in_handover.is_set():
            in_handover.set()
            release.wait(120)  # held between the thread's start and the handler's return
        else:
            second_started.set()

    threading.setprofile(profile)
    try:
        with silent_connections(server.port, 1) as (first,):
            poll_until(in_handover.is_set, "the first connection's association to start")
            with silent_connections(server.port, 1) as (second,):
                poll_until(lambda: second_started.is_set() or not still_open(second),
                           "the second connection to be admitted or closed")
                release.set()
                assert still_open(second), "a connection within the allowance was closed"
                assert still_open(first)
                with silent_connections(server.port, 1) as (third,):  # the bound still holds
                    poll_until(lambda: not still_open(third), "the third to be closed")
    finally:
        release.set()
        threading.setprofile(None)
        server.stop()


@pytest.mark.parametrize("public_only", ["1", ""], ids=["public-path", "internals"])
def test_stop_ends_a_connection_that_never_associated_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, public_only: str) -> None:
    """A peer that connects and never sends its A-ASSOCIATE-RQ does not hold the stop: with the
    grace for running associations and the unassociated timeout both 600 s, ``stop()`` returns
    and the connection is closed well within a tenth of that."""
    monkeypatch.setenv(PUBLIC_ONLY_VARIABLE, public_only)
    monkeypatch.setattr(server_module, "SHUTDOWN_GRACE_SECONDS", 600.0)
    options = dataclasses.replace(Options(), port=0, acse_timeout=600,
                                  unassociated_timeout=600)
    server = ArchiveServer(load_config(config_for(tmp_path)), options, host="127.0.0.1")
    server.start()
    stopped = threading.Event()
    try:
        with silent_connections(server.port, 1) as (silent,):
            poll_until(lambda: server.listener.active_associations,
                       "the silent connection to be taken")

            def stop() -> None:
                server.stop()
                stopped.set()

            threading.Thread(target=stop, daemon=True).start()
            assert stopped.wait(POLL_DEADLINE), "stop() waited for a connection without a request"
            assert closed_within(silent, POLL_DEADLINE)
    finally:
        if not stopped.is_set():
            server.stop()


@pytest.mark.parametrize("public_only", ["1", ""], ids=["public-path", "internals"])
def test_a_request_handed_over_after_stop_began_is_rejected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, public_only: str) -> None:
    """An A-ASSOCIATE-RQ read as the stop begins reaches the server's decision only after it
    (held here until the listening socket is closed): it gets a transient rejection, not an
    association served on the areas the stop closes."""
    monkeypatch.setenv(PUBLIC_ONLY_VARIABLE, public_only)
    entered, go = threading.Event(), threading.Event()
    on_requested = ArchiveServer._on_requested

    def held(self: ArchiveServer, event: Any) -> None:
        entered.set()
        assert go.wait(POLL_DEADLINE), "the test never let the request through"
        on_requested(self, event)

    monkeypatch.setattr(ArchiveServer, "_on_requested", held)
    options = dataclasses.replace(Options(), port=0)
    server = ArchiveServer(load_config(config_for(tmp_path)), options, host="127.0.0.1")
    server.start()
    port = server.port
    stopper = threading.Thread(target=server.stop, daemon=True)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=POLL_DEADLINE) as peer:
            peer.sendall(associate_rq())
            assert entered.wait(POLL_DEADLINE), "the request never reached the server"
            stopper.start()
            poll_until(lambda: not _listening(port), "the listening socket to close")
            go.set()
            assert read_pdu_type(peer) == 0x03  # A-ASSOCIATE-RJ, not 0x02 (A-ASSOCIATE-AC)
    finally:
        go.set()
        if stopper.ident is None:  # never started
            server.stop()
        stopper.join(POLL_DEADLINE)
    assert not stopper.is_alive()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=POLL_DEADLINE).close()
    except OSError:  # refused, or reset: taken into the backlog as the socket closed
        return False
    return True


def test_a_connection_without_a_request_is_closed_after_the_unassociated_timeout(
        tmp_path: Path) -> None:
    """``--unassociated-timeout 1`` closes a silent connection although ``-ta`` is 60 s."""
    with pyqrscp_process(config_for(tmp_path), "-ta", "60",
                         "--unassociated-timeout", "1") as server:
        with silent_connections(server.port, 1) as (silent,):
            assert closed_within(silent, 50)


# -- a tiny maximum PDU length ---------------------------------------------------------------------

def _peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_a_c_get_to_a_peer_announcing_7_bytes_costs_no_memory_per_pdu(tmp_path: Path) -> None:
    """512 KiB to a peer whose maximum PDU length is 7: one data byte per PDU, 524,288 PDUs.
    Framing them took 144 MiB (one object per PDU); now a bounded batch."""
    path = make_ct(tmp_path, rows=512)  # 512 KiB of pixels
    ds = dcmread(path)
    with pyqrscp_process(config_for(tmp_path)) as server:
        assert run_tool("storescu", "-aec", "ARCHIVE", "localhost", str(server.port),
                        str(path)).returncode == 0
        baseline = _peak_rss_mib(server.process.pid)
        received: list[bytes] = []

        def on_store(event: evt.Event) -> int:
            received.append(bytes(event.request.DataSet.getvalue()))  # type: ignore[union-attr]
            return 0x0000

        ae = AE(ae_title="TINYPDU")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
        ae.maximum_pdu_size = 7
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="ARCHIVE", max_pdu=7,
                             ext_neg=[build_role(CTImageStorage, scp_role=True)],
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
        assert assoc.is_established
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ds.StudyInstanceUID
        statuses = [int(status.Status) for status, _identifier in
                    assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
                    if status is not None]
        assoc.release()
        grown = _peak_rss_mib(server.process.pid) - baseline
    assert statuses[-1] == 0x0000
    assert len(received) == 1 and received[0].endswith(ds.PixelData)  # Pixel Data is last
    assert grown < 32, f"peak RSS grew by {grown:.1f} MiB"
