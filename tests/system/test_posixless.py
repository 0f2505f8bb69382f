"""pyqrscp where the POSIX-only modules are missing, as on Windows: ``fcntl``, ``pwd`` and ``grp``
are made unimportable by a ``sitecustomize`` in a child Python, which then runs the unit tests,
an in-process server test, and the ``ls``/``rm`` test against a server process (children inherit
the block through ``PYTHONPATH``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_config

REPO = Path(__file__).parents[2]
BLOCKER = '''
import importlib.abc
import sys

BLOCKED = {"fcntl", "pwd", "grp"}


class _NoPosix(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked: no POSIX)", name=name)
        return None


sys.meta_path.insert(0, _NoPosix())
for _name in BLOCKED:
    sys.modules.pop(_name, None)
'''


def _posixless_env(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": str(blocker)}


def _python(env: dict[str, str], *args: str, timeout: int = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def test_posix_modules_are_really_blocked_and_optional(tmp_path: Path) -> None:
    env = _posixless_env(tmp_path)
    assert _python(env, "-c", "import fcntl").returncode != 0
    loaded = _python(env, "-c", "from pyqrscp.archive import filelock, storage; "
                     "from pyqrscp.server import privileges, server; "
                     "assert filelock.fcntl is None and privileges.pwd is None")
    assert loaded.returncode == 0, loaded.stderr


def test_user_name_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    env = _posixless_env(tmp_path)
    config = write_config(tmp_path, [f"ARCHIVE {tmp_path / 'a'} RW (9, 1mb) ANY"],
                          extra_globals="UserName = dcmtk")
    result = _python(env, "-m", "pyqrscp", "-c", str(config), "0")
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "pyqrscp: UserName/GroupName are not supported on this platform (no setuid): remove "
        "them from the config file and run pyqrscp as that user (e.g. a service account)")


@pytest.mark.timeout(900)
def test_unit_and_server_tests_pass_without_posix_modules(tmp_path: Path) -> None:
    env = _posixless_env(tmp_path)
    result = _python(env, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit",
                     "tests/system/test_startup.py", "tests/system/test_chores.py",
                     timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
