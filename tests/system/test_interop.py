"""Interoperability: independent DICOM implementations against a real pyqrscp process.

Each client does what it can of echo, store, find, move and get, and every result is checked
against what the test stored: stored datasets byte for byte, find answers equal to the stored
attributes, retrieved datasets byte for byte.  The matrix is in docs/reliability.md
("Interoperability").  A missing client skips its tests, except under CI
(``PYQRSCP_REQUIRE_DCMTK=1``), where it fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import (
    RunningServer,
    free_port,
    make_ct,
    poll_until,
    pyqrscp_process,
    write_config,
)
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.dsutils import encode

from pyqrscp.dimse.acse import ProposedContext
from pyqrscp.dimse.commands import command_us, parse_command
from pyqrscp.dimse.pdus import P_DATA_TF, message, pdvs, read_pdu
from pyqrscp.link.sender import StoreAssociation
from pyqrscp.services.retrieve import stored_dataset

AE = "PYQRSCP"
GDCM_AE = "GDCMSCU"  # gdcmscu's calling AE title, also its C-MOVE destination
ORTHANC_AE = "ORTHANC"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STORESCP_AE = "STORESCP"  # DCMTK's storescp, a C-MOVE destination for clients that have none
PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
INTEROP_DIR = Path(__file__).parent.parent / "interop"
PIXELMED_CLIENT = INTEROP_DIR / "PixelmedClient.java"
DCMJS_CLIENT = INTEROP_DIR / "dcmjs_client.js"
TIMEOUT = 60
GDCM_RELEASE_CRASH = "ProtocolStream as nullptr is invalid"
"""Debian's gdcmscu (GDCM 3.0.21) aborts with this after every association's A-RELEASE-RP, with
dcmqrscp as with pyqrscp; the operation itself has completed by then."""


def require(tool: str) -> str:
    """The tool's path; skip without it, but fail under CI, where every client must run."""
    path = shutil.which(tool, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if path is None:
        if os.environ.get("PYQRSCP_REQUIRE_DCMTK") == "1":
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


@dataclass
class Interop:
    server: RunningServer
    area: Path
    work: Path
    gdcm_port: int
    orthanc_dicom_port: int
    storescp_port: int

    @property
    def port(self) -> int:
        return self.server.port

    def stored_file(self, sop_instance: str) -> Path:
        """The file pyqrscp stored for ``sop_instance``."""
        for path in self.area.rglob("*.dcm"):
            if pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID == sop_instance:
                return path
        raise AssertionError(f"{sop_instance} not in the storage area")

    def files(self, name: str, count: int) -> list[Path]:
        """``count`` new CT instances of patient ``name`` (PatientID ``name``1.. per study)."""
        directory = self.work / name
        directory.mkdir()
        return [make_ct(directory, patient_id=f"{name}{index}", patient_name=f"{name}^{index}")
                for index in range(count)]


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    work = tmp_path_factory.mktemp("interop")
    area = work / "area"
    area.mkdir()
    gdcm_port, orthanc_dicom_port, storescp_port = free_port(), free_port(), free_port()
    config = write_config(work, [f"{AE} {area} RW (200, 1024mb) ANY"], [
        f"gdcm = ({GDCM_AE}, 127.0.0.1, {gdcm_port})",
        f"orthanc = ({ORTHANC_AE}, 127.0.0.1, {orthanc_dicom_port})",
        f"storescp = ({STORESCP_AE}, 127.0.0.1, {storescp_port})",
    ])
    with pyqrscp_process(config) as server:
        yield Interop(server, area, work, gdcm_port, orthanc_dicom_port, storescp_port)


def dataset_bytes(path: Path) -> bytes:
    """Everything after the file meta information: what travelled on the wire."""
    return bytes(stored_dataset(path)[1])


def assert_same_instance(received: Path, original: Path) -> None:
    """Bytes equal in the same transfer syntax; element values equal after a conversion."""
    (received_ts, received_bytes), (original_ts, original_bytes) = (
        stored_dataset(received), stored_dataset(original))
    if received_ts == original_ts:
        assert received_bytes == original_bytes
    else:
        assert pydicom.dcmread(received) == pydicom.dcmread(original)


def assert_stored_unchanged(interop: Interop, originals: list[Path]) -> None:
    for original in originals:
        uid = pydicom.dcmread(original, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(interop.stored_file(uid)) == dataset_bytes(original)


def log_matches(interop: Interop, pattern: str) -> list[str]:
    return [line for line in interop.server.log if re.search(pattern, line)]


def wait_for_log(interop: Interop, pattern: str, count: int = 1) -> list[str]:
    """Lines of the server's log matching ``pattern``, once there are ``count`` (the server
    may log a line just after the client has its answer)."""
    def found() -> list[str] | None:
        lines = log_matches(interop, pattern)
        return lines if len(lines) >= count else None
    return poll_until(found, f"{count} log line(s) matching {pattern!r}", TIMEOUT)


def wait_listening(port: int) -> None:
    """Return once something accepts connections on ``port``."""
    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
            return True
        except OSError:
            return False
    poll_until(accepts, f"a listener on port {port}", TIMEOUT)


@contextmanager
def storescp(interop: Interop, folder: Path) -> Iterator[Path]:
    """DCMTK's storescp as C-MOVE destination ``STORESCP``, writing into ``folder``."""
    folder.mkdir()
    with subprocess.Popen([require("storescp"), "-aet", STORESCP_AE, "-od", str(folder), "-uf",
                           str(interop.storescp_port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as process:
        try:
            wait_listening(interop.storescp_port)
            yield folder
        finally:
            process.terminate()


# -- framing on the wire (what every client above relies on) -----------------------------------

def test_find_responses_put_command_and_identifier_in_pdus_of_their_own(interop: Interop) -> None:
    """Each P-DATA-TF of a C-FIND answer carries one PDV: a command set, or (in the PDUs after
    it) the identifier it announced, as DCMTK and pynetdicom frame them."""
    originals = interop.files("FRAMING", 3)
    run_tool_ok(["storescu", "-aec", AE, "127.0.0.1", str(interop.port), *map(str, originals)])
    find = ProposedContext(1, PATIENT_ROOT_FIND,
                           (ImplicitVRLittleEndian,))
    association = StoreAssociation.open("127.0.0.1", interop.port, "FRAMING", AE, [find])
    try:
        request = Dataset()
        request.AffectedSOPClassUID = PATIENT_ROOT_FIND
        request.CommandField, request.MessageID, request.Priority = 0x0020, 7, 0
        request.CommandDataSetType = 0x0000
        identifier = Dataset()
        identifier.QueryRetrieveLevel, identifier.PatientID = "PATIENT", "FRAMING*"
        association.sock.sendall(message(1, command_set(request), encode(
            identifier, True, True) or b"", association.peer_max_pdu))
        kinds: list[str] = []
        while not kinds or kinds[-1] != "final":
            pdu_type, body = read_pdu(association.sock)
            assert pdu_type == P_DATA_TF
            (_, header, fragment, _), *others = pdvs(body)
            assert others == [], "more than one PDV in a P-DATA-TF"
            if header & 0x01:
                status = command_us(parse_command(fragment), 0x0900)
                kinds.append("pending" if status == 0xFF00 else "final")
            else:
                kinds.append("identifier")
        assert kinds == ["pending", "identifier"] * 3 + ["final"]
    finally:
        association.release()


def command_set(command: Dataset) -> bytes:
    """A command set with its group length, implicit VR little endian."""
    body = encode(command, True, True) or b""
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def run_tool_ok(command: list[str]) -> None:
    result = subprocess.run([require(command[0]), *command[1:]], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr


# -- GDCM: gdcmscu ------------------------------------------------------------------------------

def gdcmscu(interop: Interop, *args: str, files: list[Path] | None = None) -> str:
    """Run gdcmscu (debug output: it prints no answers otherwise) and return what it printed;
    only its known abort after the release is tolerated."""
    command = [require("gdcmscu"), "-D", *args, "--aetitle", GDCM_AE, "--call", AE,
               "127.0.0.1", str(interop.port), *map(str, files or [])]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"gdcmscu {args[0]} hung for {TIMEOUT} s") from error
    printed = result.stdout + result.stderr
    assert result.returncode == 0 or GDCM_RELEASE_CRASH in printed, printed[-3000:]
    return printed


def test_gdcmscu_echo(interop: Interop) -> None:
    printed = gdcmscu(interop, "--echo")
    assert re.search(r"\(0000,0100\) \?\? \(US\) 32816\b", printed)  # C-ECHO-RSP
    assert re.search(r"\(0000,0900\) \?\? \(US\) 0\b", printed)


def test_gdcmscu_store_keeps_the_bytes(interop: Interop) -> None:
    originals = interop.files("GDCMSTORE", 2)
    gdcmscu(interop, "--store", files=originals)
    assert_stored_unchanged(interop, originals)


def test_gdcmscu_find_gets_every_answer_and_the_final_response(interop: Interop) -> None:
    """gdcmscu reads a response's identifier from the PDU after its command set: responses
    packing both into one PDU make it swallow the final response and wait forever."""
    originals = interop.files("GDCMFIND", 3)
    gdcmscu(interop, "--store", files=originals)
    printed = gdcmscu(interop, "--find", "--patientroot", "--patient",
                      "--key", "10,20=GDCMFIND*", "--key", "10,10=")
    assert "C-Find was successful." in printed
    assert printed.count("(0000,0900) ?? (US) 65280") >= 3  # pending responses
    assert wait_for_log(interop, r"Find from GDCMSCU .* complete: 3 match\(es\)")


def test_gdcmscu_move_to_itself(interop: Interop) -> None:
    originals = interop.files("GDCMMOVE", 1)
    gdcmscu(interop, "--store", files=originals)
    output = interop.work / "gdcm-moved"
    output.mkdir()  # gdcmscu does not create it
    gdcmscu(interop, "--move", "--port-scp", str(interop.gdcm_port), "-o", str(output),
            "--patientroot", "--patient", "--key", "10,20=GDCMMOVE0")
    (moved,) = output.iterdir()
    assert_same_instance(moved, originals[0])


# -- odil ---------------------------------------------------------------------------------------

def odil(*args: str) -> str:
    result = subprocess.run([require("odil"), *args], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_odil_echo(interop: Interop) -> None:
    odil("echo", "127.0.0.1", str(interop.port), "ODIL", AE)
    assert wait_for_log(interop, r"Received Echo Request from ODIL")


def test_odil_store_find_get(interop: Interop) -> None:
    originals = interop.files("ODIL", 3)
    odil("store", "127.0.0.1", str(interop.port), "ODIL", AE, *map(str, originals))
    assert_stored_unchanged(interop, originals)

    answers = odil("find", "127.0.0.1", str(interop.port), "ODIL", AE, "patient",
                   "QueryRetrieveLevel=PATIENT", "PatientID=ODIL*", "PatientName")
    found = sorted(re.findall(r"Patient ID\s+0010,0020 LO \['([^']*)'\]", answers))
    assert found == ["ODIL0", "ODIL1", "ODIL2"]
    names = sorted(re.findall(r"Patient's Name\s+0010,0010 PN \['([^']*)'\]", answers))
    assert names == ["ODIL^0", "ODIL^1", "ODIL^2"]

    output = interop.work / "odil-get"
    output.mkdir()
    printed = odil("get", "-d", str(output), "127.0.0.1", str(interop.port), "ODIL", AE,
                   "patient", "QueryRetrieveLevel=PATIENT", "PatientID=ODIL1")
    assert "Completed: 1, remaining: 0, failed: 0" in printed
    (retrieved,) = output.iterdir()
    assert_same_instance(retrieved, originals[1])


# -- Orthanc as SCU, driven through its REST API ------------------------------------------------

@dataclass
class Orthanc:
    url: str

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            content = response.read()
        if response.headers.get_content_type() == "application/json":
            return json.loads(content)
        return content


@pytest.fixture(scope="module")
def orthanc(interop: Interop) -> Iterator[Orthanc]:
    """A real Orthanc (DICOM AE ``ORTHANC``, HTTP on loopback) that knows pyqrscp as modality
    ``pyqrscp``; pyqrscp knows it as a C-MOVE destination."""
    binary = require("Orthanc")
    home = interop.work / "orthanc"
    home.mkdir()
    http_port = free_port()
    config = {
        "Name": "pyqrscp-interop", "StorageDirectory": str(home / "storage"),
        "IndexDirectory": str(home / "index"), "HttpPort": http_port,
        "DicomPort": interop.orthanc_dicom_port, "DicomAet": ORTHANC_AE,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
        "DicomModalities": {"pyqrscp": [AE, "127.0.0.1", interop.port]},
    }
    (home / "orthanc.json").write_text(json.dumps(config))
    log = (home / "orthanc.log").open("w")
    process = subprocess.Popen([binary, str(home / "orthanc.json")], stdout=log,
                               stderr=subprocess.STDOUT, cwd=home)
    client = Orthanc(f"http://127.0.0.1:{http_port}")
    try:
        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError("Orthanc exited:\n" + (home / "orthanc.log").read_text())
            try:
                client.call("GET", "/system")
                return True
            except (urllib.error.URLError, ConnectionError):
                return False
        poll_until(answers, "Orthanc's REST API", TIMEOUT)
        yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_orthanc_echo(interop: Interop, orthanc: Orthanc) -> None:
    orthanc.call("POST", "/modalities/pyqrscp/echo", {})
    assert wait_for_log(interop, r"Received Echo Request from ORTHANC")


def test_orthanc_store_query_move(interop: Interop, orthanc: Orthanc) -> None:
    originals = interop.files("ORTHANC", 2)
    ids = [orthanc.call("POST", "/instances", raw=path.read_bytes())["ID"]
           for path in originals]
    orthanc.call("POST", "/modalities/pyqrscp/store", ids)
    assert_stored_unchanged(interop, originals)
    for instance in ids:  # Orthanc must get them back from pyqrscp, not from its own storage
        orthanc.call("DELETE", f"/instances/{instance}")

    query = orthanc.call("POST", "/modalities/pyqrscp/query", {
        "Level": "Study",
        "Query": {"PatientID": "ORTHANC*", "PatientName": "", "StudyInstanceUID": ""}})
    answers = orthanc.call("GET", f"/queries/{query['ID']}/answers?expand&simplify")
    assert sorted((answer["PatientID"], answer["PatientName"], answer["StudyInstanceUID"])
                  for answer in answers) == [
        (ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID)
        for ds in map(pydicom.dcmread, originals)]

    index = next(position for position, answer in enumerate(answers)
                 if answer["PatientID"] == "ORTHANC1")
    orthanc.call("POST", f"/queries/{query['ID']}/answers/{index}/retrieve",
                 {"TargetAet": ORTHANC_AE, "Synchronous": True})
    moved = orthanc.call("POST", "/tools/lookup", raw=pydicom.dcmread(
        originals[1]).SOPInstanceUID.encode())[0]["ID"]  # C-MOVE (Study Root, STUDY) to itself
    received = interop.work / "orthanc-moved.dcm"
    received.write_bytes(orthanc.call("GET", f"/instances/{moved}/file"))
    assert_same_instance(received, originals[1])


# -- PixelMed: its command-line SCUs and tests/interop/PixelmedClient.java ---------------------

@pytest.fixture(scope="module")
def pixelmed(interop: Interop) -> list[str]:
    """The java command line running PixelmedClient, compiled against the installed jar."""
    javac, java = require("javac"), require("java")
    if not PIXELMED_JAR.exists():
        require(str(PIXELMED_JAR))
    classes = interop.work / "pixelmed-classes"
    subprocess.run([javac, "-d", str(classes), "-cp", str(PIXELMED_JAR), str(PIXELMED_CLIENT)],
                   check=True, timeout=TIMEOUT * 2)
    return [java, "-cp", f"{classes}{os.pathsep}{PIXELMED_JAR}", "PixelmedClient"]


def run_java(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_pixelmed_echo(interop: Interop) -> None:
    printed = run_java([require("VerificationSOPClassSCU"), "127.0.0.1", str(interop.port), AE,
                        "PIXELMED", "NONSECURE"])
    assert "VerificationSOPClass: was successful" in printed  # it exits 0 either way


def test_pixelmed_store_find_move_get(interop: Interop, pixelmed: list[str],
                                      tmp_path: Path) -> None:
    originals = interop.files("PIXELMED", 2)
    for path in originals:  # StorageSOPClassSCU: one file per association
        run_java([require("java"), "-cp", str(PIXELMED_JAR),
                  "com.pixelmed.network.StorageSOPClassSCU", "127.0.0.1", str(interop.port), AE,
                  "PIXELMED", str(path)])
    assert_stored_unchanged(interop, originals)
    datasets = [pydicom.dcmread(path) for path in originals]
    address = ["127.0.0.1", str(interop.port), AE, "PIXELMED"]

    answers = run_java([*pixelmed, "find", *address, "PIXELMED*"])
    assert sorted(line.split()[1:] for line in answers.splitlines()
                  if line.startswith("ANSWER ")) == sorted(
        [ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID] for ds in datasets)

    with storescp(interop, tmp_path / "storescp") as received:
        run_java([*pixelmed, "move", *address, STORESCP_AE, datasets[0].StudyInstanceUID])
    (moved,) = received.iterdir()
    assert_same_instance(moved, originals[0])

    folder = tmp_path / "get"
    folder.mkdir()
    run_java([*pixelmed, "get", *address, str(folder), datasets[1].StudyInstanceUID,
              datasets[1].SOPClassUID])
    (retrieved,) = folder.iterdir()
    assert_same_instance(retrieved, originals[1])


# -- dcmjs-dimse (npm, installed into tests/interop by .ci/run) ---------------------------------

def dcmjs(interop: Interop, *args: str) -> str:
    node = require("node")
    if not (INTEROP_DIR / "node_modules" / "dcmjs-dimse").is_dir():
        require(str(INTEROP_DIR / "node_modules" / "dcmjs-dimse"))  # npm install there
    result = subprocess.run([node, str(DCMJS_CLIENT), args[0], "127.0.0.1", str(interop.port),
                             AE, "DCMJS", *args[1:]], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_dcmjs_dimse_echo_store_find_move_get(interop: Interop, tmp_path: Path) -> None:
    assert dcmjs(interop, "echo").split() == ["STATUS", "0"]

    originals = interop.files("DCMJS", 2)
    dcmjs(interop, "store", *map(str, originals))
    assert_stored_unchanged(interop, originals)
    datasets = [pydicom.dcmread(path) for path in originals]

    answers = [json.loads(line[len("ANSWER "):]) for line in
               dcmjs(interop, "find", "DCMJS*").splitlines() if line.startswith("ANSWER ")]
    assert sorted((answer["PatientID"], answer["PatientName"][0]["Alphabetic"],
                   answer["StudyInstanceUID"]) for answer in answers) == sorted(
        (ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID) for ds in datasets)

    with storescp(interop, tmp_path / "storescp") as received:
        dcmjs(interop, "move", STORESCP_AE, datasets[0].StudyInstanceUID)
    (moved,) = received.iterdir()
    assert_same_instance(moved, originals[0])

    folder = tmp_path / "get"
    folder.mkdir()
    dcmjs(interop, "get", str(folder), datasets[1].StudyInstanceUID)
    (retrieved,) = folder.iterdir()  # written by dcmjs from its parsed dataset: values compared
    assert pydicom.dcmread(retrieved) == datasets[1]
