"""What the archive makes of A-ASSOCIATE-RQ PDUs other stacks send: NUL-padded AE titles are
accepted as DCMTK accepts them, and every request refused below the AETable rules is logged at
the normal levels with the peer's address, its AE titles and the reason.

The PDUs are written by hand (PS3.8 9.3.2), since no DCMTK tool pads with NULs.
"""

from __future__ import annotations

import gc
import socket
import struct
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ServerInProcess,
    free_port,
    have_dcmtk,
    make_ct,
    poll_until,
    pyqrscp_in_process,
    run_tool,
    wait_for_log,
    write_config,
)
from pydicom.uid import UID
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ASSOCIATE_RQ as A_ASSOCIATE_RQ_PDU
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)

from pyqrscp.link.internals import is_counted
from pyqrscp.link.library import describe_pdus

A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT = 0x02, 0x03, 0x07
RELEASE_RP = struct.pack(">BBIL", 0x06, 0, 4, 0)
DCMQRSCP = Path("/usr/bin/dcmqrscp")


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq(called: bytes, calling: bytes, version: int = 1) -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification; titles are sent as given (padded with spaces
    to 16 bytes only when shorter)."""
    context = _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, b"1.2.840.10008.1.1")
                    + _item(0x40, b"1.2.840.10008.1.2"))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (struct.pack(">HH", version, 0) + called.ljust(16)[:16] + calling.ljust(16)[:16]
            + bytes(32) + _item(0x10, b"1.2.840.10008.3.1.1.1") + context + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def answer(port: int, pdu: bytes) -> int | None:
    """Type of the first PDU the archive answers (None: closed without one); an accepted
    association is released.  Every PDU is read whole and the connection ends with a FIN from
    each side, so no reset (RST) is ever part of what a test sees."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(pdu)
        first = read_pdu(sock, eof_allowed=True)
        if first and first[0] == A_ASSOCIATE_AC:
            sock.sendall(struct.pack(">BBIL", 0x05, 0, 4, 0))
            assert read_pdu(sock) == RELEASE_RP
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(4096):
            pass
        return first[0] if first else None


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInProcess]:
    base = tmp_path_factory.mktemp("association-request")
    config = write_config(base, [f"ARCHIVE {base / 'db'} RW (100, 64mb) ANY"])
    with pyqrscp_in_process(config) as server:
        yield server


@pytest.fixture(params=[True, False], ids=["pdu-descriptions", "no-pdu-descriptions"])
def served(archive: ServerInProcess, request: pytest.FixtureRequest
           ) -> Iterator[ServerInProcess]:
    """The module's archive, its log emptied, with pynetdicom's PDU descriptions on (every
    request decoded and negotiated) or off (as without ``-ll trace``: requests and their
    negotiation kept); on again afterwards."""
    describe_pdus(bool(request.param))
    _remake_spares(archive)
    archive.log.clear()
    try:
        yield archive
    finally:
        describe_pdus(True)
        _remake_spares(archive)


def _remake_spares(archive: ServerInProcess) -> None:
    """Associations made ahead took the PDU descriptions' setting when they were made."""
    spares = archive.server.listener.spares
    if spares is not None:
        spares.clear()
        spares.refill()


@pytest.mark.parametrize(("called", "calling"), [
    (b"ARCHIVE".ljust(16, b"\x00"), b"NULPAD".ljust(16, b"\x00")),
    (b"ARCHIVE\x00" + b" " * 8, b"NULPAD2\x00       "),
    (b"ARCHIVE\x00junk\x00\x00\x00\x00", b"NULPAD3\x00\x01\x02"),
])
@pytest.mark.pynetdicom_internals(
    reason=("the A-ASSOCIATE-RQ decoder hook (NUL-padded AE titles, refusals logged before the "
            "acceptance rules)"))
