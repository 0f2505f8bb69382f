import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless PYQRSCP_SLOW=1 or a ``-m`` expression naming slow was given."""
    if os.environ.get("PYQRSCP_SLOW") == "1" or "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run scripts/run-slow-tests (or PYQRSCP_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI the interop tests must run, not skip: missing DCMTK tools fail the run."""
    if os.environ.get("PYQRSCP_REQUIRE_DCMTK") != "1":
        return
    import shutil

    tools = ("echoscu", "storescu", "findscu", "movescu", "getscu", "storescp", "dcmqrscp")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.exit(f"DCMTK tools missing: {', '.join(missing)}", returncode=1)
