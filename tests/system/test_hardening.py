"""Hostile clients and faults against the installed ``pyqrscp``: the archive answers, survives,
and never acknowledges or keeps half an instance.

Wire garbage is written with raw sockets (PDUs built by hand, PS3.8 9.3); DIMSE-level abuse uses
pynetdicom as a client; the DCMTK tools check that normal clients are still served.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    POLL_DEADLINE,
    RunningServer,
    have_dcmtk,
    index_db,
    make_ct,
    pyqrscp_process,
    run_tool,
    still_open,
    stored_files,
    write_config,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
)

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]

INDEX = "pyqrscp-index.sqlite3"
TEMP_PREFIX = ".pyqrscp-tmp-"
A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ABORT = 0x02, 0x03, 0x07
UNASSOCIATED_WAIT = 300
"""--unassociated-timeout far beyond any deadline here: silent clients are dropped within the
tests' deadlines only by ``-ta``."""

# -- PDUs by hand (PS3.8 9.3) ----------------------------------------------------------------

APP_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_VR = b"1.2.840.10008.1.2"


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def associate_rq(called: bytes = b"ARCHIVE", calling: bytes = b"HOSTILE",
                 contexts: int = 1) -> bytes:
    """An A-ASSOCIATE-RQ proposing Verification ``contexts`` times (IDs wrap past 255)."""
    items = b"".join(
        _item(0x20, bytes([(2 * n + 1) % 256, 0, 0, 0]) + _item(0x30, VERIFICATION)
              + _item(0x40, IMPLICIT_VR)) for n in range(contexts))
    user = _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    body = (struct.pack(">HH", 1, 0) + called.ljust(16)[:16] + calling.ljust(16)[:16]
            + bytes(32) + _item(0x10, APP_CONTEXT) + items + user)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


RELEASE_RQ = struct.pack(">BBIL", 0x05, 0, 4, 0)


@dataclass(frozen=True)
class Garbage:
    name: str
    payload: bytes
    expected: frozenset[int | None]  # first PDU type answered; None = closed without a PDU
    half_close: bool = True  # incomplete PDUs only end when the peer's side closes


GARBAGE = (
    Garbage("random-bytes", random.Random(8).randbytes(1000), frozenset({A_ABORT})),
    Garbage("truncated-associate-rq", associate_rq()[:40], frozenset({None})),
    Garbage("length-ffffffff", b"\x01\x00\xff\xff\xff\xff" + bytes(64), frozenset({None})),
    Garbage("unknown-pdu-type", b"\x09\x00\x00\x00\x00\x04" + bytes(4), frozenset({A_ABORT})),
    Garbage("p-data-before-association",
            b"\x04\x00\x00\x00\x00\x0a\x00\x00\x00\x06\x01\x03\x00\x00\x00\x00",
            frozenset({A_ABORT})),
    Garbage("200-presentation-contexts", associate_rq(contexts=200),
            frozenset({A_ASSOCIATE_AC, A_ASSOCIATE_RJ}), half_close=False),
    Garbage("all-space-called-aet", associate_rq(called=b" " * 16), frozenset({A_ABORT}),
            half_close=False),
    Garbage("all-space-calling-aet", associate_rq(calling=b" " * 16), frozenset({A_ABORT}),
            half_close=False),
    Garbage("non-ascii-called-aet", associate_rq(called="ÄRCHÏVÉ".encode()),
            frozenset({A_ABORT}), half_close=False),
)


