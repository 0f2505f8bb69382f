"""Identifiers listing very many values per key, against pyqrscp served in-process on port 0.

A key lists at most ``MAX_VALUES_PER_KEY`` values; past it C-FIND, C-MOVE and C-GET answer
0xA900 with an ErrorComment and one log line, and the association goes on.  Up to the bound, UID
lists reach the index as one parameter (never one SQL variable per UID).  Identifiers are sent
with pynetdicom in implicit VR little endian: a list of 400,000 UIDs is longer than the 16-bit
length of an explicit VR UI element, and no DCMTK tool takes such a list.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import (
    ServerInProcess,
    have_dcmtk,
    identifier,
    make_ct,
    pyqrscp_in_process,
    run_tool,
    wait_for_log,
    write_config,
)
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from pyqrscp.query.matching import MAX_VALUES_PER_KEY

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")]

STUDY_UID = "1.2.826.0.1.3680043.2.1143.77"
SOP_UIDS = tuple(f"{STUDY_UID}.1.{n}" for n in range(1, 4))
IDENTIFIER_DOES_NOT_MATCH = 0xA900

MOVE_FIRST = pytest.mark.pynetdicom_internals(
    reason=("pynetdicom's C-MOVE opens the sub-association before any final status: a refused "
            "identifier to a destination that does not answer gets 0xA801"))


@dataclass
class Archive:
    server: ServerInProcess

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    base = tmp_path_factory.mktemp("long-lists")
    (base / "in").mkdir()
    for number, sop_uid in enumerate(SOP_UIDS, start=1):
        make_ct(base / "in", study_uid=STUDY_UID, series_uid=f"{STUDY_UID}.1", sop_uid=sop_uid,
                instance_number=number, rows=2)
    config = write_config(base, [f"ARCHIVE {base / 'db'} RW (100, 64mb) ANY"])
    with pyqrscp_in_process(config) as server:
        stored = run_tool("storescu", "-aec", "ARCHIVE", "localhost", str(server.port), "+sd",
                          str(base / "in"))
        assert stored.returncode == 0, stored.stderr
        yield Archive(server)


def uid_list(count: int, *known: str) -> str:
    return "\\".join([*known, *(f"1.2.826.0.1.3680043.2.1143.9.{n}" for n in range(count))])


def associate(port: int) -> tuple[Any, list[str]]:
    """An association proposing implicit VR only, and the SOP Instance UIDs C-GET stores."""
    ae = AE(ae_title="LISTS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    for context in (StudyRootQueryRetrieveInformationModelFind,
                    StudyRootQueryRetrieveInformationModelGet,
                    StudyRootQueryRetrieveInformationModelMove, CTImageStorage, Verification):
        ae.add_requested_context(context, ImplicitVRLittleEndian)
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    assoc = ae.associate("127.0.0.1", port, ae_title="ARCHIVE",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    return assoc, received


def final_status(responses: Iterator[tuple[Dataset, Dataset | None]]) -> Dataset:
    last = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for status, _identifier in responses:
            last = status
    assert last is not None, "no response (association aborted)"
    return last


def request(assoc: Any, service: str, query: Dataset) -> Dataset:
    if service == "find":
        return final_status(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    if service == "get":
        return final_status(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    return final_status(assoc.send_c_move(query, "NOWHERE",
                                          StudyRootQueryRetrieveInformationModelMove))


@pytest.mark.parametrize("service", ["find", "get", pytest.param("move", marks=MOVE_FIRST)])
def test_400000_uids_get_a900_and_the_association_goes_on(archive: Archive,
                                                          service: str) -> None:
    assoc, received = associate(archive.port)
    try:
        status = request(assoc, service, identifier(
            "IMAGE", StudyInstanceUID=STUDY_UID, SOPInstanceUID=uid_list(400_000)))
        assert status.Status == IDENTIFIER_DOES_NOT_MATCH
        assert f"at most {MAX_VALUES_PER_KEY}" in status.ErrorComment
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    verb = {"find": "Find", "get": "Get", "move": "Move"}[service]
    line = wait_for_log(archive.server, f"{verb} failed from LISTS (127.0.0.1) -> ARCHIVE: "
                        "SOPInstanceUID lists 400000 values")
    assert line.startswith("E: ")


def test_wildcard_values_over_the_bound_get_a900(archive: Archive) -> None:
    names = "\\".join(f"Doe{n}*" for n in range(MAX_VALUES_PER_KEY + 1))
    assoc, received = associate(archive.port)
    try:
        status = request(assoc, "find", identifier("STUDY", PatientName=names,
                                                   StudyInstanceUID=""))
    finally:
        assoc.release()
    assert status.Status == IDENTIFIER_DOES_NOT_MATCH
    assert f"PatientName lists {MAX_VALUES_PER_KEY + 1} values" in status.ErrorComment


def test_a_uid_list_at_the_bound_retrieves_what_it_names(archive: Archive) -> None:
    uids = uid_list(MAX_VALUES_PER_KEY - len(SOP_UIDS), *SOP_UIDS)
    assoc, received = associate(archive.port)
    try:
        status = request(assoc, "get", identifier("IMAGE", StudyInstanceUID=STUDY_UID,
                                                  SeriesInstanceUID=f"{STUDY_UID}.1",
                                                  SOPInstanceUID=uids))
        found = request(assoc, "find", identifier("STUDY", StudyInstanceUID=uids))
    finally:
        assoc.release()
    assert status.Status == 0x0000
    assert sorted(received) == sorted(SOP_UIDS)
    assert found.Status == 0x0000