def test_ae_titles_padded_with_nul_are_accepted(served: ServerInProcess, called: bytes,
                                                calling: bytes) -> None:
    assert answer(served.port, associate_rq(called, calling)) == A_ASSOCIATE_AC
    name = calling.split(b"\x00")[0].decode()
    wait_for_log(served, f"I: Association Acknowledged 127.0.0.1: {name} -> ARCHIVE")


@pytest.mark.parametrize(("called", "calling", "version", "answered", "logged"), [
    ("ÄRCHIVE".encode(), b"LATIN1", 1, A_ABORT,
     r"Association Refused 127.0.0.1: LATIN1 -> \xc3\x84RCHIVE: undecodable A-ASSOCIATE-RQ"),
    (b"ARCHIVE", b"\x00" * 16, 1, A_ABORT,
     "Association Refused 127.0.0.1:  -> ARCHIVE: undecodable A-ASSOCIATE-RQ"),
    (b"ARCHIVE", b"VERSION2", 2, A_ASSOCIATE_RJ,
     "Association Refused 127.0.0.1: VERSION2 -> ARCHIVE: unsupported protocol version 2"),
    (b"NOSUCHAE", b"UNKNOWN", 1, A_ASSOCIATE_RJ,
     "Association Rejected 127.0.0.1: UNKNOWN -> NOSUCHAE"),
])
@pytest.mark.pynetdicom_internals(
    reason=("the A-ASSOCIATE-RQ decoder hook (NUL-padded AE titles, refusals logged before the "
            "acceptance rules)"))
def test_every_refused_request_is_logged_with_peer_titles_and_reason(
        served: ServerInProcess, called: bytes, calling: bytes, version: int, answered: int,
        logged: str) -> None:
    for _ in range(2):  # without PDU descriptions, the second is found among the kept
        assert answer(served.port, associate_rq(called, calling, version)) == answered
    assert wait_for_log(served, logged).startswith("W: ")
    poll_until(lambda: served.log_text().count(logged) == 2, f"{logged!r} twice")
    assert echo_still_served(served)


def echo_still_served(archive: ServerInProcess) -> bool:
    return answer(archive.port, associate_rq(b"ARCHIVE", b"AFTER")) == A_ASSOCIATE_AC


