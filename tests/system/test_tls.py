"""DICOM TLS against the installed ``pyqrscp`` with DCMTK's TLS-enabled tools.

DCMTK 3.6.7's echoscu, storescu, findscu and storescp speak TLS; its getscu and movescu do not,
so C-GET and C-MOVE are driven by pynetdicom with a verifying ``ssl.SSLContext``.

The certificates are made here with the ``openssl`` command: a CA, a server and a client
certificate it signed, and an unrelated CA (whose certificate no one should accept).
"""

from __future__ import annotations

import dataclasses
import http.client
import queue
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    DCMTK_ENV,
    POLL_DEADLINE,
    RunningServer,
    free_port,
    have_dcmtk,
    make_ct,
    pyqrscp_process,
    run_tool,
    still_open,
    wait_for_log,
    write_config,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from pyqrscp.config import load_config
from pyqrscp.config.options import Options
from pyqrscp.server.server import ArchiveServer
from pyqrscp.services.retrieve import stored_dataset


def _dcmtk_has_tls() -> bool:
    if not have_dcmtk():
        return False
    return "+tls" in subprocess.run(["echoscu", "--help"], capture_output=True, text=True,
                                    timeout=30).stdout


UNASSOCIATED_WAIT = 300
"""--unassociated-timeout far beyond any deadline of these tests: a silent client is dropped
within them only by what a test sets on purpose (-ta)."""

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(not _dcmtk_has_tls(), reason="DCMTK tools without TLS support"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed"),
]

KEY_PASSWORD = "s3cret pass"


@dataclass(frozen=True)
class Pki:
    folder: Path

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def tls(self, name: str, trusted: str = "ca") -> list[str]:
        """DCMTK arguments: present ``name``'s certificate, trust ``trusted``'s."""
        return ["+tls", str(self.key(name)), str(self.cert(name)), "+cf", str(self.cert(trusted))]


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _make_ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", str(folder / f"{name}.key"),
             "-out", str(folder / f"{name}.crt"))


