"""Requests the HTTP listener must refuse: a foreign Host (DNS rebinding) while it needs no
credentials, a deletion from another origin or with an oversized body, and malformed UIDs in
the path, endless padding in a STOW-RS body, a disk that fills up while a body is spooled,
a body that stops or trickles past its read or body timeout;
answers sent without Nagle's delay, and searches answered while uploads wait on a disk that
does not answer."""

from __future__ import annotations

import gc
import os
import select
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from dicomweb_server import WebServer, web_server
from helpers import make_ct, poll_until, still_open
from pydicom import dcmread
from test_dicomweb import BOUNDARY, STOW_TYPE, indexed, leftovers, post, stow_body

from pyqrscp.web.archive import UPLOAD_THREADS

TIMEOUT = 60
UPLOADS_HELD = 44
"""More uploads than the 40 threads of the pool Starlette's requests share."""


def _store_studies(web: WebServer, tmp_path: Path, count: int) -> list[str]:
    files = [make_ct(tmp_path, patient_id=f"P{n}") for n in range(count)]
    response = post(web.dicomweb() + "/studies", stow_body(*(f.read_bytes() for f in files)))
    assert response.status_code == 200, response.text
    return [str(dcmread(f).StudyInstanceUID) for f in files]


def _delete(web: WebServer, study_uid: str, body: bytes, **headers: str) -> requests.Response:
    return requests.post(f"{web.root}/ui/ARCHIVE/studies/{study_uid}/delete", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  **headers}, timeout=TIMEOUT, allow_redirects=False)


def test_only_loopback_host_names_without_credentials(tmp_path: Path) -> None:
    with web_server(tmp_path) as web:
        [study_uid] = _store_studies(web, tmp_path, 1)
        port = int(web.root.rpartition(":")[2])
        for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}",
                     "LocalHost."):
            response = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                                    headers={"Host": host})
            assert response.status_code == 200, (host, response.text)
        for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io",
                     f"192.0.2.1:{port}"):
            response = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                                    headers={"Host": host})
            assert response.status_code == 400, (host, response.text)
            assert requests.get(web.root + "/", timeout=TIMEOUT,
                                headers={"Host": host}).status_code == 400
        # a page rebound to the attacker's name sends its own name as Host and Origin
        rebound = _delete(web, study_uid, f"confirm={study_uid}".encode(),
                          Host=f"attacker.example:{port}",
                          Origin=f"http://attacker.example:{port}")
        assert rebound.status_code == 400
        assert indexed(web.areas["a"]) == 1


def test_any_host_name_with_credentials(tmp_path: Path) -> None:
    with web_server(tmp_path, extra_globals="HTTPToken = tok") as web:
        response = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT,
                                headers={"Host": "pacs.example:8042",
                                         "Authorization": "Bearer tok"})
        assert response.status_code == 204, response.text


def test_deletion_only_from_the_same_origin(tmp_path: Path) -> None:
    with web_server(tmp_path) as web:
        first, second = _store_studies(web, tmp_path, 2)
        port = int(web.root.rpartition(":")[2])
        for origin in ("http://attacker.example", f"http://localhost:{port + 1}",
                       f"https://127.0.0.1:{port}"):
            refused = _delete(web, first, f"confirm={first}".encode(), Origin=origin)
            assert refused.status_code == 403, (origin, refused.text)
        assert indexed(web.areas["a"]) == 2
        same = _delete(web, first, f"confirm={first}".encode(), Origin=web.root)
        assert same.status_code == 303, same.text
        assert indexed(web.areas["a"]) == 1
        # past 4 KiB the body is refused, not cut to a confirmation that happens to fit
        padded = f"confirm={second}&pad=".encode() + b"x" * 8192
        too_big = _delete(web, second, padded, Origin=web.root)
        assert too_big.status_code == 413, too_big.text
        assert indexed(web.areas["a"]) == 1


