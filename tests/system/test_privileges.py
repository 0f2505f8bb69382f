"""Started as root, as dcmqrscp is deployed: UserName/GroupName, and links a user planted.

Every test runs the real ``pyqrscp`` (or ``pyqrscp index``) as root and needs the unprivileged
``nobody``/``nogroup``; links are planted by that user (``ln`` run as ``nobody``), in folders it
owns, pointing at a root-only folder it cannot read.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from helpers import have_dcmtk, make_ct, poll_until, pyqrscp_process, run_tool, write_config
from query_tool import findscu

from pyqrscp.archive.index.choice import INDEX_DB_VARIABLE
from pyqrscp.archive.index.schema import INDEX_FILE_NAME
from pyqrscp.archive.layout import LOCK_FILE_NAME
from pyqrscp.cli.index import main as index_main

#: The index file the areas hold (none when the index lives in PostgreSQL).
SQLITE_INDEX = () if os.environ.get(INDEX_DB_VARIABLE) else (INDEX_FILE_NAME,)

PLANTED_NAME = "CT_0123456789abcdef.dcm"  # named like a file pyqrscp generates
SECRET_PATIENT = "Secret^Root"


@dataclass(frozen=True)
class Machine:
    """A folder every user can traverse, the unprivileged user, and a root-only secret."""

    base: Path
    user: pwd.struct_passwd
    group: grp.struct_group
    secret_folder: Path
    secret: Path

    def user_folder(self, name: str) -> Path:
        """A folder owned by the unprivileged user (it may plant links in it)."""
        folder = self.base / name
        folder.mkdir()
        os.chown(folder, self.user.pw_uid, self.group.gr_gid)
        return folder

    def plant_link(self, target: Path, link: Path) -> None:
        """``ln -sfn target link`` run as the unprivileged user."""
        subprocess.run(["ln", "-sfn", str(target), str(link)], check=True, timeout=60,
                       user=self.user.pw_uid, group=self.group.gr_gid, extra_groups=[])


@pytest.fixture
def machine() -> Iterator[Machine]:
    if os.geteuid() != 0:
        pytest.skip("needs root, as dcmqrscp's UserName/GroupName do")
    if not have_dcmtk():
        pytest.skip("DCMTK tools not installed")
    try:
        user, group = pwd.getpwnam("nobody"), grp.getgrnam("nogroup")
    except KeyError:
        pytest.skip("no nobody/nogroup on this machine")
    base = Path(tempfile.mkdtemp(prefix="pyqrscp-root-", dir="/tmp"))  # pytest's are 0700
    try:
        base.chmod(0o755)
        secret_folder = base / "root-only"
        secret_folder.mkdir(mode=0o700)
        secret = make_ct(secret_folder, patient_name=SECRET_PATIENT, patient_id="SECRET")
        secret.chmod(0o600)
        yield Machine(base, user, group, secret_folder, secret)
    finally:
        shutil.rmtree(base)


def proc_status(pid: int) -> dict[str, list[int]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: [int(v) for v in value.split()] for key, _, value in
            (line.partition(":") for line in lines) if key in ("Uid", "Gid", "Groups")}


def getscu(port: int, called_aet: str, study_uid: str, out: Path
           ) -> subprocess.CompletedProcess[str]:
    out.mkdir(exist_ok=True)
    return run_tool("getscu", "-S", "-aec", called_aet, "-od", str(out), "localhost", str(port),
                    "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}")


def received(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in sorted(out.iterdir())]


def start_failure(config: Path) -> subprocess.CompletedProcess[str]:
    """Run pyqrscp expecting it to refuse to start (a server that starts is killed by the
    timeout, which fails the test)."""
    return subprocess.run([sys.executable, "-m", "pyqrscp", "-c", str(config), "0"],
                          capture_output=True, text=True, timeout=60)


# -- UserName / GroupName ----------------------------------------------------------------------


def test_dcmtk_sample_config_stores_finds_and_retrieves_as_the_configured_user(
        machine: Machine) -> None:
    """The areas do not exist yet: created after the switch, owned by the user served as."""
    data = machine.user_folder("data")
    config = write_config(machine.base, [f"ACME_STORE {data}/ACME_STORE RW (9, 1024mb) ANY",
                                         f"COMMON     {data}/COMMON     R  (9, 1024mb) ANY"],
                          extra_globals="UserName = nobody\nGroupName = nogroup")
    source = make_ct(machine.base, patient_name="Sample^Config")
    study_uid = str(pydicom.dcmread(source).StudyInstanceUID)
    with pyqrscp_process(config) as server:
        status = proc_status(server.process.pid)
        stored = run_tool("storescu", "-aec", "ACME_STORE", "localhost", str(server.port),
                          str(source))
        found = findscu(server.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                            "PatientName"], called_aet="ACME_STORE")
        got = getscu(server.port, "ACME_STORE", study_uid, machine.base / "out")
    assert set(status["Uid"]) == {machine.user.pw_uid}
    assert set(status["Gid"]) == {machine.group.gr_gid}
    assert stored.returncode == 0, stored.stdout + stored.stderr
    assert found.values("PatientName") == ["Sample^Config"]
    assert got.returncode == 0, got.stdout + got.stderr
    assert [str(ds.SOPInstanceUID) for ds in received(machine.base / "out")] == [
        str(pydicom.dcmread(source).SOPInstanceUID)]
    created = [data / "ACME_STORE", data / "COMMON", *(data / "ACME_STORE").iterdir(),
               *(data / "COMMON").iterdir()]
    assert {path.name for path in created} >= {LOCK_FILE_NAME, *SQLITE_INDEX}
    assert {path.name: path.lstat().st_uid for path in created} == {
        path.name: machine.user.pw_uid for path in created}
    assert "cannot listen" not in server.log_text()


def test_user_name_alone_switches_to_the_users_groups(machine: Machine) -> None:
    data = machine.user_folder("data")
    config = write_config(machine.base, [f"A {data}/a RW (9, 1024mb) ANY"],
                          extra_globals="UserName = nobody")
    with pyqrscp_process(config) as server:
        status = proc_status(server.process.pid)
    assert set(status["Uid"]) == {machine.user.pw_uid}
    assert set(status["Gid"]) == {machine.user.pw_gid}
    assert set(status["Groups"]) == set(os.getgrouplist("nobody", machine.user.pw_gid))


def test_an_area_the_user_cannot_create_is_named_at_start_up(machine: Machine) -> None:
    config = write_config(machine.base, [f"A {machine.base}/root-owned/a RW (9, 1024mb) ANY"],
                          extra_globals="UserName = nobody\nGroupName = nogroup")
    result = start_failure(config)
    assert result.returncode == 2
    assert f"{config}:" in result.stderr
    assert "unusable: Permission denied (expected a folder user nobody can create" in (
        result.stderr)
    assert "cannot listen" not in result.stderr
    assert not (machine.base / "root-owned").exists()


# -- links a user planted, met by pyqrscp running as root ---------------------------------------


@pytest.mark.parametrize("name", [LOCK_FILE_NAME, pytest.param(
    INDEX_FILE_NAME, marks=pytest.mark.sqlite_only)])
def test_a_linked_lock_file_or_index_is_refused(machine: Machine, name: str) -> None:
    area = machine.user_folder("area")
    machine.plant_link(machine.secret_folder / "created-by-root", area / name)
    config = write_config(machine.base, [f"A {area} RW (9, 1024mb) ANY"])
    result = start_failure(config)
    assert result.returncode == 2
    assert f"{area / name}: a symbolic link (not followed)" in result.stderr
    assert not (machine.secret_folder / "created-by-root").exists()


def test_a_linked_leftover_is_neither_indexed_nor_served(machine: Machine) -> None:
    area = machine.user_folder("area")
    machine.plant_link(machine.secret, area / PLANTED_NAME)
    study_uid = str(pydicom.dcmread(machine.secret).StudyInstanceUID)
    config = write_config(machine.base, [f"A {area} RW (9, 1024mb) ANY"])
    with pyqrscp_process(config) as server:
        found = findscu(server.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                            "PatientName"], called_aet="A")
        got = getscu(server.port, "A", study_uid, machine.base / "out")
    assert found.final_status == 0x0000
    assert found.responses == []
    assert received(machine.base / "out") == []
    assert got.returncode == 0, got.stdout + got.stderr
    assert f"{PLANTED_NAME} is not a regular file (a link?): not indexed" in server.log_text()
    assert (area / PLANTED_NAME).is_symlink()


def test_a_stored_file_replaced_by_a_link_is_not_served(machine: Machine) -> None:
    area = machine.user_folder("area")
    config = write_config(machine.base, [f"A {area} RW (9, 1024mb) ANY"])
    source = make_ct(machine.base)
    study_uid = str(pydicom.dcmread(source).StudyInstanceUID)
    with pyqrscp_process(config) as server:
        stored = run_tool("storescu", "-aec", "A", "localhost", str(server.port), str(source))
        assert stored.returncode == 0, stored.stdout + stored.stderr
        (stored_file,) = area.rglob("*.dcm")
        # the hash folder is root's (the server runs as root): hand it to the user who plants
        os.chown(stored_file.parent, machine.user.pw_uid, machine.group.gr_gid)
        machine.plant_link(machine.secret, stored_file)
        got = getscu(server.port, "A", study_uid, machine.base / "out")
    assert received(machine.base / "out") == []
    assert got.returncode == 0, got.stdout + got.stderr
    assert "a symbolic link (not followed)" in server.log_text()


# -- pyqrscp index --------------------------------------------------------------------------------


def test_index_as_root_adds_files_as_the_configured_user(machine: Machine) -> None:
    data = machine.user_folder("data")
    config = write_config(machine.base, [f"A {data}/a RW (9, 1024mb) ANY"],
                          extra_globals="UserName = nobody\nGroupName = nogroup")
    source = make_ct(machine.base)
    result = subprocess.run([sys.executable, "-m", "pyqrscp", "index", "-c", str(config), "A",
                             str(source)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "running as user nobody" in result.stderr
    created = [data / "a", *(data / "a").iterdir()]
    assert len(created) >= 3 + len(SQLITE_INDEX)  # area, lock file, (index,) copied file
    assert {path.name: path.lstat().st_uid for path in created} == {
        path.name: machine.user.pw_uid for path in created}


def _two_areas(machine: Machine) -> tuple[Path, Path, Path]:
    """A config with the empty area A and the area B holding one instance; ``(config, A, B)``."""
    config = write_config(machine.base, [f"A {machine.base}/a RW (9, 1024mb) ANY",
                                         f"B {machine.base}/b RW (9, 1024mb) ANY"])
    assert index_main(["-c", str(config), "B", str(make_ct(machine.base, patient_id="B"))]) == 0
    return config, machine.base / "a", machine.base / "b"


def _patient_ids(config: Path, ae_title: str) -> list[str]:
    with pyqrscp_process(config) as server:
        found = findscu(server.port, "-S", ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                            "PatientID"], called_aet=ae_title)
    return found.values("PatientID")


def test_index_skips_links_into_another_area(machine: Machine,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config, _a, b = _two_areas(machine)
    (b_file,) = b.rglob("*.dcm")
    incoming = machine.user_folder("incoming")
    machine.plant_link(b_file, incoming / "file.dcm")
    machine.plant_link(b, incoming / "folder")
    outside = make_ct(machine.user_folder("outside"), patient_id="OUTSIDE")
    machine.plant_link(outside, incoming / "outside.dcm")
    capsys.readouterr()

    assert index_main(["-c", str(config), "A", str(incoming)]) == 1
    err = capsys.readouterr().err
    assert f"skipped {incoming / 'file.dcm'}: a symbolic link (not followed" in err
    assert f"skipped {incoming / 'outside.dcm'}: a symbolic link (not followed" in err
    assert _patient_ids(config, "A") == []

    assert index_main(["-c", str(config), "A", "--follow-links", str(incoming)]) == 1
    err = capsys.readouterr().err
    assert f"skipped {incoming / 'file.dcm'}: a link into a storage area" in err
    assert f"skipped {incoming / 'folder'}: a link into a storage area" in err
    assert _patient_ids(config, "A") == ["OUTSIDE"]


@pytest.mark.sqlite_only
def test_ls_does_not_read_a_linked_index(machine: Machine) -> None:
    hidden = machine.secret_folder / "hidden"
    config = write_config(machine.base, [f"A {machine.user_folder('area')} RW (9, 1024mb) ANY",
                                         f"H {hidden} RW (9, 1024mb) ANY"])
    assert index_main(["-c", str(config), "H", str(machine.secret)]) == 0
    machine.plant_link(hidden / INDEX_FILE_NAME, machine.base / "area" / INDEX_FILE_NAME)
    result = subprocess.run([sys.executable, "-m", "pyqrscp", "ls", "-c", str(config), "A",
                             "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "SECRET" not in result.stdout
    assert "is not a regular file (a link?): not read" in result.stderr


def test_rebuild_does_not_index_a_planted_link(machine: Machine,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    area = machine.user_folder("area")
    config = write_config(machine.base, [f"A {area} RW (9, 1024mb) ANY"])
    machine.plant_link(machine.secret, area / PLANTED_NAME)
    assert index_main(["-c", str(config), "A", "--rebuild"]) == 1
    assert f"skipped {area / PLANTED_NAME}: not a regular file" in capsys.readouterr().err
    assert _patient_ids(config, "A") == []


def test_log_file_is_handed_to_the_configured_user(machine: Machine) -> None:
    """The log file is opened as root before the switch; the user must own it to rotate it."""
    data = machine.user_folder("data")
    logs = machine.user_folder("logs")
    log_file = logs / "pyqrscp.log"
    config = write_config(machine.base, [f"A {data}/a RW (9, 1024mb) ANY"],
                          extra_globals="UserName = nobody\nGroupName = nogroup")
    process = subprocess.Popen(
        [sys.executable, "-m", "pyqrscp", "-v", "--log-file", str(log_file), "-c", str(config),
         "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def started() -> bool:
            assert process.poll() is None, "pyqrscp exited before its start-up line"
            return "running as user" in (log_file.read_text() if log_file.exists() else "")
        poll_until(started, "the start-up line in the log file")
        assert log_file.stat().st_uid == machine.user.pw_uid
    finally:
        process.terminate()
        process.wait(timeout=60)
