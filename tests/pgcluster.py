"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temp folder, on a free
port, trust authentication on 127.0.0.1 only, never a system service.

PostgreSQL refuses to run as root: as root the cluster runs as the ``postgres`` user (the Debian
package creates it), through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from helpers import free_port

#: initdb, start and stop: generous, the test machine is loaded.
DEADLINE = 180


def postgres_bin() -> Path | None:
    """The folder of the newest installed ``initdb``/``pg_ctl`` (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def have_postgres() -> bool:
    return postgres_bin() is not None and _user_ok()


def _user_ok() -> bool:
    if os.geteuid() != 0:
        return True
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return shutil.which("runuser") is not None


@dataclass
class Cluster:
    """A running cluster; ``url`` names its ``postgres`` database as user ``pyqrscp``."""

    folder: Path
    port: int
    bin: Path
    durable: bool = False
    """fsync on (benchmarks); tests run without it."""

    @property
    def url(self) -> str:
        return f"postgresql://pyqrscp@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://pyqrscp@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.folder} -c max_connections=400")
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        done = self._run("pg_ctl", "-D", str(self.folder / "data"), "-l",
                         str(self.folder / "server.log"), "-w", "-t", str(DEADLINE),
                         "-o", options, "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}"
                               f"{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", mode, "-w", "-t",
                  str(DEADLINE), "stop")

    def restart(self) -> None:
        """Stop (dropping every connection) and start again on the same port."""
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def log_tail(self) -> str:
        try:
            return (self.folder / "server.log").read_text()[-3000:]
        except OSError:
            return ""


@contextlib.contextmanager
def postgres_cluster(durable: bool = False) -> Iterator[Cluster]:
    """Create, start, and always stop and remove a cluster (``durable``: with fsync)."""
    bin_folder = postgres_bin()
    if bin_folder is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="pyqrscp-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    cluster = Cluster(folder, free_port(), bin_folder, durable)
    try:
        done = cluster._run("initdb", "-D", str(folder / "data"), "-A", "trust", "-U",
                            "pyqrscp", "-E", "UTF8", "--locale=C", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop("immediate")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