def abort_and_reset(port: int, pdu: bytes) -> None:
    """Associate with ``pdu``, send an A-ABORT and reset the connection at once (RST: linger
    0): the archive's shutdown of its socket then fails (ENOTCONN)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(pdu)
        assert read_pdu(sock)[0] == A_ASSOCIATE_AC
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, 0, 0))


def test_a_reset_connection_has_its_socket_closed_at_once(tmp_path: Path) -> None:
    """Each connection's socket is closed when its association ends, not left to garbage
    collection (whose ResourceWarning for the unclosed socket would fail a random test)."""
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pyqrscp_in_process(config) as server:
            listener = server.server.listener
            for _ in range(10):
                abort_and_reset(server.port, associate_rq(b"ARCHIVE", b"RESET"))
            poll_until(lambda: not listener.active_associations, "the associations to end")
            gc.collect()
    local = f"laddr=('127.0.0.1', {server.port})"
    assert [str(w.message) for w in caught if local in str(w.message)] == []


@pytest.mark.skipif(not DCMQRSCP.exists(), reason="needs /usr/bin/dcmqrscp")
def test_dcmqrscp_accepts_the_same_nul_padded_titles(tmp_path: Path) -> None:
    """The behaviour copied: dcmqrscp accepts the NUL-padded request the tests above send."""
    (tmp_path / "db").mkdir()
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    port = free_port()
    reference = subprocess.Popen([str(DCMQRSCP), "-c", str(config), str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            assert reference.poll() is None, "dcmqrscp exited"
            if run_tool("echoscu", "-to", "2", "localhost", str(port), "-aec",
                        "ARCHIVE").returncode == 0:
                break
        padded = associate_rq(b"ARCHIVE".ljust(16, b"\x00"), b"NULPAD".ljust(16, b"\x00"))
        assert answer(port, padded) == A_ASSOCIATE_AC
    finally:
        reference.terminate()
        reference.wait(timeout=20)


@pytest.fixture()
def pdu_descriptions() -> Iterator[Callable[[bool], None]]:
    """pyqrscp's switch of pynetdicom's PDU descriptions, for one test; on again afterwards
    (pynetdicom's default, which in-process servers leave as it is)."""
    yield describe_pdus
    describe_pdus(True)


@pytest.mark.pynetdicom_internals(
    reason="the A-ASSOCIATE-RQ decoder hook keeps the requests it decoded")
def test_a_repeated_request_is_decoded_once_and_every_association_answered(
        tmp_path: Path, pdu_descriptions: Callable[[bool], None]) -> None:
    pdu_descriptions(False)  # as without -ll trace
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    with pyqrscp_in_process(config) as server:
        decoded = server.server.listener.decoded_requests
        assert decoded is not None and len(decoded) == 0
        for _ in range(3):
            assert answer(server.port, associate_rq(b"ARCHIVE", b"AGAIN")) == A_ASSOCIATE_AC
            assert len(decoded) == 1
        assert answer(server.port, associate_rq(b"ARCHIVE", b"OTHER")) == A_ASSOCIATE_AC
        assert answer(server.port, associate_rq(b"NOSUCHAE", b"AGAIN")) == A_ASSOCIATE_RJ
        assert answer(server.port, associate_rq(b"NOSUCHAE", b"AGAIN")) == A_ASSOCIATE_RJ
        assert answer(server.port, associate_rq(b"ARCHIVE", b"VERSION2", 2)) == A_ASSOCIATE_RJ
        assert len(decoded) == 3  # not the request of another protocol version
        assert server.log_text().count("Association Acknowledged 127.0.0.1: AGAIN") == 3
        assert server.log_text().count("Association Rejected 127.0.0.1: AGAIN") == 2


@pytest.mark.pynetdicom_internals(
    reason="the A-ASSOCIATE-RQ decoder hook keeps the requests it decoded")
def test_requests_are_decoded_every_time_while_pynetdicom_describes_pdus(
        tmp_path: Path, pdu_descriptions: Callable[[bool], None]) -> None:
    """With pynetdicom's PDU descriptions on (``-ll trace``) its handlers see every request."""
    pdu_descriptions(True)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    with pyqrscp_in_process(config) as server:
        for _ in range(2):
            assert answer(server.port, associate_rq(b"ARCHIVE", b"AGAIN")) == A_ASSOCIATE_AC
        decoded = server.server.listener.decoded_requests
        assert decoded is not None and len(decoded) == 0


def _echo_as(port: int, password: bytes | None) -> None:
    """One C-ECHO from pynetdicom, with a user name and ``password`` when given (PS3.7 D.3.3.7)."""
    ae = AE(ae_title="WITHUSER")
    ae.add_requested_context(UID("1.2.840.10008.1.1"))
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"alice"
    identity.secondary_field = password
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE",
                         ext_neg=[identity] if password is not None else [])
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


@pytest.mark.pynetdicom_internals(
    reason="the A-ASSOCIATE-RQ decoder hook keeps the requests it decoded")
def test_a_request_with_user_identity_is_never_kept(
        tmp_path: Path, pdu_descriptions: Callable[[bool], None]) -> None:
    """A user name and password must not outlive the association they came with."""
    pdu_descriptions(False)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    with pyqrscp_in_process(config) as server:
        decoded = server.server.listener.decoded_requests
        assert decoded is not None
        for _ in range(2):
            _echo_as(server.port, b"s3cret-password")
        if have_dcmtk():
            sample = make_ct(tmp_path)
            stored = run_tool("storescu", "-aec", "ARCHIVE", "--user", "bob", "--password",
                              "dcmtk-secret", "127.0.0.1", str(server.port), str(sample))
            assert stored.returncode == 0, stored.stderr
        assert len(decoded) == 0
        _echo_as(server.port, None)
        assert len(decoded) == 1  # the same request without a user identity is kept


