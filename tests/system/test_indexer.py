"""``pyqrscp index``: register existing files into a storage area, or rebuild its index."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import have_dcmtk, index_db, make_ct, pyqrscp_process, run_tool, write_config
from pydicom import dcmread

from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.layout import GENERATED_NAME
from pyqrscp.cli.index import main

AE_ROWS = [
    "ARCHIVE  archive  RW (100, 100mb) ANY",
    "TWO      two      RW (2, 100mb)   ANY",
    "SMALL    small    RW (100, 3kb)   ANY",
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, AE_ROWS)


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "sources"
    folder.mkdir()
    return folder


def index_of(area: Path) -> dict[str, str]:
    with index_db(area) as db:
        return dict(db.execute("SELECT sop_instance_uid, file_name FROM instance"))


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_files_and_folders_are_copied_in_recursively(
        config: Path, sources: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (sources / "a" / "b").mkdir(parents=True)
    paths = [make_ct(sources), make_ct(sources / "a"), make_ct(sources / "a" / "b")]
    single = make_ct(config.parent)
    (sources / "DICOMDIR").write_bytes(b"ignored by name")
    assert main(["-c", str(config), "ARCHIVE", str(sources), str(single)]) == 0
    out, err = capsys.readouterr()
    assert "4 file(s) indexed, 0 skipped" in out
    assert err == ""
    area = config.parent / "archive"
    index = index_of(area)
    assert set(index) == {sop_uid(p) for p in [*paths, single]}
    for path in [*paths, single]:
        name = index[sop_uid(path)]
        assert GENERATED_NAME.match(name)
        assert (area / name).read_bytes() == path.read_bytes()
        assert path.exists()  # copied, not moved


def test_bad_files_are_reported_and_skipped(config: Path, sources: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    good = make_ct(sources)
    (sources / "notes.txt").write_text("not DICOM")
    truncated = sources / "truncated.dcm"
    truncated.write_bytes(make_ct(config.parent).read_bytes()[:200])
    missing = sources / "missing.dcm"
    assert main(["-c", str(config), "ARCHIVE", str(sources), str(missing)]) == 1
    out, err = capsys.readouterr()
    assert "1 file(s) indexed, 3 skipped" in out
    for path in (sources / "notes.txt", truncated, missing):
        assert f"skipped {path}" in err
    assert set(index_of(config.parent / "archive")) == {sop_uid(good)}
    assert len(list((config.parent / "archive").rglob("*.dcm"))) == 1


def test_quotas_apply_as_for_c_store(config: Path, sources: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    studies = []
    for n in range(3):  # one folder per study: files are found folder by folder, in order
        (sources / f"s{n}").mkdir()
        studies.append(make_ct(sources / f"s{n}", study_uid=f"1.2.826.0.1.55.{n}"))
    assert main(["-c", str(config), "TWO", str(sources)]) == 0  # evictions are not skips
    assert set(index_of(config.parent / "two")) == {sop_uid(p) for p in studies[1:]}
    assert "quota: deleted study 1.2.826.0.1.55.0" in capsys.readouterr().err

    too_large = make_ct(sources, rows=64)
    assert main(["-c", str(config), "SMALL", str(too_large)]) == 1
    assert "exceeds the per-study quota" in capsys.readouterr().err
    assert index_of(config.parent / "small") == {}


def test_a_duplicate_replaces_the_earlier_copy(config: Path, sources: Path) -> None:
    (sources / "old").mkdir()
    (sources / "new").mkdir()
    uid = "1.2.826.0.1.56.1"
    make_ct(sources / "old", sop_uid=uid, patient_name="Old")
    newer = make_ct(sources / "new", sop_uid=uid, patient_name="New")
    assert main(["-c", str(config), "ARCHIVE", str(sources / "old"), str(newer)]) == 0
    area = config.parent / "archive"
    assert (area / index_of(area)[uid]).read_bytes() == newer.read_bytes()
    assert len(list(area.rglob("*.dcm"))) == 1


def test_files_inside_the_area_are_not_copied_onto_themselves(
        config: Path, sources: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(config), "ARCHIVE", str(make_ct(sources))]) == 0
    area = config.parent / "archive"
    before = index_of(area)
    assert main(["-c", str(config), "ARCHIVE", str(area)]) == 1
    assert "use --rebuild" in capsys.readouterr().err
    assert index_of(area) == before
    # A folder that holds the area: the area's own files are left out, quietly (the config
    # file and the other areas' index files beside it are reported as not DICOM).
    assert main(["-c", str(config), "ARCHIVE", str(config.parent)]) == 1
    err = capsys.readouterr().err
    assert f"skipped {config}:" in err
    assert str(area) not in err
    after = index_of(area)
    assert set(after) == set(before)  # the source file was indexed again, nothing else
    assert {p.relative_to(area).as_posix() for p in area.rglob("*.dcm")} == set(after.values())


def test_rebuild_after_the_index_file_was_deleted(config: Path, sources: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    paths = [make_ct(sources, study_uid=f"1.2.826.0.1.57.{n % 2}") for n in range(5)]
    assert main(["-c", str(config), "ARCHIVE", str(sources)]) == 0
    area = config.parent / "archive"
    before = index_of(area)
    with index_db(area) as db:
        studies_before = db.execute("SELECT study_instance_uid, attrs FROM study "
                                    "ORDER BY study_instance_uid").fetchall()
    for name in (INDEX_FILE_NAME, f"{INDEX_FILE_NAME}-wal", f"{INDEX_FILE_NAME}-shm"):
        (area / name).unlink(missing_ok=True)
    capsys.readouterr()

    assert main(["-c", str(config), "ARCHIVE", "--rebuild"]) == 0
    assert "5 file(s) indexed, 0 skipped" in capsys.readouterr().out
    assert index_of(area) == before
    with index_db(area) as db:
        assert db.execute("SELECT study_instance_uid, attrs FROM study "
                          "ORDER BY study_instance_uid").fetchall() == studies_before
    for path in paths:
        assert (area / before[sop_uid(path)]).read_bytes() == path.read_bytes()


def test_rebuild_drops_stale_rows_and_reports_foreign_files(
        config: Path, sources: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept, removed = make_ct(sources), make_ct(sources)
    assert main(["-c", str(config), "ARCHIVE", str(sources)]) == 0
    area = config.parent / "archive"
    (area / index_of(area)[sop_uid(removed)]).unlink()  # a file lost behind the index's back
    (area / "notes.txt").write_text("not DICOM")
    capsys.readouterr()
    assert main(["-c", str(config), "ARCHIVE", "--rebuild"]) == 1
    out, err = capsys.readouterr()
    assert "1 file(s) indexed, 1 skipped" in out
    assert f"skipped {area / 'notes.txt'}" in err
    assert set(index_of(area)) == {sop_uid(kept)}
    assert (area / "notes.txt").exists()  # reported, never deleted


def test_rebuild_keeps_the_order_quotas_evict_in(config: Path, sources: Path) -> None:
    for n in range(2):
        (sources / f"s{n}").mkdir()
        make_ct(sources / f"s{n}", study_uid=f"1.2.826.0.1.58.{n}")
    assert main(["-c", str(config), "TWO", str(sources / "s0")]) == 0
    assert main(["-c", str(config), "TWO", str(sources / "s1")]) == 0
    area = config.parent / "two"
    oldest, newest = sorted(area.rglob("*.dcm"), key=lambda p: p.stat().st_mtime_ns)
    os.utime(oldest, ns=(1_000_000_000, 1_000_000_000))  # unambiguous, whatever the clock
    (area / INDEX_FILE_NAME).unlink(missing_ok=True)  # (SQLite) an index lost with its rows
    assert main(["-c", str(config), "TWO", "--rebuild"]) == 0
    (sources / "s2").mkdir()
    make_ct(sources / "s2", study_uid="1.2.826.0.1.58.2")
    assert main(["-c", str(config), "TWO", str(sources / "s2")]) == 0
    with index_db(area) as db:
        studies = {row[0] for row in db.execute("SELECT study_instance_uid FROM study")}
    assert studies == {"1.2.826.0.1.58.1", "1.2.826.0.1.58.2"}
    assert not oldest.exists() and newest.exists()


@pytest.mark.parametrize("argv,message", [
    (["ARCHIVE"], "either PATH... or --rebuild"),
    (["ARCHIVE", "--rebuild", "x.dcm"], "either PATH... or --rebuild"),
    (["NOBODY", "--rebuild"], "'NOBODY' is not in the AETable"),
    (["archive", "--rebuild"], "'archive' is not in the AETable"),
    (["--bogus", "ARCHIVE", "--rebuild"], "unrecognized arguments"),
    ([], "required"),
])
def test_usage_errors_exit_2(config: Path, capsys: pytest.CaptureFixture[str],
                             argv: list[str], message: str) -> None:
    assert main(["-c", str(config), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list((config.parent / "archive").rglob("*.dcm"))


def test_config_errors_exit_2_with_location(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    broken = write_config(tmp_path, ["ARCHIVE archive RX (1, 1mb) ANY"])
    assert main(["-c", str(broken), "ARCHIVE", "--rebuild"]) == 2
    assert f"{broken}:" in capsys.readouterr().err
    assert main(["-c", str(tmp_path / "absent.cfg"), "ARCHIVE", "--rebuild"]) == 2


def test_the_command_line_tool(config: Path, sources: Path) -> None:
    paths = [make_ct(sources, study_uid="1.2.826.0.1.59") for _ in range(3)]
    (sources / "junk.bin").write_bytes(b"\x00" * 300)
    result = subprocess.run([sys.executable, "-m", "pyqrscp", "index", "-c", str(config),
                             "ARCHIVE", str(sources)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "3 file(s) indexed, 1 skipped" in result.stdout
    assert "junk.bin" in result.stderr
    assert "\r" not in result.stderr  # no progress line without a terminal
    assert set(index_of(config.parent / "archive")) == {sop_uid(p) for p in paths}
    if not have_dcmtk():
        return
    with pyqrscp_process(config) as server:
        # one series per instance (make_ct): three series
        found = run_tool("findscu", "-S", "-aec", "ARCHIVE", "-k", "QueryRetrieveLevel=SERIES",
                         "-k", "StudyInstanceUID=1.2.826.0.1.59", "-k", "SeriesInstanceUID",
                         "127.0.0.1", str(server.port))
    assert found.returncode == 0, found.stderr
    assert found.stderr.count("Find Response:") == 3


def test_progress_is_shown_on_a_terminal(config: Path, sources: Path) -> None:
    for _ in range(3):
        make_ct(sources)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "pyqrscp", "index", "-c", str(config),
                                    "ARCHIVE", str(sources)], stdout=subprocess.DEVNULL,
                                   stderr=terminal)
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=60) == 0
    finally:
        os.close(controller)
    assert b"\rindexing:" in shown and b"/3 [" in shown and b" files/s]" in shown  # rate, ETA


def test_rebuild_finds_files_in_either_layout_and_they_are_served(
        config: Path, sources: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study_uid = "1.2.826.0.1.60"
    for _ in range(4):
        make_ct(sources, study_uid=study_uid)
    assert main(["-c", str(config), "ARCHIVE", str(sources)]) == 0
    area = config.parent / "archive"
    nested = index_of(area)
    assert all(name.count("/") == 2 for name in nested.values())
    flat = {}  # two files as an earlier version kept them: flat in the area's own folder
    for uid in sorted(nested)[:2]:
        flat[uid] = nested[uid].rpartition("/")[2]
        (area / nested[uid]).rename(area / flat[uid])
    for name in (INDEX_FILE_NAME, f"{INDEX_FILE_NAME}-wal", f"{INDEX_FILE_NAME}-shm"):
        (area / name).unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["-c", str(config), "ARCHIVE", "--rebuild"]) == 0
    assert "4 file(s) indexed, 0 skipped" in capsys.readouterr().out
    assert index_of(area) == {**nested, **flat}
    if not have_dcmtk():
        return
    out = tmp_path / "out"
    out.mkdir()
    with pyqrscp_process(config) as server:
        got = run_tool("getscu", "-S", "-aec", "ARCHIVE", "-od", str(out), "localhost",
                       str(server.port), "-k", "QueryRetrieveLevel=STUDY",
                       "-k", f"StudyInstanceUID={study_uid}")
        assert got.returncode == 0, got.stderr
        assert {sop_uid(path) for path in out.iterdir()} == set(nested)
        flat_uid = sorted(flat)[0]
        removed = subprocess.run([sys.executable, "-m", "pyqrscp", "rm", "-c", str(config),
                                  "ARCHIVE", "--instance", flat_uid], capture_output=True,
                                 text=True, timeout=60)
        assert removed.returncode == 0, removed.stderr
    assert not (area / flat[flat_uid]).exists()
    assert set(index_of(area)) == set(nested) - {flat_uid}


def test_files_that_are_not_dicom_are_summed_up_in_one_line(
        config: Path, sources: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_ct(sources)
    for n in range(5):
        (sources / f"notes{n}.txt").write_text(f"not DICOM {n}")
    fake = sources / "fake.dcm"  # "DICM", then an element whose VR pydicom warns about
    fake.write_bytes(b"\0" * 128 + b"DICM" + bytes.fromhex("e0178a4d0102") + b"\xff" * 40)
    assert main(["-c", str(config), "ARCHIVE", str(sources)]) == 1
    out, err = capsys.readouterr()
    assert "1 file(s) indexed, 6 skipped" in out
    lines = err.splitlines()
    assert len(lines) == 2, err  # the summary and the one DICOM-looking file; no warnings
    assert lines[0].startswith(f"pyqrscp index: skipped {fake}: ")
    assert lines[1] == (f"pyqrscp index: skipped 5 files that are not DICOM (no DICOM file "
                        f"meta information): {sources / 'notes0.txt'}, {sources / 'notes1.txt'}, "
                        f"{sources / 'notes2.txt'} and 2 more")