def exchange(port: int, garbage: Garbage, timeout: float = 5.0) -> int | None:
    """Send the garbage and return the type of the first PDU answered (None: closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(garbage.payload)
        try:
            if garbage.half_close:
                # A PDU refused by its header alone may be closed on before this half-close.
                sock.shutdown(socket.SHUT_WR)
            first = sock.recv(1)
        except OSError as error:
            if isinstance(error, ConnectionResetError) or error.errno == errno.ENOTCONN:
                return None
            raise
        if first and first[0] == A_ASSOCIATE_AC:
            sock.recv(1 << 20)
        return first[0] if first else None


# -- the archive -----------------------------------------------------------------------------

@dataclass
class Archive:
    server: RunningServer
    area: Path

    @property
    def port(self) -> int:
        return self.server.port

    def indexed(self, sop_uid: str) -> bool:
        with index_db(self.area) as db:
            row = db.execute("SELECT 1 FROM instance WHERE sop_instance_uid = ?",
                             (sop_uid,)).fetchone()
        return row is not None

    def file_names(self) -> set[str]:
        with index_db(self.area) as db:
            return {name for (name,) in db.execute("SELECT file_name FROM instance")}

    def stray_files(self) -> list[str]:
        """Temp files, and data files that no index row names (half-written or orphaned)."""
        known = self.file_names()
        return sorted([name for name in os.listdir(self.area) if name.startswith(TEMP_PREFIX)]
                      + [name for name in stored_files(self.area) if name not in known])

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.server.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])


def archive_config(base: Path, extra_globals: str = "") -> tuple[Path, Path]:
    area = base / "db"
    return write_config(base, [f"ARCHIVE {area} RW (1000, 1024mb) ANY"],
                        extra_globals=extra_globals), area


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    config, area = archive_config(tmp_path_factory.mktemp("hardening"))
    with pyqrscp_process(config, "-ta", "2", "--unassociated-timeout",
                         str(UNASSOCIATED_WAIT)) as server:
        yield Archive(server, area)


def echo(port: int) -> None:
    """One echoscu; fails the test if the echo did not succeed."""
    result = run_tool("echoscu", "-aec", "ARCHIVE", "localhost", str(port), timeout=30)
    assert result.returncode == 0, result.stderr


class EchoLoop:
    """echoscu again and again from another thread (at least once), recording each failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                result = run_tool("echoscu", "-aec", "ARCHIVE", "localhost", str(self.port),
                                  timeout=30)
            except subprocess.TimeoutExpired:
                self.failures.append("no answer within 30 s")
            else:
                if result.returncode != 0:
                    self.failures.append(result.stderr)
                else:
                    self.answered += 1
            if self._stop.is_set():
                return

    def __enter__(self) -> EchoLoop:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


# -- garbage on the wire ---------------------------------------------------------------------

@pytest.mark.parametrize("garbage", GARBAGE, ids=[g.name for g in GARBAGE])
def test_garbage_is_answered_and_the_server_keeps_serving(archive: Archive,
                                                          garbage: Garbage) -> None:
    with EchoLoop(archive.port) as loop:
        answer = exchange(archive.port, garbage)
        echo(archive.port)
    assert answer in garbage.expected
    assert loop.answered and not loop.failures
    assert archive.server.process.poll() is None


@pytest.mark.pynetdicom_internals(
    reason=("ending pynetdicom's wait for the A-ASSOCIATE-RQ of a peer that is gone needs its "
            "queues"))
def test_rss_stays_flat_over_200_garbage_connections(archive: Archive) -> None:
    def burst(count: int) -> None:
        for n in range(count):
            exchange(archive.port, GARBAGE[n % len(GARBAGE)])

    burst(40)
    before = archive.rss_kib()
    burst(200)
    echo(archive.port)
    grown = archive.rss_kib() - before
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB over 200 garbage connections"


@pytest.mark.pynetdicom_internals(
    reason="the PDU length limit is the channel's socket hook")
def test_huge_pdu_length_does_not_buffer_unbounded_data(archive: Archive) -> None:
    """A peer announcing a 4 GiB PDU and streaming 64 MiB must not cost 64 MiB of memory."""
    before = archive.rss_kib()
    chunk = bytes(1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", archive.port), timeout=5) as sock:
        try:
            sock.sendall(b"\x04\x00\xff\xff\xff\xff")
            for _ in range(64):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server gave up on us: what we want
        grown = archive.rss_kib() - before
    echo(archive.port)
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB while a peer streamed {sent} bytes"


# -- slow clients ----------------------------------------------------------------------------

def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1 << 16) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@contextmanager
def slow_clients(port: int) -> Iterator[list[socket.socket]]:
    """Five connections that never speak and one that stops inside a PDU header."""
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    half_header = socket.create_connection(("127.0.0.1", port))
    half_header.sendall(b"\x01\x00\x00")
    try:
        yield [*idle, half_header]
    finally:
        for sock in [*idle, half_header]:
            sock.close()


