"""The same config, files and findscu queries against DCMTK's dcmqrscp and pyqrscp.

Both archives get a config that differs only in the storage folder, the same files through
storescu, and the same queries on the keys dcmqrscp supports; the sets of returned
``(keyword, value)`` pairs must be equal.  pyqrscp runs with ``--case-sensitive-pn`` because
dcmqrscp matches PN case-sensitively.

Known differences are tested as such: a missing unique key above the level is refused by
both with different statuses; list matching on a non-UID key is pyqrscp's extension.
Expected differences, deliberately outside the compared keys: pyqrscp answers further return
keys (SeriesDescription, computed counts) that dcmqrscp drops, and it adds SpecificCharacterSet
only when the request or the data need one.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (
    DCMTK_ENV,
    free_port,
    have_dcmtk,
    make_ct,
    pyqrscp_process,
    run_tool,
    write_config,
)
from query_tool import findscu

DCMQRSCP = Path("/usr/bin/dcmqrscp")
pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not DCMQRSCP.exists() or not have_dcmtk(),
                                 reason="needs /usr/bin/dcmqrscp and the DCMTK tools")]

ROOT = "1.2.826.0.1.3680043.9.7778"
STUDY_KEYS = ("PatientName", "PatientID", "StudyDate", "StudyTime", "StudyID",
              "AccessionNumber", "StudyInstanceUID")
SERIES_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber")
IMAGE_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber")
# (study number, patient name, patient id, study date, modalities of its series)
STUDIES = (
    (1, "Doe^John", "P1", "20240102", ("CT", "MR")),
    (2, "Doe^John", "P1", "20240315", ("CT",)),
    (3, "Doe^Jane", "P2", "20231120", ("MR",)),
    (4, "Roe^Richard", "P3", "20220707", ("US",)),
    (5, "DOE^JOHN", "P4", "20240601", ("CT",)),
)
INSTANCES_PER_SERIES = 2


@dataclass(frozen=True)
class Pair:
    dcmqrscp_port: int
    pyqrscp_port: int


def _write_files(directory: Path) -> None:
    for number, name, patient_id, date, modalities in STUDIES:
        for series, modality in enumerate(modalities, start=1):
            for instance in range(1, INSTANCES_PER_SERIES + 1):
                make_ct(directory, study_uid=f"{ROOT}.{number}",
                        series_uid=f"{ROOT}.{number}.{series}",
                        sop_uid=f"{ROOT}.{number}.{series}.{instance}", patient_name=name,
                        patient_id=patient_id, study_date=date, modality=modality, rows=2,
                        instance_number=instance,
                        extra={"AccessionNumber": ("SH", f"A{number}")})


def _config(base: Path, name: str) -> Path:
    folder = base / name
    (folder / "db").mkdir(parents=True)
    return write_config(folder, [f"ARCHIVE {folder / 'db'} RW (50, 64mb) ANY"])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("differential")
    (base / "in").mkdir()
    _write_files(base / "in")
    port = free_port()
    # Not ``-s``: DCMTK 3.6.7's single-process mode segfaults in ASC_dropAssociation after its
    # first association (seen with gdb), so dcmqrscp runs in its default fork-per-association mode.
    reference = subprocess.Popen([str(DCMQRSCP), "-c", str(_config(base, "dcmqrscp")),
                                  str(port)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        _wait_for_echo(reference, port)
        with pyqrscp_process(_config(base, "pyqrscp"), "--case-sensitive-pn") as server:
            for target in (port, server.port):
                stored = run_tool("storescu", "-aec", "ARCHIVE", "localhost", str(target),
                                  "+sd", str(base / "in"))
                assert stored.returncode == 0, stored.stderr
            yield Pair(port, server.port)
    finally:
        reference.terminate()
        reference.wait(timeout=20)


def _wait_for_echo(process: subprocess.Popen[bytes], port: int) -> None:
    """Readiness by polling echoscu (dcmqrscp prints nothing when it starts listening)."""
    for _ in range(500):
        if process.poll() is not None:
            raise RuntimeError(f"dcmqrscp exited with {process.returncode}")
        if run_tool("echoscu", "-to", "2", "localhost", str(port), "-aec",
                    "ARCHIVE").returncode == 0:
            return
    raise RuntimeError("dcmqrscp did not answer C-ECHO")


Answers = Counter[frozenset[tuple[str, str]]]
"""Each response's compared keys, counted: a response sent twice is not one response."""