VERIFICATION, CT_IMAGE_STORAGE = "1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND, STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.1.2.2.3"
IMPLICIT_VR, JPEG_BASELINE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"


def proposing_rq(calling: str, proposed: list[tuple[str, str]],
                 scp_roles: tuple[str, ...] = ()) -> bytes:
    """An A-ASSOCIATE-RQ as pynetdicom encodes it: one context per (abstract syntax, transfer
    syntax), IDs 1, 3, 5...; an SCP/SCU role selection (SCP role) for each of ``scp_roles``."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = UID("1.2.840.10008.3.1.1.1")
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "ARCHIVE"
    contexts = []
    for number, (abstract, transfer) in enumerate(proposed):
        context = build_context(abstract, [transfer])
        context.context_id = 2 * number + 1
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = UID("1.2.3.4")
    roles = []
    for sop_class in scp_roles:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = UID(sop_class)
        role.scu_role, role.scp_role = False, True
        roles.append(role)
    primitive.user_information = [maximum, implementation, *roles]
    return bytes(A_ASSOCIATE_RQ_PDU(primitive).encode())


def read_pdu(sock: socket.socket, eof_allowed: bool = False) -> bytes:
    """One whole PDU, header included (read byte-exact: nothing after it is taken); with
    ``eof_allowed``, empty when the archive closes before the PDU's first byte."""
    pdu, whole = b"", 6
    while len(pdu) < whole:
        chunk = sock.recv(whole - len(pdu))
        if not chunk and not pdu and eof_allowed:
            return b""
        assert chunk, "closed by the archive"
        pdu += chunk
        if len(pdu) >= 6:
            whole = 6 + struct.unpack(">I", pdu[2:6])[0]
    return pdu