def test_slow_clients_do_not_block_others(tmp_path: Path) -> None:
    """Echoes are answered while the server still waits for every slow client (``-ta`` and
    the unassociated limit far away): a server serving them one after another would answer
    only after giving up on them."""
    config, _area = archive_config(tmp_path)
    with pyqrscp_process(config, "-ta", str(UNASSOCIATED_WAIT), "--unassociated-timeout",
                         str(UNASSOCIATED_WAIT)) as server, slow_clients(server.port) as slow:
        for _ in range(3):
            echo(server.port)
        assert all(still_open(sock) for sock in slow), "echoes waited for the slow clients"


@pytest.mark.pynetdicom_internals(
    reason="the socket timeouts and the stall line are the channel's")
def test_slow_clients_do_not_stay_forever(archive: Archive) -> None:
    """-ta 2 drops them although --unassociated-timeout allows far longer than the test
    waits."""
    with slow_clients(archive.port) as slow:
        for sock in slow:
            sock.settimeout(POLL_DEADLINE)
            assert closed_by_peer(sock), "the server kept a silent client beyond -ta 2"
        echo(archive.port)


# -- C-STORE abuse ---------------------------------------------------------------------------

def client_ae(*contexts: str) -> AE:
    ae = AE(ae_title="HOSTILE")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for context in contexts:
        ae.add_requested_context(context)
    return ae


