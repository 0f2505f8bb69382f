"""Test helpers: synthetic DICOM files, config files, the real pyqrscp process, DCMTK tools."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from pyqrscp.archive.index.backend import IndexBackend, IndexConnection
from pyqrscp.archive.index.choice import INDEX_DB_VARIABLE, open_backend
from pyqrscp.cli.command import parse_flags, resolve_options
from pyqrscp.cli.logs import LEVELS
from pyqrscp.config import load_config
from pyqrscp.loglines import DcmtkFormatter
from pyqrscp.server.server import ArchiveServer, validate_options

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
TOOL_TIMEOUT = 60


def stored_files(area: Path) -> set[str]:
    """The ``.dcm`` files of a storage area, in either layout (flat, or in hash folders), by
    their names relative to the area (as the index holds them)."""
    return {p.relative_to(area).as_posix() for p in area.rglob("*.dcm")}


def have_dcmtk() -> bool:
    return shutil.which("echoscu") is not None and shutil.which("storescu") is not None


def make_ct(
    directory: Path,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    patient_name: str = "Doe^John",
    patient_id: str = "PID1",
    study_date: str = "20240102",
    study_time: str = "101500",
    modality: str = "CT",
    rows: int = 16,
    extra: dict[str, tuple[str, object]] | None = None,
    instance_number: int = 1,
    charset: str | None = None,
) -> Path:
    """Write one small CT instance (Part 10, explicit VR little endian) and return its path."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.Modality = modality
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.AccessionNumber = "ACC1"
    ds.Rows = rows
    ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = os.urandom(rows * rows * 2)
    for keyword, (vr, value) in (extra or {}).items():
        ds.add_new(keyword, vr, value)
    path = directory / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def write_config(directory: Path, ae_rows: Sequence[str], host_rows: Sequence[str] = (),
                 vendor_rows: Sequence[str] = (), extra_globals: str = "") -> Path:
    """A dcmqrscp.cfg in ``directory``."""
    text = "\n".join([
        "NetworkTCPPort = 11112", "MaxPDUSize = 16384", "MaxAssociations = 16", extra_globals,
        "HostTable BEGIN", *host_rows, "HostTable END",
        "VendorTable BEGIN", *vendor_rows, "VendorTable END",
        "AETable BEGIN", *ae_rows, "AETable END", ""])
    path = directory / "dcmqrscp.cfg"
    path.write_text(text)
    return path


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    port: int
    log: list[str]

    def log_text(self) -> str:
        return "\n".join(self.log)


T = TypeVar("T")

_LISTENING = re.compile(r"listening on port (\d+)")


@contextmanager
def pyqrscp_process(config: Path, *extra: str, port: int = 0) -> Iterator[RunningServer]:
    """Run the installed ``pyqrscp`` command; yield once it listens; always stop it."""
    command = [sys.executable, "-m", "pyqrscp", "-v", "-c", str(config), *extra, str(port)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               text=True)
    log: list[str] = []
    ready = threading.Event()
    found: list[int] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not found:
                found.append(int(match.group(1)))
                ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        ready.wait(timeout=30)
        if not found:
            process.kill()
            process.wait()
            reader.join(5)
            if process.stderr is not None:
                process.stderr.close()
            raise RuntimeError("pyqrscp did not start:\n" + "\n".join(log))
        yield RunningServer(process, found[0], log)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(5)
        if process.stderr is not None:
            process.stderr.close()


@dataclass
class ServerInProcess:
    """The archive served by this test process (port 0), its log lines as pyqrscp prints them."""
    server: ArchiveServer
    port: int
    log: list[str]

    def log_text(self) -> str:
        return "\n".join(self.log)


class _LogLines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(DcmtkFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def pyqrscp_in_process(config: Path, *extra: str, port: int = 0) -> Iterator[ServerInProcess]:
    """The server ``pyqrscp -v -c CONFIG EXTRA... PORT`` would run (same flags, config and
    option resolution), started in this process (port 0 unless told): yields once it listens,
    always stops it.  For service tests that need no process boundary (no signals, exit codes,
    log files, memory of the process)."""
    flags = parse_flags(["-v", "-c", str(config), *extra, str(port)])
    loaded = load_config(config)
    options = resolve_options(flags, loaded)
    validate_options(options)
    log: list[str] = []
    handler = _LogLines(log)
    logger = logging.getLogger("pyqrscp")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[flags.get("log_level", "warn")])
    logger.propagate = False
    server = ArchiveServer(loaded, options, host=options.bind or "")
    try:
        server.start()
        try:
            yield ServerInProcess(server, server.port, log)
        finally:
            server.stop()
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


def run_tool(*args: str, timeout: int = TOOL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK command-line tool and capture what it prints."""
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env=DCMTK_ENV)


def free_port() -> int:
    """A port for a *client-side* listener (movescu --port / storescp) picked by the kernel."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


POLL_DEADLINE = 60.0
"""How long a test waits for something another process or thread does (loaded CI machines)."""


def poll_until(probe: Callable[[], T | None], what: str,
               timeout: float = POLL_DEADLINE) -> T:
    """Call ``probe`` until it returns something other than None (or False), at most
    ``timeout`` seconds; fail the test naming ``what`` otherwise.  The one polling loop of the
    tests: readiness and log lines are awaited here, never ordered by a fixed sleep."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        pause.wait(0.05)


def wait_for_log(server: RunningServer | ServerInProcess, *parts: str,
                 timeout: float = POLL_DEADLINE) -> str:
    """The first log line holding every part; fails the test with the whole log when none
    appears in time (the log is read by another thread)."""
    def line() -> str | None:
        return next((found for found in list(server.log) if all(p in found for p in parts)),
                    None)
    try:
        return poll_until(line, f"a log line with {parts}", timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}:\n{server.log_text()}") from None


def still_open(sock: socket.socket) -> bool:
    """Is the server keeping this silent connection open (nothing sent, not closed)?  Asked
    without blocking, so a test orders "served others" before "gave up on this one" instead of
    timing either."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)
    return False


def identifier(level: str, **keys: str) -> Dataset:
    """A C-FIND/C-MOVE/C-GET identifier: the level and each keyword's value."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@functools.cache
def _test_backend(url: str | None) -> IndexBackend:
    return open_backend(url)


@contextmanager
def index_db(area: Path, url: str | None = None) -> Iterator[IndexConnection]:
    """A connection to a storage area's index in the database ``url``, else in whichever the
    servers the tests start use ($PYQRSCP_INDEX_DB: PostgreSQL in that pass, else SQLite)."""
    backend = _test_backend(url or os.environ.get(INDEX_DB_VARIABLE))
    db = backend.connect(area, read_only=backend.has_index(area))
    try:
        yield db
    finally:
        db.close()
