import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless PYQRSCP_SLOW=1 or a ``-m`` expression naming slow was given;
    with PYQRSCP_PYNETDICOM_PUBLIC_ONLY=1 (pynetdicom's public path), skip the tests marked
    ``pynetdicom_internals``: they check what only pyqrscp's hooks into pynetdicom can do."""
    if os.environ.get("PYQRSCP_PYNETDICOM_PUBLIC_ONLY", "") not in ("", "0"):
        for item in items:
            marker = item.get_closest_marker("pynetdicom_internals")
            if marker is not None:
                item.add_marker(pytest.mark.skip(
                    reason=f"pynetdicom's public path: {marker.kwargs.get('reason', '')}"))
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