def store_file(port: int, path: Path, monkeypatch: pytest.MonkeyPatch) -> Dataset:
    """C-STORE the file's bytes exactly as written (pynetdicom's chunked mode does not parse)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    assoc = client_ae(CTImageStorage, MRImageStorage).associate("127.0.0.1", port,
                                                               ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        status: Dataset = assoc.send_c_store(path)
    finally:
        assoc.release()
    return status


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1 and len(old) == len(new)
    return data.replace(old, new)


def _missing(keyword: str) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        path = make_ct(directory)
        ds = dcmread(path)
        delattr(ds, keyword)
        ds.save_as(path)
        return path
    return build


def _study_uid(value: str) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        path = make_ct(directory, study_uid="1.2.826.0.1.3680043.9.7777.4242")
        marker = b"1.2.826.0.1.3680043.9.7777.4242"
        data = path.read_bytes()
        start = data.index(marker)
        length_at = start - 2
        encoded = value.encode().ljust(len(value) + len(value) % 2, b"\0")
        path.write_bytes(data[:length_at] + struct.pack("<H", len(encoded)) + encoded
                         + data[start + len(marker) + 1:])
        return path
    return build


def _sop_class_differs(directory: Path) -> Path:
    path = make_ct(directory)
    ds = dcmread(path)
    ds.SOPClassUID = MRImageStorage
    ds.save_as(path)
    return path


def _truncated(directory: Path) -> Path:
    path = make_ct(directory, rows=64)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 1000])  # mid Pixel Data's value
    return path


def _truncated_mid_header(directory: Path) -> Path:
    path = make_ct(directory, patient_name="Truncated^InTheMiddle")
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"Truncated^In")])
    return path


def _corrupt_length(directory: Path) -> Path:
    path = make_ct(directory, patient_name="Corrupt^Length")
    data = path.read_bytes()
    at = data.index(b"Corrupt^Length") - 2
    path.write_bytes(data[:at] + struct.pack("<H", 0xFFF0) + data[at + 2:])
    return path


def _item_longer_than_its_sequence(directory: Path) -> Path:
    """A defined-length sequence whose one item claims 100 bytes more than the sequence holds
    (the elements after the sequence stay intact, so only a walk into the sequence sees it)."""
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    path = make_ct(directory, extra={"ReferencedImageSequence": ("SQ", [item])})
    data = path.read_bytes()
    item_at = data.index(b"\x08\x00\x40\x11SQ\x00\x00") + 12
    assert data[item_at:item_at + 4] == b"\xfe\xff\x00\xe0"
    (length,) = struct.unpack_from("<I", data, item_at + 4)
    path.write_bytes(data[:item_at + 4] + struct.pack("<I", length + 100) + data[item_at + 8:])
    return path


BAD_DATASETS: dict[str, Callable[[Path], Path]] = {
    "missing-study-uid": _missing("StudyInstanceUID"),
    "missing-series-uid": _missing("SeriesInstanceUID"),
    "uid-with-letters": _study_uid("1.2.826.0.1.ABC"),
    "uid-over-64-chars": _study_uid("1.2." + "3" * 70),
    "sop-class-differs-from-command": _sop_class_differs,
    "truncated-mid-pixel-data": _truncated,
    "truncated-mid-header": _truncated_mid_header,
    "corrupt-element-length": _corrupt_length,
    "item-longer-than-its-sequence": _item_longer_than_its_sequence,
}


@pytest.mark.parametrize("build", BAD_DATASETS.values(), ids=BAD_DATASETS.keys())
def test_bad_dataset_is_refused_and_leaves_nothing(archive: Archive, tmp_path: Path,
                                                   build: Callable[[Path], Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = build(tmp_path)
        sop_uid = str(dcmread(path, stop_before_pixels=True,
                              force=True).file_meta.MediaStorageSOPInstanceUID)
    status = store_file(archive.port, path, monkeypatch)
    assert status.Status == 0xC000 or status.Status & 0xFF00 == 0xA900, hex(status.Status)
    assert status.get("ErrorComment")
    assert not archive.indexed(sop_uid)
    assert archive.stray_files() == []


def get_instance(port: int, ds: Dataset, directory: Path) -> bytes:
    """getscu the one instance back and return its Pixel Data."""
    directory.mkdir()
    result = run_tool("getscu", "-S", "-aec", "ARCHIVE", "-od", str(directory),
                      "-k", "QueryRetrieveLevel=IMAGE",
                      "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
                      "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
                      "-k", f"SOPInstanceUID={ds.SOPInstanceUID}", "localhost", str(port))
    assert result.returncode == 0, result.stderr
    (received,) = directory.iterdir()
    return bytes(dcmread(received).PixelData)


A_ABORT_PDU = struct.pack(">BBIBBBB", A_ABORT, 0, 4, 0, 0, 0, 0)


@pytest.mark.parametrize("cut", ["a-abort", "connection-drop"])
def test_interrupted_8mib_store_keeps_nothing_then_stores_intact(
        archive: Archive, tmp_path: Path, cut: str) -> None:
    """pynetdicom queues assoc.abort() behind the data, so the cut is made on the socket."""
    path = make_ct(tmp_path, rows=2048)
    original = dcmread(path)
    sent_pdus = 0

    def on_pdu_sent(event: evt.Event) -> None:
        nonlocal sent_pdus
        sent_pdus += 1
        if sent_pdus == 100:  # of about 520 P-DATA-TF
            sock: Any = event.assoc.dul.socket.socket  # type: ignore[union-attr]
            if cut == "a-abort":
                sock.sendall(A_ABORT_PDU)
            sock.shutdown(socket.SHUT_RDWR)

    def send() -> None:
        try:
            assoc.send_c_store(original)
        except Exception:  # noqa: BLE001 - the client side breaking is the point
            pass

    assoc = client_ae(CTImageStorage).associate(
        "127.0.0.1", archive.port, ae_title="ARCHIVE",
        evt_handlers=[(evt.EVT_PDU_SENT, on_pdu_sent)])
    assert assoc.is_established
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(60)
    assoc.abort()
    assert sent_pdus >= 100
    echo(archive.port)
    assert not archive.indexed(original.SOPInstanceUID)
    assert archive.stray_files() == []

    stored = run_tool("storescu", "-aec", "ARCHIVE", "localhost", str(archive.port), str(path))
    assert stored.returncode == 0, stored.stderr
    assert archive.indexed(original.SOPInstanceUID)
    assert get_instance(archive.port, original, tmp_path / "got") == bytes(original.PixelData)


# -- pathological queries --------------------------------------------------------------------

@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """An archive with 200 patients named ``AAAA...A^<n>`` (long, wildcard-hostile names)."""
    base = tmp_path_factory.mktemp("crowded")
    files = base / "in"
    files.mkdir()
    for n in range(200):
        make_ct(files, patient_name=f"{'A' * 60}^{n:03d}", patient_id=f"P{n:03d}")
    config, area = archive_config(base)
    with pyqrscp_process(config) as server:
        stored = run_tool("storescu", "-aec", "ARCHIVE", "+sd", "localhost", str(server.port),
                          str(files), timeout=120)
        assert stored.returncode == 0, stored.stderr
        yield Archive(server, area)


def find_patients(port: int, patient_name: str) -> tuple[int, int]:
    """(matches, final status) of one PATIENT-level C-FIND through pynetdicom; a C-FIND the
    archive does not answer within the client's DIMSE timeout (30 s) has final status -1."""
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The PN component length", UserWarning)
        query.PatientName = patient_name
    query.PatientID = ""
    assoc = client_ae(PatientRootQueryRetrieveInformationModelFind).associate(
        "127.0.0.1", port, ae_title="ARCHIVE")
    assert assoc.is_established
    matches, final = 0, -1
    try:
        for status, identifier in assoc.send_c_find(
                query, PatientRootQueryRetrieveInformationModelFind):
            final = int(status.get("Status", -1))
            matches += identifier is not None and final in (0xFF00, 0xFF01)
    finally:
        assoc.release()
    return matches, final


