"""pydicom's test data through the installed ``pyqrscp``: stored with ``storescu`` in each file's
own syntax, retrieved with ``movescu``/``getscu`` in that syntax (the stored bytes, bit for bit)
and in each uncompressed syntax a receiver may insist on (the same values, as pydicom reads them).

Files sharing a SOP Instance UID (pydicom has one MR in nine encodings) go to separate storage
areas.  The 17 files storescu cannot parse (pydicom keeps odd ones on purpose) are sent as they
are by pyqrscp's own C-STORE SCU.  The default suite runs a representative set (every file
whose byte order used to be lost, plus one per kind of encoding); the ``slow`` sweep runs every
file pyqrscp stores.
A C-GET requestor that insists on implicit VR or big endian is pynetdicom: ``getscu`` proposes
all three uncompressed syntaxes (pyqrscp picks explicit VR little endian), and DCMTK 3.6.7's
``getscu +xi`` proposes explicit VR little endian only.
"""

from __future__ import annotations

import subprocess
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import DCMTK_ENV, RunningServer, free_port, have_dcmtk, pyqrscp_process, run_tool
from helpers import write_config as write_dcmqrscp_config
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pydicom_data import differences, pixel_values_equal, storable_files
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet  # type: ignore[attr-defined]

from pyqrscp.archive.dicomfile import read_header
from pyqrscp.dimse.acse import ProposedContext
from pyqrscp.dimse.part10 import file_header
from pyqrscp.link.sender import StoreAssociation
from pyqrscp.services.retrieve import stored_dataset

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]

ROOT = Path(pydicom.data.__file__).parent / "test_files"
REPRESENTATIVE = [
    # big endian, or little endian with OW palette data: their byte order used to be lost
    "MR_small_bigendian.dcm", "MR_small_expb.dcm", "SC_rgb_small_odd_big_endian.dcm",
    "rtdose_expb.dcm", "rtdose_expb_1frame.dcm", "examples_palette.dcm",
    # explicit and implicit little endian, RLE, deflated, JPEG 2000, OW in a sequence, overlay
    "CT_small.dcm", "rtdose.dcm", "MR_small_RLE.dcm", "image_dfl.dcm", "JPEG2000.dcm",
    "waveform_ecg.dcm", "examples_overlay.dcm"]
Received = dict[str, tuple[str, bytes]]  # SOP instance UID -> (transfer syntax, dataset bytes)


@dataclass(frozen=True)
class Area:
    """One storage area: what pyqrscp stored, by SOP instance UID."""

    aet: str
    stored: Received
    sop_classes: frozenset[str]
    study_uids: tuple[str, ...]


@dataclass(frozen=True)
class Archive:
    server: RunningServer
    areas: tuple[Area, ...]
    originals: dict[tuple[str, str], Path]  # (area AE title, SOP instance UID) -> file sent
    own_dir: Path
    implicit_dir: Path


def _uid(path: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_header(path.read_bytes()).sop_instance_uid


def _quietly_read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some of pydicom's files hold odd values on purpose
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _partition(files: list[Path]) -> list[list[Path]]:
    """Groups of files with distinct SOP Instance UIDs (first fit)."""
    groups: list[tuple[set[str], list[Path]]] = []
    for path in files:
        uid = _uid(path)
        group = next((g for g in groups if uid not in g[0]), None)
        if group is None:
            group = (set(), [])
            groups.append(group)
        group[0].add(uid)
        group[1].append(path)
    return [paths for _uids, paths in groups]


_STORESCU_PROPOSAL = {  # storescu proposes a file's syntax on its own only when told
    ExplicitVRBigEndian: "-xb", ImplicitVRLittleEndian: "-xi", ExplicitVRLittleEndian: "-xe",
    DeflatedExplicitVRLittleEndian: "-xd", RLELossless: "-xr", JPEGBaseline8Bit: "-xy",
    JPEGExtended12Bit: "-xx", JPEGLosslessSV1: "-xs", JPEG2000Lossless: "-xv", JPEG2000: "-xw",
    JPEGLSLossless: "-xt", JPEGLSNearLossless: "-xu"}


def _storescu_options(syntax: str) -> list[str]:
    """``-R``: only the files' SOP classes (storescu's default list lacks some, e.g. ECG)."""
    option = _STORESCU_PROPOSAL.get(UID(syntax))
    return ["-R", option] if option else ["-R"]


def _read_folder(folder: Path) -> Received:
    found: Received = {}
    for path in folder.rglob("*"):  # a storage area keeps its files in hash folders
        if not path.is_file():
            continue
        with path.open("rb") as file:
            if file.read(132)[128:] != b"DICM":
                continue  # the index, a lock file
        syntax, data = stored_dataset(path)
        found[_uid(path)] = (syntax, bytes(data))
    return found


def _wait_for_echo(process: subprocess.Popen[bytes], port: int, called_aet: str) -> None:
    for _ in range(500):
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited with {process.returncode}")
        if run_tool("echoscu", "-to", "5", "-aec", called_aet, "localhost",
                    str(port)).returncode == 0:
            return
    raise RuntimeError("storescp did not answer C-ECHO")


def _store(base: Path, files: list[Path]) -> tuple[list[str], dict[tuple[str, str], Path]]:
    """Area config rows and the files each area is sent."""
    rows, originals = [], {}
    for index, group in enumerate(_partition(files)):
        aet = f"AREA{index}"
        (base / aet).mkdir()
        rows.append(f"{aet} {base / aet} RW (200, 1024mb) ANY")
        originals.update({(aet, _uid(path)): path for path in group})
    return rows, originals


def _send(port: int, aet: str, paths: list[Path]) -> None:
    by_option: dict[tuple[str, ...], list[str]] = {}
    for path in paths:
        syntax = str(_quietly_read(path).file_meta.TransferSyntaxUID)
        by_option.setdefault(tuple(_storescu_options(syntax)), []).append(str(path))
    for option, names in by_option.items():
        run_tool("storescu", *option, "-aec", aet, "localhost", str(port), *names, timeout=300)


def _send_unreadable_to_dcmtk(port: int, aet: str, paths: list[Path]) -> None:
    """pydicom has files that storescu cannot parse (an odd length on purpose, a stray tag)
    and that pynetdicom re-encodes: pyqrscp's own C-STORE SCU sends their bytes as they are."""
    headers = {path: _quietly_read(path) for path in paths}
    pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                    for ds in headers.values()})
    contexts = [ProposedContext(2 * index + 1, sop_class, (syntax,))
                for index, (sop_class, syntax) in enumerate(pairs)]
    sub = StoreAssociation.open("127.0.0.1", port, "STORESCU", aet, contexts, acse_timeout=120,
                                dimse_timeout=120)
    try:
        for message_id, (path, ds) in enumerate(headers.items(), 1):
            syntax, data = stored_dataset(path)
            context = sub.context_for(str(ds.SOPClassUID), syntax)
            assert context is not None
            sub.send_c_store(context, str(ds.SOPInstanceUID), data, message_id)
    finally:
        sub.release()