def test_malformed_uids_in_the_path(tmp_path: Path) -> None:
    with web_server(tmp_path) as web:
        first, second = _store_studies(web, tmp_path, 2)
        both = f"{first}%5C{second}"
        for path in (f"/dicomweb/ARCHIVE/studies/{both}/series",
                     f"/dicomweb/ARCHIVE/studies/{both}",
                     f"/dicomweb/ARCHIVE/studies/{both}/metadata",
                     f"/dicomweb/ARCHIVE/studies/{first}/series/1.2*",
                     f"/ui/ARCHIVE/studies/{both}",
                     f"/ui/ARCHIVE/studies/{both}/zip",
                     f"/ui/ARCHIVE/studies/{first}%22%3B%20x%3D/zip"):
            response = requests.get(web.root + path, timeout=TIMEOUT)
            assert response.status_code == 400, (path, response.status_code)
            assert "content-disposition" not in response.headers
        refused = _delete(web, both, f"confirm={first}%5C{second}".encode(), Origin=web.root)
        assert refused.status_code == 400
        assert indexed(web.areas["a"]) == 2
        ok = requests.get(f"{web.root}/ui/ARCHIVE/studies/{first}/zip", timeout=TIMEOUT)
        assert ok.status_code == 200
        assert ok.headers["content-disposition"] == f'attachment; filename="{first}.zip"'


def test_any_origin_never_with_credentials(tmp_path: Path) -> None:
    with web_server(tmp_path, extra_globals="HTTPAllowOrigin = *") as web:
        for method in ("GET", "OPTIONS"):
            response = requests.request(method, web.dicomweb() + "/studies", timeout=TIMEOUT,
                                        headers={"Origin": "https://viewer.example",
                                                 "Access-Control-Request-Method": "GET",
                                                 "Cookie": "a=b"})
            assert response.headers["access-control-allow-origin"] == "*", method
            assert "access-control-allow-credentials" not in response.headers, method


def _server_side(client: socket.socket) -> socket.socket:
    """The listener's end of ``client``'s connection (the server runs in this process)."""
    wanted = (client.getpeername(), client.getsockname())
    for thing in gc.get_objects():
        if isinstance(thing, socket.socket) and thing.fileno() >= 0:
            try:
                if (thing.getsockname(), thing.getpeername()) == wanted:
                    return thing
            except OSError:
                continue
    raise AssertionError("no server-side socket for the connection")


