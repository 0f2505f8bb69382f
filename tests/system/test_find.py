"""C-FIND against pyqrscp served in-process on port 0, asked by DCMTK's findscu (responses read
with pydicom).

One server and one data set (stored with storescu) serve most queries; the expected values come
from what the fixture stored, never from the server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ServerInProcess,
    have_dcmtk,
    make_ct,
    poll_until,
    pyqrscp_in_process,
    run_tool,
    wait_for_log,
    write_config,
)
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind as STUDY_FIND,
)
from query_tool import findscu, write_query

from pyqrscp.archive.index import query as index_query
from pyqrscp.archive.storage import StorageArea
from pyqrscp.errors import PeerUnavailable
from pyqrscp.link.channel import Channel
from pyqrscp.services import find as find_service
from pyqrscp.services.find_responses import FindResponder

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]

SUCCESS, PENDING, CANCEL, IDENTIFIER_DOES_NOT_MATCH = 0x0000, 0xFF00, 0xFE00, 0xA900
ROOT = "1.2.826.0.1.3680043.9.7777"


@dataclass(frozen=True)
class StudySpec:
    number: int
    patient_name: str
    patient_id: str
    study_date: str
    series: tuple[tuple[str, int, str, str], ...]  # (modality, instances, description, body part)
    charset: str | None = None

    @property
    def uid(self) -> str:
        return f"{ROOT}.{self.number}"

    def series_uid(self, index: int) -> str:
        return f"{self.uid}.{index + 1}"


STUDIES = (
    StudySpec(1, "Müller^Hans", "P1", "20240102",
              (("CT", 2, "Chest", "CHEST"), ("MR", 1, "Head", "HEAD")), "ISO_IR 192"),
    StudySpec(2, "Doe^John", "P2", "20240315", (("CT", 1, "Abdomen", "ABDOMEN"),)),
    StudySpec(3, "Doe^John", "P2", "20240601", (("MR", 1, "Knee", "KNEE"),)),
    StudySpec(4, "Mueller^Hans", "P3", "20231231", (("CT", 1, "Chest", "CHEST"),)),
    StudySpec(5, "Gómez^Ana", "P4", "20230615", (("US", 1, "Neck", "NECK"),), "ISO_IR 100"),
    StudySpec(6, "Łukasz^Nowak", "P5", "20220101", (("CT", 1, "Spine", "SPINE"),), "ISO_IR 192"),
    StudySpec(7, "100%^Sure", "P6", "20220202", (("CT", 1, "Hand", "HAND"),)),
    StudySpec(8, "A_B^C", "P7", "20220303", (("CT", 1, "Foot", "FOOT"),)),
    StudySpec(9, "AXB^C", "P8", "20220404", (("CT", 1, "Foot", "FOOT"),)),
)
BY_NUMBER = {spec.number: spec for spec in STUDIES}
ALL_INSTANCES = sum(n for spec in STUDIES for _, n, _, _ in spec.series)


def uids(*numbers: int) -> list[str]:
    return sorted(BY_NUMBER[n].uid for n in numbers)


@dataclass(frozen=True)
class Archive:
    server: ServerInProcess
    config: Path
    sop_uids: dict[str, list[str]]  # series UID -> SOP instance UIDs

    @property
    def port(self) -> int:
        return self.server.port


def write_studies(directory: Path) -> dict[str, list[str]]:
    """Make every instance of STUDIES in ``directory``; series UID -> SOP instance UIDs."""
    sop_uids: dict[str, list[str]] = {}
    for spec in STUDIES:
        for index, (modality, count, description, body_part) in enumerate(spec.series):
            series_uid = spec.series_uid(index)
            for number in range(count):
                sop_uid = f"{series_uid}.{number + 1}"
                make_ct(directory, study_uid=spec.uid, series_uid=series_uid, sop_uid=sop_uid,
                        patient_name=spec.patient_name, patient_id=spec.patient_id,
                        study_date=spec.study_date, modality=modality, rows=2,
                        instance_number=number + 1, charset=spec.charset,
                        extra={"SeriesDescription": ("LO", description),
                               "BodyPartExamined": ("CS", body_part)})
                sop_uids.setdefault(series_uid, []).append(sop_uid)
    return sop_uids


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    base = tmp_path_factory.mktemp("find")
    (base / "db").mkdir()
    (base / "in").mkdir()
    config = write_config(base, [f"ARCHIVE {base / 'db'} RW (20, 64mb) ANY",
                                 f"WONLY {base / 'db'} W (20, 64mb) ANY"])
    sop_uids = write_studies(base / "in")
    with pyqrscp_in_process(config) as server:
        stored = run_tool("storescu", "-aec", "ARCHIVE", "localhost", str(server.port),
                          "+sd", str(base / "in"))
        assert stored.returncode == 0, stored.stderr
        yield Archive(server, config, sop_uids)


# -- information models and levels -------------------------------------------------------------


@pytest.mark.parametrize("model", ["-P", "-S"])
def test_study_level_gives_one_response_per_study(archive: Archive, model: str) -> None:
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID", "StudyDate"]
    if model == "-P":
        keys.append("PatientID=P2")
    result = findscu(archive.port, model, keys)
    expected = [s for s in STUDIES if model == "-S" or s.patient_id == "P2"]
    assert result.final_status == SUCCESS
    assert result.values("StudyInstanceUID") == sorted(s.uid for s in expected)
    assert {(str(r.StudyInstanceUID), r.StudyDate) for r in result.responses} == {
        (s.uid, s.study_date) for s in expected}


@pytest.mark.parametrize("model", ["-P", "-O"])
def test_patient_level_with_computed_counts(archive: Archive, model: str) -> None:
    result = findscu(archive.port, model, [
        "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
        "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedInstances"])
    assert result.final_status == SUCCESS
    by_id = {str(r.PatientID): r for r in result.responses}
    assert sorted(by_id) == sorted({s.patient_id for s in STUDIES})
    assert by_id["P2"].NumberOfPatientRelatedStudies == 2
    assert by_id["P2"].NumberOfPatientRelatedInstances == 2
    assert by_id["P1"].NumberOfPatientRelatedInstances == 3
    assert str(by_id["P1"].PatientName) == "Müller^Hans"


def test_patient_study_only_model_at_study_level(archive: Archive) -> None:
    result = findscu(archive.port, "-O", ["QueryRetrieveLevel=STUDY", "PatientID=P1",
                                          "StudyInstanceUID", "ModalitiesInStudy"])
    assert result.final_status == SUCCESS
    assert [(str(r.StudyInstanceUID), list(r.ModalitiesInStudy)) for r in result.responses] == [
        (BY_NUMBER[1].uid, ["CT", "MR"])]


@pytest.mark.parametrize("model", ["-P", "-S"])
def test_series_level_with_return_keys_beyond_dcmqrscp(archive: Archive, model: str) -> None:
    spec = BY_NUMBER[1]
    keys = ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={spec.uid}", "SeriesInstanceUID",
            "Modality", "SeriesDescription", "BodyPartExamined",
            "NumberOfSeriesRelatedInstances", "NumberOfStudyRelatedInstances"]
    if model == "-P":
        keys.append("PatientID=P1")
    result = findscu(archive.port, model, keys)
    assert result.final_status == SUCCESS
    got = {(str(r.SeriesInstanceUID), r.Modality, r.SeriesDescription, r.BodyPartExamined,
            int(r.NumberOfSeriesRelatedInstances), int(r.NumberOfStudyRelatedInstances))
           for r in result.responses}
    assert got == {(spec.series_uid(i), modality, description, body_part, count, 3)
                   for i, (modality, count, description, body_part) in enumerate(spec.series)}


@pytest.mark.parametrize("model", ["-P", "-S"])
def test_image_level_lists_the_instances_of_a_series(archive: Archive, model: str) -> None:
    spec = BY_NUMBER[1]
    keys = ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={spec.uid}",
            f"SeriesInstanceUID={spec.series_uid(0)}", "SOPInstanceUID", "InstanceNumber",
            "NumberOfSeriesRelatedInstances"]
    if model == "-P":
        keys.append("PatientID=P1")
    result = findscu(archive.port, model, keys)
    assert result.final_status == SUCCESS
    assert result.values("SOPInstanceUID") == sorted(archive.sop_uids[spec.series_uid(0)])
    assert sorted(int(r.InstanceNumber) for r in result.responses) == [1, 2]
    assert {int(r.NumberOfSeriesRelatedInstances) for r in result.responses} == {2}


@pytest.mark.parametrize(("model", "keys", "missing"), [
    ("-P", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"], "PatientID"),
    ("-P", ["QueryRetrieveLevel=STUDY", "PatientID", "StudyInstanceUID"], "PatientID"),
    ("-O", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"], "PatientID"),
    ("-S", ["QueryRetrieveLevel=SERIES", "SeriesInstanceUID"], "StudyInstanceUID"),
    ("-S", ["QueryRetrieveLevel=IMAGE", "StudyInstanceUID", "SOPInstanceUID"],
     "StudyInstanceUID"),
    ("-S", ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ROOT}.1", "SOPInstanceUID"],
     "SeriesInstanceUID"),
    ("-P", ["QueryRetrieveLevel=SERIES", "PatientID=P1", "SeriesInstanceUID"],
     "StudyInstanceUID"),
])
def test_missing_unique_key_above_the_level_is_refused(archive: Archive, model: str,
                                                       keys: list[str], missing: str) -> None:
    """The baseline hierarchical search needs one value for each unique key above the level
    (PS3.4 C.4.1.2.1): 0xA900 naming the key, not a universal match."""
    result = findscu(archive.port, model, keys)
    assert result.responses == []
    assert result.final_status == IDENTIFIER_DOES_NOT_MATCH
    assert f"{missing} missing above the" in result.output


def test_non_unique_keys_above_the_level_are_ignored(archive: Archive) -> None:
    """A hierarchical search matches no key above the level but the unique keys (PatientName
    and StudyDate at SERIES level in Study Root): returned as stored, never a filter."""
    spec = BY_NUMBER[1]
    result = findscu(archive.port, "-S", ["QueryRetrieveLevel=SERIES",
                                          f"StudyInstanceUID={spec.uid}", "SeriesInstanceUID",
                                          "PatientName=Nobody*", "StudyDate=19000101"])
    assert result.final_status == SUCCESS
    assert result.values("SeriesInstanceUID") == sorted(spec.series_uid(i)
                                                       for i in range(len(spec.series)))
    assert {str(r.PatientName) for r in result.responses} == {spec.patient_name}


def test_ignored_keys_are_named_at_debug_level(archive: Archive) -> None:
    with pyqrscp_in_process(archive.config, "-d") as server:
        findscu(server.port, "-S", ["QueryRetrieveLevel=SERIES",
                                    f"StudyInstanceUID={BY_NUMBER[1].uid}",
                                    "PatientName=Nobody*"])
        assert wait_for_log(server, "ignoring PatientName above the SERIES level")


def test_responses_carry_the_called_ae_title_as_retrieve_ae_title(archive: Archive) -> None:
    result = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                          "RetrieveAETitle"])
    assert result.final_status == SUCCESS
    assert result.values("RetrieveAETitle") == ["ARCHIVE"] * len(STUDIES)


def test_accession_number_list_matching(archive: Archive) -> None:
    """List matching on a non-UID key: an extension (PS3.4 allows lists for UIDs only)."""
    result = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                          "AccessionNumber=ACC9\\ACC1"])
    assert result.final_status == SUCCESS
    assert len(result.responses) == len(STUDIES)
    none = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                        "AccessionNumber=ACC9\\ACC8"])
    assert (none.final_status, none.responses) == (SUCCESS, [])


def test_relational_query_when_negotiated(archive: Archive) -> None:
    """With relational queries granted (SOP Class Extended Negotiation, C.4.1.3.2), a SERIES
    query needs no StudyInstanceUID and keys above the level match; without, it is refused."""
    ae = AE(ae_title="RELATIONAL")
    ae.add_requested_context(STUDY_FIND)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.SeriesInstanceUID = ""
    identifier.PatientName = "Doe^John"
    answers: dict[bool, tuple[int, list[str]]] = {}
    for relational in (True, False):
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = STUDY_FIND
        item.service_class_application_information = b"\x01" if relational else b"\x00"
        assoc = ae.associate("127.0.0.1", archive.port, ae_title="ARCHIVE", ext_neg=[item])
        assert assoc.is_established
        try:
            responses = list(assoc.send_c_find(identifier, STUDY_FIND))
        finally:
            assoc.release()
        answers[relational] = (int(responses[-1][0].Status), sorted(
            str(found.SeriesInstanceUID) for status, found in responses
            if found is not None and status.Status == PENDING))
    expected = sorted(s.series_uid(0) for s in STUDIES if s.patient_name == "Doe^John")
    assert answers == {True: (SUCCESS, expected), False: (IDENTIFIER_DOES_NOT_MATCH, [])}


def test_study_level_computed_study_keys(archive: Archive) -> None:
    result = findscu(archive.port, "-S", [
        "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "NumberOfStudyRelatedInstances",
        "NumberOfStudyRelatedSeries", "ModalitiesInStudy", "NumberOfPatientRelatedStudies"])
    assert result.final_status == SUCCESS
    got = {str(r.StudyInstanceUID): (int(r.NumberOfStudyRelatedInstances),
                                     int(r.NumberOfStudyRelatedSeries),
                                     sorted(_as_list(r.ModalitiesInStudy)),
                                     int(r.NumberOfPatientRelatedStudies))
           for r in result.responses}
    assert got == {spec.uid: (sum(n for _, n, _, _ in spec.series), len(spec.series),
                              sorted({m for m, _, _, _ in spec.series}),
                              sum(1 for s in STUDIES if s.patient_id == spec.patient_id))
                   for spec in STUDIES}
    assert got[BY_NUMBER[1].uid] == (3, 2, ["CT", "MR"], 1)


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]  # type: ignore[attr-defined]


# -- matching kinds ------------------------------------------------------------------------------


@pytest.mark.parametrize(("keys", "expected"), [
    (["PatientName"], list(BY_NUMBER)),
    (["PatientName=*"], list(BY_NUMBER)),
    (["PatientName=Doe^John"], [2, 3]),
    (["PatientID=P4"], [5]),
    (["PatientName=Do*"], [2, 3]),
    (["PatientName=M?ller^Hans"], [1]),
    (["PatientName=M*ller*"], [1, 4]),
    (["StudyDate=20240101-20240331"], [1, 2]),
    (["StudyDate=-20221231"], [6, 7, 8, 9]),
    (["StudyDate=20240301-"], [2, 3]),
    (["StudyDate=20240315"], [2]),
    (["ModalitiesInStudy=MR"], [1, 3]),
    ([f"StudyInstanceUID={ROOT}.2\\{ROOT}.5\\{ROOT}.99"], [2, 5]),
    (["PatientName=doe^john"], [2, 3]),
    (["PatientName=100%^Sure"], [7]),
    (["PatientName=%"], []),
    (["PatientName=A_B*"], [8]),
    (["PatientID=P_"], []),
    (["SOPClassesInStudy=\\"], []),  # a UID list of no UID is not universal: no match
])
def test_study_level_matching(archive: Archive, keys: list[str], expected: list[int]) -> None:
    result = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                          "PatientName", *keys])
    assert result.final_status == SUCCESS
    assert result.values("StudyInstanceUID") == uids(*expected)


def test_case_sensitive_pn_flag(archive: Archive) -> None:
    with pyqrscp_in_process(archive.config, "--case-sensitive-pn") as server:
        lower = findscu(server.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                            "PatientName=doe^john"])
        exact = findscu(server.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                            "PatientName=Doe^John"])
    assert (lower.final_status, lower.responses) == (SUCCESS, [])
    assert exact.values("StudyInstanceUID") == uids(2, 3)


# -- identifier rules ----------------------------------------------------------------------------


# pydicom warns about the wildcard in a UI value; pyqrscp logs it (a W: line) and goes on
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")
def test_wildcard_study_uid_at_series_level_fails(archive: Archive) -> None:
    result = findscu(archive.port, "-S", ["QueryRetrieveLevel=SERIES",
                                          f"StudyInstanceUID={ROOT}.*", "SeriesInstanceUID"])
    assert result.responses == []
    assert result.final_status == IDENTIFIER_DOES_NOT_MATCH


def test_series_level_in_patient_study_only_fails(archive: Archive) -> None:
    result = findscu(archive.port, "-O", ["QueryRetrieveLevel=SERIES", "PatientID=P1",
                                          f"StudyInstanceUID={BY_NUMBER[1].uid}"])
    assert result.responses == []
    assert result.final_status is not None and result.final_status >= 0xA000


def test_missing_query_retrieve_level_fails(archive: Archive) -> None:
    result = findscu(archive.port, "-S", ["StudyInstanceUID", "PatientName"])
    assert result.responses == []
    assert result.final_status == IDENTIFIER_DOES_NOT_MATCH


# -- character sets ------------------------------------------------------------------------------


def test_latin1_request_gets_latin1_or_utf8_responses(archive: Archive, tmp_path: Path) -> None:
    query = write_query(tmp_path / "q.dcm", "ISO_IR 100", QueryRetrieveLevel="STUDY",
                        PatientName="", StudyInstanceUID="")
    result = findscu(archive.port, "-S", [], query_file=query)
    assert result.final_status == SUCCESS
    by_uid = {str(r.StudyInstanceUID): r for r in result.responses}
    # Latin-1 text goes back in the request's charset; text Latin-1 cannot hold goes as UTF-8.
    assert (by_uid[BY_NUMBER[5].uid].SpecificCharacterSet,
            str(by_uid[BY_NUMBER[5].uid].PatientName)) == ("ISO_IR 100", "Gómez^Ana")
    assert (by_uid[BY_NUMBER[1].uid].SpecificCharacterSet,
            str(by_uid[BY_NUMBER[1].uid].PatientName)) == ("ISO_IR 100", "Müller^Hans")
    assert (by_uid[BY_NUMBER[6].uid].SpecificCharacterSet,
            str(by_uid[BY_NUMBER[6].uid].PatientName)) == ("ISO_IR 192", "Łukasz^Nowak")


def test_latin1_query_value_matches_utf8_data(archive: Archive, tmp_path: Path) -> None:
    query = write_query(tmp_path / "q.dcm", "ISO_IR 100", QueryRetrieveLevel="STUDY",
                        PatientName="Müller*", StudyInstanceUID="")
    result = findscu(archive.port, "-S", [], query_file=query)
    assert result.final_status == SUCCESS
    assert result.values("StudyInstanceUID") == uids(1)


def test_utf8_data_without_request_charset_is_declared_utf8(archive: Archive) -> None:
    for keys in (["PatientName"], ["PatientName", "SpecificCharacterSet"]):
        result = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY", "PatientID=P1",
                                              *keys])
        assert [(r.SpecificCharacterSet, str(r.PatientName)) for r in result.responses] == [
            ("ISO_IR 192", "Müller^Hans")], keys


# -- contexts, access, cancel --------------------------------------------------------------------


def test_no_study_root_flag_refuses_study_root(archive: Archive) -> None:
    with pyqrscp_in_process(archive.config, "-QS") as server:
        study_root = findscu(server.port, "-S", ["QueryRetrieveLevel=STUDY"])
        patient_root = findscu(server.port, "-P", ["QueryRetrieveLevel=PATIENT", "PatientID"])
    assert study_root.returncode != 0
    assert "No Acceptable Presentation Contexts" in study_root.output
    assert study_root.responses == [] and study_root.final_status is None
    assert patient_root.final_status == SUCCESS
    assert len(patient_root.responses) == len({s.patient_id for s in STUDIES})


def test_write_only_area_refuses_find(archive: Archive) -> None:
    result = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY"], called_aet="WONLY")
    # The association is accepted (echo/store), but no Q/R context is: findscu cannot ask.
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.output
    assert result.responses == [] and result.final_status is None
    echo = run_tool("echoscu", "-aec", "WONLY", "localhost", str(archive.port))
    assert echo.returncode == 0, echo.stderr


def test_cancel_stops_the_responses(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "in").mkdir()
    count = 300
    for number in range(count):
        make_ct(tmp_path / "in", study_uid=f"{ROOT}.50", series_uid=f"{ROOT}.50.1", rows=2,
                instance_number=number)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'db'} RW (9, 64mb) ANY"])
    keys = ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ROOT}.50",
            f"SeriesInstanceUID={ROOT}.50.1", "SOPInstanceUID"]
    with pyqrscp_in_process(config) as server:
        assert run_tool("storescu", "-aec", "ARCHIVE", "localhost", str(server.port), "+sd",
                        str(tmp_path / "in")).returncode == 0
        # The C-CANCEL races the server's responses; most runs stop after a few dozen, so
        # a handful of tries makes a server that never honours cancel the only way to fail.
        attempts = [findscu(server.port, "-S", keys, extra=["--cancel", "1"]) for _ in range(5)]
    cancelled = [a for a in attempts if a.final_status == CANCEL]
    assert cancelled, [a.final_status for a in attempts]
    assert all(1 <= len(a.responses) < count for a in cancelled)


# -- responses while matching is slow --------------------------------------------------------


class HeldFetches:
    """A reader connection of the real index whose query rows after the first fetch wait for
    ``release``: a database that is slow to give the next batch of candidates.  ``waiting`` is
    set once the server waits there (SQLite's ``fetchmany``, PostgreSQL's ``stream``)."""

    def __init__(self, db: Any, release: threading.Event, waiting: threading.Event) -> None:
        self._db = db
        self._release = release
        self._waiting = waiting

    def __getattr__(self, name: str) -> Any:
        if name == "stream" and hasattr(self._db, "stream"):
            return self._stream
        return getattr(self._db, name)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return _HeldCursor(self._db.execute(sql, parameters), self._hold)

    def _hold(self) -> None:
        self._waiting.set()
        assert self._release.wait(120), "the test never released the fetch"

    def _stream(self, sql: str, parameters: Any, batch: int) -> Iterator[list[Any]]:
        rows = self._db.stream(sql, parameters, batch)
        try:
            yield next(rows)
            self._hold()
            yield from rows
        except StopIteration:
            return
        finally:
            rows.close()


class _HeldCursor:
    def __init__(self, cursor: Any, hold: Any) -> None:
        self._cursor = cursor
        self._hold = hold
        self._fetches = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def fetchmany(self, size: int) -> list[Any]:
        self._fetches += 1
        if self._fetches == 2:
            self._hold()
        return list(self._cursor.fetchmany(size))


def test_the_first_responses_arrive_while_the_index_is_slow_to_give_more(
        archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nine studies match, a full batch of rows from the index, fewer than a batch of
    responses; the index then takes its time to say there are no more.  The nine pending
    responses reach the peer before that (they waited for the whole answer: a batch is 16
    responses)."""
    release, waiting = threading.Event(), threading.Event()
    reader = StorageArea.reader

    def held_reader(area: StorageArea) -> Any:
        return HeldFetches(reader(area), release, waiting)

    monkeypatch.setattr(StorageArea, "reader", held_reader)
    monkeypatch.setattr(index_query, "_BATCH", len(STUDIES))
    monkeypatch.setattr(index_query, "_FIRST_BATCH", len(STUDIES))
    ae = AE(ae_title="SLOWFIND")
    ae.add_requested_context(STUDY_FIND)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    statuses: list[int] = []
    all_pending = threading.Event()
    assoc = ae.associate("127.0.0.1", archive.server.port, ae_title="ARCHIVE")
    assert assoc.is_established

    def ask() -> None:
        for status, _identifier in assoc.send_c_find(query, STUDY_FIND):
            statuses.append(int(status.Status) if status else -1)
            if statuses == [PENDING] * len(STUDIES):
                all_pending.set()

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    try:
        assert waiting.wait(60), "the C-FIND never reached the index"
        assert all_pending.wait(30), "the responses waited for the index"
    finally:
        release.set()
        asking.join(60)
        assoc.release()
    assert statuses == [PENDING] * len(STUDIES) + [SUCCESS]