def _area(folder: Path, aet: str) -> Area:
    stored = {uid: value for uid, value in _read_folder(folder).items()}
    datasets = [_quietly_read(path) for path in folder.rglob("*.dcm")]
    return Area(aet, stored, frozenset(str(ds.SOPClassUID) for ds in datasets),
                tuple(sorted({str(ds.StudyInstanceUID) for ds in datasets})))


def _storescp(aet: str, port: int, folder: Path, log: Path, *options: str
              ) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(["storescp", "+B", *options, "-aet", aet, "-od", str(folder),
                                 str(port)], stdout=out, stderr=subprocess.STDOUT, env=DCMTK_ENV)


def _archive(base: Path, files: list[Path]) -> Iterator[Archive]:
    """One pyqrscp with every file stored (area by area), and two storescp destinations: OWN
    takes every syntax, IMPLICIT only implicit VR little endian."""
    rows, originals = _store(base, files)
    own_port, implicit_port = free_port(), free_port()
    config = write_dcmqrscp_config(base, rows, [f"own = (OWN, localhost, {own_port})",
                                                f"impl = (IMPLICIT, localhost, {implicit_port})"])
    own_dir, implicit_dir = base / "own", base / "implicit"
    own_dir.mkdir()
    implicit_dir.mkdir()
    destinations = [
        _storescp("OWN", own_port, own_dir, base / "own.log", "+xa"),
        _storescp("IMPLICIT", implicit_port, implicit_dir, base / "implicit.log", "+xi")]
    try:
        _wait_for_echo(destinations[0], own_port, "OWN")
        _wait_for_echo(destinations[1], implicit_port, "IMPLICIT")
        with pyqrscp_process(config) as server:
            areas = []
            for row in rows:
                aet = row.split()[0]
                paths = [p for (a, _u), p in originals.items() if a == aet]
                _send(server.port, aet, paths)
                stored = _read_folder(base / aet)
                left = [p for (a, u), p in originals.items() if a == aet and u not in stored]
                if left:
                    _send_unreadable_to_dcmtk(server.port, aet, left)
                areas.append(_area(base / aet, aet))
            yield Archive(server, tuple(areas), originals, own_dir, implicit_dir)
    finally:
        for destination in destinations:
            destination.terminate()
            destination.wait(timeout=20)


@pytest.fixture(scope="module")
def representative(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    yield from _archive(tmp_path_factory.mktemp("roundtrip"), [ROOT / n for n in REPRESENTATIVE])


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    yield from _archive(tmp_path_factory.mktemp("roundtrip-all"), storable_files())


# -- retrieving --------------------------------------------------------------------------------


def _keys(area: Area) -> list[str]:
    uids = "\\".join(area.study_uids)
    return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uids}"]


def _emptied(folder: Path) -> Path:
    for path in folder.iterdir():
        path.unlink()
    return folder


def move(archive: Archive, area: Area, destination: str) -> Received:
    folder = _emptied(archive.own_dir if destination == "OWN" else archive.implicit_dir)
    run_tool("movescu", "-S", "-aec", area.aet, "-aem", destination, "localhost",
             str(archive.server.port), *_keys(area), timeout=300)
    return _read_folder(folder)