def test_answers_are_not_held_back_by_nagle(tmp_path: Path) -> None:
    # headers and body go out in two writes: with Nagle's algorithm on, the body waited for
    # the client's delayed acknowledgement (about 40 ms a request on a kept-alive connection)
    with web_server(tmp_path) as web:
        port = int(web.root.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as client:
            client.sendall(b"GET /dicomweb/ARCHIVE/studies HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 204")
            server_end = _server_side(client)
            assert server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _stow_head(length: int, ae_title: str = "ARCHIVE") -> bytes:
    return (f"POST /dicomweb/{ae_title}/studies HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: {STOW_TYPE}\r\nContent-Length: {length}\r\n\r\n").encode()


def _status_of(connection: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        received = connection.recv(4096)
        if not received:
            break
        head += received
    return int(head.split(b" ", 2)[1])


class FreezableDisk:
    """An ext4 file system on a loop device that ``fsfreeze`` can stall: every write to it
    waits (uninterruptibly) until it is thawed, as on a disk that does not answer."""

    def __init__(self, image: Path, path: Path) -> None:
        self.image, self.path = image, path
        self._watchdog: subprocess.Popen[bytes] | None = None

    def freeze(self) -> None:
        # thawed after 5 min even if this process dies: its stalled threads cannot be killed
        self._watchdog = subprocess.Popen(
            ["sh", "-c", f"sleep 300; fsfreeze -u '{self.path}'"], start_new_session=True)
        subprocess.run(["fsfreeze", "-f", str(self.path)], check=True, timeout=TIMEOUT)

    def thaw(self) -> None:
        if self._watchdog is not None:
            subprocess.run(["fsfreeze", "-u", str(self.path)], check=False, timeout=TIMEOUT)
            os.killpg(self._watchdog.pid, signal.SIGTERM)
            self._watchdog.wait(timeout=TIMEOUT)
            self._watchdog = None


@pytest.fixture
def freezable_disk(tmp_path: Path) -> Iterator[FreezableDisk]:
    """Skips when no loop device can be mounted (not root, no fsfreeze)."""
    image, mount_point = tmp_path / "disk.img", tmp_path / "frozen"
    mount_point.mkdir()
    with image.open("wb") as sparse:
        sparse.truncate(64 << 20)
    made = subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], capture_output=True,
                          text=True, check=False)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount_point)],
                             capture_output=True, text=True, check=False) \
        if made.returncode == 0 and shutil.which("fsfreeze") else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop file system: {made.stderr or mounted}")
    disk = FreezableDisk(image, mount_point)
    try:
        yield disk
    finally:
        disk.thaw()
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _stalled_threads() -> int:
    """Threads of this process waiting uninterruptibly (state D): here, on the frozen disk."""
    stalled = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            state = (task / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        stalled += state == "D"
    return stalled


def test_searches_are_answered_while_uploads_wait_on_a_stalled_disk(
        tmp_path: Path, freezable_disk: FreezableDisk) -> None:
    # uploads took threads of the pool every request shares (40): as many uploads on a disk
    # that did not answer left a search waiting until the disk did
    bodies = [stow_body(make_ct(tmp_path, rows=64).read_bytes())
              for _ in range(UPLOADS_HELD)]
    stalled_area = freezable_disk.path / "b"
    rows = ("ARCHIVE {a} RW (100, 1024mb) ANY", f"STALLED {stalled_area} RW (100, 1024mb) ANY")
    with web_server(tmp_path, rows=rows) as web:
        port = int(web.root.rpartition(":")[2])
        uploads: list[socket.socket] = []
        try:
            freezable_disk.freeze()
            for body in bodies:
                upload = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                uploads.append(upload)
                upload.sendall(_stow_head(len(body), "STALLED") + body[:len(body) // 2])
            poll_until(lambda: _stalled_threads() >= UPLOAD_THREADS, "uploads stalled")
            search = requests.get(web.dicomweb() + "/studies", timeout=TIMEOUT)
            assert search.status_code == 204, search.text
            assert all(still_open(upload) for upload in uploads)
        finally:
            freezable_disk.thaw()
        for upload, body in zip(uploads, bodies, strict=True):
            with upload:
                upload.sendall(body[len(body) // 2:])
                assert _status_of(upload) == 200
        assert indexed(stalled_area) == UPLOADS_HELD
        assert leftovers(stalled_area) == []


def test_a_full_disk_while_spooling_is_507_and_leaves_nothing(tmp_path: Path,
                                                              small_tmpfs: Path) -> None:
    # a failed write while spooling was a 500 with a traceback ('Exception in ASGI
    # application'); only a temp file that could not be created was a 507
    area = small_tmpfs / "a"
    larger_than_the_disk = make_ct(tmp_path, rows=1500).read_bytes()
    with web_server(tmp_path, rows=(f"ARCHIVE {area} RW (100, 1024mb) ANY",)) as web:
        refused = post(web.dicomweb() + "/studies", stow_body(larger_than_the_disk))
        assert refused.status_code == 507, refused.text
        assert leftovers(area) == []
        stored = post(web.dicomweb() + "/studies", stow_body(make_ct(tmp_path).read_bytes()))
        assert stored.status_code == 200, stored.text


def test_endless_padding_after_a_boundary_is_refused_at_once(tmp_path: Path) -> None:
    # kept whole and copied again on every read, it held the event loop ever longer
    length = 1 << 30
    with web_server(tmp_path) as web:
        port = int(web.root.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as upload:
            upload.sendall(_stow_head(length) + b"--" + BOUNDARY.encode() + b" " * 8192)
            assert _status_of(upload) == 400
        assert leftovers(web.areas["a"]) == []


def test_an_upload_that_stops_mid_body_is_408_after_the_read_timeout(tmp_path: Path) -> None:
    body = stow_body(make_ct(tmp_path, rows=64).read_bytes())
    with web_server(tmp_path, read_timeout=1.0) as web:
        port = int(web.root.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as upload:
            upload.sendall(_stow_head(len(body)) + body[:len(body) // 2])
            assert _status_of(upload) == 408
        poll_until(lambda: leftovers(web.areas["a"]) == [], "the spooled part to be removed")


def test_an_upload_trickling_past_the_body_timeout_is_408(tmp_path: Path) -> None:
    """Every read gets bytes well within the read timeout (60 s); the body as a whole takes
    longer than its 2 s."""
    body = stow_body(make_ct(tmp_path, rows=64).read_bytes())
    with web_server(tmp_path, read_timeout=60.0, body_timeout=2.0) as web:
        port = int(web.root.rpartition(":")[2])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as upload:
            upload.sendall(_stow_head(len(body)))
            sent = 0
            while not select.select([upload], [], [], 0.1)[0]:  # an answer, or 0.1 s more
                assert sent < len(body), "the whole body was taken"
                upload.sendall(body[sent:sent + 16])
                sent += 16
            assert _status_of(upload) == 408
        poll_until(lambda: leftovers(web.areas["a"]) == [], "the spooled part to be removed")
