"""The metadata writer on a real storage area: it describes stored instances once stores pause
(or once the oldest has waited long enough under stores that never pause), never on the store
itself, keeps a bounded queue, keeps nothing for a copy that was replaced meanwhile, and stops
promptly with work left (requests describe that)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from helpers import make_ct, poll_until

from pyqrscp.archive.describer import MetadataWriter
from pyqrscp.archive.dicomfile import read_header
from pyqrscp.archive.metadata import describe
from pyqrscp.archive.storage import StorageArea
from pyqrscp.config import Quota

MB = 1024**2
HOUR = 3600.0


@pytest.fixture
def area(tmp_path: Path) -> Iterator[StorageArea]:
    area = StorageArea(tmp_path / "area", Quota(100, 100 * MB), durable=False)
    area.open()
    area.describe_new_instances(describe)
    yield area
    area.close()


def _writer(area: StorageArea) -> MetadataWriter:
    assert area.describer is not None
    return area.describer


def _hold(area: StorageArea) -> None:
    """Keep the writer from describing (stores never pause, nothing waits too long)."""
    _writer(area).quiet = HOUR
    _writer(area).longest_wait = HOUR


def _kept(area: StorageArea) -> dict[str, str]:
    """SOP Instance UID -> PatientName in the kept JSON."""
    db = area.reader()
    try:
        found = db.execute("SELECT i.sop_instance_uid, m.json FROM instance_metadata m "
                           "JOIN instance i ON i.pk = m.instance_pk").fetchall()
    finally:
        db.close()
    return {str(uid): json.loads(bytes(blob))["00100010"]["Value"][0]["Alphabetic"]
            for uid, blob in found}


def _store(area: StorageArea, sources: Path, patient_name: str = "Doe^John",
           sop_uid: str | None = None, study_uid: str | None = None) -> str:
    data = make_ct(sources, patient_name=patient_name, sop_uid=sop_uid,
                   study_uid=study_uid).read_bytes()
    header = read_header(data)
    area.store(header, data)
    return header.sop_instance_uid


def test_stores_wait_while_they_keep_coming_then_all_are_described(area: StorageArea,
                                                                   tmp_path: Path) -> None:
    _hold(area)
    uids = [_store(area, tmp_path, patient_name=f"P{n}") for n in range(5)]
    assert _kept(area) == {}
    assert _writer(area).pending == 5
    _writer(area).quiet = 0.0
    kept = poll_until(lambda: _kept(area) if len(_kept(area)) == 5 else None,
                      "five instances described")
    assert kept == {uid: f"P{n}" for n, uid in enumerate(uids)}


def test_a_stream_of_stores_that_never_pauses_is_described_as_it_goes(
        area: StorageArea, tmp_path: Path) -> None:
    # the writer waited for a pause that a steady stream never gives: nothing was described
    # and the queue grew for the life of the process
    _writer(area).quiet = HOUR  # as far as the writer can tell, stores never pause
    _writer(area).longest_wait = 0.5
    study_uid = "1.2.826.0.1.3680043.8.498.1"
    stop = threading.Event()
    stored: list[str] = []

    def keep_storing() -> None:
        while not stop.is_set():
            stored.append(_store(area, tmp_path, study_uid=study_uid))
    storing = threading.Thread(target=keep_storing)
    storing.start()
    try:
        kept = poll_until(lambda: _kept(area) or None, "instances described while stores go on")
        assert storing.is_alive()
    finally:
        stop.set()
        storing.join()
    assert set(kept) <= set(stored)


def test_at_most_limit_instances_wait_the_oldest_are_left_to_requests(
        area: StorageArea, tmp_path: Path) -> None:
    _hold(area)
    _writer(area).limit = 3
    uids = [_store(area, tmp_path, patient_name=f"P{n}") for n in range(5)]
    assert _writer(area).pending == 3
    _writer(area).quiet = 0.0
    kept = poll_until(lambda: _kept(area) if len(_kept(area)) == 3 else None,
                      "the three newest described")
    assert kept == {uid: f"P{n}" for n, uid in enumerate(uids) if n >= 2}


def _stored_row(area: StorageArea, sop_instance_uid: str) -> tuple[str, str]:
    found = area.instance(sop_instance_uid)
    assert found is not None
    return sop_instance_uid, found.file_name


def test_a_copy_replaced_before_it_was_described_is_not_kept(area: StorageArea,
                                                             tmp_path: Path) -> None:
    _hold(area)
    uid = _store(area, tmp_path, patient_name="Old^Copy")
    old_file = _stored_row(area, uid)[1]
    _store(area, tmp_path, sop_uid=uid, patient_name="New^Copy")
    # the old copy's JSON, made from a file read before the replacement, arrives late
    area.keep_metadata([(uid, old_file, b'{"00100010":{"vr":"PN","Value":'
                         b'[{"Alphabetic":"Old^Copy"}]}}')])
    assert _kept(area) == {}
    _writer(area).quiet = 0.0
    poll_until(lambda: _kept(area) == {uid: "New^Copy"}, "the new copy described")


def test_unreadable_or_gone_instances_are_skipped(area: StorageArea, tmp_path: Path) -> None:
    _hold(area)
    corrupt, gone, good = (_store(area, tmp_path, patient_name=name)
                           for name in ("Corrupt^File", "Gone^File", "Good^File"))
    area.path_of(_stored_row(area, corrupt)[1]).write_bytes(b"not a DICOM file")
    area.path_of(_stored_row(area, gone)[1]).unlink()
    _writer(area).quiet = 0.0
    kept = poll_until(lambda: _kept(area) if good in _kept(area) else None,
                      "the batch described")
    assert kept == {good: "Good^File"}
    assert _writer(area).pending == 0


def test_an_instance_a_request_described_is_not_read_again(area: StorageArea,
                                                           tmp_path: Path) -> None:
    # the writer read the file again and overwrote the JSON a /metadata request had kept
    _hold(area)
    other = _store(area, tmp_path, patient_name="Other^One")
    asked = _store(area, tmp_path, patient_name="Asked^For")
    area.keep_metadata([(*_stored_row(area, asked), b'{"00100010":{"vr":"PN","Value":'
                         b'[{"Alphabetic":"By^Request"}]}}')])
    _writer(area).quiet = 0.0
    kept = poll_until(lambda: _kept(area) if other in _kept(area) else None,
                      "the other instance of the batch described")
    assert kept == {other: "Other^One", asked: "By^Request"}


def test_stop_leaves_pending_instances_to_requests(area: StorageArea, tmp_path: Path) -> None:
    _hold(area)
    _store(area, tmp_path)
    writer = _writer(area)
    area.close()
    assert writer.pending == 1
    assert area.describer is None
    area.open()  # the fixture closes it again


def test_a_writer_still_describing_at_close_leaves_the_index_alone(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # close gave up waiting for the writer and closed the connection the writer went on to use
    area = StorageArea(tmp_path / "area", Quota(100, 100 * MB), durable=False)
    area.open()
    describing, proceed = threading.Event(), threading.Event()

    def slow_describe(stream: BinaryIO) -> bytes:
        describing.set()
        proceed.wait(timeout=HOUR)
        return describe(stream)
    area.describe_new_instances(slow_describe)
    writer = _writer(area)
    writer.stop_seconds = 0.0
    writer.quiet = 0.0
    _store(area, tmp_path)
    poll_until(describing.is_set, "the writer describing")
    try:
        area.close()
    finally:
        proceed.set()
    poll_until(lambda: not writer.running, "the writer ended")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def _bytes_read() -> int:
    """Bytes this process has read so far, from any file (Linux: ``rchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_describing_an_instance_reads_its_header_not_its_pixels(area: StorageArea,
                                                               tmp_path: Path) -> None:
    # the writer read each stored file whole (pixel data included) to describe it
    if not Path("/proc/self/io").is_file():
        pytest.skip("counts the bytes read in /proc/self/io (Linux)")
    _hold(area)
    data = make_ct(tmp_path, rows=4096).read_bytes()  # 32 MiB of pixel data
    area.store(read_header(data), data)
    del data
    before = _bytes_read()
    _writer(area).quiet = 0.0
    poll_until(lambda: _kept(area) or None, "the large instance described")
    assert _bytes_read() - before < 4 * MB
    db = area.reader()
    try:
        (blob,) = db.execute("SELECT json FROM instance_metadata").fetchone()
    finally:
        db.close()
    assert "BulkDataURI" in json.loads(bytes(blob))["7FE00010"]