def get(archive: Archive, area: Area, folder: Path) -> Received:
    folder.mkdir()
    run_tool("getscu", "-S", "+B", "-aec", area.aet, "-od", str(folder), "localhost",
             str(archive.server.port), *_keys(area), timeout=300)
    return _read_folder(folder)


def get_only(archive: Archive, area: Area, syntax: str) -> Received:
    """C-GET by a requestor whose storage contexts offer ``syntax`` only."""
    received: Received = {}
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        with lock:
            received[str(event.request.AffectedSOPInstanceUID)] = (
                str(event.context.transfer_syntax), event.request.DataSet.getvalue())
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in sorted(area.sop_classes):
        ae.add_requested_context(sop_class, [syntax])
    roles: list[Any] = [build_role(uid, scp_role=True) for uid in sorted(area.sop_classes)]
    assoc = ae.associate("127.0.0.1", archive.server.port, ae_title=area.aet, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = list(area.study_uids)
    try:
        for _status, _identifier in assoc.send_c_get(identifier,
                                                     StudyRootQueryRetrieveInformationModelGet):
            pass
    finally:
        assoc.release()
    return received


# -- checking ------------------------------------------------------------------------------------


def _dataset(syntax: str, data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(BytesIO(file_header("1.2", "1.2", syntax) + data))


def _convertible(syntax: str) -> bool:
    """Whether pyqrscp can hand this stored syntax over in another: not compressed, or RLE."""
    uid = UID(syntax)
    return not uid.is_compressed or uid == RLELossless


def check(area: Area, received: Received, wanted: str | None) -> list[str]:
    """Problems with what arrived: each stored instance (convertible ones when a syntax is
    ``wanted``) must arrive, in ``wanted`` (None: its own syntax), bit for bit when that is
    the stored syntax, else with the same values."""
    problems = []
    for uid, (stored_syntax, stored_data) in sorted(area.stored.items()):
        target = wanted or stored_syntax
        if target != stored_syntax and not _convertible(stored_syntax):
            continue
        if uid not in received:
            problems.append(f"{area.aet} {uid}: not received")
            continue
        syntax, data = received[uid]
        if syntax != target:
            problems.append(f"{area.aet} {uid}: arrived in {UID(syntax).name}")
        elif syntax == stored_syntax:
            if data != stored_data:
                problems.append(f"{area.aet} {uid}: bytes differ from the stored ones")
        else:
            problems += _value_problems(f"{area.aet} {uid} {UID(stored_syntax).name} -> "
                                        f"{UID(syntax).name}", stored_syntax, stored_data,
                                        syntax, data)
    return problems


def _value_problems(label: str, stored_syntax: str, stored_data: bytes, syntax: str,
                    data: bytes) -> list[str]:
    reference, copy = _dataset(stored_syntax, stored_data), _dataset(syntax, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = [f"{label}: {line}" for line in differences(reference, copy)]
        if not pixel_values_equal(reference, copy):
            found.append(f"{label}: pixel values differ")
    return found


def stored_as_sent(archive: Archive) -> list[str]:
    """The stored syntax of each file is the file's own (else no retrieve is in it)."""
    problems = []
    for area in archive.areas:
        for uid, (syntax, _data) in area.stored.items():
            sent = archive.originals[(area.aet, uid)]
            own = str(_quietly_read(sent).file_meta.TransferSyntaxUID)
            if syntax != own:
                problems.append(f"{sent.name} stored in {UID(syntax).name}")
    return problems


def _retrieves(archive: Archive, area: Area, tmp_path: Path
               ) -> Iterator[tuple[str, str | None, Received]]:
    """(what, the syntax it must arrive in or None for its own, what arrived), one by one."""
    yield "C-MOVE to OWN", None, move(archive, area, "OWN")
    yield "C-MOVE to IMPLICIT", ImplicitVRLittleEndian, move(archive, area, "IMPLICIT")
    yield "getscu", ExplicitVRLittleEndian, get(archive, area, tmp_path / f"{area.aet}-le")
    for syntax in (ImplicitVRLittleEndian, ExplicitVRBigEndian):
        yield f"C-GET in {syntax.name}", syntax, get_only(archive, area, syntax)


def sweep(archive: Archive, tmp_path: Path) -> list[str]:
    problems = stored_as_sent(archive)
    for area in archive.areas:
        for name, wanted, received in _retrieves(archive, area, tmp_path):
            problems += [f"{name}: {line}" for line in check(area, received, wanted)]
    return problems


def test_representative_files_round_trip(representative: Archive, tmp_path: Path) -> None:
    stored = sum(len(area.stored) for area in representative.areas)
    assert stored == len(REPRESENTATIVE)
    problems = sweep(representative, tmp_path)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_stored_file_of_pydicom_round_trips(everything: Archive, tmp_path: Path) -> None:
    stored = sum(len(area.stored) for area in everything.areas)
    assert stored == len(everything.originals) == len(storable_files())
    problems = sweep(everything, tmp_path)
    assert not problems, "\n".join(problems)
