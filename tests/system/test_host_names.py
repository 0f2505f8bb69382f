"""HostTable host names against the real resolver: a name that does not resolve at the first
association is asked again later, so the peer gets in once it resolves (no restart).

The name is made to resolve by adding a line to ``/etc/hosts`` (unique to this test, removed
afterwards, under a lock so that parallel runs never rewrite the file at once): that needs root,
as CI runs.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import have_dcmtk, poll_until, pyqrscp_process, run_tool, wait_for_log, write_config

HOSTS = Path("/etc/hosts")
HOSTS_LOCK = Path("/tmp/pyqrscp-tests-etc-hosts.lock")

pytestmark = [pytest.mark.dcmtk,
              pytest.mark.skipif(not have_dcmtk(), reason="DCMTK tools not installed"),
              pytest.mark.skipif(os.geteuid() != 0 or not os.access(HOSTS, os.W_OK),
                                 reason="needs root to add a line to /etc/hosts")]


@contextmanager
def locked_hosts() -> Iterator[None]:
    with HOSTS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def hosts_line(line: str) -> Iterator[None]:
    """``line`` in /etc/hosts (written in place: the file may be a mount point) until exit."""
    with locked_hosts():
        with HOSTS.open("a") as hosts:
            hosts.write(f"\n{line}\n")
    try:
        yield
    finally:
        with locked_hosts():
            kept = [text for text in HOSTS.read_text().splitlines() if text != line]
            while kept and not kept[-1].strip():
                kept.pop()
            with HOSTS.open("w") as hosts:
                hosts.write("\n".join(kept) + "\n")


def echo(port: int) -> bool:
    return run_tool("echoscu", "-aet", "MODALITY", "-aec", "PRIVATE", "localhost",
                    str(port)).returncode == 0


def test_a_peer_whose_name_resolves_later_is_accepted_without_restart(tmp_path: Path) -> None:
    name = f"pyqrscp-peer-{uuid.uuid4().hex[:12]}.test"
    (tmp_path / "db").mkdir()
    config = write_config(tmp_path, [f"PRIVATE {tmp_path / 'db'} RW (9, 64mb) modality"],
                          [f"modality = (MODALITY, {name}, 5678)"])
    with pyqrscp_process(config) as server:
        assert not echo(server.port)  # the name does not resolve (yet): rejected
        with hosts_line(f"127.0.0.1 {name}"):
            poll_until(lambda: echo(server.port), "the failed lookup to be retried")
        wait_for_log(server, "not a peer of PRIVATE")