@contextmanager
def associated(port: int, request: bytes) -> Iterator[bytes]:
    """An association from ``request``: yields the A-ASSOCIATE-AC's bytes, releases after."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        accept = read_pdu(sock)
        assert accept[0] == A_ASSOCIATE_AC
        yield accept
        sock.sendall(struct.pack(">BBIL", 0x05, 0, 4, 0))
        assert read_pdu(sock) == RELEASE_RP


def context_results(accept: bytes) -> dict[int, int]:
    """Presentation context ID -> result (PS3.8 9.3.3.2) of an A-ASSOCIATE-AC."""
    results, offset = {}, 74
    while offset < len(accept):
        kind, length = accept[offset], struct.unpack(">H", accept[offset + 2:offset + 4])[0]
        if kind == 0x21:
            results[accept[offset + 4]] = accept[offset + 6]
        offset += 4 + length
    return results


@pytest.mark.pynetdicom_internals(
    reason="the A-ASSOCIATE-RQ decoder hook keeps the requests and their negotiation")
def test_a_repeated_request_takes_the_kept_negotiation_and_gets_the_same_answer(
        tmp_path: Path, pdu_descriptions: Callable[[bool], None]) -> None:
    """The second and later associations of the same request are answered from the outcome
    of the first, byte for byte: accepted, rejected (abstract syntax, transfer syntax) and
    the role reply of a C-GET requestor."""
    pdu_descriptions(False)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    request = proposing_rq("AGAIN", [
        (VERIFICATION, IMPLICIT_VR), (CT_IMAGE_STORAGE, IMPLICIT_VR),
        (STUDY_ROOT_GET, IMPLICIT_VR), ("1.2.3.4.5.6", IMPLICIT_VR),
        (STUDY_ROOT_FIND, JPEG_BASELINE)], scp_roles=(CT_IMAGE_STORAGE,))
    with pyqrscp_in_process(config) as server:
        negotiated = server.server.listener.negotiated
        assert negotiated is not None and len(negotiated) == 0
        with associated(server.port, request) as first:
            assert context_results(first) == {1: 0, 3: 0, 5: 0, 7: 3, 9: 4}
        assert len(negotiated) == 1
        for _ in range(2):
            with associated(server.port, request) as again:
                assert again == first
        assert len(negotiated) == 1
        with associated(server.port, proposing_rq("OTHER", [(VERIFICATION, IMPLICIT_VR)])):
            pass
        assert len(negotiated) == 2
        assert server.log_text().count("Association Acknowledged 127.0.0.1: AGAIN") == 3


@pytest.mark.pynetdicom_internals(
    reason="the A-ASSOCIATE-RQ decoder hook keeps the requests and their negotiation")
def test_a_kept_negotiation_is_not_taken_for_another_acceptance(
        tmp_path: Path, pdu_descriptions: Callable[[bool], None]) -> None:
    """The same request bytes, another acceptance: with --no-parallel-store a second storing
    association gets no storage context while the first is open, and gets it again after."""
    pdu_descriptions(False)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    request = proposing_rq("STORER", [(VERIFICATION, IMPLICIT_VR),
                                      (CT_IMAGE_STORAGE, IMPLICIT_VR)])
    with pyqrscp_in_process(config, "--no-parallel-store") as server:
        with associated(server.port, request) as first:
            assert context_results(first) == {1: 0, 3: 0}
            with associated(server.port, request) as second:
                assert context_results(second) == {1: 0, 3: 3}
        with associated(server.port, request) as third:
            assert third == first


@pytest.mark.pynetdicom_internals(reason="the association's thread turns the DUL's loop")
def test_the_association_thread_answers_the_request_before_the_dul_thread_starts(
        archive: ServerInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The association's own thread reads the A-ASSOCIATE-RQ, negotiates and sends the
    A-ASSOCIATE-AC, turning the DUL's loop itself; the DUL's thread starts once the answer is
    sent (no thread start or hand-off between threads before the peer has it).  Also for a
    rejected request; and the association is served as before afterwards."""
    states: list[str] = []
    original = DULServiceProvider.start

    def start(dul: DULServiceProvider) -> None:
        states.append(dul.state_machine.current_state)
        original(dul)

    monkeypatch.setattr(DULServiceProvider, "start", start)
    assert answer(archive.port, associate_rq(b"ARCHIVE", b"INLINE")) == A_ASSOCIATE_AC
    assert answer(archive.port, associate_rq(b"NOSUCHAE", b"INLINE")) == A_ASSOCIATE_RJ
    assert states == ["Sta6", "Sta13"]
    assert run_tool("echoscu", "-aec", "ARCHIVE", "127.0.0.1", str(archive.port)).returncode == 0


@pytest.mark.pynetdicom_internals(
    reason="the A-ASSOCIATE-RQ decoder hook keeps the requests and makes their primitive once")
def test_the_primitive_shared_by_a_kept_request_stays_as_received(
        tmp_path: Path, pdu_descriptions: Callable[[bool], None]) -> None:
    """Every association of a kept request is given one primitive, made once of the kept PDU
    (pynetdicom writes to a primitive only to reject another protocol version, whose requests
    are never kept): after associations negotiated and answered from the kept outcome, it
    still encodes to the request's bytes."""
    pdu_descriptions(False)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (100, 64mb) ANY"])
    request = proposing_rq("SHARED", [
        (VERIFICATION, IMPLICIT_VR), (CT_IMAGE_STORAGE, IMPLICIT_VR),
        (STUDY_ROOT_GET, IMPLICIT_VR), ("1.2.3.4.5.6", IMPLICIT_VR),
        (STUDY_ROOT_FIND, JPEG_BASELINE)], scp_roles=(CT_IMAGE_STORAGE,))
    with pyqrscp_in_process(config) as server:
        for _ in range(3):
            with associated(server.port, request) as accept:
                assert context_results(accept) == {1: 0, 3: 0, 5: 0, 7: 3, 9: 4}
        decoded = server.server.listener.decoded_requests
        kept = decoded.get(request) if decoded is not None else None
        assert kept is not None and isinstance(kept[0], A_ASSOCIATE_RQ_PDU)
        primitive = kept[0].to_primitive()
        assert primitive is kept[0].to_primitive()
        assert bytes(A_ASSOCIATE_RQ_PDU(primitive).encode()) == request
        assert server.log_text().count("Association Acknowledged 127.0.0.1: SHARED") == 3


