"""DICOMweb against a running pyqrscp: dicomweb-client's search, retrieve and store; the
stored bytes come back unchanged; QIDO-RS answers as findscu's C-FIND does; STOW-RS refuses
malformed bodies and writes nothing; access rules and credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_server import WebServer, sample, split_multipart, web_server
from helpers import have_dcmtk, index_db, make_ct, poll_until, run_tool
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid
from query_tool import findscu

from pyqrscp.cli import main as cli_main
from pyqrscp.errors import StartupError

needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed")
TIMEOUT = 60
BOUNDARY = "pyqrscp-test-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def stow_body(*parts: bytes, close: bool = True) -> bytes:
    body = b"".join(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                    + part + b"\r\n" for part in parts)
    return body + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")


def post(url: str, body: bytes, content_type: str = STOW_TYPE,
         **headers: str) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": content_type, **headers},
                         timeout=TIMEOUT)


def indexed(area: Path) -> int:
    with index_db(area) as db:
        return int(db.execute("SELECT COUNT(*) FROM instance").fetchone()[0])


def leftovers(area: Path) -> list[str]:
    return sorted(p.name for p in area.iterdir() if p.name.startswith(".pyqrscp-tmp-"))


SAMPLES = ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm")


def test_dicomweb_client_stores_searches_and_retrieves(tmp_path: Path) -> None:
    datasets = [dcmread(sample(name)) for name in SAMPLES]
    with web_server(tmp_path) as web:
        client = DICOMwebClient(web.dicomweb())
        stored = client.store_instances(datasets)
        assert len(stored.ReferencedSOPSequence) == 3
        assert "FailedSOPSequence" not in stored
        studies = client.search_for_studies(search_filters={"PatientID": "4MR1"})
        assert [s["0020000D"]["Value"][0] for s in studies] == [datasets[1].StudyInstanceUID]
        assert studies[0]["00100010"]["Value"][0]["Alphabetic"] == "CompressedSamples^MR1"
        series = client.search_for_series(search_filters={"Modality": "NM"})
        assert [s["0020000E"]["Value"][0] for s in series] == [datasets[2].SeriesInstanceUID]
        instances = client.search_for_instances(datasets[0].StudyInstanceUID)
        assert [i["00080018"]["Value"][0] for i in instances] == [datasets[0].SOPInstanceUID]
        for original in datasets:
            back = client.retrieve_instance(original.StudyInstanceUID,
                                            original.SeriesInstanceUID,
                                            original.SOPInstanceUID)
            assert back.SOPInstanceUID == original.SOPInstanceUID
            assert back.PixelData == original.PixelData
        series_back = client.retrieve_series(datasets[1].StudyInstanceUID,
                                             datasets[1].SeriesInstanceUID)
        assert [d.SOPInstanceUID for d in series_back] == [datasets[1].SOPInstanceUID]


def test_retrieved_bytes_equal_the_stored_files(tmp_path: Path) -> None:
    study = "1.2.826.0.1.3680043.8.498.1"
    files = [make_ct(tmp_path, study_uid=study, series_uid=f"{study}.{n % 2}",
                     instance_number=n) for n in range(4)]
    originals = {dcmread(f).SOPInstanceUID: f.read_bytes() for f in files}
    with web_server(tmp_path) as web:
        response = post(web.dicomweb() + "/studies", stow_body(*originals.values()))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/dicom+json"
        whole = requests.get(f"{web.dicomweb()}/studies/{study}", timeout=TIMEOUT)
        assert whole.headers["content-type"].startswith(
            'multipart/related; type="application/dicom"')
        assert sorted(split_multipart(whole)) == sorted(originals.values())
        one_series = requests.get(f"{web.dicomweb()}/studies/{study}/series/{study}.1",
                                  timeout=TIMEOUT)
        assert len(split_multipart(one_series)) == 2
        uid, data = next(iter(originals.items()))
        series_uid = dcmread(files[0]).SeriesInstanceUID
        single = requests.get(f"{web.dicomweb()}/studies/{study}/series/{series_uid}/"
                              f"instances/{uid}", timeout=TIMEOUT)
        assert split_multipart(single) == [data]
        wrong_syntax = requests.get(
            f"{web.dicomweb()}/studies/{study}", timeout=TIMEOUT,
            headers={"Accept": 'multipart/related; type="application/dicom"; '
                               "transfer-syntax=1.2.840.10008.1.2.4.50"})
        assert wrong_syntax.status_code == 406
        missing = requests.get(f"{web.dicomweb()}/studies/1.2.3.4", timeout=TIMEOUT)
        assert missing.status_code == 404


def _qido_uids(web: WebServer, path: str, params: dict[str, str], tag: str) -> list[str]:
    response = requests.get(web.dicomweb() + path, params=params, timeout=TIMEOUT)
    assert response.status_code in (200, 204), response.text
    results = response.json() if response.status_code == 200 else []
    return sorted(r[tag]["Value"][0] for r in results)


STUDY_CASES = [
    {},
    {"PatientName": "Doe*"},
    {"PatientName": "doe^jane"},
    {"StudyDate": "20240101-20240115"},
    {"StudyDate": "20240110-"},
    {"ModalitiesInStudy": "MR"},
    {"PatientID": "PID2"},
    {"AccessionNumber": "ACC1", "PatientName": "*mit*"},
]


@needs_dcmtk
def test_qido_finds_what_findscu_finds(tmp_path: Path) -> None:
    specs = [("Doe^John", "PID1", "20240102", "CT"), ("Doe^Jane", "PID2", "20240112", "MR"),
             ("Smith^Ann", "PID3", "20240120", "CT"), ("Doe^Jane", "PID2", "20240201", "US")]
    files = [make_ct(tmp_path, patient_name=name, patient_id=pid, study_date=date,
                     modality=modality, instance_number=n)
             for n, (name, pid, date, modality) in enumerate(specs)]
    files.append(make_ct(tmp_path, study_uid=dcmread(files[0]).StudyInstanceUID,
                         patient_name="Doe^John", patient_id="PID1", modality="MR",
                         instance_number=7))
    with web_server(tmp_path) as web:
        assert post(web.dicomweb() + "/studies",
                    stow_body(*(f.read_bytes() for f in files))).status_code == 200
        for case in STUDY_CASES:
            keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                    *(f"{k}={v}" for k, v in case.items())]
            dimse = findscu(web.dicom_port, "-S", keys)
            assert dimse.final_status == 0, dimse.output
            assert _qido_uids(web, "/studies", case, "0020000D") == dimse.values(
                "StudyInstanceUID"), case
        study = dcmread(files[0]).StudyInstanceUID
        for case in ({}, {"Modality": "MR"}, {"Modality": "CT\\MR"}):
            keys = ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study}",
                    "SeriesInstanceUID", *(f"{k}={v}" for k, v in case.items())]
            dimse = findscu(web.dicom_port, "-S", keys)
            qido = {k: v.replace("\\", ",") for k, v in case.items()}
            assert _qido_uids(web, f"/studies/{study}/series", qido, "0020000E") == \
                dimse.values("SeriesInstanceUID"), case


def test_qido_paging_includefield_and_bad_keys(tmp_path: Path) -> None:
    files = [make_ct(tmp_path, patient_id=f"P{n}", instance_number=n) for n in range(5)]
    with web_server(tmp_path) as web:
        post(web.dicomweb() + "/studies", stow_body(*(f.read_bytes() for f in files)))
        every = _qido_uids(web, "/studies", {}, "0020000D")
        assert len(every) == 5
        pages = [_qido_uids(web, "/studies", {"limit": "2", "offset": str(o)}, "0020000D")
                 for o in (0, 2, 4)]
        assert sorted(sum(pages, [])) == every and [len(p) for p in pages] == [2, 2, 1]
        full = requests.get(web.dicomweb() + "/instances", timeout=TIMEOUT,
                            params={"includefield": "all", "PatientID": "P3"}).json()
        assert full[0]["00280010"] == {"vr": "US", "Value": [16]}  # Rows, not a default
        named = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                             params={"includefield": "00080090,StudyID"}).json()
        assert "00200010" in named[0] and "00080090" in named[0]
        for bad in ({"NoSuchKeyword": "1"}, {"StudyDate": "2024-01"}, {"limit": "x"}):
            response = requests.get(web.dicomweb() + "/studies", params=bad, timeout=TIMEOUT)
            assert response.status_code == 400, (bad, response.text)
        assert requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                            headers={"Accept": "application/dicom+xml"}).status_code == 406
        assert requests.get(web.root + "/dicomweb/NOPE/studies",
                            timeout=TIMEOUT).status_code == 404


def test_stow_partial_failure_and_all_failed(tmp_path: Path) -> None:
    good = make_ct(tmp_path).read_bytes()
    with web_server(tmp_path) as web:
        mixed = post(web.dicomweb() + "/studies", stow_body(good, b"not dicom at all"))
        assert mixed.status_code == 202, mixed.text
        body = mixed.json()
        assert len(body["00081199"]["Value"]) == 1
        assert body["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
        failed = post(web.dicomweb() + "/studies", stow_body(b"DICM? no"))
        assert failed.status_code == 409
        other_study = post(web.dicomweb() + "/studies/1.2.3.4", stow_body(good))
        assert other_study.status_code == 409
        assert indexed(web.areas["a"]) == 1
        read_only = post(web.dicomweb("READONLY") + "/studies", stow_body(good))
        assert read_only.status_code == 403
        assert leftovers(web.areas["a"]) == []


def test_malformed_stow_bodies_get_4xx_and_write_nothing(tmp_path: Path) -> None:
    good = make_ct(tmp_path).read_bytes()
    body = stow_body(good, good)
    with web_server(tmp_path) as web:
        url = web.dicomweb() + "/studies"
        cases = {
            "no boundary": post(url, body, 'multipart/related; type="application/dicom"'),
            "unquoted type": post(url, body, "multipart/related; type=application/dicom; "
                                             f"boundary={BOUNDARY}"),
            "not multipart": post(url, good, "application/dicom"),
            "xml parts": post(url, body, 'multipart/related; type="application/dicom+xml"; '
                                         f"boundary={BOUNDARY}"),
            "never ends": post(url, stow_body(good, good, close=False)),
            "ends inside a part": post(url, stow_body(good)[:-len(BOUNDARY) - 200]),
            "chunked": requests.post(url, data=iter([body]), timeout=TIMEOUT,
                                     headers={"Content-Type": STOW_TYPE}),
            "empty": post(url, stow_body()),
        }
        statuses = {name: response.status_code for name, response in cases.items()}
        assert statuses == {"no boundary": 400, "unquoted type": 400, "not multipart": 415,
                            "xml parts": 415, "never ends": 400, "ends inside a part": 400,
                            "chunked": 411, "empty": 400}, {
            name: r.text for name, r in cases.items()}
        assert "boundary" in cases["no boundary"].text
        assert "quoted" in cases["unquoted type"].text
        assert indexed(web.areas["a"]) == 0
        assert leftovers(web.areas["a"]) == []
        assert [p.name for p in web.areas["a"].rglob("*.dcm")] == []


def test_stow_past_the_per_study_quota_is_refused(tmp_path: Path) -> None:
    big = make_ct(tmp_path, rows=128).read_bytes()
    with web_server(tmp_path, rows=("ARCHIVE {a} RW (10, 8kb) ANY",)) as web:
        response = post(web.dicomweb() + "/studies", stow_body(big))
        assert response.status_code == 413, response.text
        assert indexed(web.areas["a"]) == 0 and leftovers(web.areas["a"]) == []


def test_credentials_when_configured(tmp_path: Path) -> None:
    token = "s3cret-token"
    with web_server(tmp_path, extra_globals=f"HTTPToken = {token}") as web:
        assert requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT).status_code == 401
        wrong = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                             headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 204
    with web_server(tmp_path, extra_globals="HTTPUser = ann\nHTTPPassword = 'pw 1'") as web:
        assert requests.get(web.root + "/", timeout=TIMEOUT,
                            auth=("ann", "pw 1")).status_code == 200
        refused = requests.get(web.root + "/", timeout=TIMEOUT, auth=("ann", "pw"))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")


def test_non_local_bind_needs_credentials(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="HTTPToken"), web_server(
            tmp_path, http="0.0.0.0:0"):
        pass


def test_cors_only_for_configured_origins(tmp_path: Path) -> None:
    origin = "https://viewer.example"
    with web_server(tmp_path) as web:
        plain = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                             headers={"Origin": origin})
        assert "access-control-allow-origin" not in plain.headers
    with web_server(tmp_path, extra_globals=f"HTTPAllowOrigin = {origin}") as web:
        allowed = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                               headers={"Origin": origin})
        assert allowed.headers["access-control-allow-origin"] == origin
        other = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                             headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = requests.options(web.dicomweb() + "/studies", timeout=TIMEOUT, headers={
            "Origin": origin, "Access-Control-Request-Method": "GET"})
        assert preflight.status_code == 200


def test_thumbnail_and_rendered(tmp_path: Path) -> None:
    ct = dcmread(sample("CT_small.dcm"))
    with web_server(tmp_path) as web:
        DICOMwebClient(web.dicomweb()).store_instances([ct])
        base = (f"{web.dicomweb()}/studies/{ct.StudyInstanceUID}/series/"
                f"{ct.SeriesInstanceUID}")
        thumb = requests.get(base + "/thumbnail", timeout=TIMEOUT)
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        png = requests.get(f"{base}/instances/{ct.SOPInstanceUID}/rendered", timeout=TIMEOUT,
                           headers={"Accept": "image/png"})
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
        refused = requests.get(base + "/thumbnail", timeout=TIMEOUT,
                               headers={"Accept": "image/webp"})
        assert refused.status_code == 406
        assert json.loads(json.dumps({"ok": True}))


def _part_bodies(response: requests.Response) -> list[bytes]:
    assert response.status_code == 200, response.text
    return split_multipart(response)


def test_metadata_frames_and_bulk_data(tmp_path: Path) -> None:
    names = ("CT_small.dcm", "rtdose.dcm", "SC_rgb_rle_2frame.dcm")
    datasets = [dcmread(sample(name)) for name in names]
    with web_server(tmp_path) as web:
        post(web.dicomweb() + "/studies", stow_body(*(sample(n).read_bytes() for n in names)))
        client = DICOMwebClient(web.dicomweb())
        for original in datasets:
            study, series = original.StudyInstanceUID, original.SeriesInstanceUID
            (found,) = client.retrieve_series_metadata(study, series)
            expected = original.to_json_dict(bulk_data_threshold=1 << 40,
                                             suppress_invalid_tags=True)
            for key, value in expected.items():
                if key != "7FE00010" and "InlineBinary" not in value:
                    assert found[key] == value, key
            pixels = requests.get(found["7FE00010"]["BulkDataURI"], timeout=TIMEOUT)
            assert _part_bodies(pixels) == [original.PixelData]
        study_level = requests.get(f"{web.dicomweb()}/studies/"
                                   f"{datasets[0].StudyInstanceUID}/metadata", timeout=TIMEOUT)
        assert [m["00080018"]["Value"][0] for m in study_level.json()] == [
            datasets[0].SOPInstanceUID]
        dose, rle = datasets[1], datasets[2]
        frame_size = dose.Rows * dose.Columns * dose.BitsAllocated // 8
        native = requests.get(
            f"{web.dicomweb()}/studies/{dose.StudyInstanceUID}/series/"
            f"{dose.SeriesInstanceUID}/instances/{dose.SOPInstanceUID}/frames/3,15",
            timeout=TIMEOUT)
        assert _part_bodies(native) == [dose.PixelData[2 * frame_size:3 * frame_size],
                                        dose.PixelData[14 * frame_size:]]
        encapsulated = requests.get(
            f"{web.dicomweb()}/studies/{rle.StudyInstanceUID}/series/{rle.SeriesInstanceUID}"
            f"/instances/{rle.SOPInstanceUID}/frames/2", timeout=TIMEOUT)
        assert 'type="image/dicom-rle"' in encapsulated.headers["content-type"]
        assert _part_bodies(encapsulated) == [
            list(generate_frames(rle.PixelData, number_of_frames=2))[1]]
        frames_url = (f"{web.dicomweb()}/studies/{rle.StudyInstanceUID}/series/"
                      f"{rle.SeriesInstanceUID}/instances/{rle.SOPInstanceUID}/frames/")
        assert requests.get(frames_url + "3", timeout=TIMEOUT).status_code == 404
        assert requests.get(frames_url + "x", timeout=TIMEOUT).status_code == 400


def test_metadata_of_instances_stored_without_the_listener(tmp_path: Path) -> None:
    """Indexed by ``pyqrscp index`` (no JSON then): made once from the file, then kept."""
    ct = dcmread(sample("CT_small.dcm"))
    with web_server(tmp_path) as web:
        pass
    assert cli_main(["index", "-c", str(tmp_path / "dcmqrscp.cfg"), "ARCHIVE",
                     str(sample("CT_small.dcm"))]) == 0
    with index_db(web.areas["a"]) as db:
        assert db.execute("SELECT COUNT(*) FROM instance_metadata").fetchone()[0] == 0
    with web_server(tmp_path) as web:
        url = f"{web.dicomweb()}/studies/{ct.StudyInstanceUID}/series/" \
              f"{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}/metadata"
        (found,) = requests.get(url, timeout=TIMEOUT).json()
        assert found["00100010"]["Value"] == [{"Alphabetic": str(ct.PatientName)}]
    with index_db(web.areas["a"]) as db:
        assert db.execute("SELECT COUNT(*) FROM instance_metadata").fetchone()[0] == 1


def _metadata_rows(area: Path) -> int:
    with index_db(area) as db:
        return int(db.execute("SELECT COUNT(*) FROM instance_metadata").fetchone()[0])


def _store_series(web: WebServer, folder: Path, count: int) -> tuple[str, str]:
    folder.mkdir()
    study_uid, series_uid = generate_uid(), generate_uid()
    files = [make_ct(folder, study_uid=study_uid, series_uid=series_uid, instance_number=n)
             for n in range(1, count + 1)]
    stored = run_tool("storescu", "-aec", "ARCHIVE", "127.0.0.1", str(web.dicom_port),
                      *map(str, files))
    assert stored.returncode == 0, stored.stderr
    return study_uid, series_uid


def _instance_numbers(web: WebServer, study_uid: str, series_uid: str) -> list[int]:
    answer = requests.get(f"{web.dicomweb()}/studies/{study_uid}/series/{series_uid}/metadata",
                          timeout=TIMEOUT)
    assert answer.status_code == 200, answer.text
    return sorted(int(found["00200013"]["Value"][0]) for found in answer.json())


@needs_dcmtk
def test_c_store_leaves_describing_to_the_metadata_writer(tmp_path: Path) -> None:
    """C-STORE answers without describing the instance (the area's writer waits until stores
    pause; here it is held off for an hour); /metadata describes what is not yet described."""
    with web_server(tmp_path) as web:
        for area in web.server.services.areas.values():
            assert area.describer is not None
            area.describer.quiet = 3600.0
            area.describer.longest_wait = 3600.0
        study_uid, series_uid = _store_series(web, tmp_path / "in", 5)
        assert indexed(web.areas["a"]) == 5
        assert _metadata_rows(web.areas["a"]) == 0
        assert _instance_numbers(web, study_uid, series_uid) == [1, 2, 3, 4, 5]
        assert _metadata_rows(web.areas["a"]) == 5


@needs_dcmtk
def test_the_metadata_writer_catches_up_once_stores_pause(tmp_path: Path) -> None:
    with web_server(tmp_path) as web:
        study_uid, series_uid = _store_series(web, tmp_path / "in", 5)
        poll_until(lambda: _metadata_rows(web.areas["a"]) == 5, "every instance described")
        assert _instance_numbers(web, study_uid, series_uid) == [1, 2, 3, 4, 5]


def test_the_requests_of_an_ohif_viewer_from_another_origin(tmp_path: Path) -> None:
    """What OHIF 3's dicomweb data source (docs/dicomweb.md) asks, in its order: the study
    list, a study's series, a series' metadata, then frames with its unquoted Accept header;
    each cross-origin, as from ``yarn dev`` on localhost:3000."""
    origin = "http://localhost:3000"
    ct, jpeg = dcmread(sample("CT_small.dcm")), dcmread(sample("JPEG2000.dcm"))
    with web_server(tmp_path, extra_globals=f"HTTPAllowOrigin = {origin}") as web:
        post(web.dicomweb() + "/studies", stow_body(*(sample(n).read_bytes()
                                                     for n in ("CT_small.dcm", "JPEG2000.dcm"))))
        json_headers = {"Origin": origin, "Accept": "application/dicom+json"}

        def get(path: str, **headers: str) -> requests.Response:
            answer = requests.get(web.dicomweb() + path, timeout=TIMEOUT,
                                  headers={**json_headers, **headers})
            assert answer.status_code == 200, (path, answer.text)
            assert answer.headers["access-control-allow-origin"] == origin
            return answer

        preflight = requests.options(web.dicomweb() + "/studies", timeout=TIMEOUT, headers={
            "Origin": origin, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept"})
        assert preflight.status_code == 200
        studies = get("/studies?limit=101&offset=0&fuzzymatching=false"
                      "&includefield=00081030%2C00080060").json()
        assert {s["0020000D"]["Value"][0] for s in studies} == {
            ct.StudyInstanceUID, jpeg.StudyInstanceUID}
        assert all("00080061" in s and "00201208" in s for s in studies)
        frame_accept = "multipart/related; type=application/octet-stream; transfer-syntax=*"
        for original in (ct, jpeg):
            study, series = original.StudyInstanceUID, original.SeriesInstanceUID
            (found_series,) = get(f"/studies/{study}/series").json()
            assert found_series["0020000E"]["Value"] == [series]
            (metadata,) = get(f"/studies/{study}/series/{series}/metadata").json()
            instance = metadata["00080018"]["Value"][0]
            assert instance == original.SOPInstanceUID
            frames = get(f"/studies/{study}/series/{series}/instances/{instance}/frames/1",
                         Accept=frame_accept)
            expected = (original.PixelData if not original.file_meta.TransferSyntaxUID
                        .is_encapsulated else next(generate_frames(original.PixelData,
                                                                   number_of_frames=1)))
            assert split_multipart(frames) == [expected]