@pytest.mark.parametrize("pattern, expected", [
    ("*" * 30_000 + "A" * 30_000, 0),
    ("A*" * 30_000, 0),
    ("A*A*A*A*A*A*A*A*A*B", 0),
    ("A*A*A*A*A*A*A*A*A*^1*", 100),
], ids=["60k-stars-then-letters", "60k-alternating", "nine-stars-then-B", "nine-stars-match"])
def test_pathological_wildcards_answer_fast(crowded: Archive, pattern: str,
                                            expected: int) -> None:
    """Answered within the client's DIMSE timeout (30 s, a bound only a backtracking matcher
    reaches; the linear one takes milliseconds) while other associations keep being served."""
    with EchoLoop(crowded.port) as loop:
        matches, final = find_patients(crowded.port, pattern)
    assert final == 0x0000
    assert matches == expected
    assert loop.answered and not loop.failures


# -- graceful shutdown -----------------------------------------------------------------------

def test_sigterm_during_storescu_exits_0_and_keeps_every_acknowledged_instance(
        tmp_path: Path) -> None:
    files = tmp_path / "in"
    files.mkdir()
    sent = {make_ct(files, rows=256).name.removesuffix(".dcm") for _ in range(50)}
    config, area = archive_config(tmp_path)
    with pyqrscp_process(config) as server:
        with subprocess.Popen(
                ["storescu", "-v", "-aec", "ARCHIVE", "+sd", "localhost", str(server.port),
                 str(files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True) as client:
            assert client.stdout is not None
            lines: list[str] = []
            for line in client.stdout:
                lines.append(line)
                if sum("Received Store Response (Success)" in seen for seen in lines) == 10:
                    server.process.send_signal(signal.SIGTERM)
                    break
            output = "".join(lines) + client.stdout.read()
            client.wait(60)
        assert server.process.wait(30) == 0
    stored = _stored_sop_uids(output)
    assert len(stored) >= 10
    with pyqrscp_process(config) as restarted:
        archive = Archive(restarted, area)
        assert all(archive.indexed(uid) for uid in stored & sent)
        assert archive.stray_files() == []


def _stored_sop_uids(storescu_verbose: str) -> set[str]:
    """SOP Instance UIDs storescu -v reported as stored (its Sending line precedes each answer)."""
    stored: set[str] = set()
    current = None
    for line in storescu_verbose.splitlines():
        if "Sending Store Request" in line or "Sending file:" in line:
            current = line.rsplit("/", 1)[-1].strip().removesuffix(".dcm")
        elif "Received Store Response (Success)" in line and current:
            stored.add(current)
    return stored


# -- load, limits, full disk (slow: scripts/run-slow-tests) ----------------------------------

def _stored_pixels(archive: Archive, sop_uid: str) -> bytes:
    with index_db(archive.area) as db:
        (name,) = db.execute("SELECT file_name FROM instance WHERE sop_instance_uid = ?",
                             (sop_uid,)).fetchone()
    return bytes(dcmread(archive.area / name).PixelData)


@pytest.mark.slow
def test_16_concurrent_storescu_of_50_instances_each_are_all_intact(tmp_path: Path) -> None:
    clients, per_client = 16, 50
    originals: dict[str, bytes] = {}
    folders = []
    for client in range(clients):
        folder = tmp_path / f"in{client}"
        folder.mkdir()
        for n in range(per_client):
            ds = dcmread(make_ct(folder, rows=128, patient_id=f"L{client}", instance_number=n))
            originals[ds.SOPInstanceUID] = bytes(ds.PixelData)
        folders.append(folder)
    config, area = archive_config(tmp_path, "")
    with pyqrscp_process(config) as server:
        archive = Archive(server, area)
        started = time.monotonic()
        processes = [subprocess.Popen(
            ["storescu", "-aec", "ARCHIVE", "+sd", "localhost", str(server.port), str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for folder in folders]
        errors = [process.communicate(timeout=300)[1] for process in processes]
        seconds = time.monotonic() - started
        assert [process.returncode for process in processes] == [0] * clients, errors
        for sop_uid, pixels in originals.items():
            assert _stored_pixels(archive, sop_uid) == pixels
        assert archive.stray_files() == []
    total = clients * per_client
    print(f"\nLOAD: {total} instances ({clients} x {per_client}, 32 KiB pixels) in "
          f"{seconds:.1f} s = {total / seconds:.0f} instances/s")


@pytest.mark.slow
def test_associations_beyond_max_get_a_transient_local_limit_reject(tmp_path: Path) -> None:
    limit = 4
    config, _area = archive_config(tmp_path, f"MaxAssociations = {limit}")
    config.write_text(config.read_text().replace("MaxAssociations = 16\n", ""))
    with pyqrscp_process(config) as server:
        held = [client_ae(VERIFICATION.decode()).associate("127.0.0.1", server.port,
                                                            ae_title="ARCHIVE")
                for _ in range(limit)]
        try:
            assert all(assoc.is_established for assoc in held)
            excess = [run_tool("echoscu", "-aec", "ARCHIVE", "localhost", str(server.port))
                      for _ in range(4)]
            for result in excess:
                assert result.returncode != 0
                assert "Rejected Transient" in result.stderr
                assert "Local Limit Exceeded" in result.stderr
            assert all(assoc.send_c_echo().Status == 0 for assoc in held)
        finally:
            for assoc in held:
                assoc.release()
        echo(server.port)


@pytest.mark.slow
def test_full_disk_refuses_with_a700_and_recovers(tmp_path: Path, small_tmpfs: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    area = small_tmpfs / "db"
    config = write_config(tmp_path, [f"ARCHIVE {area} RW (1000, 1024mb) ANY"])
    with pyqrscp_process(config) as server:
        archive = Archive(server, area)
        filler = small_tmpfs / "filler"
        filler.write_bytes(bytes(1024 * 1024))
        statuses = []
        for _ in range(20):
            path = make_ct(tmp_path, rows=128)  # 32 KiB each
            statuses.append((path, store_file(server.port, path, monkeypatch)))
            if statuses[-1][1].Status != 0:
                break
        path, refused = statuses[-1]
        assert refused.Status == 0xA700, hex(refused.Status)
        assert refused.get("ErrorComment")
        assert not archive.indexed(dcmread(path).SOPInstanceUID)
        assert archive.stray_files() == []
        assert all(archive.indexed(dcmread(p).SOPInstanceUID) for p, s in statuses[:-1])
        echo(server.port)
        assert find_patients(server.port, "*")[1] == 0x0000
        filler.unlink()
        assert store_file(server.port, path, monkeypatch).Status == 0x0000
        assert _stored_pixels(archive, dcmread(path).SOPInstanceUID) == bytes(
            dcmread(path).PixelData)