def answers(port: int, level: str, compared: tuple[str, ...], matching: dict[str, str],
            model: str = "-S") -> Answers:
    keys = [f"QueryRetrieveLevel={level}"]
    keys += [f"{k}={matching[k]}" if k in matching else k for k in compared]
    result = findscu(port, model, keys)
    assert result.final_status == 0x0000, result.output[-2000:]
    return Counter(frozenset((k, str(r.get(k, "")).strip()) for k in compared)
                   for r in result.responses)


@pytest.mark.parametrize(("level", "compared", "matching", "expected_count"), [
    ("STUDY", STUDY_KEYS, {}, 5),
    ("STUDY", STUDY_KEYS, {"PatientName": "Doe^John"}, 2),
    ("STUDY", STUDY_KEYS, {"PatientName": "Do*"}, 3),
    ("STUDY", STUDY_KEYS, {"StudyDate": "20231101-20240401"}, 3),
    ("STUDY", STUDY_KEYS, {"StudyDate": "-20231231"}, 2),
    ("STUDY", STUDY_KEYS, {"StudyInstanceUID": f"{ROOT}.2\\{ROOT}.4"}, 2),
    ("SERIES", SERIES_KEYS, {"StudyInstanceUID": f"{ROOT}.1"}, 2),
    ("SERIES", SERIES_KEYS, {"StudyInstanceUID": f"{ROOT}.1", "Modality": "MR"}, 1),
    ("IMAGE", IMAGE_KEYS, {"StudyInstanceUID": f"{ROOT}.1",
                           "SeriesInstanceUID": f"{ROOT}.1.2"}, INSTANCES_PER_SERIES),
    # Both ignore a non-unique key above the level and return the stored value.
    ("SERIES", (*SERIES_KEYS, "PatientName"), {"StudyInstanceUID": f"{ROOT}.1",
                                              "PatientName": "Roe^Richard"}, 2),
    # Both name themselves as the Retrieve AE Title.
    ("STUDY", ("StudyInstanceUID", "RetrieveAETitle"), {}, 5),
])
def test_same_answers_as_dcmqrscp(pair: Pair, level: str, compared: tuple[str, ...],
                                  matching: dict[str, str], expected_count: int) -> None:
    reference = answers(pair.dcmqrscp_port, level, compared, matching)
    ours = answers(pair.pyqrscp_port, level, compared, matching)
    assert reference.total() == expected_count
    assert ours == reference



@pytest.mark.parametrize(("matching", "expected_count"), [({}, 4), ({"PatientName": "Doe*"}, 2)])
def test_same_patients_as_dcmqrscp(pair: Pair, matching: dict[str, str],
                                   expected_count: int) -> None:
    compared = ("PatientName", "PatientID")
    reference = answers(pair.dcmqrscp_port, "PATIENT", compared, matching, model="-P")
    ours = answers(pair.pyqrscp_port, "PATIENT", compared, matching, model="-P")
    assert reference.total() == expected_count
    assert ours == reference


@pytest.mark.parametrize(("model", "keys"), [
    ("-S", ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"]),
    ("-S", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ROOT}.1", "SOPInstanceUID"]),
    ("-P", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"]),
])
def test_both_refuse_a_missing_unique_key_above_the_level(pair: Pair, model: str,
                                                         keys: list[str]) -> None:
    """dcmqrscp answers 0xC000 (unable to process), pyqrscp 0xA900 naming the key."""
    reference = findscu(pair.dcmqrscp_port, model, keys)
    ours = findscu(pair.pyqrscp_port, model, keys)
    assert (reference.responses, reference.final_status) == ([], 0xC000)
    assert (ours.responses, ours.final_status) == ([], 0xA900)


def test_list_matching_on_a_non_uid_key_is_a_pyqrscp_extension(pair: Pair) -> None:
    matching = {"AccessionNumber": "A2\\A4"}
    compared = ("StudyInstanceUID", "AccessionNumber")
    assert answers(pair.dcmqrscp_port, "STUDY", compared, matching) == Counter()
    assert answers(pair.pyqrscp_port, "STUDY", compared, matching) == Counter(
        frozenset({("StudyInstanceUID", f"{ROOT}.{n}"), ("AccessionNumber", f"A{n}")})
        for n in (2, 4))