@pytest.mark.pynetdicom_internals(reason="associations are made ahead of their connection")
def test_a_spare_association_serves_its_connection_from_the_start(
        archive: ServerInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an association made ahead and no TLS handshake to run first, a connection goes
    straight to that association's thread: no handler thread of its own is started (the
    admission and EVT_CONN_OPEN run in the association's thread), and it is served."""
    listener = archive.server.listener
    spares = listener.spares
    assert spares is not None
    poll_until(lambda: len(spares) == 1, "a spare association")
    handled: list[object] = []
    original = type(listener).process_request_thread

    def process_request_thread(server: Any, *args: Any) -> None:
        handled.append(args[1])
        original(server, *args)

    monkeypatch.setattr(type(listener), "process_request_thread", process_request_thread)
    archive.log.clear()
    assert run_tool("echoscu", "-aec", "ARCHIVE", "-aet", "DIRECT", "127.0.0.1",
                    str(archive.port)).returncode == 0
    wait_for_log(archive, "Association Released 127.0.0.1: DIRECT -> ARCHIVE")
    assert handled == []


@pytest.mark.pynetdicom_internals(reason="associations are made ahead of their connection")
def test_a_connection_takes_an_association_made_ahead(
        archive: ServerInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """No association is made between a connection's arrival and its A-ASSOCIATE-AC: one is
    made ahead, in the thread of the association before it once that has ended, and the
    connection takes it (with the server's handlers bound: its lines are logged).  Binding
    a handler on the server drops the spares made before (they lack it)."""
    listener = archive.server.listener
    spares = listener.spares
    assert spares is not None
    poll_until(lambda: len(spares) == 1, "a spare association")
    made_in: list[str] = []
    original = Association.__init__

    def init(assoc: Association, *args: Any, **kwargs: Any) -> None:
        made_in.append(threading.current_thread().name)
        original(assoc, *args, **kwargs)

    monkeypatch.setattr(Association, "__init__", init)
    archive.log.clear()
    assert run_tool("echoscu", "-aec", "ARCHIVE", "-aet", "AHEAD", "127.0.0.1",
                    str(archive.port)).returncode == 0
    wait_for_log(archive, "Association Released 127.0.0.1: AHEAD -> ARCHIVE")
    poll_until(lambda: len(spares) == 1, "a spare association made again")
    assert made_in and all(name.startswith("AcceptorThread@") for name in made_in), made_in
    def echoed(_event: evt.Event) -> int:
        return 0x0000

    listener.bind(evt.EVT_C_ECHO, echoed)
    try:
        assert len(spares) == 0
    finally:
        listener.unbind(evt.EVT_C_ECHO, echoed)
        spares.refill()


@pytest.mark.pynetdicom_internals(reason="associations are made ahead of their connection")
def test_an_ended_association_is_not_counted_while_it_makes_the_next(
        archive: ServerInProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread of an association that has ended makes the next spare; while it does, it
    is still alive, and must not count against MaxAssociations or the unassociated allowance
    (a client that releases and associates again at the limit would be rejected)."""
    spares = archive.server.listener.spares
    assert spares is not None
    poll_until(lambda: len(spares) == 1, "a spare association")
    counted_while_making: list[bool] = []
    make = spares._make

    def recording() -> Association:
        current = threading.current_thread()
        if isinstance(current, Association):
            counted_while_making.append(is_counted(current))
        return make()

    monkeypatch.setattr(spares, "_make", recording)
    assert run_tool("echoscu", "-aec", "ARCHIVE", "-aet", "ENDED", "127.0.0.1",
                    str(archive.port)).returncode == 0
    poll_until(lambda: counted_while_making or None, "the ended association to make a spare")
    assert counted_while_making == [False]