def test_the_first_response_leaves_before_a_batch_is_made(
        archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nine studies match, all at hand.  The first pending response reaches the peer before
    the third match is even read: a peer spends longer on a response than the server does
    making one, so it must not wait for a whole batch to start."""
    first_arrived = threading.Event()
    waited: list[bool] = []
    run_query = index_query.run_query

    def slow_after_two(*args: Any, **kwargs: Any) -> Iterator[dict[str, str]]:
        for number, attrs in enumerate(run_query(*args, **kwargs)):
            if number == 2:
                waited.append(first_arrived.wait(20))
            yield attrs

    monkeypatch.setattr(find_service, "run_query", slow_after_two)
    ae = AE(ae_title="FIRSTFIND")
    ae.dimse_timeout = 120  # longer than the server's wait: a late response fails the wait
    ae.add_requested_context(STUDY_FIND)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    statuses: list[int] = []
    assoc = ae.associate("127.0.0.1", archive.server.port, ae_title="ARCHIVE")
    assert assoc.is_established
    try:
        for status, _identifier in assoc.send_c_find(query, STUDY_FIND):
            statuses.append(int(status.Status) if status else -1)
            first_arrived.set()
    finally:
        first_arrived.set()
        assoc.release()
    assert statuses == [PENDING] * len(STUDIES) + [SUCCESS]
    assert waited == [True], "the first response waited for the matches after it"


@pytest.mark.pynetdicom_internals(
    reason="pyqrscp's own C-FIND dispatch batches responses; through pynetdicom's EVT_C_FIND "
           "handler each response is a message of its own")
def test_one_match_goes_out_with_the_final_response_in_one_write(
        archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query that one study matches: its pending response and the final one leave in one
    batch (one write), not each alone."""
    batches: list[int] = []
    send_batch = FindResponder._send_batch

    def counted(responder: FindResponder) -> None:
        if responder._batch:
            batches.append(len(responder._batch))
        send_batch(responder)

    monkeypatch.setattr(FindResponder, "_send_batch", counted)
    result = findscu(archive.port, "-S", ["QueryRetrieveLevel=STUDY",
                                          f"StudyInstanceUID={BY_NUMBER[3].uid}"])
    assert result.final_status == SUCCESS and len(result.responses) == 1, result.output
    assert batches == [2]


@pytest.mark.pynetdicom_internals(reason="only a held channel's writes are the serving thread's")
def test_a_failed_write_of_responses_aborts_the_association(
        archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    """The third batch of responses fails part way (as a write to a peer that stopped reading
    fails at the socket's timeout): nothing more is sent, no final response, and the
    association is aborted."""
    writes: list[int] = []
    flush = Channel.flush

    def failing(channel: Channel) -> None:
        if channel._deferred:
            writes.append(len(channel._deferred))
            if len(writes) == 3:
                channel._deferred.clear()
                raise PeerUnavailable("sending failed: timed out")
        flush(channel)

    monkeypatch.setattr(Channel, "flush", failing)
    ae = AE(ae_title="BROKENFIND")
    ae.add_requested_context(STUDY_FIND)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    assoc = ae.associate("127.0.0.1", archive.server.port, ae_title="ARCHIVE")
    assert assoc.is_established
    statuses = [int(status.Status) if status else -1
                for status, _identifier in assoc.send_c_find(query, STUDY_FIND)]
    assert statuses == [PENDING, PENDING, -1]
    poll_until(lambda: assoc.is_aborted or None, "the A-ABORT")
    wait_for_log(archive.server, "Find failed from BROKENFIND", "timed out")