def _make_leaf(folder: Path, name: str, ca: str, key_args: Sequence[str] = ("-nodes",)) -> None:
    key, csr, cert = (folder / f"{name}{ext}" for ext in (".key", ".csr", ".crt"))
    _openssl("req", "-new", "-newkey", "rsa:2048", *key_args, "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr))
    extensions = folder / "leaf.ext"
    extensions.write_text("basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(folder / f"{ca}.crt"),
             "-CAkey", str(folder / f"{ca}.key"), "-CAcreateserial", "-days", "2",
             "-extfile", str(extensions), "-out", str(cert))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    _make_ca(folder, "ca")
    _make_ca(folder, "otherca")
    _make_leaf(folder, "server", "ca")
    _make_leaf(folder, "client", "ca")
    _make_leaf(folder, "destination", "ca")
    _make_leaf(folder, "stranger", "otherca")
    _make_leaf(folder, "locked", "ca", ("-passout", f"pass:{KEY_PASSWORD}"))
    return Pki(folder)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    return write_config(folder, [f"ARCHIVE {folder / 'storage'} RW (9, 1024mb) ANY"])


def server_tls(pki: Pki, *extra: str) -> list[str]:
    return ["+tls", str(pki.key("server")), str(pki.cert("server")), "+cf",
            str(pki.cert("ca")), *extra]


@pytest.fixture(scope="module")
def archive(pki: Pki, config: Path) -> Iterator[RunningServer]:
    with pyqrscp_process(config, "-d", "--unassociated-timeout", str(UNASSOCIATED_WAIT),
                         *server_tls(pki)) as server:
        yield server


def echo(port: int, *tls: str) -> subprocess.CompletedProcess[str]:
    return run_tool("echoscu", "-v", "-aec", "ARCHIVE", *tls, "localhost", str(port))


def test_echo_with_verified_certificates(archive: RunningServer, pki: Pki) -> None:
    result = echo(archive.port, *pki.tls("client"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


def test_store_find_get_over_tls(archive: RunningServer, pki: Pki, tmp_path: Path) -> None:
    """Five instances on one TLS association: all but the first are read from the held channel
    (an SSLSocket), and C-GET sends them back over it."""
    study_uid = "1.2.826.0.1.3680043.9.7782.1"
    sent = [make_ct(tmp_path, patient_id="TLS1", study_uid=study_uid, instance_number=n,
                    rows=64) for n in range(1, 6)]
    stored = run_tool("storescu", "-aec", "ARCHIVE", *pki.tls("client"), "localhost",
                      str(archive.port), *map(str, sent))
    assert stored.returncode == 0, stored.stdout + stored.stderr

    found = run_tool("findscu", "-S", "-v", "-aec", "ARCHIVE", *pki.tls("client"), "-k",
                     "QueryRetrieveLevel=STUDY", "-k", "PatientID=TLS1", "-k",
                     "StudyInstanceUID", "localhost", str(archive.port))
    assert found.returncode == 0, found.stdout + found.stderr
    assert study_uid in found.stdout + found.stderr

    received = get_with_pynetdicom(archive.port, pki, study_uid)
    originals = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, sent)}
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(originals)
    for ds in received:
        assert ds.PixelData == originals[str(ds.SOPInstanceUID)].PixelData


def client_context(pki: Pki) -> ssl.SSLContext:
    """A requester's context: present the client certificate, verify the peer against the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_cert_chain(pki.cert("client"), pki.key("client"))
    context.load_verify_locations(pki.cert("ca"))
    return context


def get_with_pynetdicom(port: int, pki: Pki, study_uid: str) -> list[Dataset]:
    """C-GET over TLS (DCMTK 3.6.7's getscu has no TLS): pynetdicom with a verifying context."""
    context = client_context(pki)
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE", tls_args=(context, "localhost"),
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        statuses = [int(status.Status) for status, _ in assoc.send_c_get(
            query, StudyRootQueryRetrieveInformationModelGet) if status]
    finally:
        assoc.release()
    assert statuses[-1] == 0x0000
    return received


def _https_get(port: int, context: ssl.SSLContext, path: str) -> int:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=60)
    try:
        connection.request("GET", path, headers={"Host": "localhost"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_https_with_the_dicom_ports_tls_material(pki: Pki, config: Path) -> None:
    """The HTTP listener speaks TLS with the DICOM port's key, certificate and client
    certificate rule (-rc: required)."""
    with pyqrscp_process(config, "--http", "127.0.0.1:0", *server_tls(pki)) as server:
        found = re.search(r"DICOMweb and the page on https://127\.0\.0\.1:(\d+)/",
                          server.log_text())
        assert found, server.log_text()
        port = int(found.group(1))
        assert _https_get(port, client_context(pki), "/dicomweb/ARCHIVE/studies") in (200, 204)
        assert _https_get(port, client_context(pki), "/") == 200
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(pki.cert("ca"))
        with pytest.raises(OSError):  # no client certificate: the handshake is refused
            _https_get(port, anonymous, "/")
        with socket.create_connection(("127.0.0.1", port), timeout=60) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                answer = plain.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/")
        assert run_tool("echoscu", "-aec", "ARCHIVE", *pki.tls("client"), "localhost",
                        str(server.port)).returncode == 0


def test_client_trusting_another_ca_refuses_the_server(archive: RunningServer,
                                                       pki: Pki) -> None:
    result = echo(archive.port, *pki.tls("client", trusted="otherca"))
    assert result.returncode != 0
    assert "certificate verify failed" in result.stdout + result.stderr
    assert echo(archive.port, *pki.tls("client")).returncode == 0


def test_server_refuses_a_certificate_of_another_ca(archive: RunningServer, pki: Pki) -> None:
    result = echo(archive.port, *pki.tls("stranger"))
    assert result.returncode != 0
    assert echo(archive.port, *pki.tls("client")).returncode == 0
    wait_for_log(archive, "TLS handshake with 127.0.0.1:")


def test_required_peer_certificate_refuses_anonymous_client(archive: RunningServer,
                                                            pki: Pki) -> None:
    result = echo(archive.port, "+tla", "+cf", str(pki.cert("ca")))
    assert result.returncode != 0
    assert echo(archive.port, *pki.tls("client")).returncode == 0


def test_verify_peer_cert_accepts_anonymous_client_but_not_a_stranger(pki: Pki,
                                                                      config: Path) -> None:
    with pyqrscp_process(config, *server_tls(pki, "-vc")) as server:
        assert echo(server.port, "+tla", "+cf", str(pki.cert("ca"))).returncode == 0
        assert echo(server.port, *pki.tls("stranger")).returncode != 0


def test_plain_client_fails_cleanly_and_server_keeps_serving(archive: RunningServer,
                                                             pki: Pki) -> None:
    plain = echo(archive.port)
    assert plain.returncode != 0
    assert echo(archive.port, *pki.tls("client")).returncode == 0
    wait_for_log(archive, "not a TLS client")


def test_silent_tcp_client_does_not_block_tls_associations(archive: RunningServer,
                                                           pki: Pki) -> None:
    """The TLS echo is answered while the server still waits for the silent client's
    handshake (for UNASSOCIATED_WAIT seconds): handshakes one after another would answer the
    echo only after giving up on the silent client."""
    with socket.create_connection(("127.0.0.1", archive.port)) as silent:
        result = echo(archive.port, *pki.tls("client"))
        waiting = still_open(silent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert waiting, "the echo was answered only after the silent client was dropped"


def test_silent_tcp_client_is_dropped_after_the_acse_timeout(pki: Pki, config: Path) -> None:
    """-ta 1 bounds the handshake although --unassociated-timeout allows far longer than the
    test waits (a generous deadline that only ignoring -ta can miss)."""
    with pyqrscp_process(config, "-ta", "1", "--unassociated-timeout", str(UNASSOCIATED_WAIT),
                         *server_tls(pki)) as server, \
            socket.create_connection(("127.0.0.1", server.port)) as silent:
        silent.settimeout(POLL_DEADLINE)
        assert silent.recv(1) == b""


def test_encrypted_key_with_its_password(pki: Pki, config: Path) -> None:
    tls = ["+tls", str(pki.key("locked")), str(pki.cert("locked")), "+cf", str(pki.cert("ca"))]
    with pyqrscp_process(config, *tls, "+pw", KEY_PASSWORD) as server:
        assert echo(server.port, *pki.tls("client")).returncode == 0


def start_failure(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyqrscp", "-c", str(config), *args, "0"],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_wrong_password_is_a_startup_error(pki: Pki, config: Path) -> None:
    result = start_failure(config, "+tls", str(pki.key("locked")), str(pki.cert("locked")),
                           "+pw", "wrong")
    assert result.returncode == 2
    assert f"cannot use TLS private key {pki.key('locked')}" in result.stderr
    assert "wrong password" in result.stderr


@pytest.mark.parametrize("which", ["key", "cert"])
def test_unreadable_key_or_certificate_is_a_startup_error(pki: Pki, config: Path,
                                                          which: str) -> None:
    missing = pki.folder / "missing.pem"
    key = missing if which == "key" else pki.key("server")
    cert = missing if which == "cert" else pki.cert("server")
    result = start_failure(config, "+tls", str(key), str(cert))
    assert result.returncode == 2
    assert f"{missing}: No such file or directory" in result.stderr


def test_mismatched_key_and_certificate_is_a_startup_error(pki: Pki, config: Path) -> None:
    result = start_failure(config, "+tls", str(pki.key("client")), str(pki.cert("server")))
    assert result.returncode == 2
    assert "does not belong to the certificate" in result.stderr


@contextmanager
def tls_storescp(pki: Pki, folder: Path, port: int) -> Iterator[Path]:
    """``storescp +tls`` as DEST on ``port``, writing into ``folder``; yield once it answers a
    C-ECHO over TLS, and always stop it. Yield the path of its log."""
    folder.mkdir()
    log_path = folder.parent / "storescp.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["storescp", "-d", "-aet", "DEST", *pki.tls("destination"), "-od", str(folder),
             str(port)], stdout=log, stderr=subprocess.STDOUT, env=DCMTK_ENV)
    try:
        for _ in range(500):
            if process.poll() is not None:
                raise RuntimeError(f"storescp exited with {process.returncode}:\n"
                                   + log_path.read_text())
            if run_tool("echoscu", "-to", "2", "-aec", "DEST", *pki.tls("client"), "localhost",
                        str(port)).returncode == 0:
                break
        else:
            raise RuntimeError("storescp did not answer C-ECHO over TLS")
        yield log_path
    finally:
        process.terminate()
        process.wait(timeout=20)


def move_with_pynetdicom(port: int, pki: Pki, study_uid: str, destination: str) -> list[int]:
    """C-MOVE over TLS (DCMTK 3.6.7's movescu has no TLS): the statuses of every response."""
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE",
                         tls_args=(client_context(pki), "localhost"))
    assert assoc.is_established
    try:
        return [int(status.Status) for status, _ in assoc.send_c_move(
            query, destination, StudyRootQueryRetrieveInformationModelMove) if status]
    finally:
        assoc.release()


def test_move_to_a_tls_destination(pki: Pki, tmp_path: Path) -> None:
    """A C-MOVE over TLS to pyqrscp, whose sub-association to ``storescp +tls`` (the
    destination) uses TLS too: the archive presents its certificate and verifies DEST's."""
    dest_port = free_port()
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (9, 64mb) ANY"],
                          host_rows=[f"dest = (DEST, localhost, {dest_port})"])
    study_uid = generate_uid()
    sent = [make_ct(tmp_path, study_uid=study_uid, patient_id="TLSMOVE", instance_number=n)
            for n in (1, 2, 3)]
    with tls_storescp(pki, tmp_path / "dest", dest_port) as log_path, \
            pyqrscp_process(config, *server_tls(pki)) as server:
        stored = run_tool("storescu", "-aec", "ARCHIVE", *pki.tls("client"), "localhost",
                          str(server.port), *(str(path) for path in sent))
        assert stored.returncode == 0, stored.stdout + stored.stderr
        statuses = move_with_pynetdicom(server.port, pki, study_uid, "DEST")
        assert statuses[-1] == 0x0000, server.log_text() + log_path.read_text()
    received = {stored_dataset(path)[1] for path in (tmp_path / "dest").iterdir()}
    assert received == {stored_dataset(path)[1] for path in sent}


def test_storage_commitment_report_goes_out_over_tls(pki: Pki, tmp_path: Path) -> None:
    """The report on a new association uses the client context: the requester verifies the
    archive's certificate, and the archive verifies the requester's."""
    reports: queue.Queue[str] = queue.Queue()

    def on_report(event: Any) -> tuple[int, None]:
        reports.put(str(event.event_information.TransactionUID))
        return 0x0000, None

    listener_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    listener_context.load_cert_chain(pki.cert("client"), pki.key("client"))
    listener_context.load_verify_locations(pki.cert("ca"))
    listener_context.verify_mode = ssl.CERT_REQUIRED
    modality = AE(ae_title="MODALITY")
    modality.add_supported_context(StorageCommitmentPushModel)
    listener = modality.start_server(("127.0.0.1", 0), block=False, ssl_context=listener_context,
                                     evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    assert listener is not None
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (9, 64mb) ANY"], host_rows=[
        f"modality = (MODALITY, 127.0.0.1, {listener.server_address[1]})"])
    options = dataclasses.replace(Options(), port=0, tls_key_cert=(
        pki.key("server"), pki.cert("server")), tls_trusted_files=(pki.cert("ca"),))
    server = ArchiveServer(load_config(config), options, host="127.0.0.1")
    server.start()
    try:
        modality.add_requested_context(StorageCommitmentPushModel)
        assoc = modality.associate("127.0.0.1", server.port, ae_title="ARCHIVE",
                                   tls_args=(client_context(pki), "localhost"))
        assert assoc.is_established
        request = Dataset()
        request.TransactionUID = generate_uid()
        item = Dataset()
        item.ReferencedSOPClassUID = CTImageStorage
        item.ReferencedSOPInstanceUID = generate_uid()
        request.ReferencedSOPSequence = [item]
        try:
            status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel,
                                            "1.2.840.10008.1.20.1.1")
        finally:
            assoc.release()
        assert int(status.Status) == 0x0000
        assert reports.get(timeout=20) == request.TransactionUID
    finally:
        server.stop()
        listener.shutdown()
